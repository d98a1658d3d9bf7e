"""Users (standard and lifecycle methods), passwords, tenancy and audit over real gRPC."""

from __future__ import annotations

import asyncio
import logging
import uuid

import grpc
import pytest
from google.protobuf import field_mask_pb2
from support.grpc_errors import error_info, field_violations
from support.identity_harness import PASSWORD, IdentityHarness, unique_email

from cardinsa.identity.v1 import (
    auth_service_pb2,
    identity_service_pb2,
    resources_pb2,
    user_service_pb2,
)


async def test_create_get_list_update_delete_undelete(identity: IdentityHarness) -> None:
    admin = identity.bearer(await identity.token(identity.admin_a))
    email = unique_email("crud")
    created = await identity.users.CreateUser(
        user_service_pb2.CreateUserRequest(
            user=resources_pb2.User(
                email=email, given_name="Ada", family_name="Lovelace", locale="en-GB"
            ),
            password=PASSWORD,
        ),
        metadata=admin,
    )
    assert created.display_name == "Ada Lovelace"
    assert created.state == resources_pb2.User.ACTIVE
    assert created.company_id == identity.admin_a.company_id
    assert "password" not in str(created).lower()

    fetched = await identity.users.GetUser(
        user_service_pb2.GetUserRequest(user_id=created.id), metadata=admin
    )
    assert fetched.email == email

    listed = await identity.users.ListUsers(
        user_service_pb2.ListUsersRequest(filter=f'email = "{email}"'), metadata=admin
    )
    assert [u.id for u in listed.users] == [created.id]

    updated = await identity.users.UpdateUser(
        user_service_pb2.UpdateUserRequest(
            user=resources_pb2.User(id=created.id, given_name="Augusta", etag=created.etag),
            update_mask=field_mask_pb2.FieldMask(paths=["given_name"]),
        ),
        metadata=admin,
    )
    assert updated.given_name == "Augusta"
    assert updated.family_name == "Lovelace"
    assert updated.etag != created.etag

    # A stale etag loses.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.users.UpdateUser(
            user_service_pb2.UpdateUserRequest(
                user=resources_pb2.User(id=created.id, given_name="Stale", etag=created.etag),
                update_mask=field_mask_pb2.FieldMask(paths=["given_name"]),
            ),
            metadata=admin,
        )
    assert caught.value.code() is grpc.StatusCode.ABORTED

    deleted = await identity.users.DeleteUser(
        user_service_pb2.DeleteUserRequest(user_id=created.id), metadata=admin
    )
    assert deleted.HasField("delete_time")
    hidden = await identity.users.ListUsers(
        user_service_pb2.ListUsersRequest(filter=f'email = "{email}"'), metadata=admin
    )
    assert list(hidden.users) == []
    shown = await identity.users.ListUsers(
        user_service_pb2.ListUsersRequest(filter=f'email = "{email}"', show_deleted=True),
        metadata=admin,
    )
    assert [u.id for u in shown.users] == [created.id]
    restored = await identity.users.UndeleteUser(
        user_service_pb2.UndeleteUserRequest(user_id=created.id), metadata=admin
    )
    assert not restored.HasField("delete_time")


async def test_create_user_is_idempotent_by_request_id(identity: IdentityHarness) -> None:
    admin = identity.bearer(await identity.token(identity.admin_a))
    request = user_service_pb2.CreateUserRequest(
        user=resources_pb2.User(email=unique_email("idem")),
        password=PASSWORD,
        request_id=str(uuid.uuid4()),
    )
    first = await identity.users.CreateUser(request, metadata=admin)
    again = await identity.users.CreateUser(request, metadata=admin)
    assert again.id == first.id


async def test_create_user_refuses_a_request_id_reused_for_another_user(
    identity: IdentityHarness,
) -> None:
    """The same request id with other arguments is not a retry: REQUEST_ID_REUSED,
    and no second user is created."""
    admin = identity.bearer(await identity.token(identity.admin_a))
    request_id = str(uuid.uuid4())
    first = await identity.users.CreateUser(
        user_service_pb2.CreateUserRequest(
            user=resources_pb2.User(email=unique_email("reuse")),
            password=PASSWORD,
            request_id=request_id,
        ),
        metadata=admin,
    )
    other_email = unique_email("reuse-other")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.users.CreateUser(
            user_service_pb2.CreateUserRequest(
                user=resources_pb2.User(email=other_email),
                password=PASSWORD,
                request_id=request_id,
            ),
            metadata=admin,
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "REQUEST_ID_REUSED"
    assert "request_id" in field_violations(caught.value)
    listed = await identity.users.ListUsers(
        user_service_pb2.ListUsersRequest(filter=f'email = "{other_email}"'), metadata=admin
    )
    assert list(listed.users) == []
    # The first call's arguments still replay its user.
    again = await identity.users.CreateUser(
        user_service_pb2.CreateUserRequest(
            user=resources_pb2.User(email=first.email),
            password=PASSWORD,
            request_id=request_id,
        ),
        metadata=admin,
    )
    assert again.id == first.id


async def test_duplicate_email_is_already_exists_whatever_the_case(
    identity: IdentityHarness,
) -> None:
    user = await identity.create_user(identity.admin_a)
    admin_b = identity.bearer(await identity.token(identity.admin_b))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.users.CreateUser(
            user_service_pb2.CreateUserRequest(
                user=resources_pb2.User(email=user.email.upper()), password=PASSWORD
            ),
            metadata=admin_b,
        )
    assert caught.value.code() is grpc.StatusCode.ALREADY_EXISTS


async def test_bad_input_gets_field_violations(identity: IdentityHarness) -> None:
    admin = identity.bearer(await identity.token(identity.admin_a))
    email = unique_email("weak")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.users.CreateUser(
            user_service_pb2.CreateUserRequest(
                user=resources_pb2.User(email="not-an-email", phone="12", locale="!!"),
                password="short",
            ),
            metadata=admin,
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    fields = field_violations(caught.value)
    assert {"user.email", "user.phone", "user.locale", "password"} <= set(fields)
    assert "short" not in str(fields)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.users.CreateUser(
            user_service_pb2.CreateUserRequest(
                user=resources_pb2.User(email=email), password="password123456"
            ),
            metadata=admin,
        )
    assert "password" in field_violations(caught.value)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.users.ListUsers(
            user_service_pb2.ListUsersRequest(filter="password = 1"), metadata=admin
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.users.ListUsers(
            user_service_pb2.ListUsersRequest(order_by="password_hash"), metadata=admin
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_company_admin_cannot_see_or_change_another_companys_users(
    identity: IdentityHarness,
) -> None:
    victim = await identity.create_user(identity.admin_b)
    attacker = identity.bearer(await identity.token(identity.admin_a))
    missing = str(uuid.uuid4())

    async def answer(call: object) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call  # type: ignore[misc]
        return caught.value.code(), error_info(caught.value).reason

    for user_id in (victim.user_id, missing):
        assert await answer(
            identity.users.GetUser(
                user_service_pb2.GetUserRequest(user_id=user_id), metadata=attacker
            )
        ) == (grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND")
        assert await answer(
            identity.users.LockUser(
                user_service_pb2.LockUserRequest(user_id=user_id), metadata=attacker
            )
        ) == (grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND")
        assert await answer(
            identity.users.UpdateUser(
                user_service_pb2.UpdateUserRequest(
                    user=resources_pb2.User(id=user_id, given_name="x"),
                    update_mask=field_mask_pb2.FieldMask(paths=["given_name"]),
                ),
                metadata=attacker,
            )
        ) == (grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND")
    listed = await identity.users.ListUsers(
        user_service_pb2.ListUsersRequest(filter=f'email = "{victim.email}"'), metadata=attacker
    )
    assert list(listed.users) == []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.users.ListUsers(
            user_service_pb2.ListUsersRequest(company_id=victim.company_id), metadata=attacker
        )
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    events = await identity.identity.ListAuditEvents(
        identity_service_pb2.ListAuditEventsRequest(page_size=100), metadata=attacker
    )
    assert all(e.company_id == identity.admin_a.company_id for e in events.audit_events)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.identity.ListAuditEvents(
            identity_service_pb2.ListAuditEventsRequest(company_id=victim.company_id),
            metadata=attacker,
        )
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_platform_admin_acts_across_companies(identity: IdentityHarness) -> None:
    victim = await identity.create_user(identity.admin_b)
    root = identity.bearer(await identity.token(identity.platform_admin))
    fetched = await identity.users.GetUser(
        user_service_pb2.GetUserRequest(user_id=victim.user_id), metadata=root
    )
    assert fetched.company_id == identity.admin_b.company_id
    listed = await identity.users.ListUsers(
        user_service_pb2.ListUsersRequest(
            company_id=victim.company_id, filter=f'email = "{victim.email}"'
        ),
        metadata=root,
    )
    assert [u.id for u in listed.users] == [victim.user_id]


async def test_lock_and_deactivate_revoke_sessions_and_block_login(
    identity: IdentityHarness,
) -> None:
    admin = identity.bearer(await identity.token(identity.admin_a))
    for lock, unlock in (("LockUser", "UnlockUser"), ("DeactivateUser", "ReactivateUser")):
        user = await identity.create_user(identity.admin_a)
        pair = await identity.login(user.email)
        request_cls = getattr(user_service_pb2, f"{lock}Request")
        changed = await getattr(identity.users, lock)(
            request_cls(user_id=user.user_id), metadata=admin
        )
        assert changed.state != resources_pb2.User.ACTIVE
        with pytest.raises(grpc.aio.AioRpcError):
            await identity.auth.RefreshToken(
                auth_service_pb2.RefreshTokenRequest(refresh_token=pair.refresh_token)
            )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await identity.login(user.email)
        assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
        # Illegal transition: FAILED_PRECONDITION naming the current state.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await getattr(identity.users, lock)(request_cls(user_id=user.user_id), metadata=admin)
        assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(caught.value).metadata["current_state"]
        back_cls = getattr(user_service_pb2, f"{unlock}Request")
        restored = await getattr(identity.users, unlock)(
            back_cls(user_id=user.user_id), metadata=admin
        )
        assert restored.state == resources_pb2.User.ACTIVE
        assert (await identity.login(user.email)).access_token


async def test_change_password_revokes_every_session(identity: IdentityHarness) -> None:
    user = await identity.create_user(identity.admin_a)
    first = await identity.login(user.email)
    second = await identity.login(user.email)
    new_password = "a much better passphrase 77"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.auth.ChangePassword(
            auth_service_pb2.ChangePasswordRequest(
                current_password="wrong one 123456", new_password=new_password
            ),
            metadata=identity.bearer(first.access_token),
        )
    assert "current_password" in field_violations(caught.value)
    await identity.auth.ChangePassword(
        auth_service_pb2.ChangePasswordRequest(
            current_password=PASSWORD, new_password=new_password
        ),
        metadata=identity.bearer(first.access_token),
    )
    for pair in (first, second):
        with pytest.raises(grpc.aio.AioRpcError):
            await identity.auth.RefreshToken(
                auth_service_pb2.RefreshTokenRequest(refresh_token=pair.refresh_token)
            )
    with pytest.raises(grpc.aio.AioRpcError):
        await identity.login(user.email)
    assert (await identity.login(user.email, new_password)).access_token


async def test_password_reset_flow(
    identity: IdentityHarness, caplog: pytest.LogCaptureFixture
) -> None:
    user = await identity.create_user(identity.admin_a)
    session = await identity.login(user.email)
    with caplog.at_level(logging.DEBUG):
        # Same answer for an existing and an unknown account.
        for email in (user.email, unique_email("nobody")):
            reply = await identity.auth.RequestPasswordReset(
                auth_service_pb2.RequestPasswordResetRequest(email=email)
            )
            assert reply.ByteSize() == 0
        await identity.app.auth.wait_for_background()
    messages = identity.notifier.messages_for(user.email)
    assert len(messages) == 1
    token = messages[0]["token"]
    assert token.startswith("cdp_")
    assert token not in caplog.text, "the reset token reached the log"

    # The token is stored only as a hash.
    from sqlalchemy import select

    from cardinsa_identity.repository.models import PasswordResetRow

    async with identity.app.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as db:
        stored = list((await db.scalars(select(PasswordResetRow.token_hash))).all())
    assert token not in stored

    new_password = "reset passphrase works 99"
    await identity.auth.ConfirmPasswordReset(
        auth_service_pb2.ConfirmPasswordResetRequest(reset_token=token, new_password=new_password)
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # single use
        await identity.auth.ConfirmPasswordReset(
            auth_service_pb2.ConfirmPasswordResetRequest(
                reset_token=token, new_password="another passphrase 55"
            )
        )
    assert error_info(caught.value).reason == "INVALID_RESET_TOKEN"
    with pytest.raises(grpc.aio.AioRpcError):  # sessions revoked
        await identity.auth.RefreshToken(
            auth_service_pb2.RefreshTokenRequest(refresh_token=session.refresh_token)
        )
    assert (await identity.login(user.email, new_password)).access_token
    # A reset token is never an access token.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.users.GetUser(
            user_service_pb2.GetUserRequest(user_id=user.user_id), metadata=identity.bearer(token)
        )
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_sessions_are_listed_and_revoked_by_an_admin(identity: IdentityHarness) -> None:
    user = await identity.create_user(identity.admin_a)
    pair = await identity.login(user.email)
    admin = identity.bearer(await identity.token(identity.admin_a))
    sessions = await identity.users.ListSessions(
        user_service_pb2.ListSessionsRequest(user_id=user.user_id), metadata=admin
    )
    assert [s.id for s in sessions.sessions] == [pair.session_id]
    await identity.users.RevokeSession(
        user_service_pb2.RevokeSessionRequest(user_id=user.user_id, session_id=pair.session_id),
        metadata=admin,
    )
    with pytest.raises(grpc.aio.AioRpcError):
        await identity.auth.RefreshToken(
            auth_service_pb2.RefreshTokenRequest(refresh_token=pair.refresh_token)
        )


async def test_audit_trail_records_the_lifecycle(identity: IdentityHarness) -> None:
    admin_token = await identity.token(identity.admin_a)
    admin = identity.bearer(admin_token)
    user = await identity.create_user(identity.admin_a)
    await identity.users.LockUser(
        user_service_pb2.LockUserRequest(user_id=user.user_id, reason="test"), metadata=admin
    )
    await asyncio.sleep(0)
    events = await identity.identity.ListAuditEvents(
        identity_service_pb2.ListAuditEventsRequest(
            filter=f'entity_id = "{user.user_id}"', page_size=50
        ),
        metadata=admin,
    )
    actions = [e.action for e in events.audit_events]
    assert "user.create" in actions and "user.lock" in actions
    lock = next(e for e in events.audit_events if e.action == "user.lock")
    assert lock.actor_id == identity.admin_a.user_id
    assert lock.request_id
    assert lock.detail["reason"] == "test"


async def test_a_reason_longer_than_the_audit_log_keeps_is_refused(
    identity: IdentityHarness,
) -> None:
    """LockUser/DeactivateUser reasons go into the audit log: beyond 500
    characters the call is refused with a field violation (it used to be cut
    silently), and nothing changes."""
    admin = identity.bearer(await identity.token(identity.admin_a))
    user = await identity.create_user(identity.admin_a)
    for call, request in (
        (identity.users.LockUser, user_service_pb2.LockUserRequest),
        (identity.users.DeactivateUser, user_service_pb2.DeactivateUserRequest),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(request(user_id=user.user_id, reason="r" * 501), metadata=admin)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "reason" in caught.value.details()
    current = await identity.users.GetUser(
        user_service_pb2.GetUserRequest(user_id=user.user_id), metadata=admin
    )
    assert current.state == resources_pb2.User.ACTIVE
    locked = await identity.users.LockUser(
        user_service_pb2.LockUserRequest(user_id=user.user_id, reason="é" * 500), metadata=admin
    )
    assert locked.state == resources_pb2.User.LOCKED
