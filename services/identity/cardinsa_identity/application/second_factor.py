"""Checking a second factor inside the caller's transaction (login challenge,
confirmation of an enrolment).

A TOTP code is accepted only for a time-step after the last one accepted, and
that step is recorded in the same transaction under the factor's row lock: two
concurrent logins with one code get in once. A recovery code is marked used
by one UPDATE that only finds it unused.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_foundation.db import Database
from cardinsa_identity.domain.mfa import (
    hash_recovery_code,
    is_well_formed_recovery_code,
    matching_step,
    totp_context,
)
from cardinsa_identity.domain.signing_keys import PrivateKeyCipher
from cardinsa_identity.repository.models import MfaRecoveryCodeRow, UserMfaRow

__all__ = ["accept_recovery_code", "accept_totp_code", "reencrypt_factors", "totp_secret"]


def totp_secret(cipher: PrivateKeyCipher, factor: UserMfaRow) -> str:
    """The factor's secret, decrypted (bound to its user)."""
    return cipher.open_sealed(factor.secret_encrypted, totp_context(factor.user_id)).decode("ascii")


async def reencrypt_factors(
    db: Database,
    cipher: PrivateKeyCipher,
    *,
    batch_size: int = 500,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Rewrite every stored TOTP secret not yet under the cipher's current
    secret (after a rotation of ``signing_key_encryption_key``); the number
    rewritten. One transaction per batch of factors (locked, in user id order),
    so an interrupted run keeps what it did and is simply run again.
    ``progress(checked, rewritten)`` is called after each batch."""
    checked = rewritten = 0
    after: uuid.UUID | None = None
    while True:
        async with db.unit_of_work(company_id=None, cross_tenant=True) as session:
            query = select(UserMfaRow).order_by(UserMfaRow.user_id).limit(batch_size)
            if after is not None:
                query = query.where(UserMfaRow.user_id > after)
            rows = list((await session.scalars(query.with_for_update())).all())
            for row in rows:
                if cipher.needs_reencryption(row.secret_encrypted):
                    context = totp_context(row.user_id)
                    plain = cipher.open_sealed(row.secret_encrypted, context)
                    row.secret_encrypted = cipher.seal(plain, context)
                    rewritten += 1
        if not rows:
            return rewritten
        checked += len(rows)
        after = rows[-1].user_id
        if progress is not None:
            progress(checked, rewritten)


async def accept_totp_code(
    session: AsyncSession,
    cipher: PrivateKeyCipher,
    user_id: uuid.UUID,
    code: str,
    now: datetime,
    *,
    confirmed: bool = True,
) -> bool:
    """Whether ``code`` is a fresh code of the user's factor (confirmed, or the
    pending enrolment with ``confirmed=False``); its step is recorded."""
    factor = await session.get(UserMfaRow, user_id, with_for_update=True, populate_existing=True)
    if factor is None or (factor.confirm_time is not None) != confirmed:
        return False
    step = matching_step(totp_secret(cipher, factor), code, now, factor.last_used_step)
    if step is None:
        return False
    factor.last_used_step = step
    return True


async def accept_recovery_code(
    session: AsyncSession, user_id: uuid.UUID, code: str, now: datetime
) -> bool:
    """Whether ``code`` is an unused recovery code of the user; it is used up."""
    if not is_well_formed_recovery_code(code):
        return False
    result = await session.execute(
        update(MfaRecoveryCodeRow)
        .where(
            MfaRecoveryCodeRow.user_id == user_id,
            MfaRecoveryCodeRow.code_hash == hash_recovery_code(code),
            MfaRecoveryCodeRow.use_time.is_(None),
        )
        .values(use_time=now)
        .returning(MfaRecoveryCodeRow.code_hash)
    )
    return result.first() is not None
