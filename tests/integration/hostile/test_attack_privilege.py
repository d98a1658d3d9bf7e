"""Attack suite: acting on accounts more privileged than oneself.

A custom role with only ``users.update`` (a "helpdesk") could once set the
company admin's email to its own address, reset the password and log in as
the admin (in the platform company: as platform admin); a weaker user could
lock, deactivate or delete a stronger one. Each attack runs in a company of its
own (tests/support/privilege_matrix.py), so a breach harms no other test.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import grpc
from google.protobuf import field_mask_pb2
from hostile_attacks import AttackLog
from support.grpc_errors import error_info
from support.identity_harness import PASSWORD, IdentityHarness, unique_email
from support.privilege_matrix import (
    ACTIONS,
    bootstrap,
    create_role,
    create_user,
    login_md,
    make_world,
    prepared_target,
    snapshot,
)

from cardinsa.identity.v1 import (
    access_service_pb2,
    auth_service_pb2,
    resources_pb2,
    user_service_pb2,
)

DENIED = ("PERMISSION_DENIED", "TARGET_MORE_PRIVILEGED")


async def _answer(call: Awaitable[Any]) -> tuple[str, str]:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code().name, error_info(error).reason
    return "OK", ""


def _email_change(user_id: str, email: str) -> user_service_pb2.UpdateUserRequest:
    return user_service_pb2.UpdateUserRequest(
        user=resources_pb2.User(id=user_id, email=email),
        update_mask=field_mask_pb2.FieldMask(paths=["email"]),
    )


async def _takeover(
    identity: IdentityHarness, helpdesk_md: list[tuple[str, str]], victim_id: str
) -> list[str]:
    """Email change → reset to the new address → login; what got through."""
    inbox = unique_email("hostile-takeover")
    through = []
    if (
        await _answer(
            identity.users.UpdateUser(_email_change(victim_id, inbox), metadata=helpdesk_md)
        )
        != DENIED
    ):
        through.append("email change")
    await identity.auth.RequestPasswordReset(
        auth_service_pb2.RequestPasswordResetRequest(email=inbox)
    )
    await identity.app.auth.wait_for_background()
    for message in identity.notifier.messages_for(inbox):
        through.append("reset token delivered")
        await identity.auth.ConfirmPasswordReset(
            auth_service_pb2.ConfirmPasswordResetRequest(
                reset_token=message["token"], new_password=PASSWORD + " taken"
            )
        )
        if (await _answer(identity.login(inbox, PASSWORD + " taken")))[0] == "OK":
            through.append("logged in as the victim")
    return through


async def test_attack_helpdesk_takes_over_the_company_admin_by_email_change(
    identity: IdentityHarness, attacks: AttackLog
) -> None:
    with attacks.attempt(
        "helpdesk (users.update only) takes over company admin via email change",
        "identity: UpdateUser(email), reset to new address, Login",
    ):
        world = await make_world(identity)
        helpdesk = await create_user(
            identity,
            world.admin_md,
            [await create_role(identity, world.admin_md, ["users.update"])],
        )
        through = await _takeover(identity, await login_md(identity, helpdesk), world.admin.user_id)
        assert through == [], through
        assert (await identity.login(world.admin.email)).access_token


async def test_attack_helpdesk_in_the_platform_company_takes_over_a_platform_admin(
    identity: IdentityHarness, attacks: AttackLog
) -> None:
    with attacks.attempt(
        "platform company's helpdesk/company admin takes over a platform admin",
        "identity: email change + reset, by helpdesk and by company admin",
    ):
        platform = identity.platform_admin.company_id
        root = await bootstrap(identity, platform, "platform-admin", "hostile-root")
        root_md = await login_md(identity, root)
        helpdesk = await create_user(
            identity, root_md, [await create_role(identity, root_md, ["users.update"])]
        )
        company_admin = await bootstrap(identity, platform, "company-admin", "hostile-padmin")
        for attacker in (helpdesk, company_admin):
            through = await _takeover(identity, await login_md(identity, attacker), root.user_id)
            assert through == [], through
        assert (await identity.login(root.email)).access_token


async def test_attack_weaker_user_acts_on_a_stronger_account_through_every_rpc(
    identity: IdentityHarness, attacks: AttackLog
) -> None:
    """The matrix's weaker column: lock, deactivate, delete, sessions, bindings,
    API keys of a stronger user or service account."""
    world = await make_world(identity)
    for name, action in sorted(ACTIONS.items()):
        attack = (
            "weaker user locks/deactivates/deletes/rebinds a stronger user"
            if action.kind == "user"
            else "weaker user acts on a stronger service account (API keys, delete)"
        )
        with attacks.attempt(attack, name.split("/")[1]):
            target = await prepared_target(world, name, "weaker")
            before = await snapshot(world, target)
            assert await _answer(action.act(world, target, world.operator_md)) == DENIED
            assert await snapshot(world, target) == before


async def test_attack_role_manager_strips_a_role_it_could_not_unbind(
    identity: IdentityHarness, attacks: AttackLog
) -> None:
    """DeleteRole and UpdateRole(permissions) take a role's permissions from every
    holder: a caller lacking them must be refused as DeleteRoleBinding refuses it."""
    world = await make_world(identity)
    manager = await create_user(
        identity,
        world.admin_md,
        [await create_role(identity, world.admin_md, ["roles.update", "roles.delete"])],
    )
    manager_md = await login_md(identity, manager)
    strong = await create_role(identity, world.admin_md, ["claims.pay", "claims.deny"])
    await create_user(identity, world.admin_md, [strong])
    refused = ("PERMISSION_DENIED", "ROLE_EXCEEDS_CALLER")
    with attacks.attempt(
        "weaker user deletes or strips a role held by others (role manager)",
        "UpdateRole(permissions), DeleteRole",
    ):
        role = await identity.access.GetRole(
            access_service_pb2.GetRoleRequest(role_id=strong), metadata=world.admin_md
        )
        strip = access_service_pb2.UpdateRoleRequest(
            role=resources_pb2.Role(id=strong, permissions=["claims.pay"], etag=role.etag),
            update_mask=field_mask_pb2.FieldMask(paths=["permissions"]),
        )
        assert await _answer(identity.access.UpdateRole(strip, metadata=manager_md)) == refused
        drop = access_service_pb2.DeleteRoleRequest(role_id=strong, etag=role.etag)
        assert await _answer(identity.access.DeleteRole(drop, metadata=manager_md)) == refused
        after = await identity.access.GetRole(
            access_service_pb2.GetRoleRequest(role_id=strong), metadata=world.admin_md
        )
        assert (list(after.permissions), after.HasField("delete_time")) == (
            ["claims.deny", "claims.pay"],
            False,
        )


async def test_attack_reset_token_mailed_to_the_old_address_after_an_email_change(
    identity: IdentityHarness, attacks: AttackLog
) -> None:
    """Whoever reads the old mailbox requests a reset, the admin moves the user
    to a new address: the token mailed before the move must not take it back."""
    world = await make_world(identity)
    victim = await create_user(identity, world.admin_md, [])
    with attacks.attempt(
        "reset token mailed to the old address used after an email change",
        "RequestPasswordReset, UpdateUser(email) confirmed by the new address, "
        "ConfirmPasswordReset",
    ):
        await identity.auth.RequestPasswordReset(
            auth_service_pb2.RequestPasswordResetRequest(email=victim.email)
        )
        await identity.app.auth.wait_for_background()
        (message,) = identity.notifier.messages_for(victim.email)
        moved = unique_email("hostile-moved")
        await identity.users.UpdateUser(
            _email_change(victim.user_id, moved), metadata=world.admin_md
        )
        # The move takes effect when the new address confirms it.
        (confirmation,) = identity.notifier.messages_for(moved, kind="email_change")
        await identity.auth.ConfirmEmailChange(
            auth_service_pb2.ConfirmEmailChangeRequest(email_change_token=confirmation["token"])
        )
        answer = await _answer(
            identity.auth.ConfirmPasswordReset(
                auth_service_pb2.ConfirmPasswordResetRequest(
                    reset_token=message["token"], new_password=PASSWORD + " taken"
                )
            )
        )
        assert answer == ("UNAUTHENTICATED", "INVALID_RESET_TOKEN"), answer
