"""Hostile input and attacks at the gRPC level, against every service in TARGET_SPECS.

Fixtures here start what the suites attack -- the shared session ``identity``
server (tests/integration/conftest.py) and a company and a core server of this
directory's own over the same migrated database -- and three tenants of their
own (see hostile_harness.py). At the end of the run, ``pytest_terminal_summary`` prints
the attack table (attack | tried | held) and the answer counts of the
property-based suite.

Extension points:

* another gRPC service: one ``TargetSpec`` in ``hostile_harness.TARGET_SPECS``
  plus a session fixture of that name yielding a ``ServiceTarget`` -- start the
  server like ``hostile_core_app`` below, seed one resource per tenant into
  ``tenant.ids``, probe = a Get of it (``core_target`` is the example).
  Every suite here then covers its RPCs.
* gateway-level attacks: ``hostile_gateway`` below is a real Envoy
  (tests/support/gateway_harness.py) in front of this directory's identity,
  company and core servers; test_attack_rest.py sends the REST payloads of
  ``hostile_payloads.py`` through it to every route and records each case with
  the ``attacks`` fixture, so its rows join the same table. (The schemathesis
  run over the OpenAPI description is in tests/integration/gateway.)
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
import pytest_asyncio
from hostile_attacks import ATTACKS, HOSTILE_INPUT, AttackLog
from hostile_harness import (
    TARGET_SPECS,
    Database,
    ServiceTarget,
    Tenant,
    Tenants,
    company_probe,
    core_probe,
    identity_probe,
    make_tenant,
    seed_core,
    strong_password,
)
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from support.gateway_harness import Endpoint, Gateway, running_gateway
from support.identity_harness import IdentityHarness, unique_email

from cardinsa_company.cli import MIGRATIONS as COMPANY_MIGRATIONS
from cardinsa_company.main import CompanyApp
from cardinsa_company.main import build as build_company
from cardinsa_company.settings import CompanyServiceSettings
from cardinsa_core.cli import MIGRATIONS as CORE_MIGRATIONS
from cardinsa_core.main import CoreApp
from cardinsa_core.main import build as build_core
from cardinsa_core.settings import CoreSettings
from cardinsa_foundation.config import Environment
from cardinsa_foundation.db import app_role_url
from cardinsa_foundation.migrations import upgrade
from cardinsa_identity.application.bootstrap import ensure_user_with_role


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    table = ATTACKS.table()
    if table:
        terminalreporter.section("attack suite: what was tried and what held")
        for line in table:
            terminalreporter.write_line(line)
    stats = HOSTILE_INPUT.summary(per_method=terminalreporter.verbosity > 0)
    if stats:
        terminalreporter.section("hostile input: answers per service (status code counts)")
        for line in stats:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def attacks() -> AttackLog:
    return ATTACKS


@pytest_asyncio.fixture(scope="session")
async def hostile_company_app(
    identity_database: str, identity: IdentityHarness
) -> AsyncIterator[CompanyApp]:
    """A company server of this suite's own (the company suite's fixture lives in
    its directory); migrating again is a no-op when that suite ran first."""
    await upgrade(COMPANY_MIGRATIONS, identity_database, "company")
    settings = CompanyServiceSettings(  # type: ignore[call-arg]
        _env_file=None,
        environment=Environment.TEST,
        identity_address=identity.app.server.address,
        # Refuses revoked tokens, as in production.
        service_api_key=await identity.service_key("hostile-company", "revocations.watch"),
        tenant_status_ttl_s=1.0,
        db_pool_size=5,
        db_max_overflow=10,
        drain_delay_s=0.0,  # no drain on stop: nothing routes to it by health
    )
    app = build_company(settings, app_role_url(identity_database), port=0, metrics_port=0)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


@pytest_asyncio.fixture(scope="session")
async def company_channel(hostile_company_app: CompanyApp) -> AsyncIterator[grpc.aio.Channel]:
    channel = grpc.aio.insecure_channel(hostile_company_app.server.address)
    try:
        yield channel
    finally:
        await channel.close()


@pytest_asyncio.fixture(scope="session")
async def hostile_db(identity_database: str) -> AsyncIterator[Database]:
    """Superuser connection to the shared test database (sees every tenant)."""
    engine = create_async_engine(
        identity_database, poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    try:
        async with engine.connect() as connection:
            yield Database(connection)
    finally:
        await engine.dispose()


async def _fuzz_tenant(
    identity: IdentityHarness, company_channel: grpc.aio.Channel, platform: list[tuple[str, str]]
) -> Tenant:
    """The fuzz tenant, whose token is a second admin's, with a password no hint
    knows: the hints name the first admin (lock, delete, its password), and each
    of those now ends that admin's tokens at once (a revocation)."""
    fuzz = await make_tenant("fuzz", identity, company_channel, platform)
    password = strong_password()
    caller = await ensure_user_with_role(
        identity.app.ctx,
        email=unique_email("hostile-fuzz-caller"),
        password=password,
        company_id=uuid.UUID(fuzz.company_id),
        role_name="company-admin",
    )
    return dataclasses.replace(
        fuzz, token=(await identity.login(caller.email, password)).access_token
    )


@pytest_asyncio.fixture(scope="session")
async def tenants(identity: IdentityHarness, company_channel: grpc.aio.Channel) -> Tenants:
    platform_token = await identity.token(identity.platform_admin)
    platform = identity.bearer(platform_token)
    return Tenants(
        attacker=await make_tenant("attacker", identity, company_channel, platform),
        victim=await make_tenant(
            "victim", identity, company_channel, platform, password=strong_password()
        ),
        fuzz=await _fuzz_tenant(identity, company_channel, platform),
        platform_token=platform_token,
    )


@pytest_asyncio.fixture(scope="session")
async def identity_target(identity: IdentityHarness) -> ServiceTarget:
    return ServiceTarget(
        spec=next(s for s in TARGET_SPECS if s.name == "identity"),
        channel=identity.channel,
        schemas=("identity",),
        probe=identity_probe,
        # Re-read every few seconds; rotation states move with the clock.
        volatile_tables=frozenset({"identity.signing_keys"}),
        failure_side_effects={
            # A refused login is counted (throttle) and audited, by design.
            "Login": frozenset({"identity.login_throttles", "identity.audit_events"}),
            "ChangePassword": frozenset({"identity.login_throttles", "identity.audit_events"}),
            # Reuse of a rotated refresh token revokes its family (and its
            # access tokens) and is audited.
            "RefreshToken": frozenset(
                {
                    "identity.sessions",
                    "identity.refresh_tokens",
                    "identity.revocations",
                    "identity.audit_events",
                }
            ),
        },
        settle=identity.app.auth.wait_for_background,
    )


@pytest_asyncio.fixture(scope="session")
async def company_target(company_channel: grpc.aio.Channel) -> ServiceTarget:
    return ServiceTarget(
        spec=next(s for s in TARGET_SPECS if s.name == "company"),
        channel=company_channel,
        schemas=("company",),
        probe=company_probe,
    )


@pytest_asyncio.fixture(scope="session")
async def hostile_core_app(
    identity_database: str, identity: IdentityHarness
) -> AsyncIterator[CoreApp]:
    """A core server of this suite's own (the settings fallback of the tenant
    directory: every tenant active, as in the core suite)."""
    await upgrade(CORE_MIGRATIONS, identity_database, "core")
    settings = CoreSettings(  # type: ignore[call-arg]
        _env_file=None,
        environment=Environment.TEST,
        identity_address=identity.app.server.address,
        # Refuses revoked tokens, as in production.
        service_api_key=await identity.service_key("hostile-core", "revocations.watch"),
        db_pool_size=5,
        db_max_overflow=10,
        drain_delay_s=0.0,  # no drain on stop: nothing routes to it by health
    )
    app = build_core(settings, app_role_url(identity_database), port=0, metrics_port=0)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


@pytest_asyncio.fixture(scope="session")
async def core_channel(hostile_core_app: CoreApp) -> AsyncIterator[grpc.aio.Channel]:
    channel = grpc.aio.insecure_channel(hostile_core_app.server.address)
    try:
        yield channel
    finally:
        await channel.close()


@pytest_asyncio.fixture(scope="session")
async def core_target(core_channel: grpc.aio.Channel, tenants: Tenants) -> ServiceTarget:
    """Core, with one policyholder of each tenant (``tenant.ids["policyholder_id"]``)."""
    for tenant in (tenants.attacker, tenants.victim, tenants.fuzz):
        await seed_core(core_channel, tenant)
    return ServiceTarget(
        spec=next(s for s in TARGET_SPECS if s.name == "core"),
        channel=core_channel,
        schemas=("core",),
        probe=core_probe,
        # The first issue of a document stores it, audits the issuance and
        # writes its event; a reissue of the same facts writes nothing.
        read_side_effects=dict.fromkeys(
            ("GetPolicySchedule", "GetClaimDecisionLetter", "GetInvoiceDocument"),
            frozenset({"core.documents", "core.audit_events", "core.outbox_events"}),
        ),
    )


@pytest_asyncio.fixture(scope="session")
async def hostile_gateway(
    identity: IdentityHarness,
    hostile_company_app: CompanyApp,
    hostile_core_app: CoreApp,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Gateway]:
    """A real Envoy in front of this suite's identity, company and core servers
    (tests/support/gateway_harness.py), stopped by its PID at the end. The login
    limit is out of the way: REST attacks on the login route are about bodies."""
    async with running_gateway(
        identity,
        tmp_path_factory.mktemp("hostile-gateway"),
        {
            "identity": [Endpoint.parse(identity.app.server.address)],
            "company": [Endpoint.parse(hostile_company_app.server.address)],
            "core": [Endpoint.parse(hostile_core_app.server.address)],
        },
        gateway_login_limit=100_000,
    ) as gateway:
        yield gateway


@pytest.fixture(scope="session")
def hostile_targets(request: pytest.FixtureRequest) -> Iterator[dict[str, ServiceTarget]]:
    """Every running target, by name (each spec's fixture, resolved by name)."""
    yield {spec.name: request.getfixturevalue(spec.fixture) for spec in TARGET_SPECS}
