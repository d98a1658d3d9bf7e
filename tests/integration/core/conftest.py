"""A real core server on 127.0.0.1 over the shared, migrated test database.

The core schema is migrated into the same database as identity's (each service
has its own schema); the server verifies access tokens against the JWKS it
fetches over gRPC from the running `identity` fixture, exactly as in
production. The company service is not part of this suite: the settings
fallback of the tenant directory is used (see test_core_tenant_directory for
the gRPC one against a stand-in company server).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest_asyncio
from core_harness import CoreHarness, Tenant
from support.identity_harness import IdentityHarness

from cardinsa_core.cli import MIGRATIONS
from cardinsa_core.main import build
from cardinsa_core.settings import CoreSettings
from cardinsa_foundation.db import app_role_url
from cardinsa_foundation.migrations import upgrade


@pytest_asyncio.fixture(scope="session")
async def core_database(identity_database: str) -> str:
    """The shared test database with the core schema migrated in."""
    await upgrade(MIGRATIONS, identity_database, "core")
    return identity_database


@pytest_asyncio.fixture(scope="session")
async def core_settings(identity: IdentityHarness) -> CoreSettings:
    return CoreSettings(
        _env_file=None,
        environment="test",
        identity_address=identity.app.server.address,
        # Follows identity's token revocations, as core does in production.
        service_api_key=await identity.service_key("core-service", "revocations.watch"),
        # 50 concurrent binds each hold a connection while they queue for the
        # company's counter row.
        db_pool_size=30,
        db_max_overflow=30,
        # No drain when the fixture stops it (nothing routes to it by health).
        drain_delay_s=0.0,
    )


@pytest_asyncio.fixture(scope="session")
async def core(
    core_database: str, core_settings: CoreSettings, identity: IdentityHarness
) -> AsyncIterator[CoreHarness]:
    app = build(core_settings, app_role_url(core_database), port=0, metrics_port=0)
    await app.start()
    channel = grpc.aio.insecure_channel(app.server.address)
    try:
        yield CoreHarness(app=app, channel=channel, identity=identity)
    finally:
        await channel.close()
        await app.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def tenant(core: CoreHarness) -> Tenant:
    """A fresh company for one test."""
    return await core.tenant()
