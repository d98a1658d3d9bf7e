"""Queries of users and their sessions."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_foundation.filtering import (
    FieldType,
    FilterField,
    FilterSpec,
    parse_order_by,
    tenant_list_query,
)
from cardinsa_foundation.paging import OrderTerm
from cardinsa_identity.domain.users import UserState
from cardinsa_identity.repository.models import (
    InvitationRow,
    PasswordResetRow,
    SessionRow,
    UserRow,
)

__all__ = [
    "email_taken",
    "find_user",
    "find_user_by_email",
    "list_sessions_query",
    "list_users_query",
    "revoke_open_sessions",
    "use_open_resets",
    "use_reset",
    "void_invitations",
]

USER_FILTER = FilterSpec(
    {
        "email": FilterField(UserRow.email, FieldType.STRING),
        "display_name": FilterField(UserRow.display_name, FieldType.STRING),
        "given_name": FilterField(UserRow.given_name, FieldType.STRING),
        "family_name": FilterField(UserRow.family_name, FieldType.STRING),
        "state": FilterField(UserRow.state, FieldType.ENUM, values=[s.value for s in UserState]),
        "create_time": FilterField(UserRow.create_time, FieldType.TIMESTAMP),
        "last_login_time": FilterField(UserRow.last_login_time, FieldType.TIMESTAMP),
    }
)
USER_ORDER = {
    "create_time": UserRow.create_time,
    "email": UserRow.email,
    "display_name": UserRow.display_name,
    "family_name": UserRow.family_name,
}
DEFAULT_USER_ORDER = [OrderTerm(UserRow.create_time, True)]


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


async def find_user_by_email(session: AsyncSession, email: str) -> UserRow | None:
    return (await session.scalars(select(UserRow).where(UserRow.email == email))).first()


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


def list_users_query(
    company: uuid.UUID, *, filter: str, order_by: str, show_deleted: bool
) -> tuple[Select[UserRow], list[OrderTerm]]:
    """The users of ``company`` that ``filter`` (AIP-160) selects, and their
    order (``order_by``, default newest first); INVALID_ARGUMENT for either one
    malformed."""
    stmt = tenant_list_query(
        UserRow, company, spec=USER_FILTER, filter=filter, show_deleted=show_deleted
    )
    return stmt, parse_order_by(order_by, USER_ORDER, default=DEFAULT_USER_ORDER)


async def revoke_open_sessions(
    session: AsyncSession, user_id: uuid.UUID, now: datetime, reason: str
) -> list[uuid.UUID]:
    """Revoke every open session of a user at ``now``: the ids of those revoked."""
    result = await session.execute(
        update(SessionRow)
        .where(SessionRow.user_id == user_id, SessionRow.revoke_time.is_(None))
        .values(revoke_time=now, revoke_reason=reason)
        .returning(SessionRow.id)
        .execution_options(synchronize_session=False)
    )
    return list(result.scalars())


async def use_open_resets(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> None:
    """Mark every outstanding password-reset token of a user used at ``now``."""
    await session.execute(
        update(PasswordResetRow)
        .where(PasswordResetRow.user_id == user_id, PasswordResetRow.use_time.is_(None))
        .values(use_time=now)
        .execution_options(synchronize_session=False)
    )


async def use_reset(session: AsyncSession, token_hash: str, now: datetime) -> bool:
    """Mark one reset token used; False when it already was (single use, also
    under concurrency: only one UPDATE finds it unused)."""
    claimed = await session.execute(
        update(PasswordResetRow)
        .where(PasswordResetRow.token_hash == token_hash, PasswordResetRow.use_time.is_(None))
        .values(use_time=now)
    )
    return bool(claimed.rowcount)  # type: ignore[attr-defined]


async def void_invitations(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> None:
    """Mark every outstanding invitation token of a user used at ``now``."""
    await session.execute(
        update(InvitationRow)
        .where(InvitationRow.user_id == user_id, InvitationRow.use_time.is_(None))
        .values(use_time=now)
        .execution_options(synchronize_session=False)
    )
