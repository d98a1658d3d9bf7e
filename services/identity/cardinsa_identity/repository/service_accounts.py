"""Queries of service accounts and their API keys, scoped to one company."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_identity.repository.models import ApiKeyRow, ServiceAccountRow

__all__ = [
    "find_api_key",
    "find_api_key_by_prefix",
    "find_service_account",
    "find_service_account_by_name",
    "list_api_keys_query",
    "list_service_accounts_query",
    "revoke_account_keys",
    "service_account_name_taken",
    "usable_key_permissions",
]


async def find_service_account(
    session: AsyncSession, company: uuid.UUID, key: uuid.UUID, *, lock: bool = False
) -> ServiceAccountRow | None:
    stmt = select(ServiceAccountRow).where(
        ServiceAccountRow.id == key, ServiceAccountRow.company_id == company
    )
    if lock:
        stmt = stmt.with_for_update()
    return (await session.scalars(stmt)).first()


async def find_service_account_by_name(
    session: AsyncSession, company: uuid.UUID, name: str
) -> ServiceAccountRow | None:
    """The live service account of ``company`` named ``name``."""
    stmt = select(ServiceAccountRow).where(
        ServiceAccountRow.company_id == company,
        ServiceAccountRow.name == name,
        ServiceAccountRow.delete_time.is_(None),
    )
    return (await session.scalars(stmt)).first()


async def service_account_name_taken(session: AsyncSession, company: uuid.UUID, name: str) -> bool:
    return await find_service_account_by_name(session, company, name) is not None


def list_service_accounts_query(
    company: uuid.UUID, *, show_deleted: bool
) -> Select[ServiceAccountRow]:
    stmt = select(ServiceAccountRow).where(ServiceAccountRow.company_id == company)
    if not show_deleted:
        stmt = stmt.where(ServiceAccountRow.delete_time.is_(None))
    return stmt


async def revoke_account_keys(
    session: AsyncSession, company: uuid.UUID, account_id: uuid.UUID, now: datetime
) -> list[uuid.UUID]:
    """Revoke the account's open keys at ``now``: the ids of the keys revoked."""
    revoked = await session.execute(
        update(ApiKeyRow)
        .where(
            ApiKeyRow.company_id == company,
            ApiKeyRow.service_account_id == account_id,
            ApiKeyRow.revoke_time.is_(None),
        )
        .values(revoke_time=now)
        .returning(ApiKeyRow.id)
        .execution_options(synchronize_session=False)
    )
    return list(revoked.scalars())


async def find_api_key(
    session: AsyncSession,
    company: uuid.UUID,
    account_id: uuid.UUID,
    key: uuid.UUID,
    *,
    lock: bool = False,
) -> ApiKeyRow | None:
    stmt = select(ApiKeyRow).where(
        ApiKeyRow.id == key,
        ApiKeyRow.company_id == company,
        ApiKeyRow.service_account_id == account_id,
    )
    if lock:
        stmt = stmt.with_for_update()
    return (await session.scalars(stmt)).first()


def list_api_keys_query(company: uuid.UUID, account_id: uuid.UUID) -> Select[ApiKeyRow]:
    return select(ApiKeyRow).where(
        ApiKeyRow.company_id == company, ApiKeyRow.service_account_id == account_id
    )


async def usable_key_permissions(
    session: AsyncSession, company: uuid.UUID, account_id: uuid.UUID, now: datetime
) -> Sequence[list[str]]:
    """The permissions of each of the account's keys usable at ``now`` (neither
    revoked nor expired)."""
    held = await session.scalars(
        select(ApiKeyRow.permissions).where(
            ApiKeyRow.company_id == company,
            ApiKeyRow.service_account_id == account_id,
            ApiKeyRow.revoke_time.is_(None),
            or_(ApiKeyRow.expire_time.is_(None), ApiKeyRow.expire_time > now),
        )
    )
    return held.all()


async def find_api_key_by_prefix(session: AsyncSession, prefix: str) -> ApiKeyRow | None:
    """The key with this public prefix, in any company the session sees."""
    return (await session.scalars(select(ApiKeyRow).where(ApiKeyRow.prefix == prefix))).first()
