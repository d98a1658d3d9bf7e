"""What a login writes, row by row, and what it refuses to write when the account
changes while its password is being checked.

Login sends each of its two transactions as one statement (login_store), so the
rows are read back directly here (a cross-tenant unit of work on the service's
own database) rather than trusted from the answer.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import bcrypt
import grpc
import pytest
from sqlalchemy import select, update
from support.grpc_errors import error_info
from support.identity_harness import PASSWORD, IdentityHarness

from cardinsa.identity.v1 import auth_service_pb2
from cardinsa_identity.domain.passwords import hash_password
from cardinsa_identity.domain.tokens import hash_opaque_token
from cardinsa_identity.repository.models import (
    AuditEventRow,
    LoginThrottleRow,
    RefreshTokenRow,
    SessionRow,
    UserRow,
)

WRONG = "wrong password 123456"


async def _rows(identity: IdentityHarness, stmt: Any) -> list[Any]:
    async with identity.app.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
        return list((await session.scalars(stmt)).all())


async def _user(identity: IdentityHarness, user_id: str) -> UserRow:
    user: UserRow
    (user,) = await _rows(
        identity,
        select(UserRow)
        .where(UserRow.id == uuid.UUID(user_id))
        .execution_options(populate_existing=True),
    )
    return user


async def _set_user(identity: IdentityHarness, user_id: str, **values: Any) -> None:
    async with identity.app.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
        await session.execute(
            update(UserRow).where(UserRow.id == uuid.UUID(user_id)).values(**values)
        )


async def _events(identity: IdentityHarness, action: str, user_id: str) -> list[AuditEventRow]:
    return await _rows(
        identity,
        select(AuditEventRow).where(
            AuditEventRow.action == action, AuditEventRow.entity_id == user_id
        ),
    )


async def _sessions(identity: IdentityHarness, user_id: str) -> list[SessionRow]:
    return await _rows(identity, select(SessionRow).where(SessionRow.user_id == uuid.UUID(user_id)))


async def test_a_login_writes_its_session_refresh_token_user_and_audit_rows(
    identity: IdentityHarness,
) -> None:
    user = await identity.create_user(identity.admin_a)
    before = await _user(identity, user.user_id)
    with pytest.raises(grpc.aio.AioRpcError):
        await identity.login(user.email, WRONG, client_address="203.0.113.70")
    assert await _rows(identity, select(LoginThrottleRow).where(LoginThrottleRow.key == user.email))

    pair = await identity.auth.Login(
        auth_service_pb2.LoginRequest(email=user.email, password=PASSWORD),
        metadata=[*identity.from_address("203.0.113.71"), ("x-request-id", "login-rows-1")],
    )

    (session,) = await _sessions(identity, user.user_id)
    assert str(session.id) == pair.session_id
    assert str(session.company_id) == user.company_id
    assert session.client_address == "203.0.113.71"
    assert session.revoke_time is None
    assert session.last_use_time < session.idle_expire_time < session.expire_time
    (token,) = await _rows(
        identity, select(RefreshTokenRow).where(RefreshTokenRow.session_id == session.id)
    )
    assert token.token_hash == hash_opaque_token(pair.refresh_token)
    assert str(token.company_id) == user.company_id
    assert token.use_time is None

    after = await _user(identity, user.user_id)
    assert after.last_login_time is not None and after.last_login_time >= session.last_use_time
    assert after.version == before.version + 1
    assert str(after.updated_by) == user.user_id
    assert after.update_time > before.update_time
    assert after.password_hash == before.password_hash
    # The account's failure counter is gone (the address's stays).
    assert not await _rows(
        identity, select(LoginThrottleRow).where(LoginThrottleRow.key == user.email)
    )

    (event,) = await _events(identity, "login.succeeded", user.user_id)
    assert event.entity_type == "user"
    assert event.actor_id == user.user_id
    assert event.on_behalf_of_id is None
    assert str(event.company_id) == user.company_id
    assert event.request_id == "login-rows-1"
    assert event.changed_fields == []
    assert event.detail == {
        "session_id": pair.session_id,
        "client_address": "203.0.113.71",
        "amr": ["pwd"],
    }


async def test_a_lockout_is_audited_with_the_account_and_its_company(
    identity: IdentityHarness,
) -> None:
    user = await identity.create_user(identity.admin_a)
    limit = identity.settings.login_max_failures_per_account
    for i in range(limit + 1):
        with pytest.raises(grpc.aio.AioRpcError):
            await identity.login(user.email, WRONG, client_address=f"198.51.100.{150 + i}")
    (event,) = await _events(identity, "login.lockout", user.user_id)
    assert event.entity_type == "user"
    assert str(event.company_id) == user.company_id
    assert event.actor_id is None
    assert event.detail["scope"] == "account"
    assert len(await _events(identity, "login.failed", user.user_id)) == limit
    (throttle,) = await _rows(
        identity, select(LoginThrottleRow).where(LoginThrottleRow.key == user.email)
    )
    assert throttle.locked_until is not None and throttle.lock_count == 1


@pytest.mark.parametrize("state", ["DEACTIVATED", "LOCKED", "deleted"])
async def test_an_account_changed_while_its_password_is_checked_does_not_log_in(
    identity: IdentityHarness, monkeypatch: pytest.MonkeyPatch, state: str
) -> None:
    user = await identity.create_user(identity.admin_a)
    hasher = identity.app.ctx.hasher
    verify = hasher.verify_password_async

    async def verify_then_change(password: str, stored: str) -> tuple[bool, str | None]:
        result: tuple[bool, str | None] = await verify(password, stored)
        if state == "deleted":
            await _set_user(identity, user.user_id, delete_time=datetime.now(UTC))
        else:
            await _set_user(identity, user.user_id, state=state)
        return result

    monkeypatch.setattr(hasher, "verify_password_async", verify_then_change)
    before = await _user(identity, user.user_id)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.login(user.email, client_address="203.0.113.80")
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert error_info(caught.value).reason == "INVALID_CREDENTIALS"

    # Nothing of a login was written.
    assert await _sessions(identity, user.user_id) == []
    assert await _events(identity, "login.succeeded", user.user_id) == []
    after = await _user(identity, user.user_id)
    assert after.last_login_time is None
    assert after.version == before.version


async def test_an_upgraded_hash_never_overwrites_a_password_changed_meanwhile(
    identity: IdentityHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await identity.create_user(identity.admin_a)
    legacy = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    await _set_user(identity, user.user_id, password_hash=legacy)
    changed = hash_password("a brand new password 987")
    hasher = identity.app.ctx.hasher
    verify = hasher.verify_password_async

    async def verify_then_change(password: str, stored: str) -> tuple[bool, str | None]:
        ok, new_hash = await verify(password, stored)
        assert ok and new_hash is not None  # the login would upgrade the bcrypt hash
        await _set_user(identity, user.user_id, password_hash=changed)
        return ok, new_hash

    monkeypatch.setattr(hasher, "verify_password_async", verify_then_change)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.login(user.email, client_address="203.0.113.90")
    assert error_info(caught.value).reason == "INVALID_CREDENTIALS"
    assert (await _user(identity, user.user_id)).password_hash == changed


async def test_a_password_changed_while_the_old_one_is_checked_opens_no_session(
    identity: IdentityHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The change revoked every session; a login that checked the old password
    just before it must not open a new one (it would outlive the change)."""
    user = await identity.create_user(identity.admin_a)
    changed = hash_password("a brand new password 987")
    hasher = identity.app.ctx.hasher
    verify = hasher.verify_password_async

    async def verify_then_change(password: str, stored: str) -> tuple[bool, str | None]:
        result: tuple[bool, str | None] = await verify(password, stored)
        assert result[0]  # the old password was right when it was checked
        await _set_user(identity, user.user_id, password_hash=changed)
        return result

    monkeypatch.setattr(hasher, "verify_password_async", verify_then_change)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.login(user.email, client_address="203.0.113.91")
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert error_info(caught.value).reason == "INVALID_CREDENTIALS"
    assert await _sessions(identity, user.user_id) == []
    assert await _events(identity, "login.succeeded", user.user_id) == []


async def test_a_password_change_never_overwrites_a_password_reset_meanwhile(
    identity: IdentityHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ChangePassword checks the current password outside any transaction: a reset
    (by the owner, after a theft) that lands meanwhile must not be overwritten by
    whoever knew the old password."""
    user = await identity.create_user(identity.admin_a)
    token = (await identity.login(user.email, client_address="203.0.113.92")).access_token
    reset = hash_password("the owner's reset passphrase 31")
    hasher = identity.app.ctx.hasher
    verify = hasher.verify_password_async

    async def verify_then_reset(password: str, stored: str) -> tuple[bool, str | None]:
        result: tuple[bool, str | None] = await verify(password, stored)
        assert result[0]
        await _set_user(identity, user.user_id, password_hash=reset)
        return result

    monkeypatch.setattr(hasher, "verify_password_async", verify_then_reset)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.auth.ChangePassword(
            auth_service_pb2.ChangePasswordRequest(
                current_password=PASSWORD, new_password="the thief's passphrase 4711"
            ),
            metadata=identity.bearer(token),
        )
    assert error_info(caught.value).reason == "WRONG_CURRENT_PASSWORD"
    assert (await _user(identity, user.user_id)).password_hash == reset
