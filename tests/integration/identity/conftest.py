"""A real identity server on 127.0.0.1 over a real, migrated PostgreSQL.

Session-scoped: migrating and starting once keeps the suite fast; tests create
their own users (unique emails) so they do not depend on each other.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio

from cardinsa.identity.v1 import (
    access_service_pb2_grpc,
    auth_service_pb2,
    auth_service_pb2_grpc,
    identity_service_pb2_grpc,
    resources_pb2,
    user_service_pb2,
    user_service_pb2_grpc,
)
from cardinsa_foundation.migrations import upgrade
from cardinsa_identity.application.bootstrap import ensure_user_with_role
from cardinsa_identity.application.notifier import FileNotifier
from cardinsa_identity.cli import MIGRATIONS
from cardinsa_identity.main import IdentityApp, app_role_url, build
from cardinsa_identity.settings import IdentitySettings

PASSWORD = "correct horse battery staple 42"
GATEWAY_SECRET = "test-gateway-secret-0123456789abcdef"


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


@dataclass
class Account:
    email: str
    password: str
    company_id: str
    user_id: str


@dataclass
class IdentityHarness:
    app: IdentityApp
    channel: grpc.aio.Channel
    notifier: FileNotifier
    platform_admin: Account
    admin_a: Account
    admin_b: Account
    auth: Any = field(init=False)
    users: Any = field(init=False)
    access: Any = field(init=False)
    identity: Any = field(init=False)

    def __post_init__(self) -> None:
        self.auth = auth_service_pb2_grpc.AuthServiceStub(self.channel)
        self.users = user_service_pb2_grpc.UserServiceStub(self.channel)
        self.access = access_service_pb2_grpc.AccessServiceStub(self.channel)
        self.identity = identity_service_pb2_grpc.IdentityServiceStub(self.channel)

    @property
    def settings(self) -> IdentitySettings:
        return self.app.ctx.settings

    async def login(
        self, email: str, password: str = PASSWORD, *, client_address: str | None = None
    ) -> auth_service_pb2.TokenPair:
        return await self.auth.Login(
            auth_service_pb2.LoginRequest(email=email, password=password),
            metadata=self.from_address(client_address),
        )

    @staticmethod
    def from_address(address: str | None) -> list[tuple[str, str]]:
        """Metadata that makes the call look as if the gateway forwarded it from ``address``."""
        if address is None:
            return []
        return [("x-cardinsa-gateway-auth", GATEWAY_SECRET), ("x-envoy-external-address", address)]

    async def token(self, account: Account) -> str:
        return (await self.login(account.email, account.password)).access_token

    @staticmethod
    def bearer(token: str) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {token}")]

    async def create_user(
        self, admin: Account, *, roles: list[str] = (), email: str | None = None, password: str = PASSWORD
    ) -> Account:
        token = await self.token(admin)
        user = await self.users.CreateUser(
            user_service_pb2.CreateUserRequest(
                user=resources_pb2.User(email=email or unique_email(), given_name="Test", family_name="User"),
                password=password,
            ),
            metadata=self.bearer(token),
        )
        for role in roles:
            await self.bind(admin, user.id, role)
        return Account(email=user.email, password=password, company_id=user.company_id, user_id=user.id)

    async def bind(self, admin: Account, user_id: str, role_name: str) -> None:
        from cardinsa.identity.v1 import access_service_pb2

        token = await self.token(admin)
        roles = await self.access.ListRoles(access_service_pb2.ListRolesRequest(page_size=100), metadata=self.bearer(token))
        role = next(r for r in roles.roles if r.name == role_name)
        await self.access.CreateRoleBinding(
            access_service_pb2.CreateRoleBindingRequest(
                role_binding=resources_pb2.RoleBinding(user_id=user_id, role_id=role.id)
            ),
            metadata=self.bearer(token),
        )


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
        signing_key_publish_delay_s=0,
        gateway_secret=GATEWAY_SECRET,
        db_pool_size=10,
        db_max_overflow=20,
    )


async def _account(app: IdentityApp, role: str, company: uuid.UUID, prefix: str) -> Account:
    result = await ensure_user_with_role(
        app.ctx, email=unique_email(prefix), password=PASSWORD, company_id=company, role_name=role
    )
    return Account(result.email, PASSWORD, str(result.company_id), str(result.user_id))


@pytest_asyncio.fixture(scope="session")
async def identity(identity_database: str, identity_settings: IdentitySettings) -> AsyncIterator[IdentityHarness]:
    notifier = FileNotifier(Path(identity_settings.notification_dir))
    app = build(identity_settings, app_role_url(identity_database), port=0, metrics_port=0, notifier=notifier)
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
