"""Claims in the database: the claim row and its action log (the approval bands:
:mod:`cardinsa_core.repository.claim_authority`)."""

from __future__ import annotations

import uuid

from sqlalchemy import Select

from cardinsa_core.domain.claims import Claim, ClaimDetails, ClaimState, ClaimType
from cardinsa_core.domain.money import Money
from cardinsa_core.repository.models import ClaimLogEntryRow, ClaimRow
from cardinsa_core.repository.rows import Resources, assign, children
from cardinsa_foundation.filtering import FieldType, FilterField, FilterSpec

__all__ = [
    "CLAIMS",
    "apply_claim",
    "claim_log",
    "claim_of",
    "log_entry",
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


# ------------------------------------------------------------------ mapping


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
        approved_amount=Money.of(row.approved_amount, currency)
        if row.approved_amount is not None
        else None,
        paid_amount=Money.of(row.paid_amount, currency) if row.paid_amount is not None else None,
        payment_reference=row.payment_reference,
        deny_reason=row.deny_reason,
    )


def apply_claim(row: ClaimRow, claim: Claim) -> list[str]:
    """Store ``claim`` on ``row``; the columns that changed."""
    details = claim.details
    assert details.claim_type is not None
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
        "approved_amount": claim.approved_amount.amount if claim.approved_amount else None,
        "paid_amount": claim.paid_amount.amount if claim.paid_amount else None,
        "payment_reference": claim.payment_reference,
        "deny_reason": claim.deny_reason,
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
