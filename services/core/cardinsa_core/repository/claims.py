"""Claims in the database: the claim row, its action log, payments, recoveries
and the accumulators (the approval bands and claim settings:
:mod:`cardinsa_core.repository.claim_authority`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import TypeVar

from sqlalchemy import Select, or_, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_core.domain.adjudication import Benefit, Consumption, Period, Usage
from cardinsa_core.domain.claims import (
    Claim,
    ClaimDetails,
    ClaimState,
    ClaimType,
    CostType,
    Payment,
    PaymentState,
)
from cardinsa_core.domain.money import Money
from cardinsa_core.repository.models import (
    ClaimAccumulatorRow,
    ClaimLogEntryRow,
    ClaimPaymentRow,
    ClaimRecoveryRow,
    ClaimRow,
)
from cardinsa_core.repository.rows import Resources, assign, children
from cardinsa_foundation.db import ReadQuery
from cardinsa_foundation.filtering import FieldType, FilterField, FilterSpec
from cardinsa_foundation.use_cases import lookup_uuid, not_found

__all__ = [
    "CLAIMS",
    "apply_claim",
    "apply_usage",
    "claim_log",
    "claim_of",
    "claim_payments",
    "claim_recoveries",
    "claims_with_money",
    "find_payment",
    "lock_accumulators",
    "log_entry",
    "payment_by_request",
    "payment_of",
    "read_accumulators",
    "recovery_by_request",
    "usage_of",
]

CLAIMS = Resources(
    ClaimRow,
    "claim",
    FilterSpec(
        {
            "state": FilterField(
                ClaimRow.state, FieldType.ENUM, values=[s.value for s in ClaimState]
            ),
            "claim_number": FilterField(ClaimRow.claim_number, FieldType.STRING),
            "policy_id": FilterField(ClaimRow.policy_id, FieldType.UUID),
            "claim_type": FilterField(
                ClaimRow.claim_type, FieldType.ENUM, values=[t.value for t in ClaimType]
            ),
            "coverage_code": FilterField(ClaimRow.coverage_code, FieldType.STRING),
            "incident_date": FilterField(ClaimRow.incident_date, FieldType.DATE),
            "report_date": FilterField(ClaimRow.report_date, FieldType.DATE),
            "create_time": FilterField(ClaimRow.create_time, FieldType.TIMESTAMP),
        }
    ),
    {
        "create_time": ClaimRow.create_time,
        "claim_number": ClaimRow.claim_number,
        "incident_date": ClaimRow.incident_date,
    },
)
#: GetClaim in one round trip, without the ORM (cardinsa_foundation.db.Database.read):
#: the function core.read_claim of migration core_0014.
GET_CLAIM = ReadQuery(ClaimRow, "read_claim", ("id",))


# ------------------------------------------------------------------ mapping


def _money(amount: Decimal | None, currency: str) -> Money | None:
    return Money(amount, currency).rounded() if amount is not None else None


def _benefit(row: ClaimRow) -> Benefit | None:
    if row.benefit_payable is None:
        return None
    c = row.currency

    def m(value: Decimal | None) -> Money:
        return Money(value or Decimal(0), c).rounded()

    return Benefit(
        claimed=m(row.benefit_claimed),
        deductible=m(row.benefit_deductible),
        copay=m(row.benefit_copay),
        coinsurance=m(row.benefit_coinsurance),
        limit_cut=m(row.benefit_limit_cut),
        payable=m(row.benefit_payable),
    )


def claim_of(row: ClaimRow) -> Claim:
    currency = row.currency
    return Claim(
        state=ClaimState(row.state),
        details=ClaimDetails(
            claim_type=ClaimType(row.claim_type),
            description=row.description,
            incident_date=row.incident_date,
            report_date=row.report_date,
            claimed_amount=Money.of(row.claimed_amount, currency),
            coverage_code=row.coverage_code,
            claimant_dependent_id=row.claimant_dependent_id,
        ),
        claim_number=row.claim_number,
        approved_amount=_money(row.approved_amount, currency),
        paid_amount=_money(row.paid_amount, currency),
        expense_paid=_money(row.expense_paid, currency),
        recovered_amount=_money(row.recovered_amount, currency),
        indemnity_reserve=_money(row.indemnity_reserve, currency),
        expense_reserve=_money(row.expense_reserve, currency),
        benefit=_benefit(row),
        payment_reference=row.payment_reference,
        deny_reason=row.deny_reason,
        withdraw_reason=row.withdraw_reason,
    )


def _amount(value: Money | None) -> Decimal | None:
    return value.amount if value is not None else None


def apply_claim(row: ClaimRow, claim: Claim) -> list[str]:
    """Store ``claim`` on ``row``; the columns that changed."""
    details = claim.details
    assert details.claim_type is not None
    zero = Decimal(0)
    benefit = claim.benefit
    values: dict[str, object] = {
        "state": claim.state.value,
        "claim_type": details.claim_type.value,
        "description": details.description,
        "incident_date": details.incident_date,
        "report_date": details.report_date,
        "currency": details.claimed_amount.currency,
        "claimed_amount": details.claimed_amount.amount,
        "coverage_code": details.coverage_code,
        "claimant_dependent_id": details.claimant_dependent_id,
        "claim_number": claim.claim_number,
        "approved_amount": _amount(claim.approved_amount),
        "paid_amount": _amount(claim.paid_amount),
        "expense_paid": _amount(claim.expense_paid) or zero,
        "recovered_amount": _amount(claim.recovered_amount) or zero,
        "indemnity_reserve": _amount(claim.indemnity_reserve) or zero,
        "expense_reserve": _amount(claim.expense_reserve) or zero,
        "benefit_claimed": _amount(benefit.claimed) if benefit else None,
        "benefit_deductible": _amount(benefit.deductible) if benefit else None,
        "benefit_copay": _amount(benefit.copay) if benefit else None,
        "benefit_coinsurance": _amount(benefit.coinsurance) if benefit else None,
        "benefit_limit_cut": _amount(benefit.limit_cut) if benefit else None,
        "benefit_payable": _amount(benefit.payable) if benefit else None,
        "payment_reference": claim.payment_reference,
        "deny_reason": claim.deny_reason,
        "withdraw_reason": claim.withdraw_reason,
    }
    return assign(row, values)


def log_entry(
    row: ClaimRow,
    *,
    action: str,
    from_state: str | None,
    amount: Money | None,
    note: str,
    payment_reference: str,
    actor_id: str,
    request_id: str | None,
) -> ClaimLogEntryRow:
    """The log entry of ``action``, which left the claim in its current state."""
    return ClaimLogEntryRow(
        id=uuid.uuid4(),
        company_id=row.company_id,
        claim_id=row.id,
        action=action,
        from_state=from_state,
        to_state=row.state,
        amount=amount.amount if amount else None,
        currency=amount.currency if amount else None,
        note=note,
        payment_reference=payment_reference,
        actor_id=actor_id,
        request_id=request_id,
    )


# ------------------------------------------------------------------ reading


def claim_log(company: uuid.UUID, claim_id: uuid.UUID) -> Select[ClaimLogEntryRow]:
    return children(ClaimLogEntryRow, company, ClaimLogEntryRow.claim_id, claim_id)


# ------------------------------------------------------------------ payments


def payment_of(row: ClaimPaymentRow) -> Payment:
    return Payment(
        state=PaymentState(row.state),
        cost_type=CostType(row.cost_type),
        amount=Money(row.amount, row.currency).rounded(),
    )


async def find_payment(
    session: AsyncSession,
    company: uuid.UUID,
    claim_id: uuid.UUID,
    payment_id: str,
    *,
    lock: bool = True,
) -> ClaimPaymentRow:
    """The claim's payment ``payment_id`` (locked unless ``lock`` is off);
    NOT_FOUND otherwise."""
    key = lookup_uuid(payment_id)
    row = None
    if key is not None:
        stmt = select(ClaimPaymentRow).where(
            ClaimPaymentRow.company_id == company,
            ClaimPaymentRow.claim_id == claim_id,
            ClaimPaymentRow.id == key,
        )
        if lock:
            stmt = stmt.with_for_update()
        row = (await session.scalars(stmt)).first()
    if row is None:
        raise not_found("payment", payment_id)
    return row


async def payment_by_request(
    session: AsyncSession, company: uuid.UUID, claim_id: uuid.UUID, request_id: str
) -> ClaimPaymentRow:
    """The payment a request id created (the answer to its replay)."""
    return await _by_request(session, ClaimPaymentRow, "payment", (company, claim_id), request_id)


async def recovery_by_request(
    session: AsyncSession, company: uuid.UUID, claim_id: uuid.UUID, request_id: str
) -> ClaimRecoveryRow:
    """The recovery a request id created (the answer to its replay)."""
    return await _by_request(session, ClaimRecoveryRow, "recovery", (company, claim_id), request_id)


_Created = TypeVar("_Created", ClaimPaymentRow, ClaimRecoveryRow)


async def _by_request(
    session: AsyncSession,
    model: type[_Created],
    resource: str,
    claim: tuple[uuid.UUID, uuid.UUID],
    request_id: str,
) -> _Created:
    company, claim_id = claim
    stmt = select(model).where(
        model.company_id == company, model.claim_id == claim_id, model.request_id == request_id
    )
    row = (await session.scalars(stmt)).first()
    if row is None:  # pragma: no cover - the request id commits with its row
        raise not_found(resource, request_id)
    return row


def claim_payments(company: uuid.UUID, claim_id: uuid.UUID) -> Select[ClaimPaymentRow]:
    return children(ClaimPaymentRow, company, ClaimPaymentRow.claim_id, claim_id)


def claim_recoveries(company: uuid.UUID, claim_id: uuid.UUID) -> Select[ClaimRecoveryRow]:
    return children(ClaimRecoveryRow, company, ClaimRecoveryRow.claim_id, claim_id)


# ------------------------------------------------------------------ accumulators


def _key(period: Period) -> tuple[uuid.UUID, uuid.UUID, str, date]:
    return (period.scope_id, period.member_id, period.coverage_code, period.start)


def _where(company: uuid.UUID, periods: Sequence[Period]) -> Select[ClaimAccumulatorRow]:
    a = ClaimAccumulatorRow
    keys = [_key(p) for p in periods]
    return (
        select(a)
        .where(
            a.company_id == company,
            tuple_(a.scope_id, a.member_id, a.coverage_code, a.period_start).in_(keys),
        )
        .order_by(a.scope_id, a.member_id, a.coverage_code, a.period_start)
    )


def _by_period(
    rows: Sequence[ClaimAccumulatorRow], periods: Sequence[Period]
) -> dict[Period, ClaimAccumulatorRow]:
    found = {(r.scope_id, r.member_id, r.coverage_code, r.period_start): r for r in rows}
    return {p: found[_key(p)] for p in periods if _key(p) in found}


async def read_accumulators(
    session: AsyncSession, company: uuid.UUID, periods: Sequence[Period]
) -> dict[Period, ClaimAccumulatorRow]:
    """The accumulators of ``periods`` that exist, unlocked (for estimates)."""
    if not periods:
        return {}
    return _by_period((await session.scalars(_where(company, periods))).all(), periods)


async def lock_accumulators(
    session: AsyncSession, company: uuid.UUID, periods: Sequence[Period], currency: str
) -> dict[Period, ClaimAccumulatorRow]:
    """The accumulators of ``periods``, created when missing and locked ``FOR
    UPDATE`` in one order (scope, member, coverage, start), so two approvals
    that need the same rows queue instead of deadlocking."""
    if not periods:
        return {}
    a = ClaimAccumulatorRow
    await session.execute(
        insert(a)
        .values(
            [
                {
                    "id": uuid.uuid4(),
                    "company_id": company,
                    "member_id": p.member_id,
                    "coverage_code": p.coverage_code,
                    "scope_id": p.scope_id,
                    "period_start": p.start,
                    "period_end": p.end,
                    "currency": currency,
                    "deductible_used": Decimal(0),
                    "limit_used": Decimal(0),
                }
                for p in sorted(set(periods), key=_key)
            ]
        )
        .on_conflict_do_nothing(
            index_elements=["company_id", "scope_id", "member_id", "coverage_code", "period_start"]
        )
    )
    stmt = _where(company, periods).with_for_update().execution_options(populate_existing=True)
    return _by_period((await session.scalars(stmt)).all(), periods)


def usage_of(row: ClaimAccumulatorRow | None, currency: str) -> Usage:
    if row is None:
        return Usage.zero(currency)
    return Usage(
        Money(row.deductible_used, currency).rounded(), Money(row.limit_used, currency).rounded()
    )


def apply_usage(row: ClaimAccumulatorRow, before: Consumption, after: Consumption) -> None:
    """Move ``row`` from counting ``before`` to counting ``after`` of one claim."""
    row.deductible_used = row.deductible_used - before.deductible.amount + after.deductible.amount
    row.limit_used = row.limit_used - before.limit.amount + after.limit.amount


async def claims_with_money(
    session: AsyncSession, company: uuid.UUID, policy_id: uuid.UUID
) -> list[ClaimRow]:
    """The policy's live claims that carry money: approved, paid or closed, or with an
    amount paid out (a reopened claim under review), oldest incident first. Locks
    nothing: the policy transition that asks holds the policy row's lock."""
    money_states = [s.value for s in (ClaimState.APPROVED, ClaimState.PAID, ClaimState.CLOSED)]
    query = (
        select(ClaimRow)
        .where(
            ClaimRow.company_id == company,
            ClaimRow.policy_id == policy_id,
            ClaimRow.delete_time.is_(None),
            or_(ClaimRow.state.in_(money_states), ClaimRow.paid_amount > 0),
        )
        .order_by(ClaimRow.incident_date, ClaimRow.id)
    )
    return list((await session.scalars(query)).all())
