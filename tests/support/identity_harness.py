"""Client-side helpers for tests against a running identity server."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import grpc

from cardinsa.identity.v1 import (
    access_service_pb2_grpc,
    auth_service_pb2,
    auth_service_pb2_grpc,
    identity_service_pb2_grpc,
    resources_pb2,
    user_service_pb2,
    user_service_pb2_grpc,
)
from cardinsa_identity.application.bootstrap import issue_service_key
from cardinsa_identity.application.notifier import FileNotifier
from cardinsa_identity.main import IdentityApp
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

    async def service_key(self, name: str, *permissions: str) -> str:
        """An API key of a platform service account (as `create-service-key` issues
        for core and company), e.g. with ``revocations.watch``."""
        return await issue_service_key(
            self.app.ctx,
            company_id=uuid.UUID(self.platform_admin.company_id),
            name=name,
            permissions=list(permissions),
        )

    async def token(self, account: Account) -> str:
        return (await self.login(account.email, account.password)).access_token

    @staticmethod
    def bearer(token: str) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {token}")]

    async def create_user(
        self,
        admin: Account,
        *,
        roles: list[str] = (),
        email: str | None = None,
        password: str = PASSWORD,
        password_permanent: bool = True,
    ) -> Account:
        """A user of ``admin``'s company holding ``roles``; ``password_permanent``
        (default here): no new password is asked at first login."""
        token = await self.token(admin)
        user = await self.users.CreateUser(
            user_service_pb2.CreateUserRequest(
                user=resources_pb2.User(
                    email=email or unique_email(), given_name="Test", family_name="User"
                ),
                password=password,
                password_permanent=password_permanent,
            ),
            metadata=self.bearer(token),
        )
        for role in roles:
            await self.bind(admin, user.id, role)
        return Account(
            email=user.email, password=password, company_id=user.company_id, user_id=user.id
        )

    async def bind(self, admin: Account, user_id: str, role_name: str) -> None:
        from cardinsa.identity.v1 import access_service_pb2

        token = await self.token(admin)
        roles = await self.access.ListRoles(
            access_service_pb2.ListRolesRequest(page_size=100), metadata=self.bearer(token)
        )
        role = next(r for r in roles.roles if r.name == role_name)
        await self.access.CreateRoleBinding(
            access_service_pb2.CreateRoleBindingRequest(
                role_binding=resources_pb2.RoleBinding(user_id=user_id, role_id=role.id)
            ),
            metadata=self.bearer(token),
        )
