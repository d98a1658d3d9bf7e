"""Claims: first notice of loss to closure, paying only what the cover allows.

Lifecycle (``CLAIM_LIFECYCLE``)::

    DRAFT --submit--> SUBMITTED --review--> UNDER_REVIEW --approve--> APPROVED
    DRAFT / SUBMITTED --withdraw--> WITHDRAWN            (the claimant's side gives up)
    SUBMITTED / UNDER_REVIEW --deny--> DENIED            (nothing paid)
    APPROVED / PAID --approve--> APPROVED or PAID        (the approved total changes)
    APPROVED --unapprove--> UNDER_REVIEW                 (nothing paid: every payment voided)
    APPROVED --(payments reach the approved total)--> PAID --(a void)--> APPROVED
    APPROVED / PAID --close--> CLOSED                    (no open reserve)
    CLOSED / DENIED --reopen--> UNDER_REVIEW             (with a reason, maybe a new claimed amount)
    DRAFT --update--> DRAFT,  DRAFT --delete-->

Money on a claim:

- ``benefit``: the breakdown of the payable amount (see
  :mod:`cardinsa_core.domain.adjudication`), estimated at review and reopen and
  fixed at approval, when it is worked out under the accumulators' lock.
- ``approved_amount``: the indemnity the insurer owes, at most the payable
  amount and never below what has been paid.
- ``paid_amount``: indemnity payments not voided, less overpayments recovered
  from the payee. Always at most the approved amount while approved.
- ``recovered_amount``: salvage and subrogation (money from third parties);
  ``net_paid`` = paid - recovered is the insurer's net cost (below zero when
  the insurer recovered more than it still has paid out, e.g. a claim refunded
  after the wreck was sold).
- ``indemnity_reserve`` / ``expense_reserve``: what the insurer still expects
  to pay. Approval sets the indemnity reserve to approved - paid; payments
  draw reserves down, voids restore them. A claim closes with both at zero.
- ``consumption``: what the claim takes from its accumulators — the approval's
  deductible and approved amount while approved; after a reopen only the paid
  amount (money already out), and nothing once nothing is paid.

Authority: approving, each payment and each reserve change need the band
permission of the amount (``claims.approve_band_N``); approving also needs
``claims.approve``. The bands are two upper limits (inclusive) per currency
that a company configures: up to the first is band 1, up to the second band 2,
above it band 3. Holding a band also authorises the lower bands.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Final

from cardinsa_core.domain.adjudication import Benefit, Consumption
from cardinsa_core.domain.money import Money
from cardinsa_foundation.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
)
from cardinsa_foundation.lifecycle import Lifecycle

__all__ = [
    "APPROVED_STATES",
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
    "CostType",
    "Payment",
    "PaymentAction",
    "PaymentMethod",
    "PaymentState",
    "RecoveryKind",
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
    WITHDRAWN = "WITHDRAWN"


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
    WITHDRAW = "withdraw"
    UNAPPROVE = "unapprove"


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
_WD = ClaimState.WITHDRAWN

#: The transitions a caller asks for. Payments and voids move APPROVED ⇄ PAID
#: by themselves (see :meth:`Claim.settled`), and approving from PAID may land
#: in APPROVED: the table gives the usual target, the claim corrects it.
CLAIM_LIFECYCLE: Final = Lifecycle(
    "claim",
    ClaimState,
    ClaimAction,
    {
        (_DR, _C.UPDATE): _DR,
        (_DR, _C.SUBMIT): _SU,
        (_DR, _C.WITHDRAW): _WD,
        (_SU, _C.WITHDRAW): _WD,
        (_SU, _C.REVIEW): _UR,
        (_SU, _C.DENY): _DE,
        (_UR, _C.APPROVE): _AP,
        (_AP, _C.APPROVE): _AP,
        (_PA, _C.APPROVE): _AP,
        (_UR, _C.DENY): _DE,
        (_AP, _C.UNAPPROVE): _UR,
        (_AP, _C.PAY): _AP,
        (_AP, _C.CLOSE): _CL,
        (_PA, _C.CLOSE): _CL,
        (_CL, _C.REOPEN): _UR,
        (_DE, _C.REOPEN): _UR,
        (_DR, _C.DELETE): _DR,
    },
)

#: States in which the approval holds (its amount is consumed from the limits).
APPROVED_STATES: Final = frozenset({_AP, _PA, _CL})


class CostType(StrEnum):
    """What a payment or reserve is for (ClaimCenter's cost types)."""

    INDEMNITY = "INDEMNITY"
    EXPENSE = "EXPENSE"


class PaymentMethod(StrEnum):
    BANK_TRANSFER = "BANK_TRANSFER"
    CHEQUE = "CHEQUE"
    CARD = "CARD"
    CASH = "CASH"
    OTHER = "OTHER"


class PaymentState(StrEnum):
    PENDING = "PENDING"
    ISSUED = "ISSUED"
    CLEARED = "CLEARED"
    VOIDED = "VOIDED"


class PaymentAction(StrEnum):
    ISSUE = "issue"
    CLEAR = "clear"
    VOID = "void"


class RecoveryKind(StrEnum):
    """Money coming back: from a third party (salvage, subrogation) or from the
    payee of an overpayment."""

    SALVAGE = "SALVAGE"
    SUBROGATION = "SUBROGATION"
    OVERPAYMENT = "OVERPAYMENT"


_PE, _IS, _CR, _VO = (
    PaymentState.PENDING,
    PaymentState.ISSUED,
    PaymentState.CLEARED,
    PaymentState.VOIDED,
)

#: PENDING → ISSUED → CLEARED; PENDING or ISSUED → VOIDED. Cleared money comes
#: back only as a recovery.
PAYMENT_LIFECYCLE: Final = Lifecycle(
    "payment",
    PaymentState,
    PaymentAction,
    {
        (_PE, PaymentAction.ISSUE): _IS,
        (_IS, PaymentAction.CLEAR): _CR,
        (_PE, PaymentAction.VOID): _VO,
        (_IS, PaymentAction.VOID): _VO,
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

    def check_authority(
        self, amount: Money, permissions: Collection[str], *, action: str = "approving"
    ) -> None:
        """PERMISSION_DENIED unless ``permissions`` carry a band at least as high as
        the amount's (and ``claims.approve`` when ``action`` is approving)."""
        band = self.band_of(amount)
        held = [b for b, name in enumerate(BAND_PERMISSIONS, start=1) if name in permissions]
        approving = action == "approving"
        if (approving and APPROVE_PERMISSION not in permissions) or not held or max(held) < band:
            raise PermissionDenied(
                f"{action} {amount} needs the authority of band {band}",
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


def _zero(currency: str) -> Money:
    return Money.zero(currency)


@dataclass(frozen=True, slots=True)
class Claim:
    """A claim's state and amounts; every transition returns a new value."""

    state: ClaimState
    details: ClaimDetails
    claim_number: str | None = None
    approved_amount: Money | None = None
    paid_amount: Money | None = None
    expense_paid: Money | None = None
    recovered_amount: Money | None = None
    indemnity_reserve: Money | None = None
    expense_reserve: Money | None = None
    benefit: Benefit | None = None
    payment_reference: str = ""
    deny_reason: str = ""
    withdraw_reason: str = ""

    # ----------------------------------------------------------------- reading

    @property
    def currency(self) -> str:
        return self.details.claimed_amount.currency

    def _or_zero(self, value: Money | None) -> Money:
        return value if value is not None else _zero(self.currency)

    @property
    def paid(self) -> Money:
        return self._or_zero(self.paid_amount)

    @property
    def approved(self) -> Money:
        return self._or_zero(self.approved_amount)

    @property
    def net_paid(self) -> Money:
        """Indemnity paid less salvage and subrogation: the insurer's net cost."""
        return self.paid - self._or_zero(self.recovered_amount)

    @property
    def outstanding(self) -> Money:
        """Indemnity approved and not yet paid (0 unless approved)."""
        if self.state not in APPROVED_STATES:
            return _zero(self.currency)
        return self.approved - self.paid

    @property
    def consumption(self) -> Consumption:
        """What the claim takes from its accumulators now (see the module docstring)."""
        currency = self.currency
        if self.state in APPROVED_STATES:
            limit = self.approved
        elif self.paid.is_positive:
            limit = self.paid
        else:
            return Consumption.zero(currency)
        deductible = self.benefit.deductible if self.benefit is not None else _zero(currency)
        return Consumption(deductible=deductible, limit=limit)

    # ------------------------------------------------------------- transitions

    def _next(self, action: ClaimAction) -> ClaimState:
        return CLAIM_LIFECYCLE.next_state(self.state, action)

    def update(self, details: ClaimDetails) -> Claim:
        return replace(self, state=self._next(ClaimAction.UPDATE), details=details)

    def submit(self, claim_number: str) -> Claim:
        """First notice of loss: the claim gets its number."""
        return replace(self, state=self._next(ClaimAction.SUBMIT), claim_number=claim_number)

    def review(self) -> Claim:
        return replace(self, state=self._next(ClaimAction.REVIEW))

    def assessed(self, benefit: Benefit) -> Claim:
        """The claim with its (estimated) benefit breakdown."""
        return replace(self, benefit=benefit)

    def check_can(self, action: ClaimAction) -> None:
        """FAILED_PRECONDITION unless ``action`` is possible from the current state."""
        self._next(action)

    def approve(self, amount: Money, benefit: Benefit) -> Claim:
        """Approve ``amount`` (the total owed on the claim) against ``benefit``,
        worked out with the accumulators as they are without this claim."""
        self._next(ClaimAction.APPROVE)
        field = "approved_amount"
        if amount.currency != self.currency:
            raise InvalidArgument(
                f"the claim is in {self.currency}",
                field_violations=[FieldViolation(field, f"must be in {self.currency}")],
            )
        if amount.is_negative:
            raise InvalidArgument(
                "the approved amount must not be negative",
                field_violations=[FieldViolation(field, "must not be negative")],
            )
        if amount > benefit.payable:
            raise InvalidArgument(
                f"the approved amount exceeds the payable amount {benefit.payable}",
                reason="EXCEEDS_PAYABLE",
                field_violations=[
                    FieldViolation(field, f"must not exceed the payable amount {benefit.payable}")
                ],
                metadata={
                    "payable_amount": str(benefit.payable.amount),
                    "currency": self.currency,
                },
            )
        if amount < self.paid:
            raise FailedPrecondition(
                f"the approved amount is less than the {self.paid} already paid; "
                "record the overpayment as a recovery first",
                reason="APPROVED_BELOW_PAID",
                metadata={"paid_amount": str(self.paid.amount)},
            )
        state = ClaimState.PAID if amount.is_positive and amount == self.paid else _AP
        return replace(
            self,
            state=state,
            approved_amount=amount,
            benefit=benefit,
            indemnity_reserve=amount - self.paid,
        )

    def unapprove(self, reason: str) -> Claim:
        """Back under review; possible while nothing is paid (void payments first)."""
        state = self._next(ClaimAction.UNAPPROVE)
        if not reason:
            raise _required("reason")
        if self.paid.is_positive:
            raise FailedPrecondition(
                f"{self.paid} has been paid on the claim; void the payments first",
                reason="CLAIM_HAS_PAYMENTS",
                metadata={"paid_amount": str(self.paid.amount)},
            )
        return replace(
            self,
            state=state,
            approved_amount=None,
            indemnity_reserve=_zero(self.currency),
        )

    def deny(self, reason: str) -> Claim:
        state = self._next(ClaimAction.DENY)
        if not reason:
            raise _required("reason")
        if self.paid.is_positive:
            raise FailedPrecondition(
                f"{self.paid} has been paid on the claim; recover it "
                "(an OVERPAYMENT recovery) or void the payments before denying",
                reason="CLAIM_HAS_PAYMENTS",
                metadata={"paid_amount": str(self.paid.amount)},
            )
        return replace(
            self,
            state=state,
            deny_reason=reason,
            approved_amount=None,
            indemnity_reserve=_zero(self.currency),
        )

    def withdraw(self, reason: str) -> Claim:
        state = self._next(ClaimAction.WITHDRAW)
        if not reason:
            raise _required("reason")
        return replace(self, state=state, withdraw_reason=reason)

    def close(self) -> Claim:
        state = self._next(ClaimAction.CLOSE)
        open_reserves = {
            "indemnity_reserve": self._or_zero(self.indemnity_reserve),
            "expense_reserve": self._or_zero(self.expense_reserve),
        }
        still_open = {k: v for k, v in open_reserves.items() if v.is_positive}
        if still_open:
            raise FailedPrecondition(
                "the claim has open reserves: "
                + ", ".join(f"{k} {v}" for k, v in still_open.items())
                + "; pay them or set them to zero first",
                reason="OPEN_RESERVE",
                metadata={k: str(v.amount) for k, v in still_open.items()},
            )
        return replace(self, state=state)

    def reopen(self, reason: str, claimed: Money | None = None) -> Claim:
        """Back under review; the approval no longer holds, money paid stays counted."""
        state = self._next(ClaimAction.REOPEN)
        if not reason:
            raise _required("reason")
        details = self.details
        if claimed is not None:
            if claimed.currency != self.currency or not claimed.is_positive:
                raise InvalidArgument(
                    "the claimed amount is not valid",
                    field_violations=[
                        FieldViolation(
                            "claimed_amount", f"must be greater than 0 and in {self.currency}"
                        )
                    ],
                )
            details = replace(details, claimed_amount=claimed)
        return replace(
            self,
            state=state,
            details=details,
            deny_reason="",
            approved_amount=None,
            indemnity_reserve=_zero(self.currency),
        )

    def check_delete(self) -> None:
        self._next(ClaimAction.DELETE)

    # ------------------------------------------------------------- reserves

    def set_reserve(self, cost_type: CostType, amount: Money) -> Claim:
        """The open reserve of ``cost_type``: an estimate before approval (indemnity),
        any time before closure (expense)."""
        field = "amount"
        if amount.currency != self.currency or amount.is_negative:
            raise InvalidArgument(
                "the reserve is not valid",
                field_violations=[
                    FieldViolation(field, f"must be 0 or more and in {self.currency}")
                ],
            )
        if cost_type is CostType.EXPENSE:
            if self.state not in (_SU, _UR, _AP, _PA):
                raise _reserve_state(self.state, cost_type)
            return replace(self, expense_reserve=amount)
        if self.state not in (_SU, _UR):
            raise FailedPrecondition(
                "the indemnity reserve follows the approval once a claim is approved; "
                "change the approved amount instead",
                reason="RESERVE_FOLLOWS_APPROVAL",
                metadata={"current_state": self.state.value},
            )
        if amount > self.details.claimed_amount:
            raise InvalidArgument(
                "the reserve exceeds the claimed amount",
                field_violations=[
                    FieldViolation(
                        field, f"must not exceed the claimed amount {self.details.claimed_amount}"
                    )
                ],
            )
        return replace(self, indemnity_reserve=amount)

    # ------------------------------------------------------------- payments

    def check_can_pay(self) -> None:
        """FAILED_PRECONDITION unless indemnity can be paid (APPROVED)."""
        self._next(ClaimAction.PAY)

    def pay(self, cost_type: CostType, amount: Money, reference: str = "") -> Claim:
        """A payment of ``amount`` is made: it draws the reserve down (an indemnity
        payment's ``reference`` becomes the claim's last payment reference)."""
        if amount.currency != self.currency or not amount.is_positive:
            raise InvalidArgument(
                "the payment amount is not valid",
                field_violations=[
                    FieldViolation(
                        "payment.amount", f"must be greater than 0 and in {self.currency}"
                    )
                ],
            )
        if cost_type is CostType.EXPENSE:
            if self.state not in (_UR, _AP, _PA):
                raise _reserve_state(self.state, cost_type)
            reserve = self._or_zero(self.expense_reserve)
            _within_reserve(amount, reserve, cost_type)
            return replace(
                self,
                expense_reserve=reserve - amount,
                expense_paid=self._or_zero(self.expense_paid) + amount,
            )
        self._next(ClaimAction.PAY)
        _within_reserve(amount, self.outstanding, cost_type)
        paid = self.paid + amount
        return replace(
            self,
            paid_amount=paid,
            indemnity_reserve=self.approved - paid,
            state=ClaimState.PAID if paid == self.approved else _AP,
            payment_reference=reference or self.payment_reference,
        )

    def void(self, cost_type: CostType, amount: Money) -> Claim:
        """A payment of ``amount`` is voided: the reserve (and, while approved,
        the outstanding amount) comes back. An indemnity void may not exceed the
        paid amount (VOID_EXCEEDS_PAID): an overpayment already recovered from the
        payee stands against that money. Salvage and subrogation do not: they are
        the insurer's, so a void may leave the net paid below zero."""
        if cost_type is CostType.EXPENSE:
            return replace(
                self,
                expense_reserve=self._or_zero(self.expense_reserve) + amount,
                expense_paid=self._or_zero(self.expense_paid) - amount,
            )
        if self.state is _CL:
            raise FailedPrecondition(
                "the claim is closed; reopen it before voiding a payment",
                reason="CLAIM_CLOSED",
            )
        if amount > self.paid:
            raise FailedPrecondition(
                f"voiding {amount} would leave less than nothing paid; at most "
                f"{self.paid} (paid less overpayments recovered) can be voided",
                reason="VOID_EXCEEDS_PAID",
                metadata={"paid_amount": str(self.paid.amount), "currency": self.currency},
            )
        paid = self.paid - amount
        if self.state in (_AP, _PA):
            return replace(
                self, paid_amount=paid, indemnity_reserve=self.approved - paid, state=_AP
            )
        return replace(self, paid_amount=paid)

    def recover(self, kind: RecoveryKind, amount: Money) -> Claim:
        """Money back: salvage and subrogation lower the net paid; an overpayment
        recovered from the payee lowers the paid amount (while under review)."""
        if amount.currency != self.currency or not amount.is_positive:
            raise InvalidArgument(
                "the recovery amount is not valid",
                field_violations=[
                    FieldViolation(
                        "recovery.amount", f"must be greater than 0 and in {self.currency}"
                    )
                ],
            )
        if kind is RecoveryKind.OVERPAYMENT:
            if self.state is not _UR:
                raise FailedPrecondition(
                    "an overpayment is recovered while the claim is under review (reopen it first)",
                    reason="RECOVERY_NOT_ALLOWED",
                    metadata={"current_state": self.state.value, "kind": kind.value},
                )
            # At most what the payee holds; salvage already recovered stays the
            # insurer's, so a fraudulent claim can be refunded in full and denied.
            if amount > self.paid:
                raise _recovery_exceeds(amount, self.paid)
            return replace(self, paid_amount=self.paid - amount)
        if self.state in (_DR, _SU, _WD):
            raise FailedPrecondition(
                "nothing has been paid on the claim",
                reason="RECOVERY_NOT_ALLOWED",
                metadata={"current_state": self.state.value, "kind": kind.value},
            )
        if amount > self.net_paid:
            raise _recovery_exceeds(amount, self.net_paid)
        return replace(self, recovered_amount=self._or_zero(self.recovered_amount) + amount)


def _reserve_state(state: ClaimState, cost_type: CostType) -> FailedPrecondition:
    return FailedPrecondition(
        f"no {cost_type.value.lower()} reserve or payment in state {state.value}",
        reason="INVALID_STATE_TRANSITION",
        metadata={"current_state": state.value, "cost_type": cost_type.value},
    )


def _within_reserve(amount: Money, reserve: Money, cost_type: CostType) -> None:
    if amount > reserve:
        raise FailedPrecondition(
            f"the payment exceeds the open {cost_type.value.lower()} reserve of {reserve}",
            reason="EXCEEDS_RESERVE",
            metadata={
                "open_reserve": str(reserve.amount),
                "currency": reserve.currency,
                "cost_type": cost_type.value,
            },
        )


def _recovery_exceeds(amount: Money, most: Money) -> FailedPrecondition:
    return FailedPrecondition(
        f"the recovery of {amount} exceeds the {most} that can be recovered",
        reason="RECOVERY_EXCEEDS_PAID",
        metadata={"recoverable": str(most.amount)},
    )


@dataclass(frozen=True, slots=True)
class Payment:
    """One payment on a claim; it counts as paid from its creation until voided."""

    state: PaymentState
    cost_type: CostType
    amount: Money

    def issue(self) -> Payment:
        return replace(self, state=PAYMENT_LIFECYCLE.next_state(self.state, PaymentAction.ISSUE))

    def clear(self) -> Payment:
        return replace(self, state=PAYMENT_LIFECYCLE.next_state(self.state, PaymentAction.CLEAR))

    def void(self) -> Payment:
        return replace(self, state=PAYMENT_LIFECYCLE.next_state(self.state, PaymentAction.VOID))
