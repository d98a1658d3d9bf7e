"""What identity keeps in its tables: password hashes and session lifetimes.

The rows are changed and read directly (a cross-tenant unit of work on the
service's own database), and the effect is checked over real gRPC.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import bcrypt
import grpc
import pytest
from sqlalchemy import update
from support.grpc_errors import error_info
from support.identity_harness import PASSWORD, IdentityHarness

from cardinsa.identity.v1 import auth_service_pb2
from cardinsa_identity.domain.passwords import verify_password
from cardinsa_identity.repository.models import SessionRow, UserRow


async def stored_hash(identity: IdentityHarness, user_id: str) -> str:
    async with identity.app.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
        user = await session.get(UserRow, uuid.UUID(user_id), populate_existing=True)
        assert user is not None
        return user.password_hash


async def set_hash(identity: IdentityHarness, user_id: str, password_hash: str) -> None:
    async with identity.app.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
        result = await session.execute(
            update(UserRow)
            .where(UserRow.id == uuid.UUID(user_id))
            .values(password_hash=password_hash)
        )
        assert result.rowcount == 1  # type: ignore[attr-defined]


async def stored_session(identity: IdentityHarness, session_id: str) -> SessionRow:
    async with identity.app.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
        row = await session.get(SessionRow, uuid.UUID(session_id), populate_existing=True)
        assert row is not None
        return row


async def set_session_times(identity: IdentityHarness, session_id: str, **times: datetime) -> None:
    async with identity.app.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
        result = await session.execute(
            update(SessionRow).where(SessionRow.id == uuid.UUID(session_id)).values(**times)
        )
        assert result.rowcount == 1  # type: ignore[attr-defined]


def refresh(identity: IdentityHarness, token: str) -> Awaitable[Any]:
    return identity.auth.RefreshToken(auth_service_pb2.RefreshTokenRequest(refresh_token=token))


# ------------------------------------------------------------------ passwords


async def test_new_passwords_are_stored_as_argon2id(identity: IdentityHarness) -> None:
    user = await identity.create_user(identity.admin_a)
    stored = await stored_hash(identity, user.user_id)
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    ok, rehash = verify_password(PASSWORD, stored)
    assert ok and rehash is None


async def test_a_bcrypt_hash_is_verified_and_rehashed_to_argon2id_at_the_next_login(
    identity: IdentityHarness,
) -> None:
    user = await identity.create_user(identity.admin_a)
    legacy = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    await set_hash(identity, user.user_id, legacy)

    # A wrong password is refused as usual and changes nothing.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.login(user.email, "not the password 1234", client_address="192.0.2.201")
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert error_info(caught.value).reason == "INVALID_CREDENTIALS"
    assert await stored_hash(identity, user.user_id) == legacy

    # The right one logs in, and the stored hash is argon2id from then on.
    assert (await identity.login(user.email)).access_token
    upgraded = await stored_hash(identity, user.user_id)
    assert upgraded.startswith("$argon2id$")
    ok, rehash = verify_password(PASSWORD, upgraded)
    assert ok and rehash is None
    assert not verify_password("not the password 1234", upgraded)[0]

    # The next login verifies against the new hash and leaves it alone.
    assert (await identity.login(user.email)).access_token
    assert await stored_hash(identity, user.user_id) == upgraded


# ------------------------------------------------------------------- sessions


async def test_session_lifetimes_come_from_the_settings(identity: IdentityHarness) -> None:
    user = await identity.create_user(identity.admin_a)
    pair = await identity.login(user.email)
    row = await stored_session(identity, pair.session_id)
    idle = timedelta(seconds=identity.settings.session_idle_ttl_s)
    absolute = timedelta(seconds=identity.settings.session_absolute_ttl_s)
    assert abs(row.idle_expire_time - row.create_time - idle) < timedelta(seconds=5)
    assert abs(row.expire_time - row.create_time - absolute) < timedelta(seconds=5)
    assert abs(pair.refresh_token_expire_time.ToDatetime(UTC) - row.expire_time) < timedelta(
        milliseconds=1
    )

    # A refresh moves the idle deadline, but never past the absolute one.
    await set_session_times(
        identity, pair.session_id, expire_time=datetime.now(UTC) + timedelta(minutes=2)
    )
    second = await refresh(identity, pair.refresh_token)
    row = await stored_session(identity, pair.session_id)
    assert row.idle_expire_time == row.expire_time
    assert second.session_id == pair.session_id


@pytest.mark.parametrize("deadline", ["idle_expire_time", "expire_time"])
async def test_an_expired_session_can_no_longer_refresh(
    identity: IdentityHarness, deadline: str
) -> None:
    user = await identity.create_user(identity.admin_a)
    expiring = await identity.login(user.email)
    other = await identity.login(user.email)
    rotated = await refresh(identity, expiring.refresh_token)  # it works before

    await set_session_times(
        identity, expiring.session_id, **{deadline: datetime.now(UTC) - timedelta(seconds=1)}
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await refresh(identity, rotated.refresh_token)
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert error_info(caught.value).reason == "INVALID_REFRESH_TOKEN"

    # Only that session ended: the user's other session still refreshes.
    assert (await refresh(identity, other.refresh_token)).session_id == other.session_id
