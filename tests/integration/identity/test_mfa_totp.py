"""TOTP second factor, login challenges and the company MFA policy, over real
gRPC and PostgreSQL; codes computed with pyotp from the enrolled secret."""

from __future__ import annotations

import uuid

import grpc
import pytest
from sqlalchemy import text
from support.grpc_errors import error_info
from support.identity_harness import PASSWORD, Account, IdentityHarness, unique_email
from support.mfa_helpers import (
    challenge,
    claims,
    code,
    enrol,
    login_with_code,
    me_stub,
    respond,
)

from cardinsa.identity.v1 import (
    access_service_pb2,
    auth_service_pb2,
    identity_service_pb2,
    me_service_pb2,
    resources_pb2,
    user_service_pb2,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NEW_PASSWORD = "a passphrase of my own 2026"


async def _refused(call: object, code_: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code() is code_, caught.value.details()
    return caught.value


async def test_enrol_confirm_and_log_in_with_a_code(identity: IdentityHarness) -> None:
    me = me_stub(identity)
    user = await identity.create_user(identity.admin_a, roles=["viewer"])
    md = identity.bearer((await identity.login(user.email)).access_token)

    state = await me.GetMyMfa(me_service_pb2.GetMyMfaRequest(), metadata=md)
    assert not state.enabled and not state.enrolment_pending
    # No QR code before an enrolment.
    error = await _refused(
        me.GetMyMfaQrCode(me_service_pb2.GetMyMfaQrCodeRequest(), metadata=md),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert error_info(error).reason == "MFA_NOT_ENROLLING"

    enrolment = await me.EnrollMyMfa(me_service_pb2.EnrollMyMfaRequest(), metadata=md)
    assert enrolment.provisioning_uri.startswith("otpauth://totp/")
    assert f"secret={enrolment.secret}" in enrolment.provisioning_uri
    qr = await me.GetMyMfaQrCode(me_service_pb2.GetMyMfaQrCodeRequest(), metadata=md)
    assert qr.content_type == "image/png"
    assert qr.data.startswith(PNG_MAGIC)
    # Pending: login still needs the password only.
    assert (await identity.login(user.email)).access_token

    # The secret is encrypted at rest.
    async with identity.app.ctx.db.unit_of_work(company_id=user.company_id) as session:
        stored = (
            await session.execute(
                text("SELECT secret_encrypted FROM identity.user_mfa WHERE user_id = :id"),
                {"id": uuid.UUID(user.user_id)},
            )
        ).scalar_one()
    assert enrolment.secret.encode() not in bytes(stored)

    wrong = await _refused(
        me.ConfirmMyMfa(me_service_pb2.ConfirmMyMfaRequest(totp_code="000000"), metadata=md),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert error_info(wrong).reason == "INVALID_MFA_CODE"
    confirmed = await me.ConfirmMyMfa(
        me_service_pb2.ConfirmMyMfaRequest(totp_code=code(enrolment.secret, -1)), metadata=md
    )
    assert len(confirmed.recovery_codes) == 10
    assert len(set(confirmed.recovery_codes)) == 10
    state = await me.GetMyMfa(me_service_pb2.GetMyMfaRequest(), metadata=md)
    assert state.enabled and state.recovery_codes_remaining == 10
    assert state.HasField("confirm_time")
    # A confirmed factor is neither re-enrolled nor shown again.
    again = await _refused(
        me.EnrollMyMfa(me_service_pb2.EnrollMyMfaRequest(), metadata=md),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert error_info(again).reason == "MFA_ALREADY_ENABLED"
    await _refused(
        me.GetMyMfaQrCode(me_service_pb2.GetMyMfaQrCodeRequest(), metadata=md),
        grpc.StatusCode.FAILED_PRECONDITION,
    )

    # Login: a challenge instead of tokens, then the code.
    first = await challenge(identity, user)
    assert not first.access_token and not first.refresh_token
    assert first.challenge.kind == auth_service_pb2.AuthChallenge.MFA_TOTP
    assert first.challenge.session.startswith("cdc_")
    assert first.challenge.HasField("expire_time")
    tokens = await respond(identity, first.challenge.session, totp_code=code(enrolment.secret))
    assert tokens.access_token and tokens.refresh_token
    assert list(tokens.amr) == ["pwd", "otp"]
    assert claims(tokens.access_token)["amr"] == ["otp", "pwd"]
    # A refresh keeps the amr of the login.
    refreshed = await identity.auth.RefreshToken(
        auth_service_pb2.RefreshTokenRequest(refresh_token=tokens.refresh_token)
    )
    assert claims(refreshed.access_token)["amr"] == ["otp", "pwd"]

    # A recovery code works instead of a code, once.
    recovery = confirmed.recovery_codes[0]
    second = await challenge(identity, user)
    used = await respond(identity, second.challenge.session, recovery_code=recovery.upper())
    assert claims(used.access_token)["amr"] == ["otp", "pwd"]
    third = await challenge(identity, user)
    error = await _refused(
        respond(identity, third.challenge.session, recovery_code=recovery),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert error_info(error).reason == "INVALID_MFA_CODE"
    md = identity.bearer(used.access_token)
    state = await me.GetMyMfa(me_service_pb2.GetMyMfaRequest(), metadata=md)
    assert state.recovery_codes_remaining == 9


async def test_a_wrong_password_with_mfa_looks_like_an_unknown_email(
    identity: IdentityHarness,
) -> None:
    user = await identity.create_user(identity.admin_a, roles=["viewer"])
    await enrol(identity, user)
    answers = []
    for email in (user.email, unique_email("nobody")):
        error = await _refused(
            identity.login(email, "not the password at all"), grpc.StatusCode.UNAUTHENTICATED
        )
        answers.append((error.details(), error_info(error).reason))
    assert answers[0] == answers[1]


async def test_disable_needs_the_password_and_ends_every_session(
    identity: IdentityHarness,
) -> None:
    me = me_stub(identity)
    user = await identity.create_user(identity.admin_a, roles=["viewer"])
    factor = await enrol(identity, user)
    tokens = await login_with_code(identity, user, factor)
    md = identity.bearer(tokens.access_token)
    wrong = await _refused(
        me.DisableMyMfa(
            me_service_pb2.DisableMyMfaRequest(current_password="wrong password 123"), metadata=md
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert error_info(wrong).reason == "WRONG_CURRENT_PASSWORD"
    await me.DisableMyMfa(
        me_service_pb2.DisableMyMfaRequest(current_password=PASSWORD), metadata=md
    )
    await _refused(
        identity.auth.RefreshToken(
            auth_service_pb2.RefreshTokenRequest(refresh_token=tokens.refresh_token)
        ),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    plain = await identity.login(user.email)
    assert plain.access_token and list(plain.amr) == ["pwd"]


async def test_an_admin_resets_a_lost_factor(identity: IdentityHarness) -> None:
    user = await identity.create_user(identity.admin_a, roles=["viewer"])
    await enrol(identity, user)
    assert (await challenge(identity, user)).challenge.session
    admin = identity.bearer(await identity.token(identity.admin_a))
    await identity.users.ResetUserMfa(
        user_service_pb2.ResetUserMfaRequest(user_id=user.user_id), metadata=admin
    )
    assert (await identity.login(user.email)).access_token
    # Another company's admin does not find the user.
    other = identity.bearer(await identity.token(identity.admin_b))
    await _refused(
        identity.users.ResetUserMfa(
            user_service_pb2.ResetUserMfaRequest(user_id=user.user_id), metadata=other
        ),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_a_password_set_by_an_admin_is_changed_at_first_login(
    identity: IdentityHarness,
) -> None:
    user = await identity.create_user(identity.admin_a, roles=["viewer"], password_permanent=False)
    first = await identity.login(user.email)
    assert not first.access_token
    assert first.challenge.kind == auth_service_pb2.AuthChallenge.NEW_PASSWORD_REQUIRED
    session = first.challenge.session
    missing = await _refused(respond(identity, session), grpc.StatusCode.INVALID_ARGUMENT)
    assert "new_password" in missing.details() or error_info(missing).reason
    same = await _refused(
        respond(identity, session, new_password=PASSWORD), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert error_info(same).reason == "PASSWORD_NOT_CHANGED"
    await _refused(
        respond(identity, session, new_password="short"), grpc.StatusCode.INVALID_ARGUMENT
    )
    tokens = await respond(identity, session, new_password=NEW_PASSWORD)
    assert tokens.access_token and list(tokens.amr) == ["pwd"]
    # The challenge was single-use; the old password is gone; the new one logs in.
    reused = await _refused(
        respond(identity, session, new_password="yet another passphrase 99"),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert error_info(reused).reason == "INVALID_CHALLENGE"
    await _refused(identity.login(user.email), grpc.StatusCode.UNAUTHENTICATED)
    assert (await identity.login(user.email, NEW_PASSWORD)).access_token


async def _role(identity: IdentityHarness, admin: list[tuple[str, str]], *perms: str) -> str:
    role = await identity.access.CreateRole(
        access_service_pb2.CreateRoleRequest(
            role=resources_pb2.Role(name=f"mfa-{uuid.uuid4().hex[:8]}", permissions=list(perms))
        ),
        metadata=admin,
    )
    return str(role.name)


async def test_a_role_that_needs_mfa_is_refused_without_it(identity: IdentityHarness) -> None:
    # A company of its own: its policy touches no other test.
    admin_account = await _fresh_admin(identity)
    admin = identity.bearer(await identity.token(admin_account))
    # The audit log: a sensitive read no viewer holds.
    guarded = await _role(identity, admin, "audit_events.list")
    user = await identity.create_user(admin_account, roles=[guarded, "viewer"])

    unknown = await _refused(
        identity.users.UpdateMfaPolicy(
            user_service_pb2.UpdateMfaPolicyRequest(
                policy=user_service_pb2.MfaPolicy(required_roles=["no-such-role"])
            ),
            metadata=admin,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert error_info(unknown).reason == "UNKNOWN_ROLE"
    policy = await identity.users.UpdateMfaPolicy(
        user_service_pb2.UpdateMfaPolicyRequest(
            policy=user_service_pb2.MfaPolicy(required_roles=[guarded])
        ),
        metadata=admin,
    )
    assert list(policy.required_roles) == [guarded]
    read = await identity.users.GetMfaPolicy(user_service_pb2.GetMfaPolicyRequest(), metadata=admin)
    assert list(read.required_roles) == [guarded]

    # Without a factor: the role's permissions are held back, self-service stays.
    plain = await identity.login(user.email)
    body = claims(plain.access_token)
    assert body["amr"] == ["pwd"]
    assert body["mfa_perms"] == ["audit_events.list"]
    assert "audit_events.list" not in body["perms"]
    assert guarded not in body["roles"] and "viewer" in body["roles"]
    md = identity.bearer(plain.access_token)
    refused = await _refused(
        identity.identity.ListAuditEvents(
            identity_service_pb2.ListAuditEventsRequest(), metadata=md
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert error_info(refused).reason == "MFA_REQUIRED"
    assert (await me_stub(identity).GetMe(me_service_pb2.GetMeRequest(), metadata=md)).id

    # With a factor, the same role works.
    factor = await enrol(identity, user)
    strong = await login_with_code(identity, user, factor)
    listed = await identity.identity.ListAuditEvents(
        identity_service_pb2.ListAuditEventsRequest(), metadata=identity.bearer(strong.access_token)
    )
    assert listed.audit_events
    assert guarded in claims(strong.access_token)["roles"]
    assert "mfa_perms" not in claims(strong.access_token)


async def _fresh_admin(identity: IdentityHarness) -> Account:
    from cardinsa_identity.application.bootstrap import ensure_user_with_role

    made = await ensure_user_with_role(
        identity.app.ctx,
        email=unique_email("mfa-admin"),
        password=PASSWORD,
        company_id=uuid.uuid4(),
        role_name="company-admin",
    )
    return Account(made.email, PASSWORD, str(made.company_id), str(made.user_id))
