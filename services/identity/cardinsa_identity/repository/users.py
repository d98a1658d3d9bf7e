"""Queries of users and their sessions."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_identity.repository.models import SessionRow, UserRow

__all__ = ["email_taken", "find_user", "list_sessions_query"]


async def find_user(
    session: AsyncSession, company: uuid.UUID | None, key: uuid.UUID, *, lock: bool = False
) -> UserRow | None:
    """A user by id, in ``company`` (None: in any company the session sees)."""
    stmt = select(UserRow).where(UserRow.id == key)
    if company is not None:
        stmt = stmt.where(UserRow.company_id == company)
    if lock:
        stmt = stmt.with_for_update()
    return (await session.scalars(stmt)).first()


async def email_taken(session: AsyncSession, email: str) -> bool:
    found = await session.scalar(select(UserRow.id).where(UserRow.email == email).limit(1))
    return found is not None


def list_sessions_query(
    user_id: uuid.UUID, *, show_revoked: bool, now: datetime
) -> Select[SessionRow]:
    """The sessions of a user; without ``show_revoked``, those still usable at ``now``."""
    stmt = select(SessionRow).where(SessionRow.user_id == user_id)
    if not show_revoked:
        stmt = stmt.where(SessionRow.revoke_time.is_(None), SessionRow.expire_time > now)
    return stmt
