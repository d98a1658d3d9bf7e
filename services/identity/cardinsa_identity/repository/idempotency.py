"""Identity's request ids (AIP-155): the foundation's insert-first claim on
identity's ``idempotency_keys`` table."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_foundation.idempotency import claim_request_id, request_fingerprint
from cardinsa_identity.repository.models import IdempotencyRow

__all__ = ["PLATFORM", "claim"]

#: The company of platform-wide operations' request ids (the nil UUID).
PLATFORM = uuid.UUID(int=0)


async def claim(
    session: AsyncSession,
    company: uuid.UUID,
    method: str,
    request_id: str,
    resource_id: str,
    *arguments: object,
) -> str | None:
    """Claim an optional request id, first thing in the unit of work that acts.

    None: act (no request id, or the first call with it; the key commits or
    rolls back with the work). A string: the id of the resource the first call
    acted on, to answer with. ``arguments`` define the call (never a secret: the
    fingerprint is stored); a replay with different ones is INVALID_ARGUMENT
    ``REQUEST_ID_REUSED``.
    """
    if not request_id:
        return None
    return await claim_request_id(
        session,
        IdempotencyRow,
        company_id=company,
        method=method,
        request_id=request_id,
        resource_id=resource_id,
        fingerprint=request_fingerprint(*arguments),
    )
