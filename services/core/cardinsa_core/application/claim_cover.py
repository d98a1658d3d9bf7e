"""The cover behind a claim's money: eligibility, the benefit, the accumulators.

Eligibility is checked on create, update and submit (the claim's facts), and
again at every money step -- approve, each indemnity payment, reopen --
against the policy as it is *now*: a policy cancelled or lapsed back to
before the incident, an endorsement that removed the claimant, or a waiting
period not yet over refuses the step. The policy row is read ``FOR SHARE`` on
those steps, so a cancellation (which locks it ``FOR UPDATE`` and looks at the
claims) and an approval cannot pass each other unseen.

The benefit of a claim is worked out from the coverage of the policy's
product version and the accumulators of the claimant's period, less what the
claim itself has consumed (so re-approving does not count the claim twice).
At approval the accumulators are locked first (``FOR UPDATE``, one order), so
of two approvals racing for the last of a limit the second sees the first's
consumption and is refused past what remains.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_core.domain.adjudication import (
    Benefit,
    Consumption,
    Period,
    assess,
    period_of,
    sum_insured_period,
)
from cardinsa_core.domain.claims import Claim, ClaimDetails
from cardinsa_core.domain.money import Money
from cardinsa_core.domain.products import Coverage
from cardinsa_core.repository.claim_facts import CoverFacts, read_cover_facts
from cardinsa_core.repository.claims import (
    apply_usage,
    lock_accumulators,
    read_accumulators,
    usage_of,
)
from cardinsa_core.repository.models import (
    ClaimAccumulatorRow,
    ClaimRow,
    CoverageRow,
    PolicyRow,
    PolicyVersionRow,
)
from cardinsa_core.repository.policies import (
    POLICIES,
    insured_by,
    policy_of,
    version_in_effect,
    version_of,
)
from cardinsa_core.repository.products import coverage_of, load_version
from cardinsa_foundation.db import driver_connection
from cardinsa_foundation.errors import FailedPrecondition, FieldViolation, InvalidArgument
from cardinsa_foundation.use_cases import not_found

__all__ = [
    "Cover",
    "assessed",
    "benefit_of",
    "cover_from",
    "coverage_for",
    "eligible_from",
    "eligible_version",
    "load_cover",
    "moved",
    "read_cover",
    "settle",
]


@dataclass(frozen=True, slots=True)
class Cover:
    """What a claim is measured against."""

    policy: PolicyRow
    version: PolicyVersionRow
    coverage: Coverage
    #: The claimant's limit period (None for a PER_CLAIM coverage).
    period: Period | None
    sum_insured: Period
    #: The accumulator rows once locked in this transaction (reused by :func:`settle`).
    locked: dict[Period, ClaimAccumulatorRow] = field(default_factory=dict)

    @property
    def periods(self) -> list[Period]:
        return [p for p in (self.period, self.sum_insured) if p is not None]


async def coverage_for(session: AsyncSession, policy: PolicyRow, code: str) -> Coverage:
    version = await load_version(
        session, policy.company_id, policy.product_id, policy.product_version
    )
    found = next((c for c in version.coverages if c.code == code), None) if version else None
    return _coverage(found, policy.currency)


def _coverage(found: CoverageRow | None, currency: str) -> Coverage:
    if found is None:
        raise InvalidArgument(
            "the policy's product has no such coverage",
            reason="UNKNOWN_COVERAGE",
            field_violations=[
                FieldViolation("claim.coverage_code", "not a coverage of the policy's product")
            ],
        )
    return coverage_of(found, currency)


def _check_in_force(policy: PolicyRow, incident: date) -> None:
    if policy.delete_time is not None or not policy_of(policy).covers(incident):
        raise FailedPrecondition(
            f"the policy was not in force on {incident.isoformat()}",
            reason="POLICY_NOT_IN_FORCE",
            metadata={"incident_date": incident.isoformat(), "policy_state": policy.state},
        )


def _check_insured(version: PolicyVersionRow | None, details: ClaimDetails) -> PolicyVersionRow:
    if version is None:  # pragma: no cover - an activated policy has version 1
        raise FailedPrecondition("the policy has no version", reason="POLICY_NOT_IN_FORCE")
    if not insured_by(version).includes(details.claimant_dependent_id):
        raise FailedPrecondition(
            "the claimant was not insured by the policy on the incident date",
            reason="CLAIMANT_NOT_INSURED",
            metadata={"policy_version": str(version.version)},
        )
    return version


def _check_waiting(policy: PolicyRow, details: ClaimDetails, coverage: Coverage) -> None:
    # A member insured without a break by the policies this one renews has
    # served part of the waiting period already (cover_since, set at renewal).
    member = (
        "holder" if details.claimant_dependent_id is None else str(details.claimant_dependent_id)
    )
    since = (policy.cover_since or {}).get(member)
    cover_start = date.fromisoformat(since) if since else policy.effective_date
    waiting_ends = cover_start + timedelta(days=coverage.waiting_period_days)
    if details.incident_date < waiting_ends:
        raise FailedPrecondition(
            f"the coverage's waiting period runs until {waiting_ends.isoformat()}",
            reason="WAITING_PERIOD",
            metadata={"waiting_period_ends": waiting_ends.isoformat()},
        )


def eligible_from(
    policy: PolicyRow,
    details: ClaimDetails,
    version: PolicyVersionRow | None,
    coverage: CoverageRow | None,
) -> tuple[PolicyVersionRow, Coverage]:
    """:func:`eligible_version` on rows read already (``version``: the one in
    effect on the incident date; ``coverage``: the product version's coverage
    of the claim's code): the same checks, in the same order."""
    _check_in_force(policy, details.incident_date)
    found = _check_insured(version, details)
    cover = _coverage(coverage, policy.currency)
    _check_waiting(policy, details, cover)
    return found, cover


async def eligible_version(
    session: AsyncSession, policy: PolicyRow, details: ClaimDetails
) -> tuple[PolicyVersionRow, Coverage]:
    """The policy version in effect on the incident date and the claim's
    coverage, after every check of the cover."""
    _check_in_force(policy, details.incident_date)
    version = _check_insured(
        await version_in_effect(session, policy, details.incident_date), details
    )
    coverage = await coverage_for(session, policy, details.coverage_code)
    _check_waiting(policy, details, coverage)
    return version, coverage


async def load_cover(
    session: AsyncSession, row: ClaimRow, details: ClaimDetails, *, check: bool = True
) -> Cover:
    """The claim's cover as it is now, checked (FAILED_PRECONDITION when gone)
    unless ``check`` is off (giving money back needs no cover); the policy row
    is held ``FOR SHARE`` until the transaction ends. One statement reads the
    policy, its version in effect and the coverage (:func:`read_cover_facts`)."""
    facts = await _cover_facts(await driver_connection(session), row, details)
    if check:
        return cover_from(facts, row, details)
    policy = _policy(facts, row)
    found = facts.version
    version = found if found is not None else await _version(session, policy, row)
    return _cover(policy, version, _coverage(facts.coverage, policy.currency), details)


async def read_cover(connection: Any, row: ClaimRow, details: ClaimDetails) -> Cover:
    """:func:`load_cover` (checked) on an asyncpg connection in its transaction."""
    return cover_from(await _cover_facts(connection, row, details), row, details)


async def _cover_facts(connection: Any, row: ClaimRow, details: ClaimDetails) -> CoverFacts:
    return await read_cover_facts(
        connection,
        company=row.company_id,
        policy_id=row.policy_id,
        incident=details.incident_date,
        coverage_code=details.coverage_code,
    )


def _policy(facts: CoverFacts, row: ClaimRow) -> PolicyRow:
    if facts.policy is None:  # pragma: no cover - a claim's policy exists (foreign key)
        raise not_found(POLICIES.name, str(row.policy_id))
    return facts.policy


def cover_from(facts: CoverFacts, row: ClaimRow, details: ClaimDetails) -> Cover:
    """The checked cover of the facts read (sets the claim's policy version)."""
    policy = _policy(facts, row)
    version, coverage = eligible_from(policy, details, facts.version, facts.coverage)
    row.policy_version = version.version
    return _cover(policy, version, coverage, details)


def _cover(
    policy: PolicyRow, version: PolicyVersionRow, coverage: Coverage, details: ClaimDetails
) -> Cover:
    member = details.claimant_dependent_id or policy.policyholder_id
    period = period_of(
        coverage.limit_period,
        member_id=member,
        coverage_code=coverage.code,
        incident=details.incident_date,
        policy_id=policy.id,
        product_id=policy.product_id,
        effective=policy.effective_date,
        expiry=policy.expiry_date,
    )
    return Cover(
        policy=policy,
        version=version,
        coverage=coverage,
        period=period,
        sum_insured=sum_insured_period(policy.id, policy.effective_date, policy.expiry_date),
    )


async def _version(session: AsyncSession, policy: PolicyRow, row: ClaimRow) -> PolicyVersionRow:
    found = await version_of(session, policy, row.policy_version)
    if found is None:  # pragma: no cover - the claim's version exists (foreign data)
        raise FailedPrecondition("the policy has no version", reason="POLICY_NOT_IN_FORCE")
    return found


async def _locked(
    session: AsyncSession, cover: Cover, currency: str
) -> dict[Period, ClaimAccumulatorRow]:
    """The cover's accumulator rows, locked ``FOR UPDATE`` once per transaction."""
    if not cover.locked:
        company = cover.policy.company_id
        cover.locked.update(await lock_accumulators(session, company, cover.periods, currency))
    return cover.locked


async def benefit_of(session: AsyncSession, claim: Claim, cover: Cover, *, lock: bool) -> Benefit:
    """The claim's benefit with the accumulators as they are without the claim's
    own consumption; ``lock`` holds them ``FOR UPDATE`` (an approval)."""
    company = cover.policy.company_id
    if lock:
        rows = await _locked(session, cover, claim.currency)
    else:
        rows = await read_accumulators(session, company, cover.periods)
    return assessed(claim, cover, rows)


def assessed(claim: Claim, cover: Cover, rows: Mapping[Period, ClaimAccumulatorRow]) -> Benefit:
    """The claim's benefit given the cover's accumulator rows (missing: unused)."""
    currency = claim.currency
    own = claim.consumption
    usage = None
    if cover.period is not None:
        usage = usage_of(rows.get(cover.period), currency).minus(own)
    sum_insured_used = usage_of(rows.get(cover.sum_insured), currency).limit_used - own.limit
    return assess(
        claim.details.claimed_amount,
        cover.coverage,
        usage=usage,
        sum_insured=Money(cover.version.sum_insured, currency).rounded(),
        sum_insured_used=sum_insured_used,
    )


async def settle(
    session: AsyncSession, cover: Cover, currency: str, before: Consumption, after: Consumption
) -> None:
    """Move the claim's consumption in its accumulators from ``before`` to
    ``after``, under their lock, in the caller's transaction."""
    if before == after:
        return
    moved(await _locked(session, cover, currency), cover, currency, before, after)
    await session.flush()


def moved(
    rows: Mapping[Period, ClaimAccumulatorRow],
    cover: Cover,
    currency: str,
    before: Consumption,
    after: Consumption,
) -> list[ClaimAccumulatorRow]:
    """Move the consumption in the locked ``rows`` (not stored yet); the rows changed."""
    changed = [rows[cover.sum_insured]]
    if cover.period is not None:
        apply_usage(rows[cover.period], before, after)
        changed.insert(0, rows[cover.period])
    zero = Money.zero(currency)
    apply_usage(
        rows[cover.sum_insured],
        Consumption(zero, before.limit),
        Consumption(zero, after.limit),
    )
    return changed
