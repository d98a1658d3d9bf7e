"""Servers shared by the integration suites: a real identity server on 127.0.0.1
over a real, migrated PostgreSQL (company and core tests need its tokens too).

Session-scoped: migrating and starting once keeps the suite fast; tests create
their own users (unique emails) so they do not depend on each other.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from support.identity_harness import (
    GATEWAY_SECRET,
    PASSWORD,
    Account,
    IdentityHarness,
    unique_email,
)

from cardinsa_foundation.db import app_role_url
from cardinsa_foundation.migrations import upgrade
from cardinsa_identity.application.bootstrap import ensure_user_with_role
from cardinsa_identity.application.notifier import FileNotifier
from cardinsa_identity.cli import MIGRATIONS
from cardinsa_identity.main import IdentityApp, build
from cardinsa_identity.settings import IdentitySettings


@pytest_asyncio.fixture(scope="session")
async def identity_database(test_database_url: str) -> str:
    await upgrade(MIGRATIONS, test_database_url, "identity")
    return test_database_url


@pytest.fixture(scope="session")
def identity_settings(tmp_path_factory: pytest.TempPathFactory) -> IdentitySettings:
    return IdentitySettings(
        _env_file=None,
        environment="test",
        notification_dir=tmp_path_factory.mktemp("notifications"),
        login_max_failures_per_account=5,
        login_max_failures_per_address=10_000,
        login_lock_base_s=2,
        login_lock_max_s=8,
        login_account_wait_max_s=8,
        password_reset_max_per_address=10_000,
        signing_key_publish_delay_s=0,
        gateway_secret=GATEWAY_SECRET,
        db_pool_size=10,
        db_max_overflow=20,
        # No drain when a fixture stops the server: nothing routes to it by health
        # (the drain itself: test_server_pipeline, the fault tests, the defaults:
        # test_gateway_config); servers copied from these settings inherit it.
        drain_delay_s=0.0,
    )


async def _account(app: IdentityApp, role: str, company: uuid.UUID, prefix: str) -> Account:
    result = await ensure_user_with_role(
        app.ctx, email=unique_email(prefix), password=PASSWORD, company_id=company, role_name=role
    )
    return Account(result.email, PASSWORD, str(result.company_id), str(result.user_id))


@pytest_asyncio.fixture(scope="session")
async def identity(
    identity_database: str, identity_settings: IdentitySettings
) -> AsyncIterator[IdentityHarness]:
    notifier = FileNotifier(Path(identity_settings.notification_dir))
    app = build(
        identity_settings,
        app_role_url(identity_database),
        port=0,
        metrics_port=0,
        notifier=notifier,
    )
    await app.start()
    channel = grpc.aio.insecure_channel(app.server.address)
    try:
        harness = IdentityHarness(
            app=app,
            channel=channel,
            notifier=notifier,
            platform_admin=await _account(app, "platform-admin", uuid.uuid4(), "root"),
            admin_a=await _account(app, "company-admin", uuid.uuid4(), "admin-a"),
            admin_b=await _account(app, "company-admin", uuid.uuid4(), "admin-b"),
        )
        yield harness
    finally:
        await channel.close()
        await app.stop()


#: Every limit of login and password reset (the session's server raises some).
THROTTLE_SETTINGS = (
    "login_max_failures_per_account",
    "login_max_failures_per_address",
    "login_failure_window_s",
    "login_lock_base_s",
    "login_lock_max_s",
    "login_account_wait_max_s",
    "password_reset_window_s",
    "password_reset_max_per_address",
    "password_reset_max_per_account",
    "password_reset_queue_size",
)


@pytest_asyncio.fixture(scope="session")
async def default_identity(
    identity: IdentityHarness, identity_database: str
) -> AsyncIterator[IdentityHarness]:
    """A second identity server on the same database with the production default of
    every login and password-reset limit; same accounts and notifier as ``identity``."""
    defaults = {name: IdentitySettings.model_fields[name].default for name in THROTTLE_SETTINGS}
    settings = identity.settings.model_copy(update=defaults)
    app = build(
        settings,
        app_role_url(identity_database),
        port=0,
        metrics_port=0,
        notifier=identity.notifier,
    )
    await app.start()
    channel = grpc.aio.insecure_channel(app.server.address)
    try:
        yield IdentityHarness(
            app=app,
            channel=channel,
            notifier=identity.notifier,
            platform_admin=identity.platform_admin,
            admin_a=identity.admin_a,
            admin_b=identity.admin_b,
        )
    finally:
        await channel.close()
        await app.stop()
