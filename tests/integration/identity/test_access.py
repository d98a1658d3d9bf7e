"""Roles, role bindings and the permission catalogue (AccessService) over real gRPC.

What a role grants must end up in the holder's next access token; nobody grants
more than they hold; the platform-admin role and other companies' roles and users
are out of a company admin's reach, and every change is in the audit log.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from typing import Any

import grpc
import jwt
import pytest
from google.protobuf import field_mask_pb2
from support.grpc_errors import error_info, field_violations
from support.identity_harness import Account, IdentityHarness

from cardinsa.identity.v1 import (
    access_service_pb2,
    identity_service_pb2,
    resources_pb2,
    user_service_pb2,
)
from cardinsa_identity.domain.permissions import CATALOGUE, PERMISSION_NAME

BUILT_IN = {
    "platform-admin",
    "company-admin",
    "underwriter",
    "claims-adjuster",
    "agent",
    "billing-clerk",
    "viewer",
}
# Identity's own administration, all of which a company admin does in its company.
COMPANY_ADMINISTRATION = {
    "users",
    "sessions",
    "roles",
    "role_bindings",
    "service_accounts",
    "api_keys",
    "audit_events",
}
# Permissions no company role may hold (the catalogue may add more of the kind).
PLATFORM_ONLY = {
    "signing_keys.list",
    "signing_keys.rotate",
    "companies.create",
    "companies.suspend",
    "companies.reactivate",
    "companies.close",
    "companies.delete",
}


def unique_role_name(prefix: str = "role") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def claims(token: str) -> dict[str, Any]:
    """The claims of an access token, read as any client could (no verification)."""
    return jwt.decode(token, options={"verify_signature": False})


async def failure(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def answer(error: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str, str]:
    """What a client can tell an error by (the echoed id in ErrorInfo metadata aside)."""
    return error.code(), error.details() or "", error_info(error).reason


async def admin_metadata(identity: IdentityHarness, admin: Account) -> list[tuple[str, str]]:
    return identity.bearer(await identity.token(admin))


async def all_roles(identity: IdentityHarness, metadata: list[tuple[str, str]]) -> list[Any]:
    roles: list[Any] = []
    token = ""
    while True:
        page = await identity.access.ListRoles(
            access_service_pb2.ListRolesRequest(page_size=100, page_token=token),
            metadata=metadata,
        )
        roles.extend(page.roles)
        token = page.next_page_token
        if not token:
            return roles


async def role_by_name(
    identity: IdentityHarness, metadata: list[tuple[str, str]], name: str
) -> Any:
    return next(r for r in await all_roles(identity, metadata) if r.name == name)


async def create_role(
    identity: IdentityHarness,
    metadata: list[tuple[str, str]],
    permissions: list[str],
    *,
    name: str | None = None,
    description: str = "",
) -> Any:
    return await identity.access.CreateRole(
        access_service_pb2.CreateRoleRequest(
            role=resources_pb2.Role(
                name=name or unique_role_name(),
                description=description,
                permissions=permissions,
            )
        ),
        metadata=metadata,
    )


async def bind(
    identity: IdentityHarness, metadata: list[tuple[str, str]], user_id: str, role_id: str
) -> Any:
    return await identity.access.CreateRoleBinding(
        access_service_pb2.CreateRoleBindingRequest(
            role_binding=resources_pb2.RoleBinding(user_id=user_id, role_id=role_id)
        ),
        metadata=metadata,
    )


# ------------------------------------------------------------------ catalogue


async def test_list_permissions_returns_the_catalogue(identity: IdentityHarness) -> None:
    user = await identity.create_user(identity.admin_a)  # no role: authenticated is enough
    listed = await identity.identity.ListPermissions(
        identity_service_pb2.ListPermissionsRequest(),
        metadata=identity.bearer(await identity.token(user)),
    )
    names = [p.name for p in listed.permissions]
    assert names == [p.name for p in CATALOGUE]
    assert len(names) == len(set(names))
    assert all(PERMISSION_NAME.fullmatch(n) for n in names), names
    assert all(p.description for p in listed.permissions)
    assert {"users.create", "roles.update", "api_keys.create", "signing_keys.rotate"} <= set(names)

    # The platform admin's token carries every permission of the catalogue.
    root = claims(await identity.token(identity.platform_admin))
    assert set(root["perms"]) == set(names)
    assert "platform-admin" in root["roles"]

    # Not public: an anonymous caller is refused.
    error = await failure(
        identity.identity.ListPermissions(identity_service_pb2.ListPermissionsRequest())
    )
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_built_in_roles_are_listed_for_every_company(identity: IdentityHarness) -> None:
    catalogue = {p.name for p in CATALOGUE}
    for admin in (identity.admin_a, identity.admin_b):
        roles = await all_roles(identity, await admin_metadata(identity, admin))
        built_in = {r.name: r for r in roles if r.built_in}
        assert set(built_in) == BUILT_IN
        assert all(r.company_id == "" for r in built_in.values())
        assert set(built_in["platform-admin"].permissions) == catalogue
        company_admin = set(built_in["company-admin"].permissions)
        assert company_admin < catalogue
        assert not company_admin & PLATFORM_ONLY
        # What it lacks is the platform's alone: signing keys, companies' fate,
        # the stream of token revocations and every company's events (for the
        # platform's services).
        assert all(
            p.split(".")[0] in {"signing_keys", "companies", "revocations"}
            or p == "events.watch_all"
            for p in catalogue - company_admin
        )
        assert {p for p in catalogue if p.split(".")[0] in COMPANY_ADMINISTRATION} <= company_admin
        assert "users.create" not in built_in["viewer"].permissions
        assert "users.list" in built_in["viewer"].permissions
        assert "policies.bind" in built_in["underwriter"].permissions
        assert "policies.bind" not in built_in["agent"].permissions


# ---------------------------------------------------------------- custom roles


async def test_custom_role_permissions_reach_the_holders_next_token(
    identity: IdentityHarness,
) -> None:
    admin = await admin_metadata(identity, identity.admin_a)
    permissions = ["claims.approve", "claims.approve_band_2", "users.list"]
    role = await create_role(identity, admin, permissions, description="Senior claims")
    assert role.company_id == identity.admin_a.company_id
    assert not role.built_in
    assert list(role.permissions) == sorted(permissions)
    assert role.etag

    user = await identity.create_user(identity.admin_a)
    before = await identity.token(user)
    assert claims(before)["perms"] == []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.users.ListUsers(
            user_service_pb2.ListUsersRequest(), metadata=identity.bearer(before)
        )
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED

    binding = await bind(identity, admin, user.user_id, role.id)
    assert binding.company_id == identity.admin_a.company_id
    after = await identity.token(user)
    granted = claims(after)
    assert granted["perms"] == sorted(permissions)
    assert granted["roles"] == [role.name]
    listed = await identity.users.ListUsers(
        user_service_pb2.ListUsersRequest(filter=f'email = "{user.email}"'),
        metadata=identity.bearer(after),
    )
    assert [u.id for u in listed.users] == [user.user_id]

    bindings = await identity.access.ListRoleBindings(
        access_service_pb2.ListRoleBindingsRequest(user_id=user.user_id), metadata=admin
    )
    assert [(b.id, b.role_id) for b in bindings.role_bindings] == [(binding.id, role.id)]

    # Taking the binding away empties the next token again.
    await identity.access.DeleteRoleBinding(
        access_service_pb2.DeleteRoleBindingRequest(role_binding_id=binding.id), metadata=admin
    )
    assert claims(await identity.token(user))["perms"] == []

    # A deleted role grants nothing, even while still bound.
    await bind(identity, admin, user.user_id, role.id)
    assert claims(await identity.token(user))["perms"] == sorted(permissions)
    await identity.access.DeleteRole(
        access_service_pb2.DeleteRoleRequest(role_id=role.id), metadata=admin
    )
    assert claims(await identity.token(user))["perms"] == []


async def test_invalid_permission_names_are_field_violations_by_index(
    identity: IdentityHarness,
) -> None:
    admin = await admin_metadata(identity, identity.admin_a)
    before = {r.id for r in await all_roles(identity, admin)}
    error = await failure(
        create_role(
            identity,
            admin,
            [
                "users.list",  # fine
                "users.fly",  # well-formed but not in the catalogue
                "Not A Permission",  # malformed
                "users.list",  # listed twice
                "signing_keys.rotate",  # a platform permission no company role may hold
            ],
        )
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    violations = field_violations(error)
    assert set(violations) == {
        "role.permissions[1]",
        "role.permissions[2]",
        "role.permissions[3]",
        "role.permissions[4]",
    }, violations
    assert "users.fly" in violations["role.permissions[1]"]

    # Nothing was created.
    assert {r.id for r in await all_roles(identity, admin)} == before


async def test_duplicate_role_name_is_already_exists(identity: IdentityHarness) -> None:
    admin = await admin_metadata(identity, identity.admin_a)
    name = unique_role_name("dup")
    await create_role(identity, admin, ["users.get"], name=name)
    error = await failure(create_role(identity, admin, ["users.list"], name=name))
    assert error.code() is grpc.StatusCode.ALREADY_EXISTS
    assert error_info(error).reason == "ROLE_EXISTS"

    # The name of a built-in role is not available either.
    error = await failure(create_role(identity, admin, ["users.get"], name="viewer"))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "role.name" in field_violations(error)

    # Names are per company: company B may use the same one.
    other = await create_role(
        identity, await admin_metadata(identity, identity.admin_b), ["users.get"], name=name
    )
    assert other.company_id == identity.admin_b.company_id


async def test_create_role_is_idempotent_by_request_id(identity: IdentityHarness) -> None:
    """A retry (even concurrent) gets the first role; the same request id with
    other arguments is REQUEST_ID_REUSED and creates nothing."""
    admin = await admin_metadata(identity, identity.admin_a)
    request = access_service_pb2.CreateRoleRequest(
        role=resources_pb2.Role(name=unique_role_name("idem"), permissions=["users.get"]),
        request_id=str(uuid.uuid4()),
    )
    first, concurrent = await asyncio.gather(
        identity.access.CreateRole(request, metadata=admin),
        identity.access.CreateRole(request, metadata=admin),
    )
    assert concurrent.id == first.id
    again = await identity.access.CreateRole(request, metadata=admin)
    assert again.id == first.id

    reused = access_service_pb2.CreateRoleRequest(
        role=resources_pb2.Role(name=request.role.name, permissions=["users.list"]),
        request_id=request.request_id,
    )
    error = await failure(identity.access.CreateRole(reused, metadata=admin))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error).reason == "REQUEST_ID_REUSED"
    renamed = access_service_pb2.CreateRoleRequest(
        role=resources_pb2.Role(name=unique_role_name("other"), permissions=["users.get"]),
        request_id=request.request_id,
    )
    error = await failure(identity.access.CreateRole(renamed, metadata=admin))
    assert error_info(error).reason == "REQUEST_ID_REUSED"
    names = {r.name for r in await all_roles(identity, admin)}
    assert request.role.name in names
    assert renamed.role.name not in names
    # The role as it is now keeps the first call's permissions.
    fetched = await identity.access.GetRole(
        access_service_pb2.GetRoleRequest(role_id=first.id), metadata=admin
    )
    assert list(fetched.permissions) == ["users.get"]


async def test_create_service_account_refuses_a_reused_request_id(
    identity: IdentityHarness,
) -> None:
    admin = await admin_metadata(identity, identity.admin_a)
    request = access_service_pb2.CreateServiceAccountRequest(
        service_account=resources_pb2.ServiceAccount(name=unique_role_name("svc")),
        request_id=str(uuid.uuid4()),
    )
    first = await identity.access.CreateServiceAccount(request, metadata=admin)
    again = await identity.access.CreateServiceAccount(request, metadata=admin)
    assert again.id == first.id
    request.service_account.description = "another account"
    error = await failure(identity.access.CreateServiceAccount(request, metadata=admin))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error).reason == "REQUEST_ID_REUSED"


async def test_update_role_honours_the_mask_and_refuses_a_stale_etag(
    identity: IdentityHarness,
) -> None:
    admin = await admin_metadata(identity, identity.admin_a)
    role = await create_role(identity, admin, ["users.get"], description="first")

    def update(paths: list[str], etag: str, **fields: Any) -> Awaitable[Any]:
        return identity.access.UpdateRole(
            access_service_pb2.UpdateRoleRequest(
                role=resources_pb2.Role(id=role.id, etag=etag, **fields),
                update_mask=field_mask_pb2.FieldMask(paths=paths),
            ),
            metadata=admin,
        )

    # Only masked fields change.
    updated = await update(
        ["description"], role.etag, description="second", permissions=["users.list"]
    )
    assert updated.description == "second"
    assert list(updated.permissions) == ["users.get"]
    assert updated.etag != role.etag

    # The etag read before the update is stale now.
    stale = await failure(update(["description"], role.etag, description="third"))
    assert stale.code() is grpc.StatusCode.ABORTED
    assert error_info(stale).reason == "ETAG_MISMATCH"
    fetched = await identity.access.GetRole(
        access_service_pb2.GetRoleRequest(role_id=role.id), metadata=admin
    )
    assert fetched.description == "second"

    # The current etag works; permissions change through the mask.
    again = await update(["permissions"], updated.etag, permissions=["users.get", "users.list"])
    assert list(again.permissions) == ["users.get", "users.list"]

    # The mask is required and names only updatable fields.
    for paths in ([], ["name"], ["built_in"]):
        error = await failure(update(paths, "", name="renamed"))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, paths
        assert "update_mask" in field_violations(error)

    # Bad permissions on update are field violations too.
    error = await failure(update(["permissions"], "", permissions=["users.get", "nope.nope"]))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(error)) == {"role.permissions[1]"}


async def test_built_in_roles_cannot_be_changed_or_deleted(identity: IdentityHarness) -> None:
    for admin in (identity.admin_a, identity.platform_admin):
        metadata = await admin_metadata(identity, admin)
        viewer = await role_by_name(identity, metadata, "viewer")
        error = await failure(
            identity.access.UpdateRole(
                access_service_pb2.UpdateRoleRequest(
                    role=resources_pb2.Role(id=viewer.id, description="hijacked"),
                    update_mask=field_mask_pb2.FieldMask(paths=["description"]),
                ),
                metadata=metadata,
            )
        )
        assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(error).reason == "BUILT_IN_ROLE"
        error = await failure(
            identity.access.DeleteRole(
                access_service_pb2.DeleteRoleRequest(role_id=viewer.id), metadata=metadata
            )
        )
        assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert (await role_by_name(identity, metadata, "viewer")).description == viewer.description


# ------------------------------------------------------------------ bindings


async def test_only_platform_admins_bind_the_platform_admin_role(
    identity: IdentityHarness,
) -> None:
    admin = await admin_metadata(identity, identity.admin_a)
    user = await identity.create_user(identity.admin_a)
    platform_role = await role_by_name(identity, admin, "platform-admin")
    error = await failure(bind(identity, admin, user.user_id, platform_role.id))
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error_info(error).reason == "PLATFORM_ADMIN_ONLY"
    token = claims(await identity.token(user))
    assert "platform-admin" not in token["roles"]
    assert "signing_keys.rotate" not in token["perms"]

    # The platform admin may (in its own company).
    root = await admin_metadata(identity, identity.platform_admin)
    colleague = await identity.create_user(identity.platform_admin)
    await bind(identity, root, colleague.user_id, platform_role.id)
    assert "platform-admin" in claims(await identity.token(colleague))["roles"]


async def test_nobody_grants_more_than_they_hold(identity: IdentityHarness) -> None:
    admin = await admin_metadata(identity, identity.admin_a)
    delegate_role = await create_role(
        identity,
        admin,
        ["roles.create", "roles.list", "role_bindings.create", "users.get", "users.list"],
    )
    delegate = await identity.create_user(identity.admin_a)
    await bind(identity, admin, delegate.user_id, delegate_role.id)
    metadata = identity.bearer(await identity.token(delegate))

    error = await failure(create_role(identity, metadata, ["users.list", "users.delete"]))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(error)) == {"role.permissions[1]"}

    target = await identity.create_user(identity.admin_a)
    company_admin = await role_by_name(identity, metadata, "company-admin")
    error = await failure(bind(identity, metadata, target.user_id, company_admin.id))
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error_info(error).reason == "ROLE_EXCEEDS_CALLER"
    assert claims(await identity.token(target))["perms"] == []

    # Within what the delegate holds, it works.
    narrow = await create_role(identity, metadata, ["users.list"])
    await bind(identity, metadata, target.user_id, narrow.id)
    assert claims(await identity.token(target))["perms"] == ["users.list"]


async def test_company_admin_cannot_see_or_bind_another_companys_roles_or_users(
    identity: IdentityHarness,
) -> None:
    admin_a = await admin_metadata(identity, identity.admin_a)
    admin_b = await admin_metadata(identity, identity.admin_b)
    role_b = await create_role(identity, admin_b, ["users.get"])
    user_b = await identity.create_user(identity.admin_b)
    user_a = await identity.create_user(identity.admin_a)
    viewer = await role_by_name(identity, admin_a, "viewer")
    unknown = str(uuid.uuid4())

    # Another company's custom role is not listed and answers like an id that does not exist.
    assert role_b.id not in {r.id for r in await all_roles(identity, admin_a)}
    for role_id in (role_b.id, unknown, "not-a-uuid"):
        error = await failure(
            identity.access.GetRole(
                access_service_pb2.GetRoleRequest(role_id=role_id), metadata=admin_a
            )
        )
        assert answer(error) == (grpc.StatusCode.NOT_FOUND, "role not found", "ROLE_NOT_FOUND")

    async def roles_answer(role_id: str) -> list[tuple[grpc.StatusCode, str, str]]:
        return [
            answer(
                await failure(
                    identity.access.UpdateRole(
                        access_service_pb2.UpdateRoleRequest(
                            role=resources_pb2.Role(id=role_id, description="mine now"),
                            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
                        ),
                        metadata=admin_a,
                    )
                )
            ),
            answer(
                await failure(
                    identity.access.DeleteRole(
                        access_service_pb2.DeleteRoleRequest(role_id=role_id), metadata=admin_a
                    )
                )
            ),
            answer(await failure(bind(identity, admin_a, user_a.user_id, role_id))),
        ]

    assert await roles_answer(role_b.id) == await roles_answer(unknown)
    assert (await roles_answer(role_b.id))[0][0] is grpc.StatusCode.NOT_FOUND

    # Another company's user cannot be given a role, nor have its bindings listed.
    async def users_answer(user_id: str) -> list[tuple[grpc.StatusCode, str, str]]:
        return [
            answer(await failure(bind(identity, admin_a, user_id, viewer.id))),
            answer(
                await failure(
                    identity.access.ListRoleBindings(
                        access_service_pb2.ListRoleBindingsRequest(user_id=user_id),
                        metadata=admin_a,
                    )
                )
            ),
        ]

    assert await users_answer(user_b.user_id) == await users_answer(unknown)
    assert (await users_answer(user_b.user_id))[0] == (
        grpc.StatusCode.NOT_FOUND,
        "user not found",
        "USER_NOT_FOUND",
    )

    # Company B's bindings are not in company A's list.
    await bind(identity, admin_b, user_b.user_id, role_b.id)
    listed = await identity.access.ListRoleBindings(
        access_service_pb2.ListRoleBindingsRequest(page_size=100), metadata=admin_a
    )
    assert all(b.company_id == identity.admin_a.company_id for b in listed.role_bindings)
    assert user_b.user_id not in {b.user_id for b in listed.role_bindings}

    # And B's role is untouched.
    fetched = await identity.access.GetRole(
        access_service_pb2.GetRoleRequest(role_id=role_b.id), metadata=admin_b
    )
    assert fetched.description == role_b.description
    assert fetched.etag == role_b.etag
    assert not fetched.HasField("delete_time")


async def test_role_and_binding_changes_are_audited(identity: IdentityHarness) -> None:
    admin = await admin_metadata(identity, identity.admin_a)
    role = await create_role(identity, admin, ["users.get"])
    await identity.access.UpdateRole(
        access_service_pb2.UpdateRoleRequest(
            role=resources_pb2.Role(id=role.id, permissions=["users.get", "users.list"]),
            update_mask=field_mask_pb2.FieldMask(paths=["permissions"]),
        ),
        metadata=admin,
    )
    user = await identity.create_user(identity.admin_a)
    binding = await bind(identity, admin, user.user_id, role.id)
    await identity.access.DeleteRoleBinding(
        access_service_pb2.DeleteRoleBindingRequest(role_binding_id=binding.id), metadata=admin
    )
    await identity.access.DeleteRole(
        access_service_pb2.DeleteRoleRequest(role_id=role.id), metadata=admin
    )

    async def events(metadata: list[tuple[str, str]], entity_id: str) -> list[Any]:
        page = await identity.identity.ListAuditEvents(
            identity_service_pb2.ListAuditEventsRequest(
                filter=f'entity_id = "{entity_id}"', page_size=50
            ),
            metadata=metadata,
        )
        return list(page.audit_events)

    role_events = {e.action: e for e in await events(admin, role.id)}
    assert set(role_events) == {"role.create", "role.update", "role.delete"}
    assert role_events["role.update"].detail["added"] == ["users.list"]
    assert list(role_events["role.update"].changed_fields) == ["permissions"]
    binding_events = {e.action: e for e in await events(admin, binding.id)}
    assert set(binding_events) == {"role_binding.create", "role_binding.delete"}
    assert binding_events["role_binding.create"].detail["user_id"] == user.user_id
    assert binding_events["role_binding.create"].detail["role_id"] == role.id
    for event in (*role_events.values(), *binding_events.values()):
        assert event.actor_id == identity.admin_a.user_id
        assert event.company_id == identity.admin_a.company_id
        assert event.request_id

    # Company B's admin sees none of it.
    admin_b = await admin_metadata(identity, identity.admin_b)
    assert await events(admin_b, role.id) == []
    assert await events(admin_b, binding.id) == []
