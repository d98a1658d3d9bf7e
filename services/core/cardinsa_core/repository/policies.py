"""Policies in the database: the policy row, its versions and its status log.

``policies`` holds the current state and terms; every bind and endorsement
writes a ``policy_versions`` row (what was insured from which date, which
claims read back), every state change a ``policy_status_changes`` row.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_core.domain.money import Money
from cardinsa_core.domain.policies import (
    CancelReason,
    InsuredMembers,
    PaymentFrequency,
    Policy,
    PolicyState,
    PolicyTerms,
)
from cardinsa_core.repository.models import PolicyRow, PolicyStatusChangeRow, PolicyVersionRow
from cardinsa_core.repository.rows import Resources, assign, children
from cardinsa_foundation.db import ReadQuery
from cardinsa_foundation.filtering import FieldType, FilterField, FilterSpec

__all__ = [
    "GET_POLICY",
    "POLICIES",
    "apply_policy",
    "insured_by",
    "policy_of",
    "policy_versions",
    "status_change",
    "status_changes",
    "version_in_effect",
    "version_of",
    "version_row",
]

POLICIES = Resources(
    PolicyRow,
    "policy",
    FilterSpec(
        {
            "state": FilterField(
                PolicyRow.state, FieldType.ENUM, values=[s.value for s in PolicyState]
            ),
            "policy_number": FilterField(PolicyRow.policy_number, FieldType.STRING),
            "policyholder_id": FilterField(PolicyRow.policyholder_id, FieldType.UUID),
            "product_id": FilterField(PolicyRow.product_id, FieldType.UUID),
            "effective_date": FilterField(PolicyRow.effective_date, FieldType.DATE),
            "expiry_date": FilterField(PolicyRow.expiry_date, FieldType.DATE),
            "payment_frequency": FilterField(
                PolicyRow.payment_frequency,
                FieldType.ENUM,
                values=[f.value for f in PaymentFrequency],
            ),
            "create_time": FilterField(PolicyRow.create_time, FieldType.TIMESTAMP),
        }
    ),
    {
        "create_time": PolicyRow.create_time,
        "policy_number": PolicyRow.policy_number,
        "effective_date": PolicyRow.effective_date,
        "expiry_date": PolicyRow.expiry_date,
    },
)
#: GetPolicy in one round trip, without the ORM (cardinsa_foundation.db.Database.read):
#: the function core.read_policy of migration core_0002.
GET_POLICY = ReadQuery(PolicyRow, "read_policy", ("id",))


# ------------------------------------------------------------------ mapping


def policy_of(row: PolicyRow) -> Policy:
    currency = row.currency
    return Policy(
        state=PolicyState(row.state),
        currency=currency,
        terms=PolicyTerms(
            effective_date=row.effective_date,
            expiry_date=row.expiry_date,
            payment_frequency=PaymentFrequency(row.payment_frequency),
            sum_insured=Money.of(row.sum_insured, currency),
            insured=InsuredMembers(row.insures_holder, frozenset(row.insured_dependent_ids)),
        ),
        premium=Money.of(row.premium, currency) if row.premium is not None else None,
        policy_number=row.policy_number,
        version=row.current_version,
        version_effective_date=row.version_effective_date,
        activated=row.activate_time is not None,
        cancel_reason=CancelReason(row.cancel_reason) if row.cancel_reason else None,
        cancel_effective_date=row.cancel_effective_date,
        lapse_date=row.lapse_date,
        termination_note=row.termination_note,
        successor_id=row.successor_policy_id,
        previous_id=row.previous_policy_id,
        do_not_renew=row.do_not_renew,
        cancel_processed_date=row.cancel_processed_date,
    )


def apply_policy(row: PolicyRow, policy: Policy) -> list[str]:
    """Store ``policy`` on ``row``; the columns that changed."""
    terms = policy.terms
    values: dict[str, object] = {
        "state": policy.state.value,
        "currency": policy.currency,
        "effective_date": terms.effective_date,
        "expiry_date": terms.expiry_date,
        "payment_frequency": terms.payment_frequency.value,
        "sum_insured": terms.sum_insured.amount,
        "insures_holder": terms.insured.holder,
        "insured_dependent_ids": sorted(terms.insured.dependent_ids),
        "premium": policy.premium.amount if policy.premium else None,
        "policy_number": policy.policy_number,
        "current_version": policy.version,
        "version_effective_date": policy.version_effective_date,
        "cancel_reason": policy.cancel_reason.value if policy.cancel_reason else None,
        "cancel_effective_date": policy.cancel_effective_date,
        "lapse_date": policy.lapse_date,
        "termination_note": policy.termination_note,
        "successor_policy_id": policy.successor_id,
        "do_not_renew": policy.do_not_renew,
        "cancel_processed_date": policy.cancel_processed_date,
    }
    return assign(row, values, normalize={"insured_dependent_ids": lambda ids: sorted(ids or [])})


def insured_by(version: PolicyVersionRow) -> InsuredMembers:
    return InsuredMembers(version.insures_holder, frozenset(version.insured_dependent_ids))


def version_row(
    row: PolicyRow,
    policy: Policy,
    *,
    description: str,
    changed: Sequence[str],
    actor: uuid.UUID | None,
) -> PolicyVersionRow:
    """The version ``policy`` (bound or endorsed) starts."""
    assert policy.premium is not None and policy.version_effective_date is not None
    return PolicyVersionRow(
        id=uuid.uuid4(),
        company_id=row.company_id,
        policy_id=row.id,
        version=policy.version,
        effective_date=policy.version_effective_date,
        currency=policy.currency,
        premium=policy.premium.amount,
        sum_insured=policy.terms.sum_insured.amount,
        insures_holder=policy.terms.insured.holder,
        insured_dependent_ids=sorted(policy.terms.insured.dependent_ids),
        description=description,
        changed_fields=list(changed),
        created_by=actor,
    )


def status_change(
    row: PolicyRow,
    *,
    from_state: str | None,
    to_state: str,
    transition: str,
    reason: str,
    effective_date: date | None,
    actor_id: str,
    request_id: str | None,
) -> PolicyStatusChangeRow:
    return PolicyStatusChangeRow(
        id=uuid.uuid4(),
        company_id=row.company_id,
        policy_id=row.id,
        from_state=from_state,
        to_state=to_state,
        transition=transition,
        reason=reason,
        effective_date=effective_date,
        actor_id=actor_id,
        request_id=request_id,
    )


# ------------------------------------------------------------------ reading


def policy_versions(company: uuid.UUID, policy_id: uuid.UUID) -> Select[PolicyVersionRow]:
    return children(PolicyVersionRow, company, PolicyVersionRow.policy_id, policy_id)


def status_changes(company: uuid.UUID, policy_id: uuid.UUID) -> Select[PolicyStatusChangeRow]:
    return children(PolicyStatusChangeRow, company, PolicyStatusChangeRow.policy_id, policy_id)


async def version_in_effect(
    session: AsyncSession, policy: PolicyRow, day: date
) -> PolicyVersionRow | None:
    """The policy's latest version that took effect on or before ``day``."""
    return (
        await session.scalars(
            policy_versions(policy.company_id, policy.id)
            .where(PolicyVersionRow.effective_date <= day)
            .order_by(PolicyVersionRow.version.desc())
            .limit(1)
        )
    ).first()


async def version_of(
    session: AsyncSession, policy: PolicyRow, version: int
) -> PolicyVersionRow | None:
    """The policy's version ``version``."""
    return (
        await session.scalars(
            policy_versions(policy.company_id, policy.id).where(PolicyVersionRow.version == version)
        )
    ).first()
