"""What the company service tells the world: one event per change of a company.

The use cases call a :class:`CompanyEventSink` inside the unit of work that
makes the change, next to its audit record, with the company's row locked:
the event commits or rolls back with the change (the transactional outbox,
:mod:`cardinsa_foundation.outbox`), and a company's events are in the order of
its changes. The payload is the API's ``Company`` (no secret is part of it).

Changes: ``created``, ``updated``, ``suspended``, ``reactivated``, ``closed``,
``deleted``, ``undeleted``.
"""

from __future__ import annotations

from typing import Final, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_company.domain.lifecycle import CompanyTransition
from cardinsa_company.repository.models import CompanyRow

__all__ = ["TRANSITION_CHANGES", "CompanyEventSink"]

#: A lifecycle transition → the event's change.
TRANSITION_CHANGES: Final = {
    CompanyTransition.SUSPEND: "suspended",
    CompanyTransition.REACTIVATE: "reactivated",
    CompanyTransition.CLOSE: "closed",
}


class CompanyEventSink(Protocol):
    def company_changed(
        self, session: AsyncSession, row: CompanyRow, *, change: str, from_state: str | None
    ) -> None:
        """Record that ``row`` (as it is now) went through ``change``;
        ``from_state``: its state before (None: new)."""
