"""Checking a second factor inside the caller's transaction (login challenge,
confirmation of an enrolment).

A TOTP code is accepted only for a time-step after the last one accepted, and
that step is recorded in the same transaction under the factor's row lock: two
concurrent logins with one code get in once. A recovery code is marked used
by one UPDATE that only finds it unused.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_identity.domain.mfa import (
    hash_recovery_code,
    is_well_formed_recovery_code,
    matching_step,
    totp_context,
)
from cardinsa_identity.domain.signing_keys import PrivateKeyCipher
from cardinsa_identity.repository.models import MfaRecoveryCodeRow, UserMfaRow

__all__ = ["accept_recovery_code", "accept_totp_code", "totp_secret"]


def totp_secret(cipher: PrivateKeyCipher, factor: UserMfaRow) -> str:
    """The factor's secret, decrypted (bound to its user)."""
    return cipher.open_sealed(factor.secret_encrypted, totp_context(factor.user_id)).decode("ascii")


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
