"""Core's events as the API's messages, written to core's outbox."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa.core.v1 import events_pb2
from cardinsa_core.handlers.convert import (
    billing_payment_to_proto,
    claim_to_proto,
    document_to_proto,
    enum_out,
    invoice_to_proto,
    policy_to_proto,
    to_date,
)
from cardinsa_core.repository.billing import PaymentView
from cardinsa_core.repository.models import (
    ClaimRow,
    CoreOutboxRow,
    DocumentRow,
    InvoiceRow,
    PolicyRow,
)
from cardinsa_foundation.outbox import Outbox, event_type
from cardinsa_foundation.row_batch import SupportsAdd

__all__ = ["OutboxEvents", "core_events"]

#: The CloudEvents ``source`` of every core event.
SOURCE = "core"


class OutboxEvents:
    """:class:`cardinsa_core.application.events.EventSink` on core's outbox table."""

    def __init__(self, outbox: Outbox[CoreOutboxRow]) -> None:
        self.outbox = outbox

    def policy_changed(
        self, session: SupportsAdd, row: PolicyRow, *, transition: str, from_state: str | None
    ) -> None:
        payload = events_pb2.PolicyEvent(
            policy=policy_to_proto(row), transition=transition, from_state=enum_out(from_state)
        )
        self.outbox.add(
            session,
            type=event_type("core", "policy", _occurrence(transition)),
            subject=f"policies/{row.id}",
            payload=payload,
            company_id=row.company_id,
        )

    def claim_changed(
        self, session: SupportsAdd, row: ClaimRow, *, action: str, from_state: str | None
    ) -> None:
        payload = events_pb2.ClaimEvent(
            claim=claim_to_proto(row), transition=action, from_state=enum_out(from_state)
        )
        self.outbox.add(
            session,
            type=event_type("core", "claim", _occurrence(action)),
            subject=f"claims/{row.id}",
            payload=payload,
            company_id=row.company_id,
        )

    def billing_changed(
        self,
        session: SupportsAdd,
        policy: PolicyRow,
        *,
        transition: str,
        invoice: InvoiceRow | None = None,
        payment: PaymentView | None = None,
    ) -> None:
        payload = events_pb2.BillingEvent(
            transition=transition,
            invoice=invoice_to_proto(invoice) if invoice is not None else None,
            payment=billing_payment_to_proto(payment) if payment is not None else None,
            paid_to_date=to_date(policy.paid_to_date),
        )
        self.outbox.add(
            session,
            type=event_type("core", "billing", _occurrence(transition)),
            subject=f"policies/{policy.id}",
            payload=payload,
            company_id=policy.company_id,
        )

    def document_issued(self, session: AsyncSession, row: DocumentRow) -> None:
        payload = events_pb2.DocumentEvent(document=document_to_proto(row), transition="issue")
        self.outbox.add(
            session,
            type=event_type("core", "document", "issue"),
            subject=f"documents/{row.id}",
            payload=payload,
            company_id=row.company_id,
        )

    def personal_data_request(
        self, session: SupportsAdd, company_id: uuid.UUID, holder_id: uuid.UUID, transition: str
    ) -> None:
        payload = events_pb2.PolicyholderDataEvent(
            policyholder_id=str(holder_id), transition=transition
        )
        self.outbox.add(
            session,
            type=event_type("core", "policyholder", transition),
            subject=f"policyholders/{holder_id}",
            payload=payload,
            company_id=company_id,
        )


def _occurrence(name: str) -> str:
    """A log's action as an event type part: ``payment.create`` → ``payment_create``."""
    return name.replace(".", "_").replace("-", "_").lower()


def core_events() -> OutboxEvents:
    """The event sink every core process (server, scheduler) writes through."""
    return OutboxEvents(Outbox(CoreOutboxRow, SOURCE))
