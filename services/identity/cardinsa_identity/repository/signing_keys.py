"""Signing-key rows: the lock that serialises rotations, the queries, and the
row -> domain mapping the rotation plan works on."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_identity.domain.signing_keys import SigningKeyRecord, SigningKeyState
from cardinsa_identity.repository.models import SigningKeyRow

__all__ = ["all_signing_keys", "lock_signing_keys", "signing_key_record"]

_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('cardinsa.identity.signing_keys'))")


def signing_key_record(row: SigningKeyRow) -> SigningKeyRecord:
    return SigningKeyRecord(
        kid=row.kid,
        state=SigningKeyState(row.state),
        create_time=row.create_time,
        activate_time=row.activate_time,
        retire_time=row.retire_time,
    )


async def lock_signing_keys(session: AsyncSession) -> None:
    """Serialise rotations: held until the transaction ends."""
    await session.execute(_LOCK)


async def all_signing_keys(
    session: AsyncSession, *, newest_first: bool = False
) -> Sequence[SigningKeyRow]:
    stmt = select(SigningKeyRow)
    if newest_first:
        stmt = stmt.order_by(SigningKeyRow.create_time.desc())
    return (await session.scalars(stmt)).all()
