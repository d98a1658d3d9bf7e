"""The company service's events as the API's messages, written to its outbox."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa.company.v1 import events_pb2
from cardinsa_company.handlers.convert import company_to_proto
from cardinsa_company.repository.models import CompanyOutboxRow, CompanyRow
from cardinsa_foundation.outbox import Outbox, event_type

__all__ = ["OutboxEvents", "company_events"]

#: The CloudEvents ``source`` of every company event.
SOURCE = "company"


class OutboxEvents:
    """:class:`cardinsa_company.application.events.CompanyEventSink` on company's outbox."""

    def __init__(self, outbox: Outbox[CompanyOutboxRow]) -> None:
        self.outbox = outbox

    def company_changed(
        self, session: AsyncSession, row: CompanyRow, *, change: str, from_state: str | None
    ) -> None:
        payload = events_pb2.CompanyEvent(
            company=company_to_proto(row), change=change, from_state=from_state
        )
        self.outbox.add(
            session,
            type=event_type("company", "company", change),
            subject=f"companies/{row.id}",
            payload=payload,
            company_id=row.id,
        )


def company_events() -> OutboxEvents:
    """The event sink the company service's use cases write through."""
    return OutboxEvents(Outbox(CompanyOutboxRow, SOURCE))
