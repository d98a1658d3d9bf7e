"""Attack suite: self-service (MeService, /v1/me) as a way into other accounts.

The caller is always the token's own user, but the requests still carry a
session id and an update mask: ending another user's session by its id,
escalating or taking an account over through the mask (roles, state, company,
email), and guessing the current password through ChangeMyPassword.
"""

from __future__ import annotations

import uuid

import grpc
from google.protobuf import field_mask_pb2
from hostile_attacks import AttackLog
from hostile_harness import Tenants
from support.grpc_errors import error_info
from support.identity_harness import IdentityHarness, unique_email

from cardinsa.identity.v1 import (
    access_service_pb2,
    auth_service_pb2,
    me_service_pb2,
    me_service_pb2_grpc,
    resources_pb2,
    user_service_pb2,
)


def _me(identity: IdentityHarness) -> me_service_pb2_grpc.MeServiceStub:
    return me_service_pb2_grpc.MeServiceStub(identity.channel)


async def test_attack_end_another_users_session_via_me(
    identity: IdentityHarness, tenants: Tenants, attacks: AttackLog
) -> None:
    attacker = await identity.create_user(tenants.attacker.admin, roles=["viewer"])
    attacker_md = identity.bearer(await identity.token(attacker))
    peer = await identity.create_user(tenants.attacker.admin, roles=["viewer"])
    victims = [
        await identity.login(peer.email),
        await identity.login(tenants.attacker.admin.email, tenants.attacker.admin.password),
        await identity.login(tenants.victim.admin.email, tenants.victim.admin.password),
    ]
    with attacks.attempt(
        "end another user's session via /v1/me",
        "RevokeMySession with the session ids of a peer, the own company's admin and "
        "another company's admin, and a made-up id",
    ):
        answers = set()
        for session_id in [v.session_id for v in victims] + [str(uuid.uuid4())]:
            try:
                await _me(identity).RevokeMySession(
                    me_service_pb2.RevokeMySessionRequest(session_id=session_id),
                    metadata=attacker_md,
                )
            except grpc.aio.AioRpcError as error:
                answers.add(
                    (
                        error.code(),
                        error_info(error).reason,
                        error.details().replace(session_id, ""),
                    )
                )
            else:
                answers.add(("OK", "", ""))
        assert len(answers) == 1, answers
        assert next(iter(answers))[0] is grpc.StatusCode.NOT_FOUND, answers
        for pair in victims:  # every one of them still refreshes
            assert (
                await identity.auth.RefreshToken(
                    auth_service_pb2.RefreshTokenRequest(refresh_token=pair.refresh_token)
                )
            ).access_token


async def test_attack_escalate_or_take_over_via_the_me_update_mask(
    identity: IdentityHarness, tenants: Tenants, attacks: AttackLog
) -> None:
    admin_md = tenants.attacker.bearer
    attacker = await identity.create_user(tenants.attacker.admin, roles=["viewer"])
    attacker_md = identity.bearer(await identity.token(attacker))
    inbox = unique_email("hostile-me-takeover")

    async def state() -> tuple[object, ...]:
        user = await identity.users.GetUser(
            user_service_pb2.GetUserRequest(user_id=attacker.user_id), metadata=admin_md
        )
        bindings = await identity.access.ListRoleBindings(
            access_service_pb2.ListRoleBindingsRequest(user_id=attacker.user_id),
            metadata=admin_md,
        )
        return (
            user.etag,
            user.email,
            user.phone,
            user.state,
            user.company_id,
            tuple(user.roles),
            tuple(sorted(b.role_id for b in bindings.role_bindings)),
        )

    before = await state()
    hostile = resources_pb2.User(
        id=tenants.victim.admin.user_id,
        company_id=tenants.victim.company_id,
        email=inbox,
        phone="+4915112345678",
        state=resources_pb2.User.ACTIVE,
        roles=["company-admin", "platform-admin"],
        given_name="Mallory",
    )
    masks = [
        ["roles"],
        ["state"],
        ["company_id"],
        ["id"],
        ["email"],
        ["phone"],
        ["given_name", "roles"],
        ["given_name", "email"],
        ["password_hash"],
        ["etag"],
        ["*"],
        ["user.roles"],
        ["roles.0"],
    ]
    with attacks.attempt(
        "escalate via PATCH /v1/me mask",
        "UpdateMe with roles, state, company_id, id, email, phone, '*', nested and "
        "internal paths in the mask (alone and next to an allowed field)",
    ):
        for paths in masks:
            try:
                await _me(identity).UpdateMe(
                    me_service_pb2.UpdateMeRequest(
                        user=hostile, update_mask=field_mask_pb2.FieldMask(paths=paths)
                    ),
                    metadata=attacker_md,
                )
            except grpc.aio.AioRpcError as error:
                assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, (paths, error)
                assert error_info(error).reason == "FIELD_NOT_SELF_EDITABLE", paths
            else:
                raise AssertionError(f"UpdateMe accepted the mask {paths}")
        assert await state() == before
        # The reset the email change would have enabled goes nowhere.
        assert identity.notifier.messages_for(inbox) == []
        # The victim company's admin is untouched.
        victim = await identity.users.GetUser(
            user_service_pb2.GetUserRequest(user_id=tenants.victim.admin.user_id),
            metadata=tenants.victim.bearer,
        )
        assert victim.given_name != "Mallory"


async def test_attack_brute_force_of_the_current_password_through_me_locks(
    identity: IdentityHarness, tenants: Tenants, attacks: AttackLog
) -> None:
    """A stolen access token does not buy unlimited guesses through /v1/me either."""
    limit = identity.settings.login_max_failures_per_account
    user = await identity.create_user(tenants.attacker.admin, roles=["viewer"])
    stolen = identity.bearer(await identity.token(user))

    async def change(current: str) -> grpc.aio.AioRpcError | None:
        try:
            await _me(identity).ChangeMyPassword(
                me_service_pb2.ChangeMyPasswordRequest(
                    current_password=current, new_password="a brand new passphrase 77"
                ),
                metadata=stolen,
            )
        except grpc.aio.AioRpcError as error:
            return error
        return None

    with attacks.attempt(
        "brute force: current password through /v1/me:changePassword",
        f"{limit + 3} wrong current passwords with a stolen access token, then the right one",
    ):
        answers = [await change(f"guess number {i:04d}") for i in range(limit + 3)]
        codes = [a.code() if a else None for a in answers]
        assert codes[:limit] == [grpc.StatusCode.INVALID_ARGUMENT] * limit, codes
        assert all(
            a is not None and a.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            for a in answers[limit:]
        ), codes
        last = await change(user.password)
        assert last is not None and last.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
