"""Claim lifecycle: every (state, action) pair, approval bands, amounts."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

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
    check_claim_details,
)
from cardinsa_core.domain.money import Money
from cardinsa_foundation.errors import FailedPrecondition, InvalidArgument, PermissionDenied

S, C = ClaimState, ClaimAction
TODAY = date(2025, 6, 15)
LIMIT = Money.of(Decimal(10_000), "USD")
ALL_AUTHORITY = frozenset({APPROVE_PERMISSION, *BAND_PERMISSIONS})


def usd(amount: str | int) -> Money:
    return Money.of(Decimal(amount), "USD")


DETAILS = ClaimDetails(
    claim_type=ClaimType.MEDICAL,
    description="broken arm",
    incident_date=date(2025, 6, 1),
    report_date=date(2025, 6, 2),
    claimed_amount=usd(800),
    coverage_code="OUTPATIENT",
)
DRAFT = Claim(state=S.DRAFT, details=DETAILS)
SUBMITTED = dataclasses.replace(DRAFT, state=S.SUBMITTED, claim_number="CLM-00000001")
UNDER_REVIEW = dataclasses.replace(SUBMITTED, state=S.UNDER_REVIEW)
APPROVED = dataclasses.replace(UNDER_REVIEW, state=S.APPROVED, approved_amount=usd(700))
DENIED = dataclasses.replace(UNDER_REVIEW, state=S.DENIED, deny_reason="not covered")
PAID = dataclasses.replace(APPROVED, state=S.PAID, paid_amount=usd(700), payment_reference="PAY-1")
CLOSED = dataclasses.replace(PAID, state=S.CLOSED)
IN_STATE = {
    S.DRAFT: DRAFT,
    S.SUBMITTED: SUBMITTED,
    S.UNDER_REVIEW: UNDER_REVIEW,
    S.APPROVED: APPROVED,
    S.DENIED: DENIED,
    S.PAID: PAID,
    S.CLOSED: CLOSED,
}


def perform(claim: Claim, action: ClaimAction) -> Claim:
    if action is C.UPDATE:
        return claim.update(dataclasses.replace(DETAILS, claimed_amount=usd(900)))
    if action is C.SUBMIT:
        return claim.submit("CLM-00000042")
    if action is C.REVIEW:
        return claim.review()
    if action is C.APPROVE:
        return claim.approve(
            usd(750), coverage_limit=LIMIT, bands=ApprovalBands(), permissions=ALL_AUTHORITY
        )
    if action is C.DENY:
        return claim.deny("pre-existing condition")
    if action is C.PAY:
        return claim.pay("PAY-2")[0]
    if action is C.CLOSE:
        return claim.close()
    if action is C.REOPEN:
        return claim.reopen("new evidence")
    claim.check_delete()
    return claim


EXPECTED: dict[tuple[ClaimState, ClaimAction], tuple[ClaimState, set[str]]] = {
    (S.DRAFT, C.UPDATE): (S.DRAFT, {"details"}),
    (S.DRAFT, C.SUBMIT): (S.SUBMITTED, {"state", "claim_number"}),
    (S.SUBMITTED, C.REVIEW): (S.UNDER_REVIEW, {"state"}),
    (S.UNDER_REVIEW, C.APPROVE): (S.APPROVED, {"state", "approved_amount"}),
    (S.UNDER_REVIEW, C.DENY): (S.DENIED, {"state", "deny_reason"}),
    (S.APPROVED, C.PAY): (S.PAID, {"state", "paid_amount", "payment_reference"}),
    (S.PAID, C.CLOSE): (S.CLOSED, {"state"}),
    (S.CLOSED, C.REOPEN): (S.UNDER_REVIEW, {"state"}),
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
    if expected is not None:
        after = perform(before, action)
        assert after.state is expected[0]
        assert changed_fields(before, after) == expected[1]
        assert action in CLAIM_LIFECYCLE.allowed_actions(state)
        return
    with pytest.raises(FailedPrecondition) as caught:
        perform(before, action)
    error = caught.value
    assert error.reason == "INVALID_STATE_TRANSITION"
    assert error.metadata == {"current_state": state.value, "transition": action.value}
    assert state.value in error.message and action.value in error.message


def test_the_table_is_exactly_the_expected_one() -> None:
    assert len(ALL_PAIRS) == 63
    assert {k: v for k, v in CLAIM_LIFECYCLE.transitions.items()} == {
        k: v[0] for k, v in EXPECTED.items()
    }


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
    def approve(self, amount: Money, permissions: frozenset[str] = ALL_AUTHORITY) -> Claim:
        return UNDER_REVIEW.approve(
            amount, coverage_limit=usd(750), bands=ApprovalBands(), permissions=permissions
        )

    def test_within_claimed_and_limit(self) -> None:
        assert self.approve(usd(750)).approved_amount == usd(750)

    def test_above_the_coverage_limit(self) -> None:
        with pytest.raises(FailedPrecondition) as caught:
            self.approve(usd(751))
        assert caught.value.reason == "COVERAGE_LIMIT_EXCEEDED"

    def test_above_the_claimed_amount(self) -> None:
        with pytest.raises(FailedPrecondition) as caught:
            UNDER_REVIEW.approve(
                usd(801), coverage_limit=LIMIT, bands=ApprovalBands(), permissions=ALL_AUTHORITY
            )
        assert caught.value.reason == "APPROVED_EXCEEDS_CLAIMED"

    @pytest.mark.parametrize("amount", [usd(0), Money.of(Decimal(5), "EUR")])
    def test_invalid_amounts(self, amount: Money) -> None:
        with pytest.raises(InvalidArgument):
            self.approve(amount)

    def test_outside_the_approvers_band(self) -> None:
        with pytest.raises(PermissionDenied):
            UNDER_REVIEW.approve(
                usd(800),
                coverage_limit=LIMIT,
                bands=ApprovalBands((Decimal(100), Decimal(500))),
                permissions=frozenset({APPROVE_PERMISSION, "claims.approve_band_2"}),
            )


class TestPayments:
    def test_pay_settles_what_is_outstanding(self) -> None:
        paid, amount = APPROVED.pay("PAY-1")
        assert amount == usd(700) and paid.paid_amount == usd(700) and paid.outstanding == usd(0)

    def test_a_reopened_claim_is_topped_up(self) -> None:
        reopened = CLOSED.reopen("more invoices")
        approved = reopened.approve(
            usd(800), coverage_limit=LIMIT, bands=ApprovalBands(), permissions=ALL_AUTHORITY
        )
        paid, amount = approved.pay("PAY-2")
        assert amount == usd(100) and paid.paid_amount == usd(800)

    def test_never_below_what_was_paid(self) -> None:
        with pytest.raises(FailedPrecondition) as caught:
            CLOSED.reopen("x").approve(
                usd(600), coverage_limit=LIMIT, bands=ApprovalBands(), permissions=ALL_AUTHORITY
            )
        assert caught.value.reason == "APPROVED_BELOW_PAID"

    def test_nothing_to_pay(self) -> None:
        again = dataclasses.replace(PAID, state=S.APPROVED)
        with pytest.raises(FailedPrecondition) as caught:
            again.pay("PAY-3")
        assert caught.value.reason == "NOTHING_TO_PAY"

    @pytest.mark.parametrize(
        ("claim", "call"),
        [
            (APPROVED, lambda c: c.pay("")),
            (UNDER_REVIEW, lambda c: c.deny("")),
            (CLOSED, lambda c: c.reopen("")),
        ],
    )
    def test_required_texts(self, claim: Claim, call: Any) -> None:
        with pytest.raises(InvalidArgument):
            call(claim)


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
