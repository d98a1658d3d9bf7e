"""Claim lifecycle: every (state, action) pair, approval bands, amounts, reserves,
payments, recoveries and what a claim consumes from its accumulators."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from cardinsa_core.domain.adjudication import Benefit, Consumption
from cardinsa_core.domain.claims import (
    APPROVE_PERMISSION,
    BAND_PERMISSIONS,
    CLAIM_LIFECYCLE,
    ApprovalBands,
    Claim,
    ClaimAction,
    ClaimDetails,
    ClaimState,
    ClaimType,
    CostType,
    Payment,
    PaymentState,
    RecoveryKind,
    check_claim_details,
)
from cardinsa_core.domain.money import Money
from cardinsa_foundation.errors import FailedPrecondition, InvalidArgument, PermissionDenied

S, C = ClaimState, ClaimAction
TODAY = date(2025, 6, 15)
ALL_AUTHORITY = frozenset({APPROVE_PERMISSION, *BAND_PERMISSIONS})


def usd(amount: str | int) -> Money:
    return Money.of(Decimal(amount), "USD")


def benefit(payable: int, deductible: int = 50, claimed: int = 800) -> Benefit:
    zero = usd(0)
    return Benefit(
        claimed=usd(claimed),
        deductible=usd(deductible),
        copay=zero,
        coinsurance=zero,
        limit_cut=usd(claimed - deductible - payable),
        payable=usd(payable),
    )


BENEFIT = benefit(750)
DETAILS = ClaimDetails(
    claim_type=ClaimType.MEDICAL,
    description="broken arm",
    incident_date=date(2025, 6, 1),
    report_date=date(2025, 6, 2),
    claimed_amount=usd(800),
    coverage_code="OUTPATIENT",
)
DRAFT = Claim(state=S.DRAFT, details=DETAILS, indemnity_reserve=usd(0), expense_reserve=usd(0))
SUBMITTED = dataclasses.replace(DRAFT, state=S.SUBMITTED, claim_number="CLM-00000001")
UNDER_REVIEW = dataclasses.replace(SUBMITTED, state=S.UNDER_REVIEW)
APPROVED = dataclasses.replace(
    UNDER_REVIEW,
    state=S.APPROVED,
    approved_amount=usd(700),
    indemnity_reserve=usd(700),
    benefit=BENEFIT,
)
DENIED = dataclasses.replace(UNDER_REVIEW, state=S.DENIED, deny_reason="not covered")
PAID = dataclasses.replace(
    APPROVED,
    state=S.PAID,
    paid_amount=usd(700),
    indemnity_reserve=usd(0),
    payment_reference="PAY-1",
)
CLOSED = dataclasses.replace(PAID, state=S.CLOSED)
WITHDRAWN = dataclasses.replace(SUBMITTED, state=S.WITHDRAWN, withdraw_reason="sorted out")
IN_STATE = {
    S.DRAFT: DRAFT,
    S.SUBMITTED: SUBMITTED,
    S.UNDER_REVIEW: UNDER_REVIEW,
    S.APPROVED: APPROVED,
    S.DENIED: DENIED,
    S.PAID: PAID,
    S.CLOSED: CLOSED,
    S.WITHDRAWN: WITHDRAWN,
}


def perform(claim: Claim, action: ClaimAction) -> Claim:
    if action is C.UPDATE:
        return claim.update(dataclasses.replace(DETAILS, claimed_amount=usd(900)))
    if action is C.SUBMIT:
        return claim.submit("CLM-00000042")
    if action is C.REVIEW:
        return claim.review()
    if action is C.APPROVE:
        return claim.approve(usd(750), BENEFIT)
    if action is C.UNAPPROVE:
        return claim.unapprove("approved by mistake")
    if action is C.DENY:
        return claim.deny("pre-existing condition")
    if action is C.WITHDRAW:
        return claim.withdraw("the claimant paid it himself")
    if action is C.PAY:
        return claim.pay(CostType.INDEMNITY, usd(100), "PAY-2")
    if action is C.CLOSE:
        return claim.close()
    if action is C.REOPEN:
        return claim.reopen("new evidence")
    claim.check_delete()
    return claim


#: (state, action) -> (new state, fields that change) or the reason it is refused
#: although the table allows it (a money rule, not the lifecycle).
EXPECTED: dict[tuple[ClaimState, ClaimAction], tuple[ClaimState, set[str]] | str] = {
    (S.DRAFT, C.UPDATE): (S.DRAFT, {"details"}),
    (S.DRAFT, C.SUBMIT): (S.SUBMITTED, {"state", "claim_number"}),
    (S.DRAFT, C.WITHDRAW): (S.WITHDRAWN, {"state", "withdraw_reason"}),
    (S.SUBMITTED, C.WITHDRAW): (S.WITHDRAWN, {"state", "withdraw_reason"}),
    (S.SUBMITTED, C.REVIEW): (S.UNDER_REVIEW, {"state"}),
    (S.SUBMITTED, C.DENY): (S.DENIED, {"state", "deny_reason"}),
    (S.UNDER_REVIEW, C.APPROVE): (
        S.APPROVED,
        {"state", "approved_amount", "indemnity_reserve", "benefit"},
    ),
    (S.APPROVED, C.APPROVE): (S.APPROVED, {"approved_amount", "indemnity_reserve"}),
    (S.PAID, C.APPROVE): (S.APPROVED, {"state", "approved_amount", "indemnity_reserve"}),
    (S.UNDER_REVIEW, C.DENY): (S.DENIED, {"state", "deny_reason"}),
    (S.APPROVED, C.UNAPPROVE): (S.UNDER_REVIEW, {"state", "approved_amount", "indemnity_reserve"}),
    (S.APPROVED, C.PAY): (S.APPROVED, {"paid_amount", "indemnity_reserve", "payment_reference"}),
    (S.APPROVED, C.CLOSE): "OPEN_RESERVE",
    (S.PAID, C.CLOSE): (S.CLOSED, {"state"}),
    (S.CLOSED, C.REOPEN): (S.UNDER_REVIEW, {"state", "approved_amount"}),
    (S.DENIED, C.REOPEN): (S.UNDER_REVIEW, {"state", "deny_reason"}),
    (S.DRAFT, C.DELETE): (S.DRAFT, set()),
}
ALL_PAIRS = list(itertools.product(ClaimState, ClaimAction))


def changed_fields(before: Any, after: Any) -> set[str]:
    return {
        f.name
        for f in dataclasses.fields(before)
        if getattr(before, f.name) != getattr(after, f.name)
    }


@pytest.mark.parametrize(("state", "action"), ALL_PAIRS, ids=[f"{s}-{a}" for s, a in ALL_PAIRS])
def test_every_state_and_action(state: ClaimState, action: ClaimAction) -> None:
    before = IN_STATE[state]
    expected = EXPECTED.get((state, action))
    if isinstance(expected, tuple):
        after = perform(before, action)
        assert after.state is expected[0]
        assert changed_fields(before, after) == expected[1]
        assert action in CLAIM_LIFECYCLE.allowed_actions(state)
        return
    with pytest.raises(FailedPrecondition) as caught:
        perform(before, action)
    error = caught.value
    if expected is not None:
        assert error.reason == expected
        return
    assert error.reason == "INVALID_STATE_TRANSITION"
    assert error.metadata == {"current_state": state.value, "transition": action.value}
    assert state.value in error.message and action.value in error.message


def test_the_table_is_exactly_the_expected_one() -> None:
    assert len(ALL_PAIRS) == 88
    assert set(CLAIM_LIFECYCLE.transitions) == set(EXPECTED)


class TestBands:
    @pytest.mark.parametrize(
        ("amount", "band"),
        [("0.01", 1), ("1000", 1), ("1000.01", 2), ("5000", 2), ("5000.01", 3), ("1e9", 3)],
    )
    def test_default_bands(self, amount: str, band: int) -> None:
        assert ApprovalBands().band_of(usd(str(Decimal(amount)))) == band

    def test_custom_limits(self) -> None:
        bands = ApprovalBands((Decimal(200), Decimal(300)))
        assert [bands.band_of(usd(a)) for a in (200, 250, 301)] == [1, 2, 3]
        assert bands.required_permission(usd(250)) == "claims.approve_band_2"

    def test_limits_must_increase(self) -> None:
        assert ApprovalBands((Decimal(5), Decimal(5))).violations()
        assert ApprovalBands((Decimal(0), Decimal(5))).violations()
        assert ApprovalBands().violations() == []

    @pytest.mark.parametrize(
        ("held", "amount", "allowed"),
        [
            ({"claims.approve_band_1"}, 1000, True),
            ({"claims.approve_band_1"}, 1001, False),
            ({"claims.approve_band_2"}, 10, True),  # a higher band covers lower amounts
            ({"claims.approve_band_2"}, 5001, False),
            ({"claims.approve_band_3"}, 1_000_000, True),
            (set(), 1, False),
        ],
    )
    def test_authority(self, held: set[str], amount: int, allowed: bool) -> None:
        permissions = {APPROVE_PERMISSION, *held}
        if allowed:
            ApprovalBands().check_authority(usd(amount), permissions)
            return
        with pytest.raises(PermissionDenied) as caught:
            ApprovalBands().check_authority(usd(amount), permissions)
        assert caught.value.reason == "APPROVAL_AUTHORITY_EXCEEDED"
        assert caught.value.metadata["required_permission"].startswith("claims.approve_band_")

    def test_a_band_alone_approves_nothing(self) -> None:
        with pytest.raises(PermissionDenied):
            ApprovalBands().check_authority(usd(1), {"claims.approve_band_3"})

    def test_bands_of_one_currency(self) -> None:
        bands = ApprovalBands(currency="EUR")
        with pytest.raises(FailedPrecondition) as caught:
            bands.band_of(usd(1))
        assert caught.value.reason == "NO_APPROVAL_BANDS_FOR_CURRENCY"


class TestApprove:
    def test_at_most_the_payable_amount(self) -> None:
        assert UNDER_REVIEW.approve(usd(750), BENEFIT).approved_amount == usd(750)
        with pytest.raises(InvalidArgument) as caught:
            UNDER_REVIEW.approve(usd("750.01"), BENEFIT)
        assert caught.value.reason == "EXCEEDS_PAYABLE"
        assert caught.value.metadata["payable_amount"] == "750.00"
        [violation] = caught.value.field_violations
        assert violation.field == "approved_amount"
        assert "750.00 USD" in violation.description

    def test_zero_within_the_deductible_consumes_it(self) -> None:
        within = benefit(0, deductible=800)
        approved = UNDER_REVIEW.approve(usd(0), within)
        assert approved.state is S.APPROVED and approved.outstanding == usd(0)
        assert approved.consumption == Consumption(usd(800), usd(0))
        assert approved.close().state is S.CLOSED

    @pytest.mark.parametrize("amount", [usd(-1), Money.of(Decimal(5), "EUR")])
    def test_invalid_amounts(self, amount: Money) -> None:
        with pytest.raises(InvalidArgument):
            UNDER_REVIEW.approve(amount, BENEFIT)

    def test_never_below_what_was_paid(self) -> None:
        with pytest.raises(FailedPrecondition) as caught:
            CLOSED.reopen("x").approve(usd(600), BENEFIT)
        assert caught.value.reason == "APPROVED_BELOW_PAID"

    def test_a_reopened_claim_is_topped_up(self) -> None:
        approved = CLOSED.reopen("more invoices", usd(900)).approve(usd(750), benefit(750))
        assert approved.outstanding == usd(50) and approved.indemnity_reserve == usd(50)
        paid = approved.pay(CostType.INDEMNITY, usd(50), "PAY-2")
        assert paid.state is S.PAID and paid.paid == usd(750)
        assert paid.payment_reference == "PAY-2"

    def test_outside_the_approvers_band(self) -> None:
        with pytest.raises(PermissionDenied):
            ApprovalBands((Decimal(100), Decimal(500))).check_authority(
                usd(800), frozenset({APPROVE_PERMISSION, "claims.approve_band_2"})
            )

    def test_payments_and_reserves_need_a_band_not_the_approve_permission(self) -> None:
        ApprovalBands().check_authority(usd(10), {"claims.approve_band_1"}, action="paying")
        with pytest.raises(PermissionDenied) as caught:
            ApprovalBands().check_authority(usd(1001), {"claims.approve_band_1"}, action="paying")
        assert caught.value.message.startswith("paying")


class TestMoney:
    def test_partial_payments_then_paid(self) -> None:
        once = APPROVED.pay(CostType.INDEMNITY, usd(300))
        assert once.state is S.APPROVED and once.outstanding == usd(400)
        twice = once.pay(CostType.INDEMNITY, usd(400))
        assert twice.state is S.PAID and twice.indemnity_reserve == usd(0)

    def test_more_than_outstanding_is_refused(self) -> None:
        with pytest.raises(FailedPrecondition) as caught:
            APPROVED.pay(CostType.INDEMNITY, usd("700.01"))
        assert caught.value.reason == "EXCEEDS_RESERVE"
        assert caught.value.metadata["open_reserve"] == "700.00"

    def test_a_void_restores_the_reserve(self) -> None:
        voided = PAID.void(CostType.INDEMNITY, usd(200))
        assert voided.state is S.APPROVED
        assert voided.paid == usd(500) and voided.indemnity_reserve == usd(200)

    def test_a_closed_claim_is_reopened_before_a_void(self) -> None:
        with pytest.raises(FailedPrecondition):
            CLOSED.void(CostType.INDEMNITY, usd(1))

    def test_unapprove_and_deny_need_nothing_paid(self) -> None:
        for act in (lambda c: c.unapprove("x"), lambda c: c.deny("x")):
            with pytest.raises(FailedPrecondition) as caught:
                act(dataclasses.replace(PAID, state=S.APPROVED, indemnity_reserve=usd(0)))
            assert caught.value.reason in {"CLAIM_HAS_PAYMENTS", "INVALID_STATE_TRANSITION"}
        reopened = CLOSED.reopen("appeal")
        with pytest.raises(FailedPrecondition) as caught:
            reopened.deny("fraud")
        assert caught.value.reason == "CLAIM_HAS_PAYMENTS"
        recovered = reopened.recover(RecoveryKind.OVERPAYMENT, usd(700))
        assert recovered.paid == usd(0)
        assert recovered.deny("fraud").state is S.DENIED

    def test_expense_reserve_and_payments(self) -> None:
        with pytest.raises(FailedPrecondition) as caught:
            UNDER_REVIEW.pay(CostType.EXPENSE, usd(10))
        assert caught.value.reason == "EXCEEDS_RESERVE"
        reserved = UNDER_REVIEW.set_reserve(CostType.EXPENSE, usd(300))
        paid = reserved.pay(CostType.EXPENSE, usd(120))
        assert paid.expense_paid == usd(120) and paid.expense_reserve == usd(180)
        assert paid.consumption.is_zero  # expenses are not limited by the cover
        back = paid.void(CostType.EXPENSE, usd(120))
        assert back.expense_reserve == usd(300) and back.expense_paid == usd(0)

    def test_closing_needs_no_open_reserve(self) -> None:
        open_expense = dataclasses.replace(PAID, expense_reserve=usd(5))
        with pytest.raises(FailedPrecondition) as caught:
            open_expense.close()
        assert caught.value.reason == "OPEN_RESERVE"
        assert caught.value.metadata == {"expense_reserve": "5.00"}
        assert open_expense.set_reserve(CostType.EXPENSE, usd(0)).close().state is S.CLOSED

    def test_indemnity_reserve_is_an_estimate_until_approval(self) -> None:
        estimated = UNDER_REVIEW.set_reserve(CostType.INDEMNITY, usd(500))
        assert estimated.indemnity_reserve == usd(500)
        with pytest.raises(InvalidArgument):
            UNDER_REVIEW.set_reserve(CostType.INDEMNITY, usd(801))
        with pytest.raises(FailedPrecondition) as caught:
            APPROVED.set_reserve(CostType.INDEMNITY, usd(1))
        assert caught.value.reason == "RESERVE_FOLLOWS_APPROVAL"
        assert estimated.approve(usd(600), BENEFIT).indemnity_reserve == usd(600)

    def test_recoveries(self) -> None:
        salvage = PAID.recover(RecoveryKind.SALVAGE, usd(200))
        assert salvage.paid == usd(700) and salvage.net_paid == usd(500)
        assert salvage.outstanding == usd(0)  # salvage never makes more payable
        with pytest.raises(FailedPrecondition) as caught:
            salvage.recover(RecoveryKind.SUBROGATION, usd(501))
        assert caught.value.reason == "RECOVERY_EXCEEDS_PAID"
        with pytest.raises(FailedPrecondition) as caught:
            PAID.recover(RecoveryKind.OVERPAYMENT, usd(1))
        assert caught.value.reason == "RECOVERY_NOT_ALLOWED"
        with pytest.raises(FailedPrecondition):
            SUBMITTED.recover(RecoveryKind.SALVAGE, usd(1))
        with pytest.raises(InvalidArgument):
            PAID.recover(RecoveryKind.SALVAGE, usd(0))

    def test_consumption_follows_the_state(self) -> None:
        assert UNDER_REVIEW.consumption.is_zero
        assert APPROVED.consumption == Consumption(usd(50), usd(700))
        # Reopened: the approval no longer holds, the money paid stays counted.
        assert CLOSED.reopen("x").consumption == Consumption(usd(50), usd(700))
        assert APPROVED.unapprove("x").consumption.is_zero
        assert DENIED.consumption.is_zero

    def test_reopen_with_a_new_claimed_amount(self) -> None:
        reopened = CLOSED.reopen("second invoice", usd(1200))
        assert reopened.details.claimed_amount == usd(1200)
        with pytest.raises(InvalidArgument):
            CLOSED.reopen("x", usd(0))
        with pytest.raises(InvalidArgument):
            CLOSED.reopen("x", Money.of(Decimal(1), "EUR"))

    @pytest.mark.parametrize(
        ("claim", "call"),
        [
            (UNDER_REVIEW, lambda c: c.deny("")),
            (CLOSED, lambda c: c.reopen("")),
            (SUBMITTED, lambda c: c.withdraw("")),
            (APPROVED, lambda c: c.unapprove("")),
        ],
    )
    def test_required_texts(self, claim: Claim, call: Any) -> None:
        with pytest.raises(InvalidArgument):
            call(claim)


class TestPaymentLifecycle:
    def test_pending_issued_cleared(self) -> None:
        payment = Payment(PaymentState.PENDING, CostType.INDEMNITY, usd(10))
        assert payment.issue().clear().state is PaymentState.CLEARED
        assert payment.void().state is PaymentState.VOIDED
        assert payment.issue().void().state is PaymentState.VOIDED

    @pytest.mark.parametrize("state", [PaymentState.CLEARED, PaymentState.VOIDED])
    def test_cleared_or_voided_is_final(self, state: PaymentState) -> None:
        payment = Payment(state, CostType.INDEMNITY, usd(10))
        for step in (payment.issue, payment.clear, payment.void):
            with pytest.raises(FailedPrecondition):
                step()


def test_check_claim_details() -> None:
    assert check_claim_details(DETAILS, "USD", TODAY) == []
    bad = dataclasses.replace(
        DETAILS,
        claim_type=None,
        description="",
        coverage_code="",
        incident_date=date(2025, 6, 20),
        report_date=date(2025, 6, 16),
        claimed_amount=usd(0),
    )
    fields = {v.field for v in check_claim_details(bad, "USD", TODAY)}
    assert fields == {
        "claim.claim_type",
        "claim.description",
        "claim.coverage_code",
        "claim.incident_date",
        "claim.report_date",
        "claim.claimed_amount",
    }
    assert [v.field for v in check_claim_details(DETAILS, "EUR", TODAY)] == ["claim.claimed_amount"]
