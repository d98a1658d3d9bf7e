"""Acting on a user needs at least that user's power, over real gRPC.

The matrix: every RPC that acts on an existing user or service account
(tests/support/privilege_matrix.py, checked complete against the descriptors)
x the caller weaker than / equal to / stronger than the target. Weaker →
PERMISSION_DENIED ``TARGET_MORE_PRIVILEGED`` and the target unchanged; equal
and stronger → OK. Then the cases the rule was made for: the helpdesk that
could take over the company admin by changing the email, the company admin of
the platform company against a platform admin, and what a contact change does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf import field_mask_pb2
from support.grpc_errors import error_info
from support.identity_harness import PASSWORD, IdentityHarness, unique_email
from support.privilege_matrix import (
    ACTIONS,
    EXEMPT,
    LEVELS,
    Level,
    Metadata,
    World,
    bind,
    bootstrap,
    create_role,
    create_user,
    login_md,
    make_world,
    prepared_target,
    snapshot,
    targeting_methods,
)

from cardinsa.identity.v1 import (
    access_service_pb2,
    auth_service_pb2,
    resources_pb2,
    user_service_pb2,
)
from cardinsa_identity.domain.permissions import ALL_PERMISSIONS

DENIED = (grpc.StatusCode.PERMISSION_DENIED, "TARGET_MORE_PRIVILEGED")
OK = (grpc.StatusCode.OK, "")


async def outcome(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code(), error_info(error).reason
    return grpc.StatusCode.OK, ""


async def refusal(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def assert_refused_without_leak(error: grpc.aio.AioRpcError) -> None:
    """PERMISSION_DENIED TARGET_MORE_PRIVILEGED, naming no permission of the target."""
    info = error_info(error)
    assert (error.code(), info.reason) == DENIED, (error.code(), error.details())
    shown = (error.details() or "") + " ".join(f"{k}={v}" for k, v in info.metadata.items())
    assert not [p for p in ALL_PERMISSIONS if p in shown], shown
    assert "missing" not in info.metadata


@pytest_asyncio.fixture(scope="module")
async def world(identity: IdentityHarness) -> World:
    return await make_world(identity)


def test_the_matrix_covers_every_rpc_that_acts_on_an_account() -> None:
    found = targeting_methods()
    assert found, "the descriptors name no account: the check proves nothing"
    assert set(ACTIONS) | set(EXEMPT) == found, (
        f"not in the matrix: {sorted(found - set(ACTIONS) - set(EXEMPT))}; "
        f"listed but not found: {sorted((set(ACTIONS) | set(EXEMPT)) - found)}"
    )
    assert not set(ACTIONS) & set(EXEMPT)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("rpc", sorted(ACTIONS))
async def test_matrix_caller_against_weaker_equal_and_stronger_target(
    world: World, rpc: str, level: Level
) -> None:
    action = ACTIONS[rpc]
    target = await prepared_target(world, rpc, level)
    before = await snapshot(world, target)
    if level == "weaker":
        error = await refusal(action.act(world, target, world.operator_md))
        assert_refused_without_leak(error)
        assert await snapshot(world, target) == before, f"{rpc} changed the target"
        # The same call by the company admin (stronger than every target) works:
        # the refusal was the target's power, not the request.
        await action.act(world, target, world.admin_md)
    else:
        await action.act(world, target, world.operator_md)
        after = await snapshot(world, target)
        assert (after == before) is action.read_only, (rpc, before, after)


async def test_another_companys_account_is_not_found_before_any_power_check(
    identity: IdentityHarness, world: World
) -> None:
    """A weaker caller of another company gets NOT_FOUND for this company's admin,
    exactly as for an id that does not exist: the power check leaks no existence."""
    other = await make_world(identity)
    for user_id in (world.admin.user_id, "00000000-0000-4000-8000-000000000000"):
        code = await outcome(
            identity.users.LockUser(
                user_service_pb2.LockUserRequest(user_id=user_id), metadata=other.operator_md
            )
        )
        assert code == (grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND")


async def test_acting_on_oneself_is_allowed(identity: IdentityHarness, world: World) -> None:
    """Equal power: the operator may change its own profile and list its sessions."""
    operator = await create_user(identity, world.admin_md, [world.roles["ops"]])
    md = await login_md(identity, operator)
    updated = await identity.users.UpdateUser(
        user_service_pb2.UpdateUserRequest(
            user=resources_pb2.User(id=operator.user_id, display_name="Myself"),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        ),
        metadata=md,
    )
    assert updated.display_name == "Myself"
    sessions = await identity.users.ListSessions(
        user_service_pb2.ListSessionsRequest(user_id=operator.user_id), metadata=md
    )
    assert len(sessions.sessions) == 1


# ----------------------------------------------------------- the takeover path


async def test_helpdesk_with_users_update_cannot_take_over_the_company_admin(
    identity: IdentityHarness, world: World
) -> None:
    """update email → request reset to the new address → log in: refused at step one."""
    helpdesk_role = await create_role(identity, world.admin_md, ["users.update"])
    helpdesk = await create_user(identity, world.admin_md, [helpdesk_role])
    helpdesk_md = await login_md(identity, helpdesk)
    victim = await bootstrap(identity, world.company_id, "company-admin", "priv-victim")
    attacker_inbox = unique_email("priv-attacker")

    error = await refusal(
        identity.users.UpdateUser(
            user_service_pb2.UpdateUserRequest(
                user=resources_pb2.User(id=victim.user_id, email=attacker_inbox),
                update_mask=field_mask_pb2.FieldMask(paths=["email"]),
            ),
            metadata=helpdesk_md,
        )
    )
    assert_refused_without_leak(error)

    await identity.auth.RequestPasswordReset(
        auth_service_pb2.RequestPasswordResetRequest(email=attacker_inbox)
    )
    await identity.app.auth.wait_for_background()
    assert identity.notifier.messages_for(attacker_inbox) == []
    victim_now = await identity.users.GetUser(
        user_service_pb2.GetUserRequest(user_id=victim.user_id), metadata=world.admin_md
    )
    assert victim_now.email == victim.email
    assert "company-admin" in victim_now.roles
    # Nothing to log in with at the attacker's address; the victim still logs in.
    code = await outcome(identity.login(attacker_inbox, PASSWORD))
    assert code[0] is grpc.StatusCode.UNAUTHENTICATED
    assert (await identity.login(victim.email)).access_token

    # Control: the very same path against a user no stronger than the helpdesk
    # works end to end, so the refusal above is the rule and not a broken path.
    peer = await create_user(identity, world.admin_md, [])
    peer_inbox = unique_email("priv-peer-new")
    await identity.users.UpdateUser(
        user_service_pb2.UpdateUserRequest(
            user=resources_pb2.User(id=peer.user_id, email=peer_inbox),
            update_mask=field_mask_pb2.FieldMask(paths=["email"]),
        ),
        metadata=helpdesk_md,
    )
    # The new address confirms the change (the link reaches only that inbox).
    (confirmation,) = identity.notifier.messages_for(peer_inbox, kind="email_change")
    await identity.auth.ConfirmEmailChange(
        auth_service_pb2.ConfirmEmailChangeRequest(email_change_token=confirmation["token"])
    )
    await identity.auth.RequestPasswordReset(
        auth_service_pb2.RequestPasswordResetRequest(email=peer_inbox)
    )
    await identity.app.auth.wait_for_background()
    (reset,) = identity.notifier.messages_for(peer_inbox)
    await identity.auth.ConfirmPasswordReset(
        auth_service_pb2.ConfirmPasswordResetRequest(
            reset_token=reset["token"], new_password=PASSWORD + " new"
        )
    )
    assert (await identity.login(peer_inbox, PASSWORD + " new")).access_token
    # ... and the peer's previous address heard of it.
    assert len(identity.notifier.messages_for(peer.email, kind="email_changed")) == 1

    # Lock, deactivate and delete of the admin are refused the same way.
    more = await create_role(
        identity, world.admin_md, ["users.lock", "users.deactivate", "users.delete"]
    )
    await bind(identity, world.admin_md, helpdesk.user_id, more)
    helpdesk_md = await login_md(identity, helpdesk)
    for method, request in (
        ("LockUser", user_service_pb2.LockUserRequest(user_id=victim.user_id)),
        ("DeactivateUser", user_service_pb2.DeactivateUserRequest(user_id=victim.user_id)),
        ("DeleteUser", user_service_pb2.DeleteUserRequest(user_id=victim.user_id)),
    ):
        call = getattr(identity.users, method)(request, metadata=helpdesk_md)
        assert await outcome(call) == DENIED, method


async def test_platform_admins_are_reachable_only_by_platform_admins(
    identity: IdentityHarness,
) -> None:
    platform_company = identity.platform_admin.company_id
    target = await bootstrap(identity, platform_company, "platform-admin", "priv-root")
    company_admin = await bootstrap(identity, platform_company, "company-admin", "priv-padmin")
    company_admin_md = await login_md(identity, company_admin)
    before = await identity.users.GetUser(
        user_service_pb2.GetUserRequest(user_id=target.user_id),
        metadata=await login_md(identity, identity.platform_admin),
    )

    # The company admin of the platform company: every action on the platform admin.
    calls = {
        "UpdateUser(email)": identity.users.UpdateUser(
            user_service_pb2.UpdateUserRequest(
                user=resources_pb2.User(id=target.user_id, email=unique_email("priv-evil")),
                update_mask=field_mask_pb2.FieldMask(paths=["email"]),
            ),
            metadata=company_admin_md,
        ),
        "LockUser": identity.users.LockUser(
            user_service_pb2.LockUserRequest(user_id=target.user_id), metadata=company_admin_md
        ),
        "DeleteUser": identity.users.DeleteUser(
            user_service_pb2.DeleteUserRequest(user_id=target.user_id), metadata=company_admin_md
        ),
        "ListSessions": identity.users.ListSessions(
            user_service_pb2.ListSessionsRequest(user_id=target.user_id),
            metadata=company_admin_md,
        ),
    }
    for name, call in calls.items():
        assert await outcome(call) == DENIED, name
    roles = await identity.access.ListRoles(
        access_service_pb2.ListRolesRequest(page_size=100), metadata=company_admin_md
    )
    viewer = next(r.id for r in roles.roles if r.name == "viewer")
    assert await outcome(bind(identity, company_admin_md, target.user_id, viewer)) == DENIED, (
        "binding even a small role to a platform admin"
    )
    after = await identity.users.GetUser(
        user_service_pb2.GetUserRequest(user_id=target.user_id),
        metadata=await login_md(identity, identity.platform_admin),
    )
    assert (after.etag, after.email, after.state) == (before.etag, before.email, before.state)

    # Another platform admin may (equal power).
    root_md = await login_md(identity, identity.platform_admin)
    renamed = await identity.users.UpdateUser(
        user_service_pb2.UpdateUserRequest(
            user=resources_pb2.User(id=target.user_id, given_name="Peer"),
            update_mask=field_mask_pb2.FieldMask(paths=["given_name"]),
        ),
        metadata=root_md,
    )
    assert renamed.given_name == "Peer"
    locked = await identity.users.LockUser(
        user_service_pb2.LockUserRequest(user_id=target.user_id), metadata=root_md
    )
    assert locked.state == resources_pb2.User.State.LOCKED


# --------------------------------------------------------- contact changes


async def _change(
    identity: IdentityHarness, md: Metadata, user_id: str, **fields: str
) -> resources_pb2.User:
    return await identity.users.UpdateUser(
        user_service_pb2.UpdateUserRequest(
            user=resources_pb2.User(id=user_id, **fields),
            update_mask=field_mask_pb2.FieldMask(paths=sorted(fields)),
        ),
        metadata=md,
    )


async def _confirm_email_change(identity: IdentityHarness, new_email: str) -> None:
    (mail,) = identity.notifier.messages_for(new_email, kind="email_change")
    await identity.auth.ConfirmEmailChange(
        auth_service_pb2.ConfirmEmailChangeRequest(email_change_token=mail["token"])
    )


@pytest.mark.parametrize("field", ["email", "phone"])
async def test_changing_email_or_phone_revokes_sessions_and_tells_the_old_address(
    identity: IdentityHarness, world: World, field: str
) -> None:
    user = await create_user(identity, world.admin_md, [world.roles["tiny"]])
    pair = await identity.login(user.email)
    new_value = unique_email("priv-new") if field == "email" else "+4930123456"

    await _change(identity, world.operator_md, user.user_id, **{field: new_value})
    if field == "email":
        # The email changes (and the sessions end) once the new address confirms.
        assert (
            await identity.auth.RefreshToken(
                auth_service_pb2.RefreshTokenRequest(refresh_token=pair.refresh_token)
            )
        ).access_token
        pair = await identity.login(user.email)
        await _confirm_email_change(identity, new_value)

    refused = await outcome(
        identity.auth.RefreshToken(
            auth_service_pb2.RefreshTokenRequest(refresh_token=pair.refresh_token)
        )
    )
    assert refused[0] is grpc.StatusCode.UNAUTHENTICATED
    sessions = await identity.users.ListSessions(
        user_service_pb2.ListSessionsRequest(user_id=user.user_id, show_revoked=True),
        metadata=world.admin_md,
    )
    assert pair.session_id in [s.id for s in sessions.sessions]
    assert all(s.HasField("revoke_time") for s in sessions.sessions)

    kind = "email_changed" if field == "email" else "contact_changed"
    notices = identity.notifier.messages_for(user.email, kind=kind)
    assert len(notices) == 1
    notice = notices[0]
    if field == "phone":
        assert notice["changed_fields"] == [field]
    text = str(notice)
    for secret in (new_value, user.password, pair.refresh_token, pair.access_token):
        assert secret not in text
    assert "token" not in notice
    if field == "email":
        # The new address got only the confirmation link.
        assert identity.notifier.messages_for(new_value, kind="contact_changed") == []
        assert identity.notifier.messages_for(new_value, kind="email_changed") == []


async def test_changing_other_fields_keeps_sessions_and_sends_nothing(
    identity: IdentityHarness, world: World
) -> None:
    user = await create_user(identity, world.admin_md, [])
    pair = await identity.login(user.email)
    await _change(identity, world.operator_md, user.user_id, given_name="Still", locale="de-DE")
    refreshed = await identity.auth.RefreshToken(
        auth_service_pb2.RefreshTokenRequest(refresh_token=pair.refresh_token)
    )
    assert refreshed.access_token
    assert identity.notifier.messages_for(user.email, kind="contact_changed") == []


# ------------------------------------------------------------- concurrency


async def test_concurrent_grants_to_one_account_cannot_both_pass_the_check(
    identity: IdentityHarness, world: World
) -> None:
    """Two callers, each lacking what the other grants, grant to the same account
    at the same time: whoever comes second must see the first grant (the check
    runs in the changing transaction, the account's row locked) and is refused.
    Checked outside that transaction, both would pass."""
    common = ["role_bindings.create", "api_keys.create", "users.get"]
    callers = []
    for extra in ("claims.pay", "claims.deny"):
        role = await create_role(identity, world.admin_md, [*common, extra])
        callers.append(
            await login_md(identity, await create_user(identity, world.admin_md, [role]))
        )
    grants = [
        await create_role(identity, world.admin_md, [p]) for p in ("claims.pay", "claims.deny")
    ]

    for _ in range(5):
        target = await create_user(identity, world.admin_md, [])
        answers = await asyncio.gather(
            *(
                outcome(bind(identity, md, target.user_id, role_id))
                for md, role_id in zip(callers, grants, strict=True)
            )
        )
        assert sorted(answers, key=str) == sorted([OK, DENIED], key=str), answers

        account = await identity.access.CreateServiceAccount(
            access_service_pb2.CreateServiceAccountRequest(
                service_account=resources_pb2.ServiceAccount(name=f"race-{target.user_id[:8]}")
            ),
            metadata=world.admin_md,
        )
        answers = await asyncio.gather(
            *(
                outcome(
                    identity.access.CreateApiKey(
                        access_service_pb2.CreateApiKeyRequest(
                            service_account_id=account.id,
                            api_key=resources_pb2.ApiKey(permissions=[extra]),
                        ),
                        metadata=md,
                    )
                )
                for md, extra in zip(callers, ("claims.pay", "claims.deny"), strict=True)
            )
        )
        assert sorted(answers, key=str) == sorted([OK, DENIED], key=str), answers


async def test_a_role_is_not_deleted_or_stripped_by_who_could_not_unbind_it(
    identity: IdentityHarness, world: World
) -> None:
    """Deleting a role, or removing permissions from it, takes them from every
    holder at once: the caller must hold them, as for DeleteRoleBinding (else a
    holder of ``roles.delete`` alone strips the claims team it could not unbind)."""
    manager_role = await create_role(
        identity, world.admin_md, ["roles.get", "roles.update", "roles.delete"]
    )
    manager_md = await login_md(
        identity, await create_user(identity, world.admin_md, [manager_role])
    )
    strong = await create_role(identity, world.admin_md, ["claims.pay", "claims.deny"])
    await create_user(identity, world.admin_md, [strong])

    def current() -> Awaitable[resources_pb2.Role]:
        return identity.access.GetRole(
            access_service_pb2.GetRoleRequest(role_id=strong), metadata=world.admin_md
        )

    before = await current()
    error = await refusal(
        identity.access.UpdateRole(
            access_service_pb2.UpdateRoleRequest(
                role=resources_pb2.Role(id=strong, permissions=["claims.pay"], etag=before.etag),
                update_mask=field_mask_pb2.FieldMask(paths=["permissions"]),
            ),
            metadata=manager_md,
        )
    )
    assert (error.code(), error_info(error).reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "ROLE_EXCEEDS_CALLER",
    )
    error = await refusal(
        identity.access.DeleteRole(
            access_service_pb2.DeleteRoleRequest(role_id=strong, etag=before.etag),
            metadata=manager_md,
        )
    )
    assert (error.code(), error_info(error).reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "ROLE_EXCEEDS_CALLER",
    )
    after = await current()
    assert list(after.permissions) == ["claims.deny", "claims.pay"]
    assert not after.HasField("delete_time")

    # The manager still changes and deletes a role within its own power.
    own = await create_role(identity, world.admin_md, ["roles.get", "roles.update"])
    own_role = await identity.access.GetRole(
        access_service_pb2.GetRoleRequest(role_id=own), metadata=manager_md
    )
    updated = await identity.access.UpdateRole(
        access_service_pb2.UpdateRoleRequest(
            role=resources_pb2.Role(id=own, permissions=["roles.get"], etag=own_role.etag),
            update_mask=field_mask_pb2.FieldMask(paths=["permissions"]),
        ),
        metadata=manager_md,
    )
    await identity.access.DeleteRole(
        access_service_pb2.DeleteRoleRequest(role_id=own, etag=updated.etag), metadata=manager_md
    )


@pytest.mark.parametrize("change", ["email", "password"])
async def test_a_reset_token_sent_before_an_email_or_password_change_dies_with_it(
    identity: IdentityHarness, world: World, change: str
) -> None:
    """A reset token mailed to the old address (or before a password change, often
    made because the account was at risk) would undo the change: it is void."""
    user = await create_user(identity, world.admin_md, [world.roles["tiny"]])
    await identity.auth.RequestPasswordReset(
        auth_service_pb2.RequestPasswordResetRequest(email=user.email)
    )
    await identity.app.auth.wait_for_background()
    (message,) = identity.notifier.messages_for(user.email)
    if change == "email":
        moved = unique_email("priv-moved")
        await _change(identity, world.admin_md, user.user_id, email=moved)
        await _confirm_email_change(identity, moved)
    else:
        await identity.auth.ChangePassword(
            auth_service_pb2.ChangePasswordRequest(
                current_password=user.password, new_password="a changed passphrase 4711"
            ),
            metadata=await login_md(identity, user),
        )
    error = await refusal(
        identity.auth.ConfirmPasswordReset(
            auth_service_pb2.ConfirmPasswordResetRequest(
                reset_token=message["token"], new_password="the attacker's passphrase 1"
            )
        )
    )
    assert (error.code(), error_info(error).reason) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "INVALID_RESET_TOKEN",
    )
