"""Gap-free per-company sequences for policy and claim numbers.

One statement both creates the counter row on first use and increments it,
returning the new value: ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``.
The row stays locked until the transaction ends, so concurrent binds in one
company take numbers one after another (and other companies are unaffected);
a transaction that rolls back gives its number back. Call it as late as
possible in the transaction, after every check that could still fail, to keep
the lock short.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_core.domain.numbering import NumberKind

_NEXT_SQL = (
    "INSERT INTO core.number_counters AS c (company_id, kind, last_value) "
    "VALUES ($1, $2, 1) "
    "ON CONFLICT (company_id, kind) DO UPDATE SET last_value = c.last_value + 1 "
    "RETURNING last_value"
)
_NEXT = text(_NEXT_SQL.replace("$1", ":company_id").replace("$2", ":kind"))


async def next_number(session: AsyncSession, company_id: uuid.UUID, kind: NumberKind) -> int:
    value = (
        await session.execute(_NEXT, {"company_id": company_id, "kind": kind.value})
    ).scalar_one()
    return int(value)


async def take_number(connection: Any, company_id: uuid.UUID, kind: NumberKind) -> int:
    """:func:`next_number` on an asyncpg connection in its transaction (the
    same statement)."""
    return int(await connection.fetchval(_NEXT_SQL, company_id, kind.value))
