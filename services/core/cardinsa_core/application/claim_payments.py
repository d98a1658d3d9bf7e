"""Payments and recoveries of a claim.

A payment is its own resource under its claim: indemnity (drawn from the
outstanding approved amount, after the cover is checked again) or expense
(drawn from the expense reserve). It counts as paid from its creation
(PENDING) until it is voided; a void gives its amount back to the reserve.
Every payment needs the authority band of its amount, and with segregation of
duties on, the claim's adjuster cannot pay.

Each change runs as a transition of the claim (see
:meth:`~cardinsa_core.application.claims.ClaimUseCases.transition`): the claim
row is locked, so two payments on one claim queue and the second sees the
first; the claim's amounts, the payment row, the action log and the audit row
commit together.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_core.application.claim_cover import load_cover, read_cover
from cardinsa_core.application.claims import ClaimUseCases, FastOptions, Outcome, check_duties
from cardinsa_core.application.context import own_company
from cardinsa_core.application.inputs import MoneyInput
from cardinsa_core.domain.claims import (
    Claim,
    CostType,
    PaymentMethod,
    PaymentState,
    RecoveryKind,
)
from cardinsa_core.domain.money import Money
from cardinsa_core.repository.claim_authority import settings_of
from cardinsa_core.repository.claim_facts import ApprovalFacts
from cardinsa_core.repository.claims import (
    CLAIMS,
    apply_claim,
    claim_payments,
    claim_recoveries,
    find_payment,
    payment_by_request,
    payment_of,
    recovery_by_request,
)
from cardinsa_core.repository.models import ClaimPaymentRow, ClaimRecoveryRow, ClaimRow
from cardinsa_foundation.context import Principal
from cardinsa_foundation.errors import FailedPrecondition, FieldViolation
from cardinsa_foundation.models import check_etag
from cardinsa_foundation.paging import OrderTerm, Page
from cardinsa_foundation.row_batch import RowBatch
from cardinsa_foundation.use_cases import (
    check_note,
    invalid,
    log_request_id,
    require_principal,
)

__all__ = ["ClaimPayments", "PaymentInput", "RecoveryInput"]

MAX_PAYEE = 200
R = TypeVar("R", ClaimPaymentRow, ClaimRecoveryRow)
MAX_REFERENCE = 100


@dataclass(frozen=True, slots=True)
class PaymentInput:
    cost_type: CostType | None = None
    payee: str = ""
    method: PaymentMethod | None = None
    reference: str = ""
    amount: MoneyInput | None = None


@dataclass(frozen=True, slots=True)
class RecoveryInput:
    kind: RecoveryKind | None = None
    amount: MoneyInput | None = None
    reference: str = ""
    note: str = ""


def _text(value: str, path: str, most: int, *, required: bool) -> list[FieldViolation]:
    if required and not value:
        return [FieldViolation(path, "required")]
    if len(value) > most:
        return [FieldViolation(path, f"at most {most} characters")]
    return []


def _outstanding(claim: Claim) -> Money:
    """What PayClaim pays: the outstanding indemnity of an APPROVED claim
    (FAILED_PRECONDITION when the claim cannot be paid or nothing is due)."""
    claim.check_can_pay()
    due = claim.outstanding
    if not due.is_positive:
        raise FailedPrecondition("nothing is outstanding on this claim", reason="NOTHING_TO_PAY")
    return due


class ClaimPayments:
    def __init__(self, claims: ClaimUseCases) -> None:
        self.claims = claims
        self.ctx = claims.ctx

    # ------------------------------------------------------------- reading

    async def get(self, claim_id: str, payment_id: str) -> ClaimPaymentRow:
        company = own_company(require_principal())
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            claim = await CLAIMS.find(session, company, claim_id)
            return await find_payment(session, company, claim.id, payment_id, lock=False)

    async def list_payments(
        self, claim_id: str, *, page_size: int, page_token: str
    ) -> Page[ClaimPaymentRow]:
        return await self._list(claim_id, claim_payments, ClaimPaymentRow, page_size, page_token)

    async def list_recoveries(
        self, claim_id: str, *, page_size: int, page_token: str
    ) -> Page[ClaimRecoveryRow]:
        return await self._list(claim_id, claim_recoveries, ClaimRecoveryRow, page_size, page_token)

    async def _list(
        self,
        claim_id: str,
        query: Callable[[uuid.UUID, uuid.UUID], Select[R]],
        model: type[ClaimPaymentRow] | type[ClaimRecoveryRow],
        page_size: int,
        page_token: str,
    ) -> Page[R]:
        """One page of the claim's ``model`` rows, oldest first."""
        company = own_company(require_principal())
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            claim = await CLAIMS.find(session, company, claim_id)
            return await self.ctx.page(
                session,
                query(company, claim.id),
                order=[OrderTerm(model.create_time), OrderTerm(model.id)],
                page_size=page_size,
                page_token=page_token,
                parent=str(claim.id),
            )

    # ------------------------------------------------------------- paying

    async def _authorise(
        self,
        session: AsyncSession,
        principal: Principal,
        row: ClaimRow,
        amount: Money,
        cost_type: CostType,
    ) -> None:
        """The payer's band for ``amount``, and segregation of duties for indemnity,
        read in the payment's own transaction."""
        authority = self.claims.authority
        bands = await authority.bands(row.company_id, row.currency, session=session)
        bands.check_authority(amount, principal.permissions, action="paying")
        if cost_type is CostType.INDEMNITY:
            segregated = await authority.segregation_required(row.company_id, session=session)
            check_duties(principal, row, segregated, "pay")

    async def _pay(
        self,
        session: AsyncSession,
        row: ClaimRow,
        claim: Claim,
        payment: ClaimPaymentRow,
    ) -> Outcome:
        """The claim after ``payment``; indemnity needs the cover as it is now."""
        cost_type = CostType(payment.cost_type)
        cover = None
        if cost_type is CostType.INDEMNITY:
            cover = await load_cover(session, row, claim.details)
        amount = Money(payment.amount, payment.currency)
        # The claim checks the amount first: a bad one is a field violation, not
        # the table's constraint.
        paid = claim.pay(cost_type, amount, payment.reference)
        session.add(payment)
        await session.flush()
        return Outcome(
            paid,
            amount=amount,
            payment_reference=payment.reference,
            cover=cover,
            detail={"payment_id": str(payment.id), "cost_type": cost_type.value},
        )

    async def create(
        self, claim_id: str, data: PaymentInput, *, request_id: str
    ) -> ClaimPaymentRow:
        principal = require_principal()
        payee, reference = data.payee.strip(), data.reference.strip()
        violations = _text(payee, "payment.payee", MAX_PAYEE, required=True)
        violations += _text(reference, "payment.reference", MAX_REFERENCE, required=False)
        for name in ("cost_type", "method", "amount"):
            if getattr(data, name) is None:
                violations.append(FieldViolation(f"payment.{name}", "required"))
        invalid("the payment is not valid", violations)
        assert data.cost_type is not None and data.method is not None and data.amount
        cost_type, method, amount_in = data.cost_type, data.method, data.amount
        created: list[ClaimPaymentRow] = []

        async def apply(session: AsyncSession, row: ClaimRow, claim: Claim) -> Outcome:
            amount = amount_in.resolve(row.currency, "payment.amount")
            await self._authorise(session, principal, row, amount, cost_type)
            payment = self._payment_row(
                row,
                cost_type=cost_type,
                payee=payee,
                method=method,
                reference=reference,
                amount=amount,
                request_id=request_id,
            )
            outcome = await self._pay(session, row, claim, payment)
            created.append(payment)
            return outcome

        row = await self.claims.transition(
            claim_id,
            etag="",
            request_id=request_id,
            method="payment.create",
            apply=apply,
            arguments=[data],
        )
        if created:
            return created[0]
        async with self.ctx.db.unit_of_work(company_id=row.company_id) as session:
            return await payment_by_request(session, row.company_id, row.id, request_id)

    async def pay_outstanding(
        self, claim_id: str, etag: str, request_id: str, reference: str
    ) -> ClaimRow:
        """PayClaim: the whole outstanding indemnity as one ISSUED payment."""
        principal = require_principal()
        reference = reference.strip()
        invalid(
            "the request is not valid",
            _text(reference, "payment_reference", MAX_REFERENCE, required=True),
        )
        paid = await self._pay_outstanding_fast(principal, claim_id, etag, request_id, reference)
        if paid is not None:
            return paid

        async def apply(session: AsyncSession, row: ClaimRow, claim: Claim) -> Outcome:
            due = _outstanding(claim)
            await self._authorise(session, principal, row, due, CostType.INDEMNITY)
            payment = self._issued(row, due, reference, request_id)
            return await self._pay(session, row, claim, payment)

        return await self.claims.transition(
            claim_id,
            etag=etag,
            request_id=request_id,
            method="pay",
            apply=apply,
            arguments=[reference],
        )

    async def _pay_outstanding_fast(
        self, principal: Principal, claim_id: str, etag: str, request_id: str, reference: str
    ) -> ClaimRow | None:
        """:meth:`pay_outstanding` without the unit of work
        (:meth:`ClaimUseCases.fast_change`): the same checks in the same order
        (the state, something due, the payer's band and segregation of duties,
        the cover as it is now), the payment row inserted with the claim's
        UPDATE, its log entry, event and audit row in one statement."""
        company = own_company(principal)

        async def step(
            connection: Any, row: ClaimRow, claim: Claim, facts: ApprovalFacts, rows: RowBatch
        ) -> tuple[Outcome, list[str]]:
            due = _outstanding(claim)
            authority = self.claims.authority
            view = await authority.view_of(company, row.currency, facts.bands)
            view.bands.check_authority(due, principal.permissions, action="paying")
            segregated = settings_of(facts.settings).require_segregation_of_duties
            check_duties(principal, row, segregated, "pay")
            payment = self._issued(row, due, reference, request_id)
            cover = await read_cover(connection, row, claim.details)
            paid = claim.pay(CostType.INDEMNITY, due, payment.reference)
            rows.add(payment)
            outcome = Outcome(
                paid,
                amount=due,
                payment_reference=payment.reference,
                cover=cover,
                detail={"payment_id": str(payment.id), "cost_type": CostType.INDEMNITY.value},
            )
            return outcome, apply_claim(row, paid)

        return await self.claims.fast_change(
            principal,
            claim_id,
            step,
            method="pay",
            options=FastOptions(etag, request_id, (reference,)),
        )

    def _issued(
        self, row: ClaimRow, due: Money, reference: str, request_id: str
    ) -> ClaimPaymentRow:
        """PayClaim's payment: the outstanding indemnity to the claimant, ISSUED."""
        payment = self._payment_row(
            row,
            cost_type=CostType.INDEMNITY,
            payee="claimant",
            method=PaymentMethod.OTHER,
            reference=reference,
            amount=due,
            request_id=request_id,
        )
        payment.state = PaymentState.ISSUED.value
        return payment

    def _payment_row(
        self,
        row: ClaimRow,
        *,
        cost_type: CostType,
        payee: str,
        method: PaymentMethod,
        reference: str,
        amount: Money,
        request_id: str,
    ) -> ClaimPaymentRow:
        return ClaimPaymentRow(
            id=uuid.uuid4(),
            company_id=row.company_id,
            claim_id=row.id,
            cost_type=cost_type.value,
            payee=payee,
            method=method.value,
            reference=reference,
            amount=amount.amount,
            currency=amount.currency,
            state=PaymentState.PENDING.value,
            void_reason="",
            created_by=require_principal().subject,
            request_id=log_request_id(request_id),
        )

    # ------------------------------------------------------------- a payment's lifecycle

    async def _payment_step(
        self,
        claim_id: str,
        payment_id: str,
        etag: str,
        request_id: str,
        *,
        action: str,
        reason: str = "",
    ) -> ClaimPaymentRow:
        changed: list[ClaimPaymentRow] = []

        async def apply(session: AsyncSession, row: ClaimRow, claim: Claim) -> Outcome:
            payment_row = await find_payment(session, row.company_id, row.id, payment_id)
            check_etag(payment_row, etag)
            payment = payment_of(payment_row)
            outcome = Outcome(
                claim,
                amount=payment.amount,
                note=reason,
                payment_reference=payment_row.reference,
                detail={"payment_id": str(payment_row.id), "cost_type": payment.cost_type.value},
            )
            if action == "issue":
                payment = payment.issue()
            elif action == "clear":
                payment = payment.clear()
            else:
                payment = payment.void()
                outcome.claim = claim.void(payment.cost_type, payment.amount)
                payment_row.void_reason = reason
            payment_row.state = payment.state.value
            payment_row.update_time = datetime.now(UTC)
            await session.flush()
            changed.append(payment_row)
            return outcome

        await self.claims.transition(
            claim_id,
            etag="",
            request_id=request_id,
            method=f"payment.{action}",
            apply=apply,
            arguments=[payment_id, etag, reason],
        )
        if changed:
            return changed[0]
        return await self.get(claim_id, payment_id)

    async def issue(
        self, claim_id: str, payment_id: str, etag: str, request_id: str
    ) -> ClaimPaymentRow:
        return await self._payment_step(claim_id, payment_id, etag, request_id, action="issue")

    async def clear(
        self, claim_id: str, payment_id: str, etag: str, request_id: str
    ) -> ClaimPaymentRow:
        return await self._payment_step(claim_id, payment_id, etag, request_id, action="clear")

    async def void(
        self, claim_id: str, payment_id: str, etag: str, request_id: str, reason: str
    ) -> ClaimPaymentRow:
        invalid("the request is not valid", check_note(reason, "reason"))
        return await self._payment_step(
            claim_id, payment_id, etag, request_id, action="void", reason=reason.strip()
        )

    # ------------------------------------------------------------- recoveries

    async def recover(
        self, claim_id: str, data: RecoveryInput, *, request_id: str
    ) -> ClaimRecoveryRow:
        reference, note = data.reference.strip(), data.note.strip()
        violations = _text(reference, "recovery.reference", MAX_REFERENCE, required=False)
        violations += check_note(note, "recovery.note")
        for name in ("kind", "amount"):
            if getattr(data, name) is None:
                violations.append(FieldViolation(f"recovery.{name}", "required"))
        invalid("the recovery is not valid", violations)
        assert data.kind is not None and data.amount is not None
        kind, amount_in = data.kind, data.amount
        created: list[ClaimRecoveryRow] = []

        async def apply(session: AsyncSession, row: ClaimRow, claim: Claim) -> Outcome:
            amount = amount_in.resolve(row.currency, "recovery.amount")
            recovered = claim.recover(kind, amount)
            recovery = ClaimRecoveryRow(
                id=uuid.uuid4(),
                company_id=row.company_id,
                claim_id=row.id,
                kind=kind.value,
                amount=amount.amount,
                currency=amount.currency,
                reference=reference,
                note=note,
                created_by=require_principal().subject,
                request_id=log_request_id(request_id),
            )
            session.add(recovery)
            await session.flush()
            created.append(recovery)
            return Outcome(
                recovered,
                amount=amount,
                note=note,
                payment_reference=reference,
                detail={"recovery_id": str(recovery.id), "kind": kind.value},
            )

        row = await self.claims.transition(
            claim_id,
            etag="",
            request_id=request_id,
            method="recovery.create",
            apply=apply,
            arguments=[data],
        )
        if created:
            return created[0]
        async with self.ctx.db.unit_of_work(company_id=row.company_id) as session:
            return await recovery_by_request(session, row.company_id, row.id, request_id)
