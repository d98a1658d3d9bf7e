"""The privilege matrix: every RPC that acts on an existing user or service
account, called by one caller against targets weaker than, equal to and
stronger than it (tests/integration/identity/test_identity_privilege_matrix.py,
and the attack suite's rows).

The table :data:`ACTIONS` is explicit, one entry per RPC; :func:`targeting_methods`
derives from the proto descriptors which RPCs name a user, a role binding or a
service account in their request, and a test checks that the two agree (apart
from :data:`EXEMPT`, each with its reason): an RPC added to a proto without a
row here fails that test.

The caller is an "operator" of a company: a custom role holding :data:`OPS`,
every permission the actions need. Targets (fresh for each cell, prepared by
the company admin):

- ``weaker`` (the caller is weaker): a user bound to the built-in
  ``company-admin`` role; a service account with a key holding ``claims.pay``;
- ``equal``: a user bound to the operator role; an account whose key holds OPS;
- ``stronger`` (the caller is stronger): a user holding only ``users.get``; an
  account whose key holds only ``users.get``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from google.protobuf import field_mask_pb2, message_factory
from google.protobuf.descriptor import ServiceDescriptor

from cardinsa.identity.v1 import (
    access_service_pb2,
    auth_service_pb2,
    identity_service_pb2,
    resources_pb2,
    user_service_pb2,
)
from cardinsa_identity.application.bootstrap import ensure_user_with_role
from support.identity_harness import PASSWORD, Account, IdentityHarness, unique_email
from support.tenant_matrix import fill_ids

Metadata = list[tuple[str, str]]
Level = Literal["weaker", "equal", "stronger"]
#: The caller's power relative to the target's.
LEVELS: tuple[Level, ...] = ("weaker", "equal", "stronger")

SERVICES: list[ServiceDescriptor] = [
    identity_service_pb2.DESCRIPTOR.services_by_name["IdentityService"],
    auth_service_pb2.DESCRIPTOR.services_by_name["AuthService"],
    user_service_pb2.DESCRIPTOR.services_by_name["UserService"],
    access_service_pb2.DESCRIPTOR.services_by_name["AccessService"],
]
#: Id keys (as tests/support/tenant_matrix.py names them) that name an account.
TARGET_KEYS = frozenset({"user_id", "role_binding_id", "service_account_id"})

#: What the operator role holds: every permission an action below needs.
OPS: tuple[str, ...] = (
    "api_keys.create",
    "api_keys.list",
    "api_keys.revoke",
    "role_bindings.create",
    "role_bindings.delete",
    "role_bindings.list",
    "service_accounts.delete",
    "service_accounts.get",
    "sessions.list",
    "sessions.revoke",
    "users.deactivate",
    "users.delete",
    "users.get",
    "users.list",
    "users.lock",
    "users.reset_mfa",
    "users.update",
)
#: A permission the weaker-than-caller service account holds beyond the operator.
BEYOND_OPS = "claims.pay"

#: RPCs that name an account but do not act on an existing one.
EXEMPT: dict[str, str] = {
    "UserService/CreateUser": "creates a new user, who holds nothing yet",
    "UserService/InviteUser": "creates a new (invited) user, who holds nothing yet",
    "UserService/ResendInvitation": "acts only on an INVITED user (the matrix's targets are "
    "active) and mails its own address; its power check: "
    "test_invitations_and_email_change.py",
    "UserService/GetUser": "reads a profile (users.get), changes nothing",
    "AccessService/ListRoleBindings": "reads which roles a user holds, changes nothing",
    "AccessService/CreateServiceAccount": "creates a new account, which holds nothing yet",
    "AccessService/GetServiceAccount": "reads an account, changes nothing",
}


def targeting_methods(services: Iterable[ServiceDescriptor] = SERVICES) -> set[str]:
    """``Service/Method`` of every RPC whose request names a user, a role binding
    or a service account (found from the descriptors, nested messages included)."""
    found: set[str] = set()
    ids = dict.fromkeys(TARGET_KEYS, "x")
    for service in services:
        for method in service.methods:
            request = message_factory.GetMessageClass(method.input_type)()
            if set(fill_ids(request, ids, random_ids=True)) & TARGET_KEYS:
                found.add(f"{service.name}/{method.name}")
    return found


@dataclass
class Target:
    kind: Literal["user", "service_account"]
    id: str
    email: str = ""
    #: A binding of the "tiny" role (users.get) the company admin made.
    binding_id: str = ""
    session_id: str = ""
    key_id: str = ""


@dataclass
class World:
    """One company with its admin, an operator (the caller) and the roles used."""

    identity: IdentityHarness
    company_id: str
    admin: Account
    admin_md: Metadata
    operator: Account
    operator_md: Metadata
    roles: dict[str, str] = field(default_factory=dict)

    @property
    def users(self) -> Any:
        return self.identity.users

    @property
    def access(self) -> Any:
        return self.identity.access


async def login_md(identity: IdentityHarness, account: Account) -> Metadata:
    return identity.bearer(await identity.token(account))


async def bootstrap(
    identity: IdentityHarness, company_id: str, role: str, prefix: str = "priv"
) -> Account:
    """A user bound to a built-in role, created the way the CLI does it."""
    made = await ensure_user_with_role(
        identity.app.ctx,
        email=unique_email(prefix),
        password=PASSWORD,
        company_id=uuid.UUID(company_id),
        role_name=role,
    )
    return Account(made.email, PASSWORD, str(made.company_id), str(made.user_id))


async def create_role(identity: IdentityHarness, md: Metadata, permissions: Iterable[str]) -> str:
    role = await identity.access.CreateRole(
        access_service_pb2.CreateRoleRequest(
            role=resources_pb2.Role(
                name=f"priv-{uuid.uuid4().hex[:10]}", permissions=sorted(permissions)
            )
        ),
        metadata=md,
    )
    return str(role.id)


async def bind(identity: IdentityHarness, md: Metadata, user_id: str, role_id: str) -> str:
    binding = await identity.access.CreateRoleBinding(
        access_service_pb2.CreateRoleBindingRequest(
            role_binding=resources_pb2.RoleBinding(user_id=user_id, role_id=role_id)
        ),
        metadata=md,
    )
    return str(binding.id)


async def create_user(identity: IdentityHarness, md: Metadata, role_ids: Iterable[str]) -> Account:
    user = await identity.users.CreateUser(
        user_service_pb2.CreateUserRequest(
            user=resources_pb2.User(email=unique_email("priv"), given_name="Target"),
            password=PASSWORD,
            password_permanent=True,
        ),
        metadata=md,
    )
    for role_id in role_ids:
        await bind(identity, md, user.id, role_id)
    return Account(user.email, PASSWORD, user.company_id, user.id)


async def make_world(identity: IdentityHarness, company_id: str | None = None) -> World:
    company_id = company_id or str(uuid.uuid4())
    admin = await bootstrap(identity, company_id, "company-admin", "priv-admin")
    admin_md = await login_md(identity, admin)
    roles = {
        "ops": await create_role(identity, admin_md, OPS),
        "tiny": await create_role(identity, admin_md, ["users.get"]),
        "extra": await create_role(identity, admin_md, ["users.list"]),
    }
    listed = await identity.access.ListRoles(
        access_service_pb2.ListRolesRequest(page_size=100), metadata=admin_md
    )
    roles["company-admin"] = next(r.id for r in listed.roles if r.name == "company-admin")
    operator = await create_user(identity, admin_md, [roles["ops"]])
    return World(
        identity=identity,
        company_id=company_id,
        admin=admin,
        admin_md=admin_md,
        operator=operator,
        operator_md=await login_md(identity, operator),
        roles=roles,
    )


#: The roles of a user target per level (the caller is the operator).
USER_ROLES: dict[Level, tuple[str, ...]] = {
    "weaker": ("company-admin",),
    "equal": ("ops",),
    "stronger": (),
}
#: The permissions of a service account target's key per level.
KEY_PERMISSIONS: dict[Level, tuple[str, ...]] = {
    "weaker": ("users.get", BEYOND_OPS),
    "equal": OPS,
    "stronger": ("users.get",),
}


async def make_target(world: World, kind: str, level: Level) -> Target:
    identity, md = world.identity, world.admin_md
    if kind == "user":
        account = await create_user(identity, md, [world.roles[r] for r in USER_ROLES[level]])
        binding = await bind(identity, md, account.user_id, world.roles["tiny"])
        return Target("user", account.user_id, email=account.email, binding_id=binding)
    account = await world.access.CreateServiceAccount(
        access_service_pb2.CreateServiceAccountRequest(
            service_account=resources_pb2.ServiceAccount(name=f"priv-{uuid.uuid4().hex[:10]}")
        ),
        metadata=md,
    )
    key = await world.access.CreateApiKey(
        access_service_pb2.CreateApiKeyRequest(
            service_account_id=account.id,
            api_key=resources_pb2.ApiKey(permissions=sorted(KEY_PERMISSIONS[level])),
        ),
        metadata=md,
    )
    return Target("service_account", account.id, key_id=key.api_key.id)


async def snapshot(world: World, target: Target) -> tuple[Any, ...]:
    """Everything an action could change about the target, read by the admin."""
    md = world.admin_md
    if target.kind == "user":
        user = await world.users.GetUser(
            user_service_pb2.GetUserRequest(user_id=target.id), metadata=md
        )
        bindings = await world.access.ListRoleBindings(
            access_service_pb2.ListRoleBindingsRequest(user_id=target.id, page_size=100),
            metadata=md,
        )
        sessions = await world.users.ListSessions(
            user_service_pb2.ListSessionsRequest(
                user_id=target.id, show_revoked=True, page_size=100
            ),
            metadata=md,
        )
        return (
            user.etag,
            user.state,
            user.email,
            user.HasField("delete_time"),
            sorted(b.id for b in bindings.role_bindings),
            sorted((s.id, s.HasField("revoke_time")) for s in sessions.sessions),
        )
    account = await world.access.GetServiceAccount(
        access_service_pb2.GetServiceAccountRequest(service_account_id=target.id), metadata=md
    )
    keys = await world.access.ListApiKeys(
        access_service_pb2.ListApiKeysRequest(service_account_id=target.id, page_size=100),
        metadata=md,
    )
    return (
        account.etag,
        account.HasField("delete_time"),
        sorted((k.id, k.HasField("revoke_time")) for k in keys.api_keys),
    )


Step = Callable[[World, Target, Metadata], Awaitable[Any]]


@dataclass(frozen=True)
class Action:
    kind: Literal["user", "service_account"]
    act: Step
    #: Put the target in the state the action needs (done by the company admin).
    prepare: Step | None = None
    #: A read: an allowed call changes nothing.
    read_only: bool = False


def _user_call(method: str, request: Callable[[Target], Any]) -> Step:
    async def act(world: World, target: Target, md: Metadata) -> Any:
        return await getattr(world.users, method)(request(target), metadata=md)

    return act


def _access_call(method: str, request: Callable[[Target], Any]) -> Step:
    async def act(world: World, target: Target, md: Metadata) -> Any:
        return await getattr(world.access, method)(request(target), metadata=md)

    return act


async def _login_target(world: World, target: Target, md: Metadata) -> None:
    target.session_id = (await world.identity.login(target.email)).session_id


async def _bind_extra(world: World, target: Target, md: Metadata) -> Any:
    return await bind(world.identity, md, target.id, world.roles["extra"])


_us = user_service_pb2
_ac = access_service_pb2

ACTIONS: dict[str, Action] = {
    "UserService/UpdateUser": Action(
        "user",
        _user_call(
            "UpdateUser",
            lambda t: _us.UpdateUserRequest(
                user=resources_pb2.User(id=t.id, given_name="Renamed"),
                update_mask=field_mask_pb2.FieldMask(paths=["given_name"]),
            ),
        ),
    ),
    "UserService/DeleteUser": Action(
        "user", _user_call("DeleteUser", lambda t: _us.DeleteUserRequest(user_id=t.id))
    ),
    "UserService/UndeleteUser": Action(
        "user",
        _user_call("UndeleteUser", lambda t: _us.UndeleteUserRequest(user_id=t.id)),
        prepare=_user_call("DeleteUser", lambda t: _us.DeleteUserRequest(user_id=t.id)),
    ),
    "UserService/LockUser": Action(
        "user",
        _user_call("LockUser", lambda t: _us.LockUserRequest(user_id=t.id, reason="matrix")),
    ),
    "UserService/UnlockUser": Action(
        "user",
        _user_call("UnlockUser", lambda t: _us.UnlockUserRequest(user_id=t.id)),
        prepare=_user_call("LockUser", lambda t: _us.LockUserRequest(user_id=t.id)),
    ),
    "UserService/DeactivateUser": Action(
        "user",
        _user_call("DeactivateUser", lambda t: _us.DeactivateUserRequest(user_id=t.id)),
    ),
    "UserService/ReactivateUser": Action(
        "user",
        _user_call("ReactivateUser", lambda t: _us.ReactivateUserRequest(user_id=t.id)),
        prepare=_user_call("DeactivateUser", lambda t: _us.DeactivateUserRequest(user_id=t.id)),
    ),
    "UserService/ListSessions": Action(
        "user",
        _user_call("ListSessions", lambda t: _us.ListSessionsRequest(user_id=t.id)),
        prepare=_login_target,
        read_only=True,
    ),
    "UserService/RevokeSession": Action(
        "user",
        _user_call(
            "RevokeSession",
            lambda t: _us.RevokeSessionRequest(user_id=t.id, session_id=t.session_id),
        ),
        prepare=_login_target,
    ),
    # Revokes every session of the target: one is opened first, so the change shows.
    "UserService/ResetUserMfa": Action(
        "user",
        _user_call("ResetUserMfa", lambda t: _us.ResetUserMfaRequest(user_id=t.id)),
        prepare=_login_target,
    ),
    "AccessService/CreateRoleBinding": Action("user", _bind_extra),
    "AccessService/DeleteRoleBinding": Action(
        "user",
        _access_call(
            "DeleteRoleBinding",
            lambda t: _ac.DeleteRoleBindingRequest(role_binding_id=t.binding_id),
        ),
    ),
    "AccessService/DeleteServiceAccount": Action(
        "service_account",
        _access_call(
            "DeleteServiceAccount",
            lambda t: _ac.DeleteServiceAccountRequest(service_account_id=t.id),
        ),
    ),
    "AccessService/CreateApiKey": Action(
        "service_account",
        _access_call(
            "CreateApiKey",
            lambda t: _ac.CreateApiKeyRequest(
                service_account_id=t.id, api_key=resources_pb2.ApiKey(permissions=["users.get"])
            ),
        ),
    ),
    "AccessService/ListApiKeys": Action(
        "service_account",
        _access_call("ListApiKeys", lambda t: _ac.ListApiKeysRequest(service_account_id=t.id)),
        read_only=True,
    ),
    "AccessService/RevokeApiKey": Action(
        "service_account",
        _access_call(
            "RevokeApiKey",
            lambda t: _ac.RevokeApiKeyRequest(service_account_id=t.id, api_key_id=t.key_id),
        ),
    ),
}


async def prepared_target(world: World, name: str, level: Level) -> Target:
    action = ACTIONS[name]
    target = await make_target(world, action.kind, level)
    if action.prepare is not None:
        await action.prepare(world, target, world.admin_md)
    return target
