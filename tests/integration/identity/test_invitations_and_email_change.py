"""Invitations and verified e-mail changes over real gRPC and PostgreSQL (the
file notifier records what would be mailed; test_invitation_mail.py sends it
through a real SMTP server).

Invitation: InviteUser → an INVITED user that cannot log in (the answer of a
wrong password) → AcceptInvitation with the mailed token and a password → ACTIVE,
logs in. E-mail change: ChangeMyEmail or UpdateUser → nothing changes until
ConfirmEmailChange with the token mailed to the new address → the email
changes, sessions end, the old address is told."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import field_mask_pb2
from sqlalchemy import text
from support.grpc_errors import error_info, field_violations
from support.identity_harness import PASSWORD, Account, IdentityHarness, unique_email

from cardinsa.identity.v1 import (
    access_service_pb2,
    auth_service_pb2,
    identity_service_pb2,
    me_service_pb2,
    me_service_pb2_grpc,
    resources_pb2,
    user_service_pb2,
)
from cardinsa_identity.domain.permissions import BUILT_IN_ROLES

pytestmark = pytest.mark.integration

NEW_PASSWORD = "an invited passphrase 2026"


async def _refused(call: object, code: grpc.StatusCode, reason: str = "") -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code() is code, caught.value.details()
    if reason:
        assert error_info(caught.value).reason == reason
    return caught.value


async def _admin(identity: IdentityHarness) -> list[tuple[str, str]]:
    return identity.bearer(await identity.token(identity.admin_a))


async def invite(
    identity: IdentityHarness, *, locale: str = "", request_id: str = ""
) -> resources_pb2.User:
    return await identity.users.InviteUser(
        user_service_pb2.InviteUserRequest(
            user=resources_pb2.User(
                email=unique_email("invited"), given_name="Ina", family_name="Vited", locale=locale
            ),
            request_id=request_id,
        ),
        metadata=await _admin(identity),
    )


def _mailed(identity: IdentityHarness, email: str, kind: str) -> list[dict[str, str]]:
    return identity.notifier.messages_for(email, kind=kind)


async def _accept(identity: IdentityHarness, token: str, password: str = NEW_PASSWORD) -> None:
    await identity.auth.AcceptInvitation(
        auth_service_pb2.AcceptInvitationRequest(invitation_token=token, new_password=password)
    )


async def _audit(identity: IdentityHarness, user_id: str) -> list[str]:
    events = await identity.identity.ListAuditEvents(
        identity_service_pb2.ListAuditEventsRequest(
            filter=f'entity_id = "{user_id}"', page_size=50
        ),
        metadata=await _admin(identity),
    )
    return [e.action for e in events.audit_events]


# ------------------------------------------------------------------ invitations


async def test_an_invited_user_sets_a_password_and_logs_in(identity: IdentityHarness) -> None:
    user = await invite(identity)
    assert user.state == resources_pb2.User.INVITED
    (mail,) = _mailed(identity, user.email, "invitation")
    assert mail["token"].startswith("cdi_")
    assert mail["name"] == "Ina Vited"
    expire = datetime.fromisoformat(mail["expire_time"])
    assert timedelta(hours=71) < expire - datetime.now(UTC) <= timedelta(hours=72)

    # Before accepting: the answer of a wrong password, and no reset mail.
    error = await _refused(identity.login(user.email, PASSWORD), grpc.StatusCode.UNAUTHENTICATED)
    assert error_info(error).reason == "INVALID_CREDENTIALS"
    await identity.auth.RequestPasswordReset(
        auth_service_pb2.RequestPasswordResetRequest(email=user.email)
    )
    await identity.app.auth.wait_for_background()
    assert _mailed(identity, user.email, "password_reset") == []

    # A password the policy refuses keeps the token usable.
    weak = await _refused(
        identity.auth.AcceptInvitation(
            auth_service_pb2.AcceptInvitationRequest(
                invitation_token=mail["token"], new_password="short"
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "new_password" in field_violations(weak)

    await _accept(identity, mail["token"])
    pair = await identity.login(user.email, NEW_PASSWORD)
    assert pair.access_token
    now = await identity.users.GetUser(
        user_service_pb2.GetUserRequest(user_id=user.id), metadata=await _admin(identity)
    )
    assert now.state == resources_pb2.User.ACTIVE
    actions = await _audit(identity, user.id)
    assert {"user.invite", "user.accept_invitation"} <= set(actions)

    # Single use: the same token again is refused like any unknown token.
    await _refused(
        _accept(identity, mail["token"], "yet another passphrase 1"),
        grpc.StatusCode.UNAUTHENTICATED,
        "INVALID_INVITATION_TOKEN",
    )
    assert (await identity.login(user.email, NEW_PASSWORD)).access_token


async def test_resending_voids_the_earlier_invitation(identity: IdentityHarness) -> None:
    user = await invite(identity)
    resent = await identity.users.ResendInvitation(
        user_service_pb2.ResendInvitationRequest(user_id=user.id),
        metadata=await _admin(identity),
    )
    assert resent.state == resources_pb2.User.INVITED
    first, second = _mailed(identity, user.email, "invitation")
    assert first["token"] != second["token"]
    await _refused(
        _accept(identity, first["token"]),
        grpc.StatusCode.UNAUTHENTICATED,
        "INVALID_INVITATION_TOKEN",
    )
    await _accept(identity, second["token"])
    assert (await identity.login(user.email, NEW_PASSWORD)).access_token
    # Accepted: nothing to resend any more.
    await _refused(
        identity.users.ResendInvitation(
            user_service_pb2.ResendInvitationRequest(user_id=user.id),
            metadata=await _admin(identity),
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "NOT_INVITED",
    )


async def test_an_expired_invitation_is_refused_like_an_unknown_one(
    identity: IdentityHarness,
) -> None:
    user = await invite(identity)
    (mail,) = _mailed(identity, user.email, "invitation")
    async with identity.app.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as db:
        await db.execute(
            text(
                "UPDATE identity.invitations SET expire_time = now() - interval '1 second'"
                " WHERE user_id = :user_id"
            ),
            {"user_id": user.id},
        )
    expired = await _refused(_accept(identity, mail["token"]), grpc.StatusCode.UNAUTHENTICATED)
    unknown = await _refused(_accept(identity, "cdi_" + "A" * 43), grpc.StatusCode.UNAUTHENTICATED)
    assert expired.details() == unknown.details()
    assert error_info(expired) == error_info(unknown)


async def test_invite_with_a_request_id_mails_once_and_a_taken_email_is_refused(
    identity: IdentityHarness,
) -> None:
    request_id = "5b0c3a9e-1d2f-4c3b-8a7e-6f5d4c3b2a10"
    request = user_service_pb2.InviteUserRequest(
        user=resources_pb2.User(email=unique_email("idem")), request_id=request_id
    )
    admin = await _admin(identity)
    first = await identity.users.InviteUser(request, metadata=admin)
    again = await identity.users.InviteUser(request, metadata=admin)
    assert first.id == again.id
    assert len(_mailed(identity, first.email, "invitation")) == 1
    taken = await _refused(
        identity.users.InviteUser(
            user_service_pb2.InviteUserRequest(
                user=resources_pb2.User(email=identity.admin_a.email)
            ),
            metadata=admin,
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        "EMAIL_TAKEN",
    )
    assert "user.email" in field_violations(taken)


async def test_a_deleted_invitation_cannot_be_accepted(identity: IdentityHarness) -> None:
    user = await invite(identity)
    (mail,) = _mailed(identity, user.email, "invitation")
    await identity.users.DeleteUser(
        user_service_pb2.DeleteUserRequest(user_id=user.id), metadata=await _admin(identity)
    )
    await _refused(
        _accept(identity, mail["token"]),
        grpc.StatusCode.UNAUTHENTICATED,
        "INVALID_INVITATION_TOKEN",
    )


# --------------------------------------------------------------- e-mail change


async def _member(identity: IdentityHarness) -> Account:
    """A user of company A with the built-in role holding the fewest permissions
    (every built-in role holds ``me.change_email``)."""
    weakest = min(BUILT_IN_ROLES.values(), key=lambda r: len(r.permissions)).name
    return await identity.create_user(identity.admin_a, roles=[weakest])


def _me(identity: IdentityHarness) -> me_service_pb2_grpc.MeServiceStub:
    return me_service_pb2_grpc.MeServiceStub(identity.channel)


async def _change_my_email(
    identity: IdentityHarness, user: Account, new_email: str, password: str = PASSWORD
) -> None:
    token = (await identity.login(user.email, user.password)).access_token
    await _me(identity).ChangeMyEmail(
        me_service_pb2.ChangeMyEmailRequest(current_password=password, new_email=new_email),
        metadata=identity.bearer(token),
    )


async def _confirm(identity: IdentityHarness, token: str) -> None:
    await identity.auth.ConfirmEmailChange(
        auth_service_pb2.ConfirmEmailChangeRequest(email_change_token=token)
    )


async def _email_of(identity: IdentityHarness, user_id: str) -> str:
    user = await identity.users.GetUser(
        user_service_pb2.GetUserRequest(user_id=user_id), metadata=await _admin(identity)
    )
    return str(user.email)


async def test_a_self_service_email_change_waits_for_the_new_address(
    identity: IdentityHarness,
) -> None:
    user = await _member(identity)
    pair = await identity.login(user.email)
    new = unique_email("moved")

    # A wrong current password changes nothing and sends nothing.
    wrong = await _refused(
        _change_my_email(identity, user, new, password="not the password at all"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "WRONG_CURRENT_PASSWORD",
    )
    assert "current_password" in field_violations(wrong)
    assert _mailed(identity, new, "email_change") == []

    await _change_my_email(identity, user, new)
    (mail,) = _mailed(identity, new, "email_change")
    assert mail["token"].startswith("cde_")
    # Nothing changed yet: the old email logs in, the session lives.
    assert await _email_of(identity, user.user_id) == user.email
    assert (await identity.login(user.email)).access_token
    assert _mailed(identity, user.email, "email_changed") == []

    await _confirm(identity, mail["token"])
    assert await _email_of(identity, user.user_id) == new
    assert (await identity.login(new)).access_token
    await _refused(identity.login(user.email), grpc.StatusCode.UNAUTHENTICATED)
    # Every session from before ended; the old address was told, without the new one.
    await _refused(
        identity.auth.RefreshToken(
            auth_service_pb2.RefreshTokenRequest(refresh_token=pair.refresh_token)
        ),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    (notice,) = _mailed(identity, user.email, "email_changed")
    assert new not in str(notice)
    assert "token" not in notice
    actions = await _audit(identity, user.user_id)
    assert {"user.email_change.request", "user.email_change.confirm"} <= set(actions)

    # Single use.
    await _refused(
        _confirm(identity, mail["token"]),
        grpc.StatusCode.UNAUTHENTICATED,
        "INVALID_EMAIL_CHANGE_TOKEN",
    )


async def test_a_newer_change_replaces_the_older_and_a_taken_address_gets_no_mail(
    identity: IdentityHarness,
) -> None:
    user = await _member(identity)
    first, second = unique_email("first"), unique_email("second")
    await _change_my_email(identity, user, first)
    await _change_my_email(identity, user, second)
    (older,) = _mailed(identity, first, "email_change")
    (newer,) = _mailed(identity, second, "email_change")
    await _refused(
        _confirm(identity, older["token"]),
        grpc.StatusCode.UNAUTHENTICATED,
        "INVALID_EMAIL_CHANGE_TOKEN",
    )

    # Someone's address: the same (empty) answer, no mail to it, and the
    # pending change to `second` still stands.
    other = await identity.create_user(identity.admin_b)
    await _change_my_email(identity, user, other.email)
    assert _mailed(identity, other.email, "email_change") == []

    # `second` is taken meanwhile: the confirmation is refused, nothing changes.
    await identity.create_user(identity.admin_b, email=second)
    await _refused(
        _confirm(identity, newer["token"]), grpc.StatusCode.ALREADY_EXISTS, "EMAIL_TAKEN"
    )
    assert await _email_of(identity, user.user_id) == user.email


async def test_an_admin_email_change_is_confirmed_by_the_new_address(
    identity: IdentityHarness,
) -> None:
    user = await identity.create_user(identity.admin_a)
    pair = await identity.login(user.email)
    new = unique_email("admin-moved")
    changed = await identity.users.UpdateUser(
        user_service_pb2.UpdateUserRequest(
            user=resources_pb2.User(id=user.user_id, email=new, given_name="Renamed"),
            update_mask=field_mask_pb2.FieldMask(paths=["email", "given_name"]),
        ),
        metadata=await _admin(identity),
    )
    # The other field changed at once; the email waits.
    assert (changed.email, changed.given_name) == (user.email, "Renamed")
    refreshed = await identity.auth.RefreshToken(
        auth_service_pb2.RefreshTokenRequest(refresh_token=pair.refresh_token)
    )
    (mail,) = _mailed(identity, new, "email_change")
    await _confirm(identity, mail["token"])
    assert await _email_of(identity, user.user_id) == new
    await _refused(
        identity.auth.RefreshToken(
            auth_service_pb2.RefreshTokenRequest(refresh_token=refreshed.refresh_token)
        ),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert len(_mailed(identity, user.email, "email_changed")) == 1


async def test_an_invited_users_email_is_corrected_at_once_and_the_old_link_dies(
    identity: IdentityHarness,
) -> None:
    user = await invite(identity)
    (old,) = _mailed(identity, user.email, "invitation")
    fixed = unique_email("fixed")
    changed = await identity.users.UpdateUser(
        user_service_pb2.UpdateUserRequest(
            user=resources_pb2.User(id=user.id, email=fixed),
            update_mask=field_mask_pb2.FieldMask(paths=["email"]),
        ),
        metadata=await _admin(identity),
    )
    assert changed.email == fixed
    await _refused(
        _accept(identity, old["token"]),
        grpc.StatusCode.UNAUTHENTICATED,
        "INVALID_INVITATION_TOKEN",
    )
    await identity.users.ResendInvitation(
        user_service_pb2.ResendInvitationRequest(user_id=user.id),
        metadata=await _admin(identity),
    )
    (new,) = _mailed(identity, fixed, "invitation")
    await _accept(identity, new["token"])
    assert (await identity.login(fixed, NEW_PASSWORD)).access_token


async def test_resending_needs_the_invited_users_power(identity: IdentityHarness) -> None:
    """A caller with users.create but less power than the invited user (an admin
    to be) cannot resend its invitation; the company admin can."""
    admin = await _admin(identity)
    role = await identity.access.CreateRole(
        access_service_pb2.CreateRoleRequest(
            role=resources_pb2.Role(
                name=f"inviter-{uuid.uuid4().hex[:8]}", permissions=["users.create"]
            )
        ),
        metadata=admin,
    )
    inviter = await identity.create_user(identity.admin_a)
    await identity.access.CreateRoleBinding(
        access_service_pb2.CreateRoleBindingRequest(
            role_binding=resources_pb2.RoleBinding(user_id=inviter.user_id, role_id=role.id)
        ),
        metadata=admin,
    )
    user = await invite(identity)
    await identity.bind(identity.admin_a, user.id, "company-admin")
    inviter_md = identity.bearer(await identity.token(inviter))
    await _refused(
        identity.users.ResendInvitation(
            user_service_pb2.ResendInvitationRequest(user_id=user.id), metadata=inviter_md
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "TARGET_MORE_PRIVILEGED",
    )
    assert len(_mailed(identity, user.email, "invitation")) == 1
    await identity.users.ResendInvitation(
        user_service_pb2.ResendInvitationRequest(user_id=user.id), metadata=admin
    )
    assert len(_mailed(identity, user.email, "invitation")) == 2
