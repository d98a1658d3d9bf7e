"""Request ids (AIP-155): a retried create or transition happens once.

One table per service (``<schema>.idempotency_keys``, declared with
:class:`IdempotencyMixin`) and one way to use it, :func:`claim_request_id`,
called first thing in the unit of work that acts:

- the key ``(company, method, request id)`` is inserted with
  ``ON CONFLICT DO NOTHING``. The first call inserts it and goes on acting;
- a concurrent duplicate waits on the unique index until the first call's
  transaction ends: when it commits, the duplicate finds the key (a replay);
  when it rolls back, its key goes with it and the duplicate acts itself. A
  failed call therefore leaves no key, and its retry acts;
- a replay answers with the resource the first call acted on, as it is now;
- a replay whose arguments differ from the first call's (the stored
  :func:`request_fingerprint`) is refused, INVALID_ARGUMENT with reason
  ``REQUEST_ID_REUSED``: a client that reuses a request id for another request
  learns it, instead of silently receiving the answer to the first one.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import uuid
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, ClassVar

from google.protobuf.message import Message
from sqlalchemy import TIMESTAMP, Text, func, select
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from cardinsa_foundation.errors import Aborted, FieldViolation, InvalidArgument

__all__ = [
    "REQUEST_ID_REUSED",
    "IdempotencyMixin",
    "RequestIds",
    "claim_request_id",
    "request_fingerprint",
    "request_id_reused",
]

REQUEST_ID_REUSED = "REQUEST_ID_REUSED"


class IdempotencyMixin:
    """The resource a request id acted on, and a fingerprint of the request.

    ``company_id`` is the company the call acted in (row-level security reads
    it); platform-scoped calls use a company of their own choosing (the nil UUID).
    ``request_hash`` is NULL for keys written before fingerprints existed: those
    replays are not compared.
    """

    company_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), primary_key=True)
    method: Mapped[str] = mapped_column(Text, primary_key=True)
    request_id: Mapped[str] = mapped_column(Text, primary_key=True)
    resource_id: Mapped[str] = mapped_column(Text, nullable=False)
    request_hash: Mapped[str | None] = mapped_column(Text, nullable=True)
    create_time: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True), nullable=False, server_default=func.now()
    )
    __mapper_args__: ClassVar[dict[str, Any]] = {"eager_defaults": True}


def _canonical(value: Any) -> Any:
    """A JSON-able form of ``value`` that is equal exactly when the values are."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, enum.Enum):
        return ["enum", type(value).__name__, _canonical(value.value)]
    if isinstance(value, float):
        return ["float", repr(value)]
    if isinstance(value, Decimal):
        # 1.0 and 1.00 are the same amount.
        return ["decimal", format(value.normalize(), "f")]
    if isinstance(value, datetime | date | time):
        return [type(value).__name__, value.isoformat()]
    if isinstance(value, timedelta):
        return ["timedelta", value.total_seconds()]
    if isinstance(value, uuid.UUID):
        return ["uuid", str(value)]
    if isinstance(value, bytes | bytearray | memoryview):
        return ["bytes", bytes(value).hex()]
    if isinstance(value, Message):
        return [value.DESCRIPTOR.full_name, value.SerializeToString(deterministic=True).hex()]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [
            type(value).__name__,
            {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)},
        ]
    if isinstance(value, Mapping):
        return {"map": sorted([str(k), _canonical(v)] for k, v in value.items())}
    if isinstance(value, set | frozenset):
        return {"set": sorted(json.dumps(_canonical(v), sort_keys=True) for v in value)}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    raise TypeError(f"cannot fingerprint a {type(value).__name__}")


def request_fingerprint(*parts: object) -> str:
    """A stable hash of the arguments that define a call (not its request id).

    Dataclasses, protobuf messages, mappings, sequences, sets, enums, dates,
    UUIDs, Decimals and primitives; anything else is a TypeError, so a new
    argument type cannot silently hash to a constant.
    """
    text = json.dumps([_canonical(p) for p in parts], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


async def claim_request_id(
    session: AsyncSession,
    model: type[IdempotencyMixin],
    *,
    company_id: uuid.UUID,
    method: str,
    request_id: str,
    resource_id: str,
    fingerprint: str | None = None,
) -> str | None:
    """None when this call is the first with ``request_id``: act. Otherwise the
    id of the resource the first call acted on: answer with it.

    Call it first in the transaction that acts, so the key and the work commit
    or roll back together.
    """
    table: Any = model
    inserted = await session.scalar(
        insert(table)
        .values(
            company_id=company_id,
            method=method,
            request_id=request_id,
            resource_id=resource_id,
            request_hash=fingerprint,
        )
        .on_conflict_do_nothing()
        .returning(table.request_id)
    )
    if inserted is not None:
        return None
    seen = (
        await session.execute(
            select(table.resource_id, table.request_hash).where(
                table.company_id == company_id,
                table.method == method,
                table.request_id == request_id,
            )
        )
    ).one_or_none()
    if seen is None:  # pragma: no cover - the conflicting row is visible once it committed
        raise Aborted("the request conflicted with a concurrent one; retry it", reason="RETRY")
    if None not in (fingerprint, seen.request_hash) and seen.request_hash != fingerprint:
        raise request_id_reused("this request_id was already used for a different request")
    return str(seen.resource_id)


class RequestIds:
    """A service's request ids, as its use cases claim them: bound once to the
    service's table (``REQUEST_IDS = RequestIds(IdempotencyRow)``)."""

    def __init__(self, model: type[IdempotencyMixin]) -> None:
        self.model = model

    async def claim(
        self,
        session: AsyncSession,
        company_id: uuid.UUID,
        method: str,
        request_id: str,
        resource_id: str,
        *arguments: object,
    ) -> str | None:
        """Claim an optional request id, first thing in the unit of work that acts.

        None: act (no request id, or the first call with it; the key commits or
        rolls back with the work). A string: the id of the resource the first
        call acted on, to answer with. ``arguments`` define the call (never the
        request id, never a secret: their fingerprint is stored); a replay with
        other arguments is INVALID_ARGUMENT ``REQUEST_ID_REUSED``.
        """
        if not request_id:
            return None
        return await claim_request_id(
            session,
            self.model,
            company_id=company_id,
            method=method,
            request_id=request_id,
            resource_id=resource_id,
            fingerprint=request_fingerprint(*arguments),
        )


def request_id_reused(
    message: str = "this request_id was already used for another resource",
) -> InvalidArgument:
    """INVALID_ARGUMENT ``REQUEST_ID_REUSED``: the client must use a new request id."""
    return InvalidArgument(
        message,
        reason=REQUEST_ID_REUSED,
        field_violations=[FieldViolation("request_id", "use a new UUID for a new request")],
    )
