"""Claims: first notice of loss to payment, with an approval authority by amount.

Lifecycle (``CLAIM_LIFECYCLE``)::

    DRAFT --submit--> SUBMITTED --review--> UNDER_REVIEW --approve--> APPROVED
    UNDER_REVIEW --deny--> DENIED
    APPROVED --pay--> PAID --close--> CLOSED
    CLOSED / DENIED --reopen--> UNDER_REVIEW    (with a reason)
    DRAFT --update--> DRAFT,  DRAFT --delete-->

A claim is numbered when it is submitted (first notice of loss). The approved
amount is the total the insurer owes on the claim: at most the claimed amount
and the coverage limit, and never less than what has already been paid (a
reopened claim is topped up, not refunded). Paying settles the outstanding
difference.

Approval authority: approving needs ``claims.approve`` and the band permission
for the approved amount. The bands are two upper limits (inclusive) that a
company configures: up to the first is band 1, up to the second band 2, above
it band 3. Holding a band also authorises the lower bands, so a claims manager
with band 3 can approve small amounts too.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Final

from cardinsa_core.domain.money import Money
from cardinsa_foundation.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
)
from cardinsa_foundation.lifecycle import Lifecycle

__all__ = [
    "APPROVE_PERMISSION",
    "BAND_PERMISSIONS",
    "CLAIM_LIFECYCLE",
    "DEFAULT_BAND_LIMITS",
    "ApprovalBands",
    "Claim",
    "ClaimAction",
    "ClaimDetails",
    "ClaimState",
    "ClaimType",
    "check_claim_details",
]

APPROVE_PERMISSION: Final = "claims.approve"
BAND_PERMISSIONS: Final = (
    "claims.approve_band_1",
    "claims.approve_band_2",
    "claims.approve_band_3",
)
DEFAULT_BAND_LIMITS: Final = (Decimal(1000), Decimal(5000))
MAX_TEXT: Final = 4000


class ClaimState(StrEnum):
    DRAFT = "DRAFT"
    SUBMITTED = "SUBMITTED"
    UNDER_REVIEW = "UNDER_REVIEW"
    APPROVED = "APPROVED"
    DENIED = "DENIED"
    PAID = "PAID"
    CLOSED = "CLOSED"


class ClaimAction(StrEnum):
    UPDATE = "update"
    SUBMIT = "submit"
    REVIEW = "review"
    APPROVE = "approve"
    DENY = "deny"
    PAY = "pay"
    CLOSE = "close"
    REOPEN = "reopen"
    DELETE = "delete"


class ClaimType(StrEnum):
    MEDICAL = "MEDICAL"
    MOTOR = "MOTOR"
    PROPERTY = "PROPERTY"
    LIFE = "LIFE"
    TRAVEL = "TRAVEL"
    CYBER = "CYBER"
    DISABILITY = "DISABILITY"
    LIABILITY = "LIABILITY"
    OTHER = "OTHER"


_C = ClaimAction
_DR, _SU, _UR = ClaimState.DRAFT, ClaimState.SUBMITTED, ClaimState.UNDER_REVIEW
_AP, _DE, _PA, _CL = ClaimState.APPROVED, ClaimState.DENIED, ClaimState.PAID, ClaimState.CLOSED

CLAIM_LIFECYCLE: Final = Lifecycle(
    "claim",
    ClaimState,
    ClaimAction,
    {
        (_DR, _C.UPDATE): _DR,
        (_DR, _C.SUBMIT): _SU,
        (_SU, _C.REVIEW): _UR,
        (_UR, _C.APPROVE): _AP,
        (_UR, _C.DENY): _DE,
        (_AP, _C.PAY): _PA,
        (_PA, _C.CLOSE): _CL,
        (_CL, _C.REOPEN): _UR,
        (_DE, _C.REOPEN): _UR,
        (_DR, _C.DELETE): _DR,
    },
)


def no_approval_bands(currency: str) -> FailedPrecondition:
    """The answer for an amount in a currency the company has no bands for."""
    return FailedPrecondition(
        f"the company has no claim-approval bands in {currency}; "
        f"configure bands for {currency} first (UpdateApprovalBands)",
        reason="NO_APPROVAL_BANDS_FOR_CURRENCY",
        metadata={"currency": currency},
    )


@dataclass(frozen=True, slots=True)
class ApprovalBands:
    """Upper limits (inclusive) of bands 1 and 2; band 3 is everything above.

    ``currency`` None means the limits apply to amounts of any currency. A
    company keeps one set per currency (see
    :class:`cardinsa_core.application.claim_authority.ClaimAuthority`).
    """

    limits: tuple[Decimal, Decimal] = DEFAULT_BAND_LIMITS
    currency: str | None = None

    def violations(self, prefix: str = "approval_bands") -> list[FieldViolation]:
        first, second = self.limits
        out = []
        if first <= 0:
            out.append(FieldViolation(f"{prefix}.band_1_limit", "must be positive"))
        if second <= 0:
            out.append(FieldViolation(f"{prefix}.band_2_limit", "must be positive"))
        elif second <= first:
            out.append(
                FieldViolation(f"{prefix}.band_2_limit", "must be greater than band_1_limit")
            )
        return out

    def band_of(self, amount: Money) -> int:
        """1, 2 or 3 for ``amount``."""
        if self.currency is not None and amount.currency != self.currency:
            raise no_approval_bands(amount.currency)
        for band, limit in enumerate(self.limits, start=1):
            if amount.amount <= limit:
                return band
        return len(self.limits) + 1

    def required_permission(self, amount: Money) -> str:
        return BAND_PERMISSIONS[self.band_of(amount) - 1]

    def check_authority(self, amount: Money, permissions: Collection[str]) -> None:
        """PERMISSION_DENIED unless ``permissions`` carry ``claims.approve`` and a band
        at least as high as the amount's."""
        band = self.band_of(amount)
        held = [b for b, name in enumerate(BAND_PERMISSIONS, start=1) if name in permissions]
        if APPROVE_PERMISSION not in permissions or not held or max(held) < band:
            raise PermissionDenied(
                f"approving {amount} needs the authority of band {band}",
                reason="APPROVAL_AUTHORITY_EXCEEDED",
                metadata={
                    "band": str(band),
                    "required_permission": BAND_PERMISSIONS[band - 1],
                    "amount": str(amount.amount),
                    "currency": amount.currency,
                },
            )


@dataclass(frozen=True, slots=True)
class ClaimDetails:
    """What a draft claim says happened (and what a draft update changes)."""

    claim_type: ClaimType | None
    description: str
    incident_date: date
    report_date: date
    claimed_amount: Money
    coverage_code: str
    #: The insured member claiming: ``None`` for the policyholder, else a dependent.
    claimant_dependent_id: uuid.UUID | None = None


def check_claim_details(
    details: ClaimDetails, currency: str, today: date, *, prefix: str = "claim"
) -> list[FieldViolation]:
    """Violations of a claim's details against its policy's currency and today."""
    violations: list[FieldViolation] = []
    if details.claim_type is None:
        violations.append(FieldViolation(f"{prefix}.claim_type", "required"))
    if not details.description:
        violations.append(FieldViolation(f"{prefix}.description", "required"))
    elif len(details.description) > MAX_TEXT:
        violations.append(FieldViolation(f"{prefix}.description", f"at most {MAX_TEXT} characters"))
    if not details.coverage_code:
        violations.append(FieldViolation(f"{prefix}.coverage_code", "required"))
    if details.incident_date > details.report_date:
        violations.append(
            FieldViolation(f"{prefix}.incident_date", "must not be after the report date")
        )
    if details.report_date > today:
        violations.append(FieldViolation(f"{prefix}.report_date", "must not be in the future"))
    if details.claimed_amount.currency != currency:
        violations.append(
            FieldViolation(f"{prefix}.claimed_amount", f"must be in the policy currency {currency}")
        )
    elif not details.claimed_amount.is_positive:
        violations.append(FieldViolation(f"{prefix}.claimed_amount", "must be greater than 0"))
    return violations


def _required(field: str) -> InvalidArgument:
    return InvalidArgument(
        f"{field} is required", field_violations=[FieldViolation(field, "required")]
    )


@dataclass(frozen=True, slots=True)
class Claim:
    """A claim's state and amounts; every transition returns a new value."""

    state: ClaimState
    details: ClaimDetails
    claim_number: str | None = None
    approved_amount: Money | None = None
    paid_amount: Money | None = None
    payment_reference: str = ""
    deny_reason: str = ""

    @property
    def currency(self) -> str:
        return self.details.claimed_amount.currency

    @property
    def outstanding(self) -> Money:
        approved = self.approved_amount or Money.zero(self.currency)
        return approved - (self.paid_amount or Money.zero(self.currency))

    def update(self, details: ClaimDetails) -> Claim:
        state = CLAIM_LIFECYCLE.next_state(self.state, ClaimAction.UPDATE)
        return replace(self, state=state, details=details)

    def submit(self, claim_number: str) -> Claim:
        """First notice of loss: the claim gets its number."""
        state = CLAIM_LIFECYCLE.next_state(self.state, ClaimAction.SUBMIT)
        return replace(self, state=state, claim_number=claim_number)

    def review(self) -> Claim:
        return replace(self, state=CLAIM_LIFECYCLE.next_state(self.state, ClaimAction.REVIEW))

    def approve(
        self,
        amount: Money,
        *,
        coverage_limit: Money,
        bands: ApprovalBands,
        permissions: Collection[str],
    ) -> Claim:
        """Approve ``amount`` (the total owed on the claim)."""
        state = CLAIM_LIFECYCLE.next_state(self.state, ClaimAction.APPROVE)
        field = "approved_amount"
        if amount.currency != self.currency:
            raise InvalidArgument(
                f"the claim is in {self.currency}",
                field_violations=[FieldViolation(field, f"must be in {self.currency}")],
            )
        if not amount.is_positive:
            raise InvalidArgument(
                "the approved amount must be positive",
                field_violations=[FieldViolation(field, "must be greater than 0")],
            )
        if amount > self.details.claimed_amount:
            raise FailedPrecondition(
                "the approved amount exceeds the claimed amount",
                reason="APPROVED_EXCEEDS_CLAIMED",
                metadata={"claimed_amount": str(self.details.claimed_amount.amount)},
            )
        if amount > coverage_limit:
            raise FailedPrecondition(
                "the approved amount exceeds the coverage limit",
                reason="COVERAGE_LIMIT_EXCEEDED",
                metadata={"coverage_limit": str(coverage_limit.amount)},
            )
        if self.paid_amount is not None and amount < self.paid_amount:
            raise FailedPrecondition(
                "the approved amount is less than what has already been paid",
                reason="APPROVED_BELOW_PAID",
                metadata={"paid_amount": str(self.paid_amount.amount)},
            )
        bands.check_authority(amount, permissions)
        return replace(self, state=state, approved_amount=amount)

    def deny(self, reason: str) -> Claim:
        state = CLAIM_LIFECYCLE.next_state(self.state, ClaimAction.DENY)
        if not reason:
            raise _required("reason")
        return replace(self, state=state, deny_reason=reason)

    def pay(self, payment_reference: str) -> tuple[Claim, Money]:
        """Record the payment of the outstanding amount; returns it too."""
        state = CLAIM_LIFECYCLE.next_state(self.state, ClaimAction.PAY)
        if not payment_reference:
            raise _required("payment_reference")
        due = self.outstanding
        if not due.is_positive:
            raise FailedPrecondition(
                "nothing is outstanding on this claim", reason="NOTHING_TO_PAY"
            )
        paid = (self.paid_amount or Money.zero(self.currency)) + due
        claim = replace(self, state=state, paid_amount=paid, payment_reference=payment_reference)
        return claim, due

    def close(self) -> Claim:
        return replace(self, state=CLAIM_LIFECYCLE.next_state(self.state, ClaimAction.CLOSE))

    def reopen(self, reason: str) -> Claim:
        state = CLAIM_LIFECYCLE.next_state(self.state, ClaimAction.REOPEN)
        if not reason:
            raise _required("reason")
        return replace(self, state=state, deny_reason="")

    def check_delete(self) -> None:
        CLAIM_LIFECYCLE.next_state(self.state, ClaimAction.DELETE)
