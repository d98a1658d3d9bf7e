"""A real company server on 127.0.0.1 over the shared, migrated test database.

The company schema is migrated into the same database as identity's (each
service has its own schema), and the server verifies access tokens against the
JWKS it fetches over gRPC from the running `identity` fixture, exactly as in
production. The platform admin registers companies A and B under the company
ids that identity's `admin_a` and `admin_b` already belong to.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest_asyncio
from company_harness import CompanyHarness
from support.identity_harness import IdentityHarness

from cardinsa_company.cli import MIGRATIONS
from cardinsa_company.main import build
from cardinsa_company.settings import CompanyServiceSettings
from cardinsa_foundation.db import app_role_url
from cardinsa_foundation.migrations import upgrade


@pytest_asyncio.fixture(scope="session")
async def company_database(identity_database: str) -> str:
    """The shared test database with the company schema migrated in (after identity's)."""
    await upgrade(MIGRATIONS, identity_database, "company")
    return identity_database


@pytest_asyncio.fixture(scope="session")
async def company_settings(identity: IdentityHarness) -> CompanyServiceSettings:
    return CompanyServiceSettings(
        _env_file=None,
        environment="test",
        identity_address=identity.app.server.address,
        # Follows identity's token revocations, as company does in production.
        service_api_key=await identity.service_key("company-service", "revocations.watch"),
        # Short, so the suspension test sees the documented bound in seconds.
        tenant_status_ttl_s=1.0,
        db_pool_size=5,
        db_max_overflow=10,
        # No drain when the fixture stops it (nothing routes to it by health).
        drain_delay_s=0.0,
    )


@pytest_asyncio.fixture(scope="session")
async def company(
    company_database: str, company_settings: CompanyServiceSettings, identity: IdentityHarness
) -> AsyncIterator[CompanyHarness]:
    app = build(company_settings, app_role_url(company_database), port=0, metrics_port=0)
    await app.start()
    channel = grpc.aio.insecure_channel(app.server.address)
    try:
        harness = CompanyHarness(app=app, channel=channel, identity=identity)
        harness.company_a = await harness.create_company(
            company_id=identity.admin_a.company_id,
            display_name="Alpha Assurance",
            legal_name="Alpha Assurance AG",
        )
        harness.company_b = await harness.create_company(
            company_id=identity.admin_b.company_id,
            display_name="Beta Insurance",
            legal_name="Beta Insurance Ltd",
            country="KE",
            default_currency="KES",
            time_zone="Africa/Nairobi",
        )
        yield harness
    finally:
        await channel.close()
        await app.stop()
