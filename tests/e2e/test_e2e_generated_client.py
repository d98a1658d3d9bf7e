"""A Python client generated from the gateway's served ``/openapi.json``, as a new
user would make one (openapi-python-client), used for a whole journey through
the running suite: log in, create, update (PATCH), get, list and errors.

The client is generated into a temporary directory and imported from there by
path (no pip install, no formatting hooks: a few seconds). Every operation of the
description must be generated: a generator that refuses one (it dropped every
PATCH while path variables were named ``{policy.id}``) fails the test.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from support.tools import venv_tool

from e2e.suite_harness import (
    ADMIN_EMAIL,
    PASSWORD,
    SuiteProcess,
    next_client_address,
    policyholder_body,
)

pytestmark = pytest.mark.integration

PACKAGE = "cardinsa_generated_client"


@pytest.fixture(scope="module")
def generated(suite: SuiteProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The generated package, imported by path; its modules are forgotten afterwards."""
    folder = tmp_path_factory.mktemp("generated-client")
    served = suite.rest().call("GET", "/openapi.json")
    assert served.status == 200, served.status
    description = folder / "openapi.json"
    description.write_bytes(served.body)
    config = folder / "config.json"
    config.write_text(
        json.dumps(
            {
                "post_hooks": [],  # no ruff runs over the output
                # The documents (application/pdf) and the MFA enrolment's QR code
                # (image/png) are bytes to the generator.
                "content_type_overrides": {
                    "application/pdf": "application/octet-stream",
                    "image/png": "application/octet-stream",
                },
            }
        )
    )
    output = folder / PACKAGE
    done = subprocess.run(
        [
            venv_tool("openapi-python-client"),
            "generate",
            "--path",
            str(description),
            "--output-path",
            str(output),
            "--meta",
            "none",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # The generator reports what it could not generate as warnings and goes on.
    report = done.stdout + done.stderr
    assert "Warning" not in report and "Unable to" not in report, report
    spec = importlib.util.spec_from_file_location(
        PACKAGE, output / "__init__.py", submodule_search_locations=[str(output)]
    )
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = package
    try:
        spec.loader.exec_module(package)
        yield GeneratedClient(package, json.loads(served.body), output)
    finally:
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


class GeneratedClient:
    def __init__(self, package: ModuleType, description: dict[str, Any], folder: Path) -> None:
        self.package = package
        self.description = description
        self.folder = folder

    def module(self, name: str) -> Any:
        return importlib.import_module(f"{PACKAGE}.{name}")

    def operation(self, service: str, method: str) -> Any:
        """The generated module of one operation (``api/<tag>/<operationId>.py``),
        for names without acronyms (``PolicyService``, ``GetPolicy``)."""
        tag, name = (re.sub(r"(?<!^)([A-Z])", r"_\1", n).lower() for n in (service, method))
        return self.module(f"api.{tag}.{tag}_{name}")


def details_of(status: Any) -> list[dict[str, Any]]:
    return [item.to_dict() for item in (status.details or [])]


def test_every_operation_of_the_description_is_generated(generated: GeneratedClient) -> None:
    described = {
        (verb, path) for path, item in generated.description["paths"].items() for verb in item
    }
    assert len({d for d in described if d[0] == "patch"}) >= 9
    found: set[tuple[str, str]] = set()
    for module in (generated.folder / "api").rglob("*.py"):
        text = module.read_text()
        for verb, url in re.findall(r'"method": "(\w+)",\s*"url": "([^"]+)"', text):
            found.add((verb, url))
    assert described - found == set()
    assert found <= described


def test_journey_with_the_generated_client(suite: SuiteProcess, generated: GeneratedClient) -> None:
    client_module = generated.module("client")
    models = generated.module("models")
    login = generated.operation("AuthService", "Login")
    create = generated.operation("PolicyholderService", "CreatePolicyholder")
    update = generated.operation("PolicyholderService", "UpdatePolicyholder")
    get = generated.operation("PolicyholderService", "GetPolicyholder")
    listing = generated.operation("PolicyholderService", "ListPolicyholders")

    # Its own loopback address: the login limit is per client address.
    transport = httpx.HTTPTransport(local_address=next_client_address(suite.aliases))
    base_url = f"http://{suite.gateway}"
    anonymous = client_module.Client(base_url=base_url, httpx_args={"transport": transport})
    with anonymous:
        tokens = login.sync(
            client=anonymous,
            body=models.CardinsaIdentityV1LoginRequest(email=ADMIN_EMAIL, password=PASSWORD),
        )
    assert isinstance(tokens, models.CardinsaIdentityV1TokenPair), tokens
    assert tokens.token_type == "Bearer"

    transport = httpx.HTTPTransport(local_address=next_client_address(suite.aliases))
    client = client_module.AuthenticatedClient(
        base_url=base_url, token=tokens.access_token, httpx_args={"transport": transport}
    )
    with client:
        # create
        body = policyholder_body()
        created = create.sync(
            client=client,
            body=models.CardinsaCoreV1Policyholder.from_dict(body),
            request_id=str(uuid.uuid4()),
        )
        assert isinstance(created, models.CardinsaCoreV1Policyholder), created
        assert created.id and created.family_name == body["family_name"]

        # update: PATCH /v1/policyholders/{policyholder_id}
        new_email = f"renamed-{uuid.uuid4().hex[:8]}@e2e.cardinsa.test"
        updated = update.sync(
            policyholder_id=created.id,
            client=client,
            body=models.CardinsaCoreV1Policyholder.from_dict(
                {"kind": "PERSON", "email": new_email, "etag": created.etag}
            ),
            update_mask="email",
        )
        assert isinstance(updated, models.CardinsaCoreV1Policyholder), updated
        assert updated.id == created.id and updated.email == new_email
        assert updated.etag != created.etag

        # get
        fetched = get.sync(policyholder_id=created.id, client=client)
        assert isinstance(fetched, models.CardinsaCoreV1Policyholder), fetched
        assert (fetched.email, fetched.etag) == (new_email, updated.etag)

        # list (filtered to this test's policyholder)
        page = listing.sync(client=client, filter_=f'email = "{new_email}"', page_size=10)
        assert isinstance(page, models.CardinsaCoreV1ListPolicyholdersResponse), page
        assert [p.id for p in page.policyholders] == [created.id]

        # errors, parsed as google.rpc.Status with their details
        stale = update.sync_detailed(
            policyholder_id=created.id,
            client=client,
            body=models.CardinsaCoreV1Policyholder.from_dict(
                {"kind": "PERSON", "given_name": "Stale", "etag": created.etag}
            ),
            update_mask="given_name",
        )
        assert stale.status_code == HTTPStatus.CONFLICT, stale.content
        assert isinstance(stale.parsed, models.GoogleRpcStatus)
        assert stale.parsed.code == 10  # ABORTED: the etag is not the current one
        assert stale.headers["x-request-id"]
        reasons = [d.get("reason") for d in details_of(stale.parsed) if "reason" in d]
        assert len(reasons) == 1, details_of(stale.parsed)

        unknown = get.sync_detailed(policyholder_id=str(uuid.uuid4()), client=client)
        assert unknown.status_code == HTTPStatus.NOT_FOUND, unknown.content
        assert isinstance(unknown.parsed, models.GoogleRpcStatus)
        assert unknown.parsed.code == 5

        invalid = update.sync_detailed(
            policyholder_id=created.id,
            client=client,
            body=models.CardinsaCoreV1Policyholder.from_dict(
                {"kind": "PERSON", "email": "not an email"}
            ),
            update_mask="email",
        )
        assert invalid.status_code == HTTPStatus.BAD_REQUEST, invalid.content
        assert isinstance(invalid.parsed, models.GoogleRpcStatus)
        assert invalid.parsed.code == 3
        violations = [
            v["field"]
            for d in json.loads(invalid.content)["details"]
            if d["@type"].endswith("google.rpc.BadRequest")
            for v in d["field_violations"]
        ]
        assert violations and all("email" in field for field in violations), violations

    # without a token: 401, the same shape
    with client_module.Client(
        base_url=base_url,
        httpx_args={
            "transport": httpx.HTTPTransport(local_address=next_client_address(suite.aliases))
        },
    ) as nobody:
        refused = get.sync_detailed(policyholder_id=created.id, client=nobody)
    assert refused.status_code == HTTPStatus.UNAUTHORIZED
    assert isinstance(refused.parsed, models.GoogleRpcStatus) and refused.parsed.code == 16
