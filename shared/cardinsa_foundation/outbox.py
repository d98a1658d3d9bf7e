"""The transactional outbox: events written in the same transaction as the change.

Each service declares its outbox table from :class:`OutboxMixin` and writes to
it only through :class:`Outbox`, inside the unit of work that makes the change:
the event commits with the change or disappears with its rollback, so nothing
is published that was rolled back and nothing committed is lost. Delivery
(webhooks, a gRPC watch, a broker) reads the table afterwards; it never decides
what happened.

An event carries the CloudEvents attributes -- ``id``, ``source`` (the service),
``type`` (``cardinsa.<service>.<resource>.<what happened>.v1``), ``subject``
(``<collection>/<id>``), ``time`` -- plus the company it belongs to, an
ordering key (the resource: events of one resource are written under its row
lock, so their ``sequence`` is their order) and the payload: a protobuf message
defined in ``protos/`` (its full name in ``data_schema``, its bytes in
``data``), so the contract covers events as it covers RPCs.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Final, Generic, TypeVar

from google.protobuf.message import Message
from sqlalchemy import TIMESTAMP, BigInteger, Identity, Index, LargeBinary, Text, func
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from cardinsa_foundation.context import current_company_id
from cardinsa_foundation.row_batch import SupportsAdd

__all__ = [
    "EVENT_TYPE",
    "Outbox",
    "OutboxMixin",
    "event_type",
    "outbox_table_ddl",
    "outbox_xid_ddl",
]

#: ``cardinsa.<service>.<resource>.<occurrence>.v<N>``, lower snake case parts.
EVENT_TYPE: Final = re.compile(r"^cardinsa(\.[a-z][a-z0-9_]*){3}\.v[1-9][0-9]*$")


def event_type(service: str, resource: str, occurrence: str, version: int = 1) -> str:
    """The event type name, checked against :data:`EVENT_TYPE`."""
    name = f"cardinsa.{service}.{resource}.{occurrence}.v{version}"
    if not EVENT_TYPE.match(name):
        raise ValueError(f"not an event type: {name!r}")
    return name


class OutboxMixin:
    """Columns of a service's outbox table (``__tablename__`` is the service's)."""

    id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), primary_key=True)
    #: Monotonic per table: the order events were written (per ordering key,
    #: the order of the changes, which hold the resource's row lock).
    sequence: Mapped[int] = mapped_column(BigInteger, Identity(always=True), nullable=False)
    company_id: Mapped[uuid.UUID | None] = mapped_column(PG_UUID(as_uuid=True))
    source: Mapped[str] = mapped_column(Text, nullable=False)
    type: Mapped[str] = mapped_column(Text, nullable=False)
    subject: Mapped[str] = mapped_column(Text, nullable=False)
    ordering_key: Mapped[str] = mapped_column(Text, nullable=False)
    time: Mapped[datetime] = mapped_column(TIMESTAMP(timezone=True), nullable=False)
    #: Full name of the payload message (``cardinsa.events.v1.PolicyChanged``).
    data_schema: Mapped[str] = mapped_column(Text, nullable=False)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    create_time: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True), nullable=False, server_default=func.now()
    )

    @declared_attr.directive
    @classmethod
    def __table_args__(cls) -> tuple[Index, ...]:
        return (
            Index(None, "sequence", unique=True),
            Index(None, "company_id", "sequence"),
        )


def outbox_xid_ddl(schema: str, table: str = "outbox_events") -> list[str]:
    """Add ``xid`` to an outbox table: the writing transaction's id
    (``pg_current_xact_id()``, set by the database, never by the ORM).

    Readers use it as their horizon: every row whose ``xid`` is below the oldest
    transaction still running (``pg_snapshot_xmin(pg_current_snapshot())``)
    is final -- committed or gone for good -- so a reader that takes rows by
    ``xid`` ranges below that horizon never skips an event that commits late,
    which a reader taking rows by ``sequence`` alone would (a sequence number
    is drawn at insert, not at commit).
    """
    return [
        f"ALTER TABLE {schema}.{table} ADD COLUMN IF NOT EXISTS xid xid8 NOT NULL "
        "DEFAULT pg_current_xact_id()",
        f"CREATE INDEX IF NOT EXISTS ix_{table}_xid_sequence ON {schema}.{table} (xid, sequence)",
        f"CREATE INDEX IF NOT EXISTS ix_{table}_company_id_xid ON {schema}.{table} "
        "(company_id, xid)",
    ]


def outbox_table_ddl(schema: str, table: str = "outbox_events") -> list[str]:
    """The SQL that creates a service's outbox table (the columns of
    :class:`OutboxMixin` plus ``xid``, see :func:`outbox_xid_ddl`); the
    migration then lists it among its tenant and append-only tables."""
    return [
        f"""CREATE TABLE {schema}.{table} (
            id uuid NOT NULL,
            sequence bigint GENERATED ALWAYS AS IDENTITY,
            company_id uuid,
            source text NOT NULL,
            type text NOT NULL,
            subject text NOT NULL,
            ordering_key text NOT NULL,
            time timestamptz NOT NULL,
            data_schema text NOT NULL,
            data bytea NOT NULL,
            create_time timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_{table} PRIMARY KEY (id)
        )""",
        f"CREATE UNIQUE INDEX ix_{table}_sequence ON {schema}.{table} (sequence)",
        f"CREATE INDEX ix_{table}_company_id_sequence ON {schema}.{table} (company_id, sequence)",
        *outbox_xid_ddl(schema, table),
    ]


OutboxRowT = TypeVar("OutboxRowT", bound=OutboxMixin)


class Outbox(Generic[OutboxRowT]):
    """The one way to write a service's outbox: ``Outbox(CoreOutboxRow, "core")``."""

    def __init__(self, model: type[OutboxRowT], source: str) -> None:
        self.model = model
        self.source = source

    def add(
        self,
        session: SupportsAdd,
        *,
        type: str,
        subject: str,
        payload: Message,
        ordering_key: str | None = None,
        company_id: str | uuid.UUID | None = None,
        time: datetime | None = None,
    ) -> OutboxRowT:
        """Add an event to ``session``: it commits or rolls back with the change.

        ``company_id`` defaults to the caller's company; ``ordering_key`` to the
        subject.
        """
        if not EVENT_TYPE.match(type):
            raise ValueError(f"not an event type: {type!r}")
        company = company_id if company_id is not None else current_company_id()
        row = self.model()
        row.id = uuid.uuid4()
        row.company_id = uuid.UUID(str(company)) if company else None
        row.source = self.source
        row.type = type
        row.subject = subject
        row.ordering_key = ordering_key or subject
        row.time = time or datetime.now(UTC)
        row.data_schema = payload.DESCRIPTOR.full_name
        row.data = payload.SerializeToString(deterministic=True)
        session.add(row)
        return row
