"""Invoices, payments and allocations in the database.

A policy's billing rows change only under the policy's row lock (a premium
transaction holds it through the policy transition, a payment takes it
itself), so two payments on one policy queue and the second sees what the
first allocated. :func:`ledger_of` turns the rows into the domain's
:class:`~cardinsa_core.domain.billing.Ledger`; :func:`apply_allocations` writes
back what it settled.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_core.domain.billing import (
    Allocation,
    InvoiceKind,
    InvoiceState,
    Ledger,
    OpenInvoice,
    Source,
)
from cardinsa_core.domain.money import Money
from cardinsa_core.repository.models import (
    InvoiceRow,
    PaymentAllocationRow,
    PaymentRow,
    PolicyRow,
)
from cardinsa_core.repository.rows import children
from cardinsa_foundation.use_cases import lookup_uuid, not_found

__all__ = [
    "Books",
    "PaymentView",
    "allocations_of",
    "apply_allocations",
    "books_of",
    "find_invoice",
    "invoices",
    "invoices_of",
    "ledger_of",
    "open_item",
    "payment_by_request",
    "payments",
    "payments_of",
]


@dataclass(frozen=True, slots=True)
class PaymentView:
    """A payment with its allocations (and the numbers of the invoices they settle)."""

    row: PaymentRow
    allocations: list[tuple[PaymentAllocationRow, str]]


def invoices(company: uuid.UUID, policy_id: uuid.UUID) -> Select[InvoiceRow]:
    return children(InvoiceRow, company, InvoiceRow.policy_id, policy_id)


def payments(company: uuid.UUID, policy_id: uuid.UUID) -> Select[PaymentRow]:
    return children(PaymentRow, company, PaymentRow.policy_id, policy_id)


async def invoices_of(session: AsyncSession, row: PolicyRow) -> list[InvoiceRow]:
    """The policy's invoices in the order issued."""
    found = await session.scalars(invoices(row.company_id, row.id).order_by(InvoiceRow.sequence))
    return list(found)


async def payments_of(session: AsyncSession, row: PolicyRow) -> list[PaymentRow]:
    found = await session.scalars(
        payments(row.company_id, row.id).order_by(PaymentRow.create_time, PaymentRow.id)
    )
    return list(found)


async def find_invoice(
    session: AsyncSession, company: uuid.UUID, policy_id: uuid.UUID, invoice_id: str
) -> InvoiceRow:
    key = lookup_uuid(invoice_id)
    row = None
    if key is not None:
        row = (
            await session.scalars(invoices(company, policy_id).where(InvoiceRow.id == key))
        ).first()
    if row is None:
        raise not_found("invoice", invoice_id)
    return row


async def payment_by_request(
    session: AsyncSession, company: uuid.UUID, policy_id: uuid.UUID, request_id: str
) -> PaymentRow:
    """The payment a request id recorded (the answer to its replay)."""
    row = (
        await session.scalars(
            payments(company, policy_id).where(PaymentRow.request_id == request_id)
        )
    ).first()
    if row is None:  # pragma: no cover - the request id commits with its row
        raise not_found("payment", request_id)
    return row


async def allocations_of(
    session: AsyncSession, company: uuid.UUID, payment_ids: Sequence[uuid.UUID]
) -> list[tuple[PaymentAllocationRow, str]]:
    """The allocations of the payments, with the invoice numbers, oldest first."""
    if not payment_ids:
        return []
    rows = await session.execute(
        select(PaymentAllocationRow, InvoiceRow.number)
        .join(
            InvoiceRow,
            (InvoiceRow.company_id == PaymentAllocationRow.company_id)
            & (InvoiceRow.id == PaymentAllocationRow.invoice_id),
        )
        .where(
            PaymentAllocationRow.company_id == company,
            PaymentAllocationRow.payment_id.in_(list(payment_ids)),
        )
        .order_by(PaymentAllocationRow.create_time, PaymentAllocationRow.id)
    )
    return [(a, n) for a, n in rows]


def _money(amount: object, currency: str) -> Money:
    return Money(Decimal(str(amount)), currency).rounded()


def open_item(row: InvoiceRow) -> OpenInvoice:
    return OpenInvoice(
        key=str(row.id),
        kind=InvoiceKind(row.kind),
        amount=_money(row.amount, row.currency),
        settled=_money(row.settled, row.currency),
        due_date=row.due_date,
        number=row.number,
        instalment=row.instalment,
        period_end=row.period_end,
        void=row.state == InvoiceState.VOID.value,
    )


def ledger_of(
    currency: str, invoice_rows: Sequence[InvoiceRow], payment_rows: Sequence[PaymentRow]
) -> Ledger:
    """The domain's view of a policy's invoices and the sources of money
    (payments, credit notes) that still have something to give."""
    ledger = Ledger(currency, [open_item(r) for r in invoice_rows])
    for p in payment_rows:
        ledger.sources.append(
            Source(
                str(p.id),
                _money(p.amount, p.currency),
                _money(p.allocated, p.currency),
                (p.received_date, f"p{p.create_time.isoformat()}:{p.id}"),
            )
        )
    for r in invoice_rows:
        if r.kind == InvoiceKind.CREDIT_NOTE.value and r.state != InvoiceState.VOID.value:
            ledger.sources.append(
                Source(
                    str(r.id),
                    _money(-r.amount, r.currency),
                    _money(-r.settled, r.currency),
                    (r.issue_date, f"c{r.sequence:06}"),
                )
            )
    return ledger


@dataclass(slots=True)
class Books:
    """A policy's invoice and payment rows (under its lock) and their ledger."""

    invoices: list[InvoiceRow]
    payments: list[PaymentRow]
    ledger: Ledger


async def books_of(session: AsyncSession, policy: PolicyRow) -> Books:
    invoice_rows = await invoices_of(session, policy)
    payment_rows = await payments_of(session, policy)
    return Books(invoice_rows, payment_rows, ledger_of(policy.currency, invoice_rows, payment_rows))


def apply_allocations(
    session: AsyncSession, policy: PolicyRow, books: Books, made: Sequence[Allocation]
) -> None:
    """Write what the ledger settled: the allocation rows, each invoice's
    ``settled`` and each payment's ``allocated``."""
    ledger = books.ledger
    by_invoice = {str(r.id): r for r in books.invoices}
    by_payment = {str(r.id): r for r in books.payments}
    for allocation in made:
        source_payment = by_payment.get(allocation.source)
        session.add(
            PaymentAllocationRow(
                id=uuid.uuid4(),
                company_id=policy.company_id,
                policy_id=policy.id,
                invoice_id=uuid.UUID(allocation.invoice),
                payment_id=source_payment.id if source_payment else None,
                credit_note_id=None if source_payment else uuid.UUID(allocation.source),
                currency=allocation.amount.currency,
                amount=allocation.amount.amount,
            )
        )
    for item in ledger.invoices:
        row = by_invoice.get(item.key)
        if row is not None and row.settled != item.settled.amount:
            row.settled = item.settled.amount
    for source in ledger.sources:
        payment = by_payment.get(source.key)
        if payment is not None and payment.allocated != source.allocated.amount:
            payment.allocated = source.allocated.amount
