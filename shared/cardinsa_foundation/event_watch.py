"""Reading a service's outbox in commit order: the cursor, the batches, the stream.

A ``sequence`` is drawn when a row is inserted, not when its transaction
commits: a transaction that inserted sequence 7 may commit after one that
inserted 8. A reader that remembered "everything up to 8" would skip 7 for
good. So the reader goes by the writing transaction's id (the outbox's ``xid``
column, see :func:`cardinsa_foundation.outbox.outbox_xid_ddl`) below the
**horizon** ``H = pg_snapshot_xmin(pg_current_snapshot())``, the oldest
transaction still running: every row with ``xid < H`` is final (committed, or
rolled back and never visible), so the set of rows in an ``xid`` range below a
horizon never changes afterwards.

A **batch range** is ``lo <= xid < hi``, where ``hi`` was the horizon when the
range was opened; inside it rows are read in ``sequence`` order, a page at a
time after the last sequence sent. When the range is exhausted the next one is
``hi <= xid < H'`` (the horizon now). The cursor is ``(lo, hi, after)``,
encoded opaquely (:class:`WatchCursor`); it holds across restarts and
replicas since everything it names is in the table.

Order: events of one resource are written under that resource's row lock, so
a later event of a resource has a later ``sequence`` and its transaction
commits after the earlier one's -- it lies in the same range (then sequence
orders them) or in a later one. Events of different resources may arrive in
another order than their sequences. Delivery is at least once: a consumer that
resumes from an older cursor gets the events after it again (and de-duplicates
by the event id).

Latency: an event is delivered once every transaction that started before its
own has ended -- a long-running writing transaction anywhere in the database
cluster (transaction ids are cluster-wide) holds the horizon back and delays
delivery (never loses or reorders anything) until it ends. Read-only
transactions have no transaction id and do not hold it back.

Who sees what: a company's callers see their own company's events (the read
runs under their tenant, row-level security applies too); platform callers
(:func:`is_platform_caller`) every company's, or one company's when they name
it, read as the platform role.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from google.protobuf.any_pb2 import Any as AnyMessage
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa.events.v1 import events_pb2
from cardinsa_foundation.context import Principal, PrincipalKind
from cardinsa_foundation.convert import timestamp
from cardinsa_foundation.db import Database
from cardinsa_foundation.errors import FieldViolation, InvalidArgument, PermissionDenied
from cardinsa_foundation.outbox import EVENT_TYPE
from cardinsa_foundation.use_cases import require_principal

__all__ = [
    "WATCH_ALL",
    "EventWatch",
    "EventWatchServicer",
    "WatchCursor",
    "WatchScope",
    "is_platform_caller",
    "row_to_event",
]

#: The platform's permission to watch every company's events (with ``events.watch``,
#: which the contract asks of every caller): platform-only, like
#: ``companies.get_status``, so only keys a platform administrator issues to the
#: platform's own service accounts (the event dispatcher's) carry it.
WATCH_ALL: Final = "events.watch_all"
#: Most events one response carries.
BATCH: Final = 100
#: Most ``types`` a request may name.
MAX_TYPES: Final = 100
_CURSOR_PREFIX: Final = "v1"
_MAX_CURSOR: Final = 200
_DIGITS: Final = re.compile(r"^(0|[1-9][0-9]{0,19})$")
_TYPE_URL_PREFIX: Final = "type.googleapis.com/"
_TABLE: Final = re.compile(r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")


def is_platform_caller(principal: Principal) -> bool:
    """Platform administrators and the platform's own service accounts (one
    without a company, as identity's own token, or one whose key holds
    :data:`WATCH_ALL`, which no company role or key may hold) read every
    company's events; anyone else reads their own company's."""
    if principal.is_platform_admin or principal.has_permission(WATCH_ALL):
        return True
    return principal.kind is PrincipalKind.SERVICE_ACCOUNT and principal.company_id is None


def _bad_cursor(description: str) -> InvalidArgument:
    return InvalidArgument(
        "the cursor is not valid; resume with a cursor this service returned, or start without one",
        field_violations=[FieldViolation("cursor", description)],
    )


@dataclass(frozen=True, slots=True)
class WatchCursor:
    """A position in the outbox: the range ``lo <= xid < hi`` is being read,
    every row of it with ``sequence <= after`` was sent, and every row below
    ``lo`` too."""

    lo: int
    hi: int
    after: int

    def encode(self) -> str:
        raw = f"{_CURSOR_PREFIX}:{self.lo}:{self.hi}:{self.after}".encode("ascii")
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    @classmethod
    def decode(cls, value: str) -> WatchCursor:
        """A cursor from a request; INVALID_ARGUMENT (field ``cursor``) unless it
        is one this reader could have issued (the caller also checks ``hi``
        against the horizon: see :meth:`EventWatch.read`)."""
        if len(value) > _MAX_CURSOR or not value.isascii():
            raise _bad_cursor("not a cursor of this service")
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("ascii")
        except (binascii.Error, ValueError):
            raise _bad_cursor("not a cursor of this service") from None
        parts = raw.split(":")
        if len(parts) != 4 or parts[0] != _CURSOR_PREFIX:
            raise _bad_cursor("not a cursor of this service")
        if not all(_DIGITS.match(p) for p in parts[1:]):
            raise _bad_cursor("not a cursor of this service")
        lo, hi, after = (int(p) for p in parts[1:])
        if lo > hi or max(lo, hi, after) >= 2**63:
            raise _bad_cursor("not a cursor of this service")
        return cls(lo, hi, after)


@dataclass(frozen=True, slots=True)
class WatchScope:
    """Whose events a stream reads: ``company`` (None: every company) and
    ``types`` (empty: every type); ``platform`` reads as the platform role."""

    company: uuid.UUID | None
    types: tuple[str, ...]
    platform: bool

    @classmethod
    def of(cls, principal: Principal, company_id: str, types: Sequence[str]) -> WatchScope:
        """The scope of a request by ``principal``: a company caller may name
        only its own company (another: PERMISSION_DENIED); a malformed
        ``company_id`` or type: INVALID_ARGUMENT."""
        violations: list[FieldViolation] = []
        company: uuid.UUID | None = None
        if company_id:
            try:
                company = uuid.UUID(company_id)
            except ValueError:
                violations.append(FieldViolation("company_id", "must be a UUID"))
        if len(types) > MAX_TYPES:
            violations.append(FieldViolation("types", f"at most {MAX_TYPES} types"))
        else:
            violations += [
                FieldViolation(f"types[{i}]", "not an event type (cardinsa.<service>....v<N>)")
                for i, t in enumerate(types)
                if not EVENT_TYPE.match(t)
            ]
        if violations:
            raise InvalidArgument("the watch request is not valid", field_violations=violations)
        platform = is_platform_caller(principal)
        if not platform:
            if principal.company_id is None:
                raise PermissionDenied("the caller belongs to no company", reason="NO_TENANT")
            own = uuid.UUID(principal.company_id)
            if company is not None and company != own:
                raise PermissionDenied(
                    "a company's callers watch only their own company's events",
                    reason="OTHER_COMPANY",
                    metadata={"company_id": company_id},
                )
            company = own
        return cls(company=company, types=tuple(dict.fromkeys(types)), platform=platform)


def row_to_event(row: Any) -> events_pb2.Event:
    """An outbox row (a mapping with the outbox columns) as the contract's Event."""
    return events_pb2.Event(
        id=str(row["id"]),
        source=row["source"],
        type=row["type"],
        subject=row["subject"],
        time=timestamp(row["time"]),
        company_id=str(row["company_id"]) if row["company_id"] is not None else "",
        ordering_key=row["ordering_key"],
        sequence=int(row["sequence"]),
        data=AnyMessage(type_url=_TYPE_URL_PREFIX + row["data_schema"], value=bytes(row["data"])),
        data_schema=row["data_schema"],
    )


_HORIZON: Final = text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")


class EventWatch:
    """``EventService.WatchEvents`` over one outbox table (``<schema>.<table>``).

    One per server process; :meth:`end_streams` (registered as a drain step)
    ends every open stream promptly so the server can stop.
    """

    def __init__(
        self,
        db: Database,
        table: str,
        *,
        poll_s: float = 0.25,
        heartbeat_s: float = 5.0,
        stream_max_s: float = 300.0,
        batch: int = BATCH,
    ) -> None:
        if not _TABLE.match(table):
            raise ValueError(f"not a table name: {table!r}")
        self._db = db
        self.table = table
        self.poll_s = poll_s
        self.heartbeat_s = heartbeat_s
        self.stream_max_s = stream_max_s
        self.batch = batch
        self._draining = asyncio.Event()

    def end_streams(self) -> None:
        """Let every open stream end now (the server is draining); consumers
        reconnect with their cursor, to another replica."""
        self._draining.set()

    # ------------------------------------------------------------- reading

    async def read(
        self, scope: WatchScope, cursor: WatchCursor | None, limit: int | None = None
    ) -> tuple[list[events_pb2.Event], WatchCursor, bool]:
        """The next events after ``cursor`` (None: from the start), at most
        ``limit``: ``(events, cursor after them, caught up)``; caught up means
        every event final at this read's horizon has now been returned."""
        limit = limit or self.batch
        session_scope = (
            self._db.unit_of_work(company_id=None, cross_tenant=True)
            if scope.platform
            else self._db.unit_of_work(company_id=scope.company)
        )
        async with session_scope as session:
            horizon = await self._horizon(session)
            if cursor is None:
                cursor = WatchCursor(0, horizon, 0)
            elif cursor.hi > horizon:
                # No cursor this service issued lies beyond the horizon, which
                # only grows: reading there would return rows not yet final.
                raise _bad_cursor("not a cursor of this service")
            events = await self._page(session, scope, cursor, limit)
            if events:
                cursor = WatchCursor(cursor.lo, cursor.hi, events[-1].sequence)
            if len(events) == limit:
                return events, cursor, False
            # The range is exhausted: open the next one, up to the horizon now.
            horizon = await self._horizon(session)
            cursor = WatchCursor(cursor.hi, max(horizon, cursor.hi), 0)
            more = await self._page(session, scope, cursor, limit - len(events))
            if more:
                cursor = WatchCursor(cursor.lo, cursor.hi, more[-1].sequence)
            return events + more, cursor, len(more) < limit - len(events)

    @staticmethod
    async def _horizon(session: AsyncSession) -> int:
        return int((await session.execute(_HORIZON)).scalar_one())

    async def _page(
        self, session: AsyncSession, scope: WatchScope, cursor: WatchCursor, limit: int
    ) -> list[events_pb2.Event]:
        if cursor.lo >= cursor.hi:
            return []
        conditions = [
            "xid >= CAST(CAST(:lo AS text) AS xid8)",
            "xid < CAST(CAST(:hi AS text) AS xid8)",
            "sequence > :after",
        ]
        params: dict[str, Any] = {
            "lo": str(cursor.lo),
            "hi": str(cursor.hi),
            "after": cursor.after,
            "limit": limit,
        }
        if scope.company is not None:
            conditions.append("company_id = :company")
            params["company"] = scope.company
        if scope.types:
            conditions.append("type = ANY(CAST(:types AS text[]))")
            params["types"] = list(scope.types)
        statement = text(
            "SELECT id, sequence, company_id, source, type, subject, ordering_key, time, "  # noqa: S608 - a checked table name, constant conditions
            f"data_schema, data FROM {self.table} WHERE {' AND '.join(conditions)} "
            "ORDER BY sequence LIMIT :limit"
        )
        result = await session.execute(statement, params)
        return [row_to_event(row) for row in result.mappings()]

    # ----------------------------------------------------------- streaming

    async def watch(
        self, request: events_pb2.WatchEventsRequest
    ) -> AsyncIterator[events_pb2.WatchEventsResponse]:
        """One consumer's stream: the events after the request's cursor at once
        (the first answer comes without waiting, a heartbeat if there are
        none), then new ones as they become final, read every ``poll_s``; a
        heartbeat (no events, the current cursor, ``caught_up``) when nothing
        was sent for ``heartbeat_s``. Ends after ``stream_max_s`` or when the
        server drains; the consumer reconnects with its last cursor."""
        principal = require_principal()
        scope = WatchScope.of(principal, request.company_id, list(request.types))
        cursor = WatchCursor.decode(request.cursor) if request.cursor else None
        deadline = time.monotonic() + self.stream_max_s
        last_sent: float | None = None
        while True:
            events, cursor, caught_up = await self.read(scope, cursor)
            now = time.monotonic()
            if events or last_sent is None or now - last_sent >= self.heartbeat_s:
                yield events_pb2.WatchEventsResponse(
                    events=events, cursor=cursor.encode(), caught_up=caught_up
                )
                last_sent = time.monotonic()
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._draining.is_set():
                return
            if caught_up:
                try:
                    async with asyncio.timeout(min(self.poll_s, remaining)):
                        await self._draining.wait()
                except TimeoutError:
                    pass


class EventWatchServicer:
    """The body of every service's ``EventService`` servicer: mixed in before
    the generated base class (``class EventServicer(EventWatchServicer,
    event_service_pb2_grpc.EventServiceServicer)``), reading ``watch``."""

    def __init__(self, watch: EventWatch) -> None:
        self.watch = watch

    async def WatchEvents(
        self, request: events_pb2.WatchEventsRequest, context: Any
    ) -> AsyncIterator[events_pb2.WatchEventsResponse]:
        async for response in self.watch.watch(request):
            yield response
