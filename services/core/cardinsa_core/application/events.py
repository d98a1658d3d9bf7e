"""What core tells the world: one event per change of a policy, a claim or
its billing, and one per document issued.

The use cases call an :class:`EventSink` inside the unit of work that makes the
change, right where they write the status log or the claim's action log, so
every logged change has its event and the event commits or rolls back with it
(the transactional outbox, :mod:`cardinsa_foundation.outbox`). How a row
becomes the event's payload (the API's own messages) is the sink's business;
the application only says what happened.
"""

from __future__ import annotations

import uuid
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_core.repository.billing import PaymentView
from cardinsa_core.repository.models import ClaimRow, DocumentRow, InvoiceRow, PolicyRow
from cardinsa_foundation.row_batch import SupportsAdd

__all__ = ["EventSink"]


class EventSink(Protocol):
    def policy_changed(
        self, session: SupportsAdd, row: PolicyRow, *, transition: str, from_state: str | None
    ) -> None:
        """Record that ``row`` (as it is now) went through ``transition``."""

    def claim_changed(
        self, session: SupportsAdd, row: ClaimRow, *, action: str, from_state: str | None
    ) -> None:
        """Record that ``row`` (as it is now) went through ``action``."""

    def billing_changed(
        self,
        session: SupportsAdd,
        policy: PolicyRow,
        *,
        transition: str,
        invoice: InvoiceRow | None = None,
        payment: PaymentView | None = None,
    ) -> None:
        """Record an invoice issued, paid or overdue, or a payment recorded."""

    def document_issued(self, session: AsyncSession, row: DocumentRow) -> None:
        """Record that ``row`` was stored: a document issued for the first time."""

    def personal_data_request(
        self, session: SupportsAdd, company_id: uuid.UUID, holder_id: uuid.UUID, transition: str
    ) -> None:
        """Record that a data-subject request (``export_personal_data``,
        ``erase_personal_data``) was carried out for ``holder_id``."""
