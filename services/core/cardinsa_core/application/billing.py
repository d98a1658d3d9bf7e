"""Billing: the invoices of the premium transactions and the payments that settle them.

- :meth:`Billing.bill` runs inside the unit of work that records a premium
  transaction (bind, endorse, cancel, reinstate, ...), under the policy's row
  lock: the transaction's invoices (instalments, or an adjustment or credit
  note) commit with it, settled at once from any credit the policy holds.
- :meth:`Billing.record_payment` is a write of its own: request id first (a
  replay answers with the payment it recorded), then the policy row locked
  (``FOR UPDATE``), so two payments on one policy queue and the second
  allocates only what the first left open. The payment, its allocations, the
  invoices' states, the policy's paid-to date, the events and the audit row
  commit together.
- :meth:`Billing.refresh` brings the states up to a date (ISSUED or
  PARTIALLY_PAID past the due date become OVERDUE); the lifecycle scheduler
  calls it (:meth:`Billing.mark_overdue`), and :meth:`Billing.unpaid` says
  what a reinstatement after a lapse for non-payment needs paid.

The rules themselves are in :mod:`cardinsa_core.domain.billing` (docs/billing.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_core.application.context import CoreContext, own_company
from cardinsa_core.application.inputs import MoneyInput
from cardinsa_core.domain.billing import (
    Allocation,
    InvoiceState,
    invoices_for,
    paid_to_date,
    state_of,
)
from cardinsa_core.domain.money import Money
from cardinsa_core.domain.policies import PaymentFrequency
from cardinsa_core.domain.premium import PremiumTransaction, TransactionKind
from cardinsa_core.repository.billing import (
    Books,
    PaymentView,
    allocations_of,
    apply_allocations,
    books_of,
    find_invoice,
    invoices,
    invoices_of,
    payment_by_request,
    payments,
)
from cardinsa_core.repository.models import (
    InvoiceRow,
    PaymentRow,
    PolicyRow,
    PremiumTransactionRow,
)
from cardinsa_core.repository.policies import POLICIES
from cardinsa_foundation.errors import FailedPrecondition, FieldViolation
from cardinsa_foundation.paging import OrderTerm, Page
from cardinsa_foundation.row_batch import SupportsAdd
from cardinsa_foundation.use_cases import invalid, require_principal

__all__ = ["NON_PAYMENT", "NON_PAYMENT_NOTE", "Arrears", "Billing", "PaymentInput", "PaymentView"]

MAX_REFERENCE = 100
#: The note of a lapse for non-payment (the scheduler's; the status log's reason
#: and the policy's termination note). Reinstating a policy whose lapse note
#: starts with ``non-payment`` needs the arrears paid first.
NON_PAYMENT = "non-payment"
NON_PAYMENT_NOTE = f"{NON_PAYMENT}: an instalment unpaid past the grace period"


@dataclass(frozen=True, slots=True)
class PaymentInput:
    amount: MoneyInput | None = None
    received_date: date | None = None
    reference: str = ""


@dataclass(frozen=True, slots=True)
class Arrears:
    """What of a policy is unpaid past the grace period."""

    invoices: list[InvoiceRow]
    amount: Money
    oldest_due_date: date

    def describe(self) -> str:
        numbers = ", ".join(i.number for i in self.invoices[:5])
        return f"{self.amount} unpaid since {self.oldest_due_date.isoformat()} ({numbers})"


def _money(amount: object, currency: str) -> Money:
    return Money(Decimal(str(amount)), currency).rounded()


def outstanding_of(row: InvoiceRow) -> Money:
    if row.amount <= 0 or row.state == InvoiceState.VOID.value:
        return Money.zero(row.currency)
    return _money(row.amount - row.settled, row.currency)


#: ``session.info`` keys: while a policy transition runs, its billing events
#: wait until the transition has logged its own (a consumer sees the bind
#: before the invoices it issued); :meth:`Billing.release` writes them.
_DEFER = "cardinsa.billing.defer"
_PENDING = "cardinsa.billing.pending"


class Billing:
    def __init__(self, ctx: CoreContext) -> None:
        self.ctx = ctx

    @staticmethod
    def defer(session: AsyncSession) -> None:
        """Hold this unit of work's billing events until :meth:`release`."""
        session.info[_DEFER] = True

    def release(self, session: AsyncSession, adder: SupportsAdd | None = None) -> None:
        """Write the billing events held back (same unit of work), through
        ``adder`` when given (the statement that ends the change), else the session."""
        session.info.pop(_DEFER, None)
        for policy, transition, invoice in session.info.pop(_PENDING, []):
            self.ctx.events.billing_changed(
                adder or session, policy, transition=transition, invoice=invoice
            )

    def _invoice_event(
        self, session: AsyncSession, policy: PolicyRow, transition: str, invoice: InvoiceRow
    ) -> None:
        if session.info.get(_DEFER):
            session.info.setdefault(_PENDING, []).append((policy, transition, invoice))
        else:
            self.ctx.events.billing_changed(session, policy, transition=transition, invoice=invoice)

    # ------------------------------------------------------------- reading

    async def list_invoices(
        self, policy_id: str, *, page_size: int, page_token: str
    ) -> Page[InvoiceRow]:
        company = own_company(require_principal())
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            policy = await POLICIES.find(session, company, policy_id)
            return await self.ctx.page(
                session,
                invoices(company, policy.id),
                order=[
                    OrderTerm(InvoiceRow.due_date),
                    OrderTerm(InvoiceRow.sequence),
                ],
                parent=str(policy.id),
                page_size=page_size,
                page_token=page_token,
            )

    async def get_invoice(self, policy_id: str, invoice_id: str) -> InvoiceRow:
        company = own_company(require_principal())
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            policy = await POLICIES.find(session, company, policy_id)
            return await find_invoice(session, company, policy.id, invoice_id)

    async def list_payments(
        self, policy_id: str, *, page_size: int, page_token: str
    ) -> Page[PaymentView]:
        company = own_company(require_principal())
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            policy = await POLICIES.find(session, company, policy_id)
            found = await self.ctx.page(
                session,
                payments(company, policy.id),
                order=[OrderTerm(PaymentRow.create_time), OrderTerm(PaymentRow.id)],
                parent=str(policy.id),
                page_size=page_size,
                page_token=page_token,
            )
            return Page(await self._views(session, company, found.items), found.next_page_token)

    @staticmethod
    async def _views(
        session: AsyncSession, company: uuid.UUID, rows: Sequence[PaymentRow]
    ) -> list[PaymentView]:
        allocations = await allocations_of(session, company, [r.id for r in rows])
        return [
            PaymentView(r, [(a, n) for a, n in allocations if a.payment_id == r.id]) for r in rows
        ]

    # ------------------------------------------------------------- invoicing

    async def bill(
        self,
        session: AsyncSession,
        policy: PolicyRow,
        transaction: PremiumTransactionRow,
        *,
        policy_number: str,
        actor: str | None,
    ) -> list[InvoiceRow]:
        """The invoices of ``transaction`` (just added, under the policy's lock)."""
        today = await self.ctx.company_today(policy.company_id)
        await session.flush()  # the invoices reference the transaction
        books = await books_of(session, policy)
        priced = PremiumTransaction(
            TransactionKind(transaction.kind),
            transaction.effective_date,
            transaction.end_date,
            _money(transaction.amount, transaction.currency),
        )
        frequency = PaymentFrequency(policy.payment_frequency)
        issued: list[InvoiceRow] = []
        made: list[Allocation] = []
        for draft in invoices_for(priced, frequency, today):
            sequence = len(books.invoices) + 1
            row = InvoiceRow(
                id=uuid.uuid4(),
                company_id=policy.company_id,
                policy_id=policy.id,
                sequence=sequence,
                number=f"{policy_number}-{sequence:02d}",
                kind=draft.kind.value,
                state=InvoiceState.ISSUED.value,
                instalment=draft.instalment,
                currency=draft.amount.currency,
                amount=draft.amount.amount,
                settled=Decimal(0),
                issue_date=today,
                due_date=draft.due_date,
                period_start=draft.period.start,
                period_end=draft.period.end,
                transaction_sequence=transaction.sequence,
                void_reason="",
                created_by=actor,
            )
            session.add(row)
            books.invoices.append(row)
            issued.append(row)
            made += books.ledger.issue(draft, str(row.id), row.number, today)
        await session.flush()  # the allocations reference the new invoices
        await self._settle(session, policy, books, made, today, issued=issued)
        return issued

    async def _settle(
        self,
        session: AsyncSession,
        policy: PolicyRow,
        books: Books,
        made: Sequence[Allocation],
        today: date,
        *,
        issued: Sequence[InvoiceRow] = (),
    ) -> None:
        """Write the allocations, bring the states and the paid-to date up to
        ``today``, and record the events."""
        apply_allocations(session, policy, books, made)
        changed = self._refresh_rows(books.invoices, today)
        policy.paid_to_date = paid_to_date(books.ledger.invoices)
        await session.flush()
        new = {r.id for r in issued}
        for row in issued:
            self._invoice_event(session, policy, "invoice_issued", row)
        for row, state in changed:
            if row.id in new and state is not InvoiceState.PAID:
                continue
            if state is InvoiceState.PAID:
                self._invoice_event(session, policy, "invoice_paid", row)
            elif state is InvoiceState.OVERDUE:
                self._invoice_event(session, policy, "invoice_overdue", row)

    @staticmethod
    def _refresh_rows(
        rows: Sequence[InvoiceRow], today: date
    ) -> list[tuple[InvoiceRow, InvoiceState]]:
        """Each invoice's state as of ``today``; the ones that changed."""
        changed: list[tuple[InvoiceRow, InvoiceState]] = []
        for row in rows:
            state = state_of(
                _money(row.amount, row.currency),
                _money(row.settled, row.currency),
                row.due_date,
                today,
                void=row.state == InvoiceState.VOID.value,
            )
            if state.value != row.state:
                row.state = state.value
                row.update_time = datetime.now(UTC)
                changed.append((row, state))
        return changed

    async def refresh(self, session: AsyncSession, policy: PolicyRow, today: date) -> int:
        """The states of the policy's invoices as of ``today`` (under its lock);
        how many became OVERDUE."""
        invoice_rows = await invoices_of(session, policy)
        changed = self._refresh_rows(invoice_rows, today)
        await session.flush()
        overdue = 0
        for row, state in changed:
            if state is InvoiceState.OVERDUE:
                overdue += 1
                self._invoice_event(session, policy, "invoice_overdue", row)
        return overdue

    async def mark_overdue(self, policy_id: str, etag: str, request_id: str) -> int:
        """The lifecycle scheduler's step: the policy's invoices unpaid after
        their due date become OVERDUE (request id, policy row locked); how many."""
        company = own_company(require_principal())
        async with self.ctx.change(
            POLICIES,
            company,
            policy_id,
            method="mark_overdue",
            etag=etag,
            request_id=request_id,
            allow_deleted=True,
        ) as change:
            if change.replay:
                return 0
            session, policy = change.session, change.row
            today = await self.ctx.company_today(company)
            before = {r.id: r.state for r in await invoices_of(session, policy)}
            count = await self.refresh(session, policy, today)
            if count:
                marked = [
                    r.number
                    for r in await invoices_of(session, policy)
                    if r.state == InvoiceState.OVERDUE.value
                    and before.get(r.id) != InvoiceState.OVERDUE.value
                ]
                await self.ctx.audit.record(
                    session,
                    action="invoice.mark_overdue",
                    entity_type="policy",
                    entity_id=policy.id,
                    changed_fields=["invoices.state"],
                    detail={"invoices": marked, "as_of": today.isoformat()},
                )
            return count

    @staticmethod
    async def unpaid(session: AsyncSession, policy: PolicyRow, today: date) -> Arrears | None:
        """Everything due by ``today`` and not settled (what a reinstatement needs paid)."""
        due = [
            r
            for r in await invoices_of(session, policy)
            if outstanding_of(r).is_positive and r.due_date <= today
        ]
        if not due:
            return None
        total = sum((outstanding_of(r) for r in due), Money.zero(policy.currency))
        return Arrears(due, total, min(r.due_date for r in due))

    # ------------------------------------------------------------- paying

    async def record_payment(
        self, policy_id: str, data: PaymentInput, *, request_id: str
    ) -> PaymentView:
        principal = require_principal()
        reference = data.reference.strip()
        violations: list[FieldViolation] = []
        if data.amount is None:
            violations.append(FieldViolation("payment.amount", "required"))
        if len(reference) > MAX_REFERENCE:
            violations.append(
                FieldViolation("payment.reference", f"at most {MAX_REFERENCE} characters")
            )
        invalid("the payment is not valid", violations)
        assert data.amount is not None
        company = own_company(principal)
        async with self.ctx.change(
            POLICIES,
            company,
            policy_id,
            method="payment.record",
            etag="",
            request_id=request_id,
            arguments=[data.amount, data.received_date, reference],
        ) as change:
            session, policy = change.session, change.row
            if change.replay:
                found = await payment_by_request(session, company, policy.id, request_id)
                return (await self._views(session, company, [found]))[0]
            amount = data.amount.resolve(policy.currency, "payment.amount")
            today = await self.ctx.company_today(company)
            received = data.received_date or today
            violations = []
            if not amount.is_positive:
                violations.append(FieldViolation("payment.amount", "must be greater than 0"))
            if received > today:
                violations.append(
                    FieldViolation(
                        "payment.received_date", f"must not be after today ({today.isoformat()})"
                    )
                )
            invalid("the payment is not valid", violations)
            if policy.policy_number is None or policy.written_premium is None:
                raise FailedPrecondition(
                    "only a bound policy takes payments",
                    reason="POLICY_NOT_BOUND",
                    metadata={"state": policy.state},
                )
            books = await books_of(session, policy)
            payment = PaymentRow(
                id=uuid.uuid4(),
                company_id=company,
                policy_id=policy.id,
                currency=amount.currency,
                amount=amount.amount,
                allocated=Decimal(0),
                received_date=received,
                reference=reference,
                created_by=principal.subject,
                request_id=request_id or None,
            )
            session.add(payment)
            books.payments.append(payment)
            made = books.ledger.pay(str(payment.id), amount, received)
            await session.flush()
            await self._settle(session, policy, books, made, today)
            policy.update_time = datetime.now(UTC)
            await session.flush()
            view = (await self._views(session, company, [payment]))[0]
            self.ctx.events.billing_changed(
                session, policy, transition="payment_recorded", payment=view
            )
            await self.ctx.audit.record(
                session,
                action="payment.record",
                entity_type="payment",
                entity_id=payment.id,
                changed_fields=["amount", "allocated", "received_date", "reference"],
                detail={
                    "policy_id": str(policy.id),
                    "amount": str(amount),
                    "allocated": str(_money(payment.allocated, payment.currency)),
                    "invoices": [n for _, n in view.allocations],
                    "paid_to_date": policy.paid_to_date.isoformat()
                    if policy.paid_to_date
                    else None,
                },
            )
            return view
