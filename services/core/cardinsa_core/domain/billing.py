"""Billing: what a policyholder owes, when, and what their payments settle.

Pure rules, no I/O (docs/billing.md); :mod:`cardinsa_core.application.billing`
applies them to the stored invoices and payments.

**Invoices follow the premium transactions**, one document set per transaction,
so the non-void invoices of a policy always sum exactly to its written premium:

- ``NEW`` / ``RENEW``: the transaction's amount split into instalments by the
  payment frequency over the term (monthly: one per month of the term, 12 for
  a year; quarterly 4; semi-annual 2; annual and single 1). The split is in
  the currency's minor units: every instalment gets ``total // n`` and the
  remainder goes on the **first** one. Instalment *k* covers the period from
  the effective date plus *k* periods (month arithmetic from the effective date,
  clamped to the month's last day) to the day before the next one, the last to
  the end of the term; it is due on its period's first day.
- every later transaction (``ENDORSE``, ``CANCEL``, ``REINSTATE``, ...) gets
  **one document** for its whole amount: an ``ADJUSTMENT`` when it charges, a
  ``CREDIT_NOTE`` (negative) when it returns, nothing when it is zero. It is
  due on the day it is issued or its effective date, whichever is later. An
  issued amount is never changed: a change of premium is always a new document.

**Settling.** Money flows from *sources* (payments and credit notes) to
*positive invoices* through allocations:

- a payment settles the open invoices **oldest due first** (then by number);
  an invoice may be settled in part (``PARTIALLY_PAID``); what is left over is
  held as the policy's **credit**;
- a credit note settles the open invoices **latest due first** (a refund is
  for the end of the term, so it offsets the instalments of the returned
  period first); what is left over is credit (a refund owed);
- a new positive invoice is settled at once from the credit, oldest source
  first.

So ``Σ allocations + credit == Σ payments + Σ |credit notes|`` and no invoice
or source is ever allocated more than its amount.

**States**: ``ISSUED`` (nothing settled, not yet past due), ``PARTIALLY_PAID``,
``PAID`` (settled in full; a credit note fully applied), ``OVERDUE`` (past its
due date and not settled in full), ``VOID`` (withdrawn; never settled).

**Paid-to date**: the end of the period of the last instalment settled in
full, counting from the first without a gap (None when the first is open).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Final

from cardinsa_core.domain.money import Money, minor_units
from cardinsa_core.domain.policies import PaymentFrequency, add_months
from cardinsa_core.domain.premium import PremiumTransaction, TransactionKind

__all__ = [
    "INSTALMENT_MONTHS",
    "Allocation",
    "InvoiceDraft",
    "InvoiceKind",
    "InvoiceState",
    "Ledger",
    "OpenInvoice",
    "Period",
    "Source",
    "instalment_periods",
    "invoices_for",
    "paid_to_date",
    "split",
    "state_of",
]


class InvoiceKind(StrEnum):
    INSTALMENT = "INSTALMENT"
    ADJUSTMENT = "ADJUSTMENT"
    CREDIT_NOTE = "CREDIT_NOTE"


class InvoiceState(StrEnum):
    ISSUED = "ISSUED"
    PARTIALLY_PAID = "PARTIALLY_PAID"
    PAID = "PAID"
    OVERDUE = "OVERDUE"
    VOID = "VOID"


#: Months per instalment period (None: one instalment for the whole term).
INSTALMENT_MONTHS: Final[dict[PaymentFrequency, int | None]] = {
    PaymentFrequency.MONTHLY: 1,
    PaymentFrequency.QUARTERLY: 3,
    PaymentFrequency.SEMI_ANNUAL: 6,
    PaymentFrequency.ANNUAL: 12,
    PaymentFrequency.SINGLE: None,
}

_FIRST_TRANSACTIONS: Final = frozenset({TransactionKind.NEW, TransactionKind.RENEW})


@dataclass(frozen=True, slots=True)
class Period:
    start: date
    end: date


def instalment_periods(frequency: PaymentFrequency, start: date, end: date) -> list[Period]:
    """The instalment periods of the term ``[start, end]``: every ``months`` from
    ``start`` (computed from ``start`` each time, so a 31st stays a month end), the
    last one up to ``end``; at least one."""
    months = INSTALMENT_MONTHS[frequency]
    if months is None or end < start:
        return [Period(start, max(start, end))]
    starts = [start]
    k = 1
    while (following := add_months(start, k * months)) <= end:
        starts.append(following)
        k += 1
    return [
        Period(s, (starts[i + 1] - timedelta(days=1)) if i + 1 < len(starts) else end)
        for i, s in enumerate(starts)
    ]


def _minor(money: Money) -> int:
    return int(money.amount.scaleb(minor_units(money.currency)))


def _money(minor: int, currency: str) -> Money:
    return Money(Decimal(minor).scaleb(-minor_units(currency)), currency).rounded()


def split(total: Money, count: int) -> list[Money]:
    """``total`` in ``count`` parts of whole minor units, the remainder on the
    first: the parts sum to ``total`` exactly."""
    if count < 1:
        raise ValueError("count must be at least 1")
    minor = _minor(total)
    sign = -1 if minor < 0 else 1
    base, rest = divmod(abs(minor), count)
    parts = [base] * count
    parts[0] += rest
    return [_money(sign * p, total.currency) for p in parts]


@dataclass(frozen=True, slots=True)
class InvoiceDraft:
    """An invoice to issue for a premium transaction."""

    kind: InvoiceKind
    #: 1, 2, ... for instalments; None for adjustments and credit notes.
    instalment: int | None
    amount: Money
    due_date: date
    period: Period


def invoices_for(
    transaction: PremiumTransaction, frequency: PaymentFrequency, issue_date: date
) -> list[InvoiceDraft]:
    """The documents for one premium transaction (``transaction.amount`` is its
    total: premium, tax and fee), issued on ``issue_date``."""
    amount = transaction.amount
    if transaction.kind in _FIRST_TRANSACTIONS:
        periods = instalment_periods(frequency, transaction.effective, transaction.end)
        parts = split(amount, len(periods))
        return [
            InvoiceDraft(InvoiceKind.INSTALMENT, i + 1, part, period.start, period)
            for i, (period, part) in enumerate(zip(periods, parts, strict=True))
        ]
    if amount.amount == 0:
        return []
    kind = InvoiceKind.ADJUSTMENT if amount.is_positive else InvoiceKind.CREDIT_NOTE
    due = max(issue_date, transaction.effective)
    return [InvoiceDraft(kind, None, amount, due, Period(transaction.effective, transaction.end))]


def state_of(
    amount: Money, settled: Money, due_date: date, today: date, *, void: bool = False
) -> InvoiceState:
    """The state of an invoice of ``amount`` of which ``settled`` is allocated
    (a credit note: ``amount`` and ``settled`` negative, never overdue)."""
    if void:
        return InvoiceState.VOID
    if abs(settled.amount) >= abs(amount.amount):
        return InvoiceState.PAID
    if amount.is_positive and today > due_date:
        return InvoiceState.OVERDUE
    if settled.amount != 0:
        return InvoiceState.PARTIALLY_PAID
    return InvoiceState.ISSUED


# ------------------------------------------------------------------ settling


@dataclass(slots=True)
class OpenInvoice:
    """An invoice as settling sees it (``key`` identifies it to the caller)."""

    key: str
    kind: InvoiceKind
    amount: Money
    settled: Money
    due_date: date
    number: str
    instalment: int | None = None
    period_end: date | None = None
    void: bool = False

    @property
    def outstanding(self) -> Money:
        if self.void or not self.amount.is_positive:
            return Money.zero(self.amount.currency)
        return self.amount - self.settled


@dataclass(slots=True)
class Source:
    """Money that settles invoices: a payment or a credit note (positive amount)."""

    key: str
    amount: Money
    allocated: Money
    #: Order among the sources (received / issued first).
    order: tuple[date, str]

    @property
    def remaining(self) -> Money:
        return self.amount - self.allocated


@dataclass(frozen=True, slots=True)
class Allocation:
    source: str
    invoice: str
    amount: Money


@dataclass(slots=True)
class Ledger:
    """A policy's invoices and sources; the methods settle and return what they
    allocated (and update the balances in place)."""

    currency: str
    invoices: list[OpenInvoice] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)

    @property
    def credit(self) -> Money:
        """Money received (or credited) not allocated to any invoice."""
        return sum((s.remaining for s in self.sources), Money.zero(self.currency))

    @property
    def outstanding(self) -> Money:
        return sum((i.outstanding for i in self.invoices), Money.zero(self.currency))

    def _settle(self, source: Source, targets: Iterable[OpenInvoice]) -> list[Allocation]:
        made: list[Allocation] = []
        for invoice in targets:
            if not source.remaining.is_positive:
                break
            open_amount = invoice.outstanding
            if not open_amount.is_positive:
                continue
            share = min(open_amount, source.remaining)
            invoice.settled = invoice.settled + share
            source.allocated = source.allocated + share
            made.append(Allocation(source.key, invoice.key, share))
        return made

    def _oldest_first(self) -> list[OpenInvoice]:
        return sorted(self.invoices, key=lambda i: (i.due_date, i.number))

    def pay(self, key: str, amount: Money, received: date) -> list[Allocation]:
        """A payment: settles the open invoices oldest due first; the rest is credit."""
        source = Source(key, amount, Money.zero(self.currency), (received, key))
        self.sources.append(source)
        return self._settle(source, self._oldest_first())

    def credit_note(self, invoice: OpenInvoice, issued: date) -> list[Allocation]:
        """A credit note (negative invoice): settles the open invoices latest due
        first; the rest is credit."""
        self.invoices.append(invoice)
        source = Source(
            invoice.key,
            Money.zero(self.currency) - invoice.amount,
            invoice.settled,
            (issued, invoice.key),
        )
        self.sources.append(source)
        made = self._settle(source, reversed(self._oldest_first()))
        invoice.settled = Money.zero(self.currency) - source.allocated
        return made

    def charge(self, invoice: OpenInvoice) -> list[Allocation]:
        """A new positive invoice: settled from the credit at once, oldest source first."""
        self.invoices.append(invoice)
        made: list[Allocation] = []
        for source in sorted(self.sources, key=lambda s: s.order):
            made += self._settle(source, [invoice])
            self._sync_credit_note(source)
        return made

    def issue(self, draft: InvoiceDraft, key: str, number: str, issued: date) -> list[Allocation]:
        """Issue ``draft`` as invoice ``key``: a credit note settles open invoices,
        any other invoice is settled from the credit."""
        invoice = OpenInvoice(
            key=key,
            kind=draft.kind,
            amount=draft.amount,
            settled=Money.zero(self.currency),
            due_date=draft.due_date,
            number=number,
            instalment=draft.instalment,
            period_end=draft.period.end,
        )
        if draft.kind is InvoiceKind.CREDIT_NOTE:
            return self.credit_note(invoice, issued)
        return self.charge(invoice)

    def _sync_credit_note(self, source: Source) -> None:
        for invoice in self.invoices:
            if invoice.key == source.key and invoice.kind is InvoiceKind.CREDIT_NOTE:
                invoice.settled = Money.zero(self.currency) - source.allocated


def paid_to_date(invoices: Sequence[OpenInvoice]) -> date | None:
    """The end of the period of the last instalment settled in full, counting
    from the first instalment without a gap (None when the first is open)."""
    paid: date | None = None
    for invoice in sorted(
        (i for i in invoices if i.kind is InvoiceKind.INSTALMENT and not i.void),
        key=lambda i: (i.period_end or i.due_date, i.instalment or 0),
    ):
        if invoice.outstanding.is_positive:
            break
        paid = invoice.period_end
    return paid
