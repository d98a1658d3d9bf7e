"""Request ids (AIP-155): a retried create or transition happens once.

The key ``(company, method, request id)`` is inserted first thing in the
transaction that acts, with ``ON CONFLICT DO NOTHING``. The first call inserts
it and goes on; a concurrent duplicate waits on the unique index until the
first commits (then finds the key: a replay) or rolls back (then inserts it
and acts itself). A failed call leaves no key, so its retry acts. A replay
returns the resource the first call acted on, as it is now.
"""

from __future__ import annotations

import uuid

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_core.repository.models import IdempotencyRow
from cardinsa_foundation.errors import FieldViolation, InvalidArgument

__all__ = ["claim_request_id", "request_id_reused"]


async def claim_request_id(
    session: AsyncSession, company: uuid.UUID, method: str, request_id: str, resource_id: str
) -> str | None:
    """None when this call is the first with ``request_id``; otherwise the id of
    the resource the first call acted on."""
    stmt = (
        insert(IdempotencyRow)
        .values(company_id=company, method=method, request_id=request_id, resource_id=resource_id)
        .on_conflict_do_nothing()
        .returning(IdempotencyRow.resource_id)
    )
    if (await session.execute(stmt)).scalar_one_or_none() is not None:
        return None
    seen = await session.get(IdempotencyRow, (company, method, request_id))
    if seen is None:  # pragma: no cover - the conflicting row committed before we looked
        raise request_id_reused()
    return seen.resource_id


def request_id_reused() -> InvalidArgument:
    return InvalidArgument(
        "this request_id was already used for another resource",
        reason="REQUEST_ID_REUSED",
        field_violations=[FieldViolation("request_id", "use a new UUID for a new request")],
    )
