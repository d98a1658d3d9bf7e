"""Underwriting: what a quote needs an underwriter for, and the decisions.

The rules run when a policy is quoted (:func:`evaluate`); each
:class:`Finding` becomes an underwriting issue of the policy, identified by its
``(code, key)``: a re-quote that finds the same thing again keeps the issue and
its decision, a finding that is gone takes its issue with it. An issue that is
OPEN or DECLINED blocks the bind.

The rules (``code``: when, ``key``):

- ``MANUAL_UNDERWRITING``: the product version's rating rules ask for an
  underwriter on every quote. Key: a digest of the terms the underwriter sees
  (dates, sum insured, insured members and their dates of birth), so a change
  of any of them needs a new decision.
- ``BACKDATED``: the effective date lies further in the past than the
  company's ``max_backdate_days`` (a policy starting exactly that many days
  before today is not backdated). Key: the effective date.
- ``SUM_INSURED_REFERRAL``: the sum insured is above the product's
  ``referral_sum_insured`` (equal is not above). Key: the sum insured, so a
  higher one needs a new decision.
- ``AGE_LIMIT``: per insured member and coverage with entry ages (0: no
  limit), the member's age on the effective date is outside them, bounds
  included in the range, or the date of birth is unknown. Key: the member's key
  and the coverage code. Not checked again for members whose cover continues
  from the policy a renewal renews; a member joining at renewal is checked.

Decisions (``ISSUE_TRANSITIONS``)::

    OPEN --approve--> APPROVED
    OPEN --decline--> DECLINED

Nothing else: deciding an issue again is FAILED_PRECONDITION ``ISSUE_DECIDED``.
A decision carries a note of 1-1000 characters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Final, Protocol

from cardinsa_core.domain.money import Money
from cardinsa_core.domain.policies import PolicyState
from cardinsa_core.domain.rating import RatedMember, RatingRequest, RatingRules, age_on
from cardinsa_foundation.errors import FailedPrecondition, FieldViolation

__all__ = [
    "AGE_LIMIT",
    "BACKDATED",
    "ISSUE_DECIDED",
    "ISSUE_TRANSITIONS",
    "MANUAL_UNDERWRITING",
    "MAX_DECISION_NOTE",
    "POLICY_NOT_QUOTED",
    "SUM_INSURED_REFERRAL",
    "Decision",
    "EntryAges",
    "Finding",
    "IssueState",
    "backdated",
    "blocks_bind",
    "check_decidable",
    "check_decision_note",
    "decide",
    "evaluate",
    "evaluate_quote",
]

MANUAL_UNDERWRITING: Final = "MANUAL_UNDERWRITING"
BACKDATED: Final = "BACKDATED"
SUM_INSURED_REFERRAL: Final = "SUM_INSURED_REFERRAL"
AGE_LIMIT: Final = "AGE_LIMIT"
#: FAILED_PRECONDITION reasons of a decision.
ISSUE_DECIDED: Final = "ISSUE_DECIDED"
POLICY_NOT_QUOTED: Final = "POLICY_NOT_QUOTED"
MAX_DECISION_NOTE: Final = 1000


class IssueState(StrEnum):
    OPEN = "OPEN"
    APPROVED = "APPROVED"
    DECLINED = "DECLINED"


class Decision(StrEnum):
    APPROVE = "approve"
    DECLINE = "decline"


ISSUE_TRANSITIONS: Final = MappingProxyType(
    {
        (IssueState.OPEN, Decision.APPROVE): IssueState.APPROVED,
        (IssueState.OPEN, Decision.DECLINE): IssueState.DECLINED,
    }
)


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing the rules found on a quote."""

    code: str
    #: What exactly (same code and key on a re-quote: the same issue).
    key: str
    description: str


class EntryAges(Protocol):
    """A coverage as the age rule reads it (0: no limit on that side)."""

    @property
    def code(self) -> str: ...

    @property
    def min_entry_age(self) -> int: ...

    @property
    def max_entry_age(self) -> int: ...


# ------------------------------------------------------------------ the rules


def evaluate(
    *,
    rules: RatingRules,
    coverages: Iterable[EntryAges],
    members: Sequence[RatedMember],
    effective_date: date,
    expiry_date: date,
    sum_insured: Money,
    today: date,
    max_backdate_days: int,
    renewal: bool = False,
    continuing: Collection[str] = (),
) -> list[Finding]:
    """What the underwriting rules find on a quote (``today``: the company's date).

    ``renewal``: the quote continues cover for everyone, so entry ages are not
    checked again; ``continuing``: the keys of the members whose cover continues
    (a renewal's members insured by the policy it renews) -- only the others'
    entry ages are checked.
    """
    findings: list[Finding] = []
    if rules.manual_underwriting:
        findings.append(
            Finding(
                MANUAL_UNDERWRITING,
                _terms_key(effective_date, expiry_date, sum_insured, members),
                "the product requires an underwriter's approval of every quote",
            )
        )
    late = backdated(effective_date, today, max_backdate_days)
    if late is not None:
        findings.append(late)
    referral = rules.referral_sum_insured
    if referral is not None and _above(sum_insured, referral):
        findings.append(
            Finding(
                SUM_INSURED_REFERRAL,
                str(sum_insured),
                f"the sum insured {sum_insured} is above the referral limit {referral}",
            )
        )
    if not renewal:
        joining = [m for m in members if m.key not in continuing]
        findings += _age_findings(list(coverages), joining, effective_date)
    return findings


def evaluate_quote(
    request: RatingRequest,
    coverages: Iterable[EntryAges],
    *,
    today: date,
    max_backdate_days: int,
    renewal: bool = False,
    continuing: Collection[str] = (),
) -> list[Finding]:
    """:func:`evaluate` on the rating request of a quote (its rules, members,
    first and last day and sum insured)."""
    return evaluate(
        rules=request.rules,
        coverages=coverages,
        members=request.members,
        effective_date=request.start,
        expiry_date=request.end,
        sum_insured=request.sum_insured,
        today=today,
        max_backdate_days=max_backdate_days,
        renewal=renewal,
        continuing=continuing,
    )


def backdated(effective_date: date, today: date, max_backdate_days: int) -> Finding | None:
    """The BACKDATED finding when ``effective_date`` is before today minus the limit."""
    allowed = max(max_backdate_days, 0)
    earliest = today - timedelta(days=allowed)
    if effective_date >= earliest:
        return None
    days = (today - effective_date).days
    return Finding(
        BACKDATED,
        effective_date.isoformat(),
        f"the policy starts on {effective_date.isoformat()}, {days} days before "
        f"{today.isoformat()}; at most {allowed} days are allowed without an underwriter",
    )


def _above(sum_insured: Money, referral: Money) -> bool:
    # A sum insured in another currency cannot be compared: an underwriter looks.
    if sum_insured.currency != referral.currency:
        return True
    return sum_insured > referral


def _terms_key(
    effective_date: date, expiry_date: date, sum_insured: Money, members: Sequence[RatedMember]
) -> str:
    parts = [effective_date.isoformat(), expiry_date.isoformat(), str(sum_insured)]
    parts += sorted(
        f"{m.key}:{m.date_of_birth.isoformat() if m.date_of_birth else '-'}" for m in members
    )
    return "terms:" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _entry_ages(coverage: EntryAges) -> str:
    low, high = coverage.min_entry_age, coverage.max_entry_age
    if low > 0 and high > 0:
        return f"entry ages {low}-{high}"
    if low > 0:
        return f"entry ages from {low}"
    return f"entry ages up to {high}"


def _age_findings(
    coverages: Sequence[EntryAges], members: Sequence[RatedMember], effective_date: date
) -> list[Finding]:
    limited = [c for c in coverages if c.min_entry_age > 0 or c.max_entry_age > 0]
    findings: list[Finding] = []
    for member in members:
        age = age_on(member.date_of_birth, effective_date)
        for coverage in limited:
            low, high = coverage.min_entry_age, coverage.max_entry_age
            if age is None:
                problem = "date of birth unknown"
            elif low > 0 and age < low:
                problem = f"age {age} is below {low}"
            elif high > 0 and age > high:
                problem = f"age {age} is above {high}"
            else:
                continue
            findings.append(
                Finding(
                    AGE_LIMIT,
                    f"{member.key}/{coverage.code}",
                    f"{member.label()}: {problem} for {coverage.code} "
                    f"({_entry_ages(coverage)} on {effective_date.isoformat()})",
                )
            )
    return findings


# ------------------------------------------------------------------ decisions


def blocks_bind(state: IssueState | str) -> bool:
    """Whether an issue in ``state`` stands in the way of binding."""
    return IssueState(state) is not IssueState.APPROVED


def decide(state: IssueState | str, decision: Decision) -> IssueState:
    """The issue's state after ``decision``; only an OPEN issue can be decided."""
    current = IssueState(state)
    target = ISSUE_TRANSITIONS.get((current, decision))
    if target is None:
        raise FailedPrecondition(
            f"the underwriting issue is already {current.value}; it cannot be decided again",
            reason=ISSUE_DECIDED,
            metadata={"state": current.value, "decision": decision.value},
        )
    return target


def check_decidable(policy_state: PolicyState | str) -> None:
    """Issues are decided while their policy is QUOTED (what the rules looked at)."""
    current = PolicyState(policy_state)
    if current is not PolicyState.QUOTED:
        raise FailedPrecondition(
            f"underwriting issues are decided while the policy is QUOTED; it is {current.value}",
            reason=POLICY_NOT_QUOTED,
            metadata={"policy_state": current.value},
        )


def check_decision_note(note: str, field: str = "note") -> list[FieldViolation]:
    """A decision's reason: required (not blank), at most 1000 characters."""
    if not note.strip():
        return [FieldViolation(field, "required")]
    if len(note) > MAX_DECISION_NOTE:
        return [FieldViolation(field, f"at most {MAX_DECISION_NOTE} characters")]
    return []
