"""Schemathesis over the gateway's OpenAPI description, against the real suite.

Every operation of ``gen/openapi.json`` (``make proto``) is called through a
real Envoy in front of the real identity, company and core servers (in this
process, over the session's PostgreSQL), with the bearer token of a company
admin of a company of this module's own, with requests schemathesis generates
from the description: valid ones, ones that break it, and valid ones whose path
names the module's own resources (seeded through the gateway; random ids only
ever reach "not found"). Each answer must not be a 5xx, must carry a status
code and content type the description documents for the operation, and its
body must match the documented schema (the error shape included). Some of
schemathesis's schema-breaking cases leave the Authorization header out on
purpose; those must get the documented 401.

Bounded for CI: a few examples per operation, derandomized (the same requests
on every run), no example database. Hypothesis runs in a worker thread, as the
servers it calls run on this test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from support.gateway_harness import Endpoint, Gateway, running_gateway
from support.identity_harness import PASSWORD, IdentityHarness, unique_email

from cardinsa.company.v1 import company_service_pb2, company_service_pb2_grpc
from cardinsa.company.v1 import resources_pb2 as company_resources
from cardinsa_company.cli import MIGRATIONS as COMPANY_MIGRATIONS
from cardinsa_company.main import build as build_company
from cardinsa_company.settings import CompanyServiceSettings
from cardinsa_core.cli import MIGRATIONS as CORE_MIGRATIONS
from cardinsa_core.main import build as build_core
from cardinsa_core.settings import CoreSettings
from cardinsa_foundation.config import Environment
from cardinsa_foundation.db import app_role_url
from cardinsa_foundation.migrations import upgrade
from cardinsa_gateway.envoy_listener import ERROR_DOMAIN
from cardinsa_identity.application.bootstrap import ensure_user_with_role

pytestmark = pytest.mark.asyncio(loop_scope="session")

OPENAPI = Path(__file__).resolve().parents[3] / "gen" / "openapi.json"
#: The payment provider core trusts in this module, and its signing secret.
PROVIDER = "acme-pay"
PROVIDER_SECRET = "acme-pay-signing-secret-0123456789abcdef"


def load_schema(path: Path) -> Any:
    """The description as schemathesis reads it. (Path variables have plain
    names, ``{role_id}`` for the transcoder's ``{role.id}``: schemathesis fills
    templates with ``str.format``, which would read a dot as attribute access.)"""
    return schemathesis.openapi.from_dict(json.loads(path.read_text(encoding="utf-8")))


SCHEMA = load_schema(OPENAPI)
OPERATIONS = sorted(result.ok().label for result in SCHEMA.get_all_operations())
EXAMPLES_PER_OPERATION = 8
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@dataclass
class Suite:
    gateway: Gateway
    token: str
    ids: dict[str, str]

    @property
    def base_url(self) -> str:
        return f"http://{self.gateway.address}"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def suite(
    identity: IdentityHarness, identity_database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Suite]:
    """identity (the session's), company and core servers of this module's own,
    Envoy in front of all three; a company of its own with an admin's token."""
    await upgrade(COMPANY_MIGRATIONS, identity_database, "company")
    await upgrade(CORE_MIGRATIONS, identity_database, "core")
    database = app_role_url(identity_database)
    company = build_company(
        CompanyServiceSettings(  # type: ignore[call-arg]
            _env_file=None,
            environment=Environment.TEST,
            identity_address=identity.app.server.address,
            db_pool_size=5,
            db_max_overflow=10,
            drain_delay_s=0.0,  # no drain on stop: nothing routes to it by health
        ),
        database,
        port=0,
        metrics_port=0,
    )
    core = build_core(
        CoreSettings(  # type: ignore[call-arg]
            _env_file=None,
            environment=Environment.TEST,
            identity_address=identity.app.server.address,
            payment_provider_secrets={PROVIDER: [PROVIDER_SECRET]},
            db_pool_size=5,
            db_max_overflow=10,
            drain_delay_s=0.0,  # no drain on stop: nothing routes to it by health
        ),
        database,
        port=0,
        metrics_port=0,
    )
    async with contextlib.AsyncExitStack() as stack:
        await company.start()
        stack.push_async_callback(company.stop)
        await core.start()
        stack.push_async_callback(core.stop)
        token = await _company_admin_token(identity, company.server.address)
        gateway = await stack.enter_async_context(
            running_gateway(
                identity,
                tmp_path_factory.mktemp("schemathesis-gateway"),
                {
                    "identity": [Endpoint.parse(identity.app.server.address)],
                    "company": [Endpoint.parse(company.server.address)],
                    "core": [Endpoint.parse(core.server.address)],
                },
                # Generated logins are about their bodies, not the limit.
                gateway_login_limit=10_000,
            )
        )
        yield Suite(gateway, token, await _seed(gateway, token))


async def _company_admin_token(identity: IdentityHarness, company_address: str) -> str:
    """A registered company of this module's own and its admin's access token."""
    company_id = uuid.uuid4()
    admin = await ensure_user_with_role(
        identity.app.ctx,
        email=unique_email("schemathesis-admin"),
        password=PASSWORD,
        company_id=company_id,
        role_name="company-admin",
    )
    platform = identity.bearer(await identity.token(identity.platform_admin))
    async with grpc.aio.insecure_channel(company_address) as channel:
        stub: Any = company_service_pb2_grpc.CompanyServiceStub
        await stub(channel).CreateCompany(
            company_service_pb2.CreateCompanyRequest(
                company=company_resources.Company(
                    display_name=f"Schemathesis {company_id.hex[:6]}",
                    country="DE",
                    default_currency="EUR",
                    time_zone="Europe/Berlin",
                ),
                company_id=str(company_id),
            ),
            metadata=platform,
        )
    pair = await identity.login(admin.email, PASSWORD)
    return str(pair.access_token)


async def _seed(gateway: Gateway, token: str) -> dict[str, str]:
    """One of each resource of the module's company, made through the gateway:
    path parameters of generated requests are these ids a third of the time
    (random ids only ever reach "not found")."""

    async def make(path: str, body: dict[str, Any]) -> dict[str, Any]:
        reply = await gateway.request("POST", path, body, token=token)
        assert reply.status == 200, (path, reply.status, reply.body)
        made: dict[str, Any] = reply.json()
        return made

    def money(units: int) -> dict[str, Any]:
        return {"currency_code": "EUR", "units": str(units)}

    tag = uuid.uuid4().hex[:8]
    user = await make(
        "/v1/users", {"user": {"email": unique_email("schemathesis-user")}, "password": PASSWORD}
    )
    role = await make("/v1/roles", {"name": f"st-role-{tag}", "permissions": ["users.get"]})
    account = await make("/v1/serviceAccounts", {"name": f"st-svc-{tag}"})
    key = await make(
        f"/v1/serviceAccounts/{account['id']}/apiKeys",
        {"display_name": "schemathesis", "permissions": ["users.get"]},
    )
    company_id = str(user["company_id"])
    department = await make(
        f"/v1/companies/{company_id}/departments", {"display_name": f"Claims {tag}"}
    )
    unit = await make(
        f"/v1/companies/{company_id}/departments/{department['id']}/units",
        {"display_name": f"Motor {tag}"},
    )
    holder = await make(
        "/v1/policyholders",
        {"kind": "PERSON", "given_name": "Schema", "family_name": f"Thesis{tag}"},
    )
    product = await make(
        "/v1/products",
        {
            "code": f"ST-{tag.upper()}",
            "line_of_business": "MEDICAL",
            "name": "Schemathesis health",
            "currency_code": "EUR",
            "base_premium": money(500),
            "term_months": 12,
            "coverages": [
                {
                    "code": "OUTPATIENT",
                    "name": "Outpatient care",
                    "limit": money(10_000),
                    "limit_period": "PER_YEAR",
                    "deductible": money(0),
                }
            ],
        },
    )
    await make(f"/v1/products/{product['id']}:activate", {})
    start = datetime.date.today() - datetime.timedelta(days=20)
    policy = await make(
        "/v1/policies",
        {
            "policyholder_id": holder["id"],
            "product_id": product["id"],
            "effective_date": {"year": start.year, "month": start.month, "day": start.day},
            "sum_insured": money(100_000),
            "payment_frequency": "MONTHLY",
            "insured_members": [{"policyholder": True}],
        },
    )
    policy = await make(f"/v1/policies/{policy['id']}:quote", {"etag": policy["etag"]})
    policy = await make(f"/v1/policies/{policy['id']}:bind", {"etag": policy["etag"]})
    incident = datetime.date.today() - datetime.timedelta(days=2)
    claim = await make(
        "/v1/claims",
        {
            "policy_id": policy["id"],
            "claimant": {"policyholder": True},
            "claim_type": "MEDICAL",
            "description": "broken arm",
            "coverage_code": "OUTPATIENT",
            "incident_date": {"year": incident.year, "month": incident.month, "day": incident.day},
            "claimed_amount": money(800),
        },
    )
    return {
        "company_id": company_id,
        "user_id": str(user["id"]),
        "role_id": str(role["id"]),
        "service_account_id": str(account["id"]),
        "api_key_id": str(key["api_key"]["id"]),
        "department_id": str(department["id"]),
        "unit_id": str(unit["id"]),
        "policyholder_id": str(holder["id"]),
        "product_id": str(product["id"]),
        "version": "1",
        "policy_id": str(policy["id"]),
        "claim_id": str(claim["id"]),
    }


def own_path_parameters(operation: Any, ids: dict[str, str]) -> dict[str, str]:
    """The operation's path parameters that name one of ``ids`` (``role__id``,
    ``department__company_id`` and ``role_id`` alike)."""
    found: dict[str, str] = {}
    for parameter in operation.path_parameters:
        name = str(parameter.name)
        parts = name.split("__")
        key = f"{parts[-2]}_id" if parts[-1] == "id" and len(parts) > 1 else parts[-1]
        if key in ids:
            found[name] = ids[key]
    return found


#: Seconds a generated request may wait for an upstream the gateway holds
#: unhealthy to be healthy again (see ``call_through_health_blips``).
HEALTHY_AGAIN_WITHIN_S = 30.0


def access_log_entry(access_log: Path, request_id: str) -> dict[str, Any] | None:
    """The gateway's access-log entry of one request (Envoy writes it when the
    response is complete; a few tries for the file to be flushed)."""
    for _ in range(20):
        with contextlib.suppress(FileNotFoundError):
            for line in reversed(access_log.read_text(encoding="utf-8").splitlines()):
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if entry.get("request_id") == request_id:
                        return dict(entry)
        time.sleep(0.1)
    return None


def gateway_request_id(response: requests.Response) -> str | None:
    """The request id of a reply the gateway itself generated (its error domain)."""
    with contextlib.suppress(ValueError):
        body = response.json()
        details = body.get("details", []) if isinstance(body, dict) else []
        if any(d.get("domain") == ERROR_DOMAIN for d in details if isinstance(d, dict)):
            for detail in details:
                if isinstance(detail, dict) and "request_id" in detail:
                    return str(detail["request_id"])
    return None


def call_through_health_blips(
    case: schemathesis.Case[Any], base_url: str, session: requests.Session, access_log: Path
) -> requests.Response:
    """The case's answer. A 503 the gateway made because its health checks held
    the upstream unhealthy at that moment (access-log flag ``UH``) says nothing
    about the operation: on a loaded two-core machine the servers of this
    process share it with Envoy, PostgreSQL and hypothesis, and a health check
    may time out twice in a row. Such a request is sent again once the gateway
    reports every service healthy. Any other 503 (connection refused or reset:
    ``UF``, ``UC``, ``URX``) is the answer, and fails the check."""
    response = case.call(base_url=base_url, session=session, timeout=20)
    if response.status_code != 503:
        return response
    request_id = gateway_request_id(response)
    entry = access_log_entry(access_log, request_id) if request_id else None
    if entry is None or "UH" not in str(entry.get("flags", "")).split(","):
        return response
    deadline = time.monotonic() + HEALTHY_AGAIN_WITHIN_S
    while time.monotonic() < deadline:
        if session.get(f"{base_url}/healthz", timeout=5).status_code == 200:
            return case.call(base_url=base_url, session=session, timeout=20)
        time.sleep(0.5)
    return response


def fuzz_operation(
    label: str, base_url: str, token: str, ids: dict[str, str], access_log: Path
) -> None:
    """Generated requests to one operation (valid ones, ones that break the
    description, valid ones on the module's own resources), each answer
    checked; raises the first failure hypothesis finds (shrunk)."""
    operation = SCHEMA.find_operation_by_label(label)
    assert operation is not None, label
    strategies = [
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    ]
    own = own_path_parameters(operation, ids)
    if own:
        strategies.append(
            operation.as_strategy(generation_mode=GenerationMode.POSITIVE, path_parameters=own)
        )
    cases = st.one_of(*strategies)
    headers = {"authorization": f"Bearer {token}"}
    with requests.Session() as session:

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            derandomize=True,
            database=None,
            deadline=None,
            phases=(Phase.explicit, Phase.generate, Phase.shrink),
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cases)
        def run(case: schemathesis.Case[Any]) -> None:
            # Every request carries the admin's token: generated Authorization
            # headers (for the bearer scheme) would only test Envoy's JWT filter.
            case.headers["authorization"] = headers["authorization"]
            response = call_through_health_blips(case, base_url, session, access_log)
            try:
                case.validate_response(response, checks=CHECKS, headers=headers)
            except Exception as exc:
                request_id = gateway_request_id(response)
                if request_id is not None:
                    entry = access_log_entry(access_log, request_id)
                    exc.add_note(f"the gateway's access-log entry of that request: {entry}")
                raise

        run()


@pytest.mark.parametrize("label", OPERATIONS)
async def test_operation_answers_per_its_description_and_never_5xx(
    suite: Suite, label: str
) -> None:
    await asyncio.to_thread(
        fuzz_operation,
        label,
        suite.base_url,
        suite.token,
        suite.ids,
        suite.gateway.access_log,
    )
