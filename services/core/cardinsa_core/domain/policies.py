"""Policies: from a draft to the end of cover.

Lifecycle (``POLICY_LIFECYCLE``)::

    DRAFT --quote--> QUOTED --bind--> BOUND --activate--> IN_FORCE
    DRAFT / QUOTED --update--> DRAFT        (any edit of a quote returns it to draft)
    QUOTED --quote--> QUOTED                (re-price, e.g. on a newer product version)
    IN_FORCE --endorse--> IN_FORCE          (a new immutable version)
    IN_FORCE --renew--> IN_FORCE            (a successor policy, linked both ways)
    BOUND / IN_FORCE / CANCEL_PENDING --cancel--> CANCELLED
    IN_FORCE / CANCEL_PENDING --cancel (a later date)--> CANCEL_PENDING
    CANCEL_PENDING --complete_cancel--> CANCELLED   (on the cancellation date)
    IN_FORCE / CANCEL_PENDING --lapse--> LAPSED
    CANCELLED / LAPSED --reinstate--> IN_FORCE (BOUND if it never went in force)
    CANCEL_PENDING --reinstate--> IN_FORCE  (the scheduled cancellation withdrawn)
    IN_FORCE --expire--> EXPIRED
    DRAFT / QUOTED --delete-->              (soft delete of unsold policies)

Dates are calendar dates. ``effective_date`` is the first covered day and
``expiry_date`` the last; a cancellation or lapse date is the first day *not*
covered any more. A policy covers a day when it went in force (``activated``)
and the day lies between its effective date and its last covered day, which is
what claims check against.

A cancellation takes effect today or earlier; a later date is a *scheduled*
cancellation (``scheduled=True``): the policy is CANCEL_PENDING, cover runs
until the day before that date, and the lifecycle scheduler completes it then.
A policy not yet in force is cancelled flat, from its effective date.
Reinstatement is allowed until ``window_days`` after the date the cancellation
was *processed* (a backdated cancellation can still be reinstated) or after
the lapse date, and never after the term has ended.

"Today" is always the company's date in its time zone; the application passes
it in. The premium comes from the rating module (:mod:`cardinsa_core.domain.rating`)
and the priced transactions from :mod:`cardinsa_core.domain.premium`.
"""

from __future__ import annotations

import calendar
import uuid
from dataclasses import dataclass, replace
from datetime import date, timedelta
from enum import StrEnum
from typing import Final

from cardinsa_core.domain.money import CURRENCY_MISMATCH, Money
from cardinsa_foundation.errors import FailedPrecondition, FieldViolation, InvalidArgument
from cardinsa_foundation.lifecycle import Lifecycle

__all__ = [
    "COVERING_STATES",
    "MAX_TERM_DAYS",
    "POLICY_LIFECYCLE",
    "CancelReason",
    "InsuredMembers",
    "PaymentFrequency",
    "Policy",
    "PolicyAction",
    "PolicyState",
    "PolicyTerms",
    "add_months",
    "check_policy_terms",
]

#: Longest policy term we accept (ten years and leap days).
MAX_TERM_DAYS: Final = 3653
MAX_INSURED: Final = 100


class PolicyState(StrEnum):
    DRAFT = "DRAFT"
    QUOTED = "QUOTED"
    BOUND = "BOUND"
    IN_FORCE = "IN_FORCE"
    CANCELLED = "CANCELLED"
    LAPSED = "LAPSED"
    EXPIRED = "EXPIRED"
    CANCEL_PENDING = "CANCEL_PENDING"


#: States in which a policy covers (between its dates).
COVERING_STATES: Final = frozenset({PolicyState.IN_FORCE, PolicyState.CANCEL_PENDING})


class PolicyAction(StrEnum):
    UPDATE = "update"
    QUOTE = "quote"
    BIND = "bind"
    ACTIVATE = "activate"
    ENDORSE = "endorse"
    RENEW = "renew"
    CANCEL = "cancel"
    SCHEDULE_CANCEL = "schedule_cancel"
    COMPLETE_CANCEL = "complete_cancel"
    REINSTATE = "reinstate"
    LAPSE = "lapse"
    EXPIRE = "expire"
    DELETE = "delete"


class PaymentFrequency(StrEnum):
    ANNUAL = "ANNUAL"
    SEMI_ANNUAL = "SEMI_ANNUAL"
    QUARTERLY = "QUARTERLY"
    MONTHLY = "MONTHLY"
    SINGLE = "SINGLE"


class CancelReason(StrEnum):
    """Why a policy is cancelled (the original's cancellation reasons)."""

    MEMBER_REQUEST = "MEMBER_REQUEST"
    NON_PAYMENT = "NON_PAYMENT"
    FRAUD = "FRAUD"
    REGULATORY = "REGULATORY"
    UNDERWRITING_DECLINE = "UNDERWRITING_DECLINE"
    BUSINESS_DECISION = "BUSINESS_DECISION"
    OTHER = "OTHER"


_DR, _QU, _BO, _IF = PolicyState.DRAFT, PolicyState.QUOTED, PolicyState.BOUND, PolicyState.IN_FORCE
_CA, _LA, _EX = PolicyState.CANCELLED, PolicyState.LAPSED, PolicyState.EXPIRED
_CP = PolicyState.CANCEL_PENDING
_P = PolicyAction

POLICY_LIFECYCLE: Final = Lifecycle(
    "policy",
    PolicyState,
    PolicyAction,
    {
        (_DR, _P.UPDATE): _DR,
        (_QU, _P.UPDATE): _DR,
        (_DR, _P.QUOTE): _QU,
        (_QU, _P.QUOTE): _QU,
        (_QU, _P.BIND): _BO,
        (_BO, _P.ACTIVATE): _IF,
        (_IF, _P.ENDORSE): _IF,
        (_IF, _P.RENEW): _IF,
        (_BO, _P.CANCEL): _CA,
        (_IF, _P.CANCEL): _CA,
        (_CP, _P.CANCEL): _CA,
        (_IF, _P.SCHEDULE_CANCEL): _CP,
        (_CP, _P.SCHEDULE_CANCEL): _CP,
        (_CP, _P.COMPLETE_CANCEL): _CA,
        (_IF, _P.LAPSE): _LA,
        (_CP, _P.LAPSE): _LA,
        # Back in force; a policy cancelled before it went in force returns to BOUND.
        (_CA, _P.REINSTATE): _IF,
        (_LA, _P.REINSTATE): _IF,
        (_CP, _P.REINSTATE): _IF,
        (_IF, _P.EXPIRE): _EX,
        (_DR, _P.DELETE): _DR,
        (_QU, _P.DELETE): _QU,
    },
)


def add_months(day: date, months: int) -> date:
    """``day`` plus ``months`` calendar months, clamped to the end of a shorter month."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True, slots=True)
class InsuredMembers:
    """Who a policy (version) insures: the holder and/or some of their dependents."""

    holder: bool
    dependent_ids: frozenset[uuid.UUID] = frozenset()

    @property
    def count(self) -> int:
        return int(self.holder) + len(self.dependent_ids)

    def includes(self, dependent_id: uuid.UUID | None) -> bool:
        """Whether the holder (``None``) or that dependent is insured."""
        return self.holder if dependent_id is None else dependent_id in self.dependent_ids


@dataclass(frozen=True, slots=True)
class PolicyTerms:
    """What a draft can change, and what an endorsement changes in part."""

    effective_date: date
    expiry_date: date
    payment_frequency: PaymentFrequency
    sum_insured: Money
    insured: InsuredMembers


def check_policy_terms(
    terms: PolicyTerms, currency: str, *, prefix: str = "policy"
) -> list[FieldViolation]:
    violations: list[FieldViolation] = []
    if terms.expiry_date < terms.effective_date:
        violations.append(
            FieldViolation(f"{prefix}.expiry_date", "must not be before the effective date")
        )
    elif (terms.expiry_date - terms.effective_date).days > MAX_TERM_DAYS:
        violations.append(FieldViolation(f"{prefix}.expiry_date", "the term is at most 10 years"))
    if terms.sum_insured.currency != currency:
        violations.append(FieldViolation(f"{prefix}.sum_insured", f"must be in {currency}"))
    elif not terms.sum_insured.is_positive:
        violations.append(FieldViolation(f"{prefix}.sum_insured", "must be positive"))
    if terms.insured.count == 0:
        violations.append(
            FieldViolation(f"{prefix}.insured_members", "at least one member must be insured")
        )
    elif terms.insured.count > MAX_INSURED:
        violations.append(FieldViolation(f"{prefix}.insured_members", f"at most {MAX_INSURED}"))
    return violations


def _invalid(field: str, description: str) -> InvalidArgument:
    return InvalidArgument(
        f"{field}: {description}", field_violations=[FieldViolation(field, description)]
    )


@dataclass(frozen=True, slots=True)
class Policy:
    """A policy's state and current terms; every transition returns a new value."""

    state: PolicyState
    currency: str
    terms: PolicyTerms
    premium: Money | None = None
    policy_number: str | None = None
    #: The current version (0 until bound; each endorsement adds one).
    version: int = 0
    #: The effective date of the current version.
    version_effective_date: date | None = None
    #: Whether the policy ever went in force.
    activated: bool = False
    cancel_reason: CancelReason | None = None
    cancel_effective_date: date | None = None
    lapse_date: date | None = None
    #: Free-text note of the last cancellation or lapse.
    termination_note: str = ""
    successor_id: uuid.UUID | None = None
    #: The policy this one renews.
    previous_id: uuid.UUID | None = None
    do_not_renew: bool = False
    #: Company-local date the last cancellation was processed.
    cancel_processed_date: date | None = None

    # ----------------------------------------------------------------- reading

    @property
    def last_covered_day(self) -> date:
        ends = [self.terms.expiry_date]
        for end in (self.cancel_effective_date, self.lapse_date):
            if end is not None:
                ends.append(end - timedelta(days=1))
        return min(ends)

    def covers(self, day: date) -> bool:
        """Whether the policy was in force on ``day``."""
        return self.activated and self.terms.effective_date <= day <= self.last_covered_day

    @property
    def is_renewal(self) -> bool:
        return self.previous_id is not None

    # ------------------------------------------------------------- transitions

    def update(self, terms: PolicyTerms) -> Policy:
        """New draft terms; a quote goes back to DRAFT and loses its premium."""
        state = POLICY_LIFECYCLE.next_state(self.state, PolicyAction.UPDATE)
        return replace(self, state=state, terms=terms, premium=None)

    def quote(self, premium: Money) -> Policy:
        """Priced: ``premium`` is the rated total of the term (see the rating module)."""
        state = POLICY_LIFECYCLE.next_state(self.state, PolicyAction.QUOTE)
        if self.terms.sum_insured.currency != premium.currency:
            raise FailedPrecondition(
                f"the product is sold in {premium.currency} but the sum insured is "
                f"in {self.terms.sum_insured.currency}; update the policy first",
                reason=CURRENCY_MISMATCH,
                metadata={
                    "currency": premium.currency,
                    "other_currency": self.terms.sum_insured.currency,
                },
            )
        return replace(self, state=state, currency=premium.currency, premium=premium)

    def bind(self, policy_number: str) -> Policy:
        """Accept the quote: the policy gets its number and its first version."""
        state = POLICY_LIFECYCLE.next_state(self.state, PolicyAction.BIND)
        if self.premium is None:  # pragma: no cover - a QUOTED policy always has one
            raise FailedPrecondition("the policy has no premium", reason="NOT_QUOTED")
        return replace(
            self,
            state=state,
            policy_number=policy_number,
            version=1,
            version_effective_date=self.terms.effective_date,
        )

    def activate(self, today: date) -> Policy:
        """In force from the effective date on."""
        state = POLICY_LIFECYCLE.next_state(self.state, PolicyAction.ACTIVATE)
        if self.terms.effective_date > today:
            raise FailedPrecondition(
                f"the policy takes effect on {self.terms.effective_date.isoformat()}",
                reason="NOT_YET_EFFECTIVE",
                metadata={"effective_date": self.terms.effective_date.isoformat()},
            )
        return replace(self, state=state, activated=True)

    def endorse(
        self,
        effective_date: date,
        *,
        sum_insured: Money | None = None,
        insured: InsuredMembers | None = None,
    ) -> Policy:
        """A new version from ``effective_date`` on, with the changes given (the
        caller re-rates it with :meth:`repriced`)."""
        state = POLICY_LIFECYCLE.next_state(self.state, PolicyAction.ENDORSE)
        start = self.version_effective_date or self.terms.effective_date
        if not start <= effective_date <= self.last_covered_day:
            raise _invalid(
                "effective_date",
                f"must be between {start.isoformat()} (the current version's effective "
                f"date) and {self.last_covered_day.isoformat()} (the last covered day)",
            )
        terms = self.terms
        if sum_insured is not None:
            if sum_insured.currency != self.currency:
                raise _invalid("sum_insured", f"must be in {self.currency}")
            if not sum_insured.is_positive:
                raise _invalid("sum_insured", "must be positive")
            terms = replace(terms, sum_insured=sum_insured)
        if insured is not None:
            if insured.count == 0:
                raise _invalid("insured_members", "at least one member must be insured")
            terms = replace(terms, insured=insured)
        if terms == self.terms:
            raise InvalidArgument(
                "the endorsement changes nothing",
                reason="EMPTY_ENDORSEMENT",
                field_violations=[
                    FieldViolation("update_mask", "name a field whose value changes")
                ],
            )
        return replace(
            self,
            state=state,
            terms=terms,
            version=self.version + 1,
            version_effective_date=effective_date,
        )

    def repriced(self, premium: Money) -> Policy:
        """The full-term premium of the current terms after an endorsement."""
        return replace(self, premium=premium)

    def set_do_not_renew(self, value: bool) -> Policy:
        if self.state is PolicyState.EXPIRED:
            raise FailedPrecondition(
                "an expired policy is not renewed anyway", reason="POLICY_EXPIRED"
            )
        return replace(self, do_not_renew=value)

    def renew(self, successor_id: uuid.UUID) -> Policy:
        """Link the successor policy (created by the caller from :meth:`renewal_terms`)."""
        state = POLICY_LIFECYCLE.next_state(self.state, PolicyAction.RENEW)
        if self.do_not_renew:
            raise FailedPrecondition(
                "the policy is marked do-not-renew; clear do_not_renew first",
                reason="DO_NOT_RENEW",
            )
        if self.successor_id is not None:
            raise FailedPrecondition(
                "the policy has already been renewed",
                reason="ALREADY_RENEWED",
                metadata={"successor_policy_id": str(self.successor_id)},
            )
        return replace(self, state=state, successor_id=successor_id)

    def renewal_terms(self, term_months: int) -> PolicyTerms:
        """The successor's terms: the next day after expiry, for the product's term."""
        start = self.terms.expiry_date + timedelta(days=1)
        return replace(
            self.terms,
            effective_date=start,
            expiry_date=add_months(start, term_months) - timedelta(days=1),
        )

    def cancel(
        self,
        reason: CancelReason | None,
        today: date,
        *,
        effective_date: date | None = None,
        scheduled: bool = False,
        note: str = "",
    ) -> Policy:
        """Cancelled from ``effective_date`` (default: today, or the effective date of
        a policy not yet in force); a later date needs ``scheduled`` and leaves the
        policy CANCEL_PENDING until then."""
        POLICY_LIFECYCLE.next_state(self.state, PolicyAction.CANCEL)
        if reason is None:
            raise _invalid("reason", "required")
        explicit = effective_date is not None
        if effective_date is None:
            # Before inception the default is a flat cancellation: no cover at all.
            effective_date = (
                self.terms.effective_date
                if self.state is PolicyState.BOUND
                else max(today, self.terms.effective_date)
            )
        if effective_date < self.terms.effective_date:
            raise _invalid("effective_date", "must not be before the policy's effective date")
        if effective_date > self.terms.expiry_date:
            raise _invalid("effective_date", "must not be after the policy's expiry date")
        if self.state is PolicyState.BOUND and effective_date != self.terms.effective_date:
            raise _invalid(
                "effective_date",
                "a policy not yet in force is cancelled from its effective date "
                f"({self.terms.effective_date.isoformat()})",
            )
        if explicit and effective_date > today and not scheduled:
            raise _invalid(
                "effective_date",
                "is after today; set scheduled to cancel at a future date",
            )
        later = self.state is not PolicyState.BOUND and effective_date > today
        action = PolicyAction.SCHEDULE_CANCEL if later else PolicyAction.CANCEL
        return replace(
            self,
            state=POLICY_LIFECYCLE.next_state(self.state, action),
            cancel_reason=reason,
            cancel_effective_date=effective_date,
            cancel_processed_date=today,
            termination_note=note,
        )

    def complete_cancel(self, today: date) -> Policy:
        """A scheduled cancellation takes effect (on or after its date)."""
        state = POLICY_LIFECYCLE.next_state(self.state, PolicyAction.COMPLETE_CANCEL)
        assert self.cancel_effective_date is not None
        if today < self.cancel_effective_date:
            raise FailedPrecondition(
                f"the cancellation takes effect on {self.cancel_effective_date.isoformat()}",
                reason="CANCELLATION_NOT_DUE",
                metadata={"cancel_effective_date": self.cancel_effective_date.isoformat()},
            )
        return replace(self, state=state)

    def lapse(self, today: date, *, lapse_date: date | None = None, note: str = "") -> Policy:
        """Lapsed (typically unpaid premium) from ``lapse_date`` (default today)."""
        state = POLICY_LIFECYCLE.next_state(self.state, PolicyAction.LAPSE)
        lapse_date = lapse_date or today
        if lapse_date > today:
            raise _invalid("lapse_date", "must not be after today")
        if not self.terms.effective_date <= lapse_date <= self.terms.expiry_date:
            raise _invalid("lapse_date", "must lie within the policy term")
        return replace(self, state=state, lapse_date=lapse_date, termination_note=note)

    def reinstate(self, today: date, window_days: int) -> Policy:
        """Back as it was before the cancellation or lapse, within the window
        (counted from the day the cancellation was processed, or the lapse date);
        a scheduled cancellation is simply withdrawn."""
        POLICY_LIFECYCLE.next_state(self.state, PolicyAction.REINSTATE)
        if self.state is not PolicyState.CANCEL_PENDING:
            if self.cancel_effective_date is not None:
                ended = self.cancel_processed_date or self.cancel_effective_date
            else:
                ended = self.lapse_date or today
            deadline = ended + timedelta(days=window_days)
            if today > deadline:
                raise FailedPrecondition(
                    f"reinstatement was possible until {deadline.isoformat()}",
                    reason="REINSTATEMENT_WINDOW_CLOSED",
                    metadata={"deadline": deadline.isoformat(), "window_days": str(window_days)},
                )
            if today > self.terms.expiry_date:
                raise FailedPrecondition(
                    "the policy term has ended; renew or write a new policy instead",
                    reason="POLICY_TERM_ENDED",
                    metadata={"expiry_date": self.terms.expiry_date.isoformat()},
                )
        return replace(
            self,
            state=PolicyState.IN_FORCE if self.activated else PolicyState.BOUND,
            cancel_reason=None,
            cancel_effective_date=None,
            cancel_processed_date=None,
            lapse_date=None,
            termination_note="",
        )

    def expire(self, today: date) -> Policy:
        """Ended at the close of the term."""
        state = POLICY_LIFECYCLE.next_state(self.state, PolicyAction.EXPIRE)
        if today <= self.terms.expiry_date:
            raise FailedPrecondition(
                f"the policy runs until {self.terms.expiry_date.isoformat()}",
                reason="NOT_YET_EXPIRED",
                metadata={"expiry_date": self.terms.expiry_date.isoformat()},
            )
        return replace(self, state=state)

    def check_delete(self) -> None:
        """Only unsold policies (DRAFT, QUOTED) can be deleted."""
        POLICY_LIFECYCLE.next_state(self.state, PolicyAction.DELETE)
