"""Money invariants of claims (docs/claims.md), as properties of the pure domain.

``assess`` is checked for any claimed amount, coverage and usage in currencies
of 0, 2 and 3 minor units. A state machine then drives several claims of one
member, coverage and period through the domain methods the application uses,
keeping an in-memory accumulator exactly as ``application.claim_cover`` does
(the benefit is assessed with the usage less the claim's own consumption; each
step moves the accumulator from the claim's consumption before to after), and
checks after every step that the accumulator is the sum of the claims'
consumption and within the limit, the deductible and the sum insured.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from cardinsa_core.domain.adjudication import Benefit, Consumption, Usage, assess
from cardinsa_core.domain.claims import (
    APPROVED_STATES,
    Claim,
    ClaimDetails,
    ClaimState,
    ClaimType,
    CostType,
    RecoveryKind,
)
from cardinsa_core.domain.money import Money, minor_units
from cardinsa_core.domain.products import Coverage, LimitPeriod
from cardinsa_foundation.errors import FailedPrecondition, InvalidArgument

CURRENCIES = ("JPY", "EUR", "KWD")  # 0, 2 and 3 minor units
REFUSED = (FailedPrecondition, InvalidArgument)


def _money(minor: int, currency: str) -> Money:
    return Money(Decimal(minor).scaleb(-minor_units(currency)), currency).rounded()


def _decimals(money: Money) -> int:
    exponent = money.amount.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def _zero(currency: str) -> Money:
    return Money.zero(currency)


def _remaining(total: Money, used: Money) -> Money:
    left = total - used
    return left if not left.is_negative else _zero(total.currency)


@st.composite
def coverages(draw: st.DrawFn, currency: str, *, max_minor: int = 10**9) -> Coverage:
    """A valid coverage (as check_terms accepts it): limit > 0, deductible <= limit,
    a co-payment or a co-insurance percentage (basis points / 100) or neither."""
    limit = draw(st.integers(1, max_minor))
    deductible = draw(st.integers(0, limit) | st.just(0))
    sharing = draw(st.sampled_from(("none", "copay", "coinsurance")))
    copay = None
    percent = None
    if sharing == "copay":
        copay = _money(draw(st.integers(0, max_minor)), currency)
    elif sharing == "coinsurance":
        percent = Decimal(draw(st.integers(0, 10_000))) / 100
    return Coverage(
        code="OUTPATIENT",
        name="Outpatient",
        limit=_money(limit, currency),
        limit_period=LimitPeriod.PER_YEAR,
        deductible=_money(deductible, currency),
        copay=copay,
        coinsurance_percent=percent,
    )


# --------------------------------------------------------------------- assess


@st.composite
def assessments(draw: st.DrawFn) -> dict[str, Any]:
    currency = draw(st.sampled_from(CURRENCIES))
    coverage = draw(coverages(currency))
    amount = st.integers(0, 2 * 10**9)
    usage = draw(
        st.none()
        | st.builds(
            Usage,
            st.integers(0, int(coverage.deductible.amount.scaleb(minor_units(currency))) + 5).map(
                lambda m: _money(m, currency)
            ),
            amount.map(lambda m: _money(m, currency)),
        )
    )
    return {
        "claimed": _money(draw(st.integers(1, 2 * 10**9)), currency),
        "coverage": coverage,
        "usage": usage,
        "sum_insured": _money(draw(st.integers(1, 2 * 10**9)), currency),
        "sum_insured_used": _money(draw(amount), currency),
    }


@settings(max_examples=400, deadline=None)
@given(assessments())
def test_assess_splits_the_claimed_amount_exactly_within_every_cap(case: dict[str, Any]) -> None:
    claimed: Money = case["claimed"]
    coverage: Coverage = case["coverage"]
    usage: Usage | None = case["usage"]
    currency = claimed.currency
    benefit = assess(
        claimed,
        coverage,
        usage=usage,
        sum_insured=case["sum_insured"],
        sum_insured_used=case["sum_insured_used"],
    )
    parts = (
        benefit.deductible,
        benefit.copay,
        benefit.coinsurance,
        benefit.limit_cut,
        benefit.payable,
    )
    assert benefit.claimed == claimed
    assert benefit.parts_total == claimed
    for part in parts:
        assert part.currency == currency
        assert not part.is_negative, benefit
        assert _decimals(part) <= minor_units(currency), benefit
    used = usage or Usage.zero(currency)
    limit_left = _remaining(coverage.limit, used.limit_used)
    sum_insured_left = _remaining(case["sum_insured"], case["sum_insured_used"])
    assert benefit.payable <= limit_left
    assert benefit.payable <= sum_insured_left
    assert benefit.deductible <= _remaining(coverage.deductible, used.deductible_used)
    # Cost sharing is one or the other, never more than the claim less its deductible.
    assert benefit.copay.is_positive + benefit.coinsurance.is_positive <= 1
    if coverage.copay is not None:
        assert benefit.copay <= coverage.copay
    # A cut is only made by a cap that binds: what is payable is then exactly that cap.
    if benefit.limit_cut.is_positive:
        assert benefit.payable == min(limit_left, sum_insured_left, key=lambda m: m.amount)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(CURRENCIES).flatmap(lambda c: st.tuples(st.just(c), coverages(c))))
def test_a_claim_within_the_remaining_deductible_pays_nothing(case: tuple[str, Coverage]) -> None:
    currency, coverage = case
    if not coverage.deductible.is_positive:
        return
    benefit = assess(
        coverage.deductible,
        coverage,
        usage=Usage.zero(currency),
        sum_insured=coverage.limit,
        sum_insured_used=_zero(currency),
    )
    assert benefit.deductible == coverage.deductible
    assert benefit.payable == _zero(currency)


# --------------------------------------------------------------------- claims sharing a period

TODAY = date(2026, 6, 1)


@dataclass
class Tracked:
    """One claim of the machine, with its indemnity payments that are not voided."""

    claim: Claim
    payments: list[Money]
    #: Overpayments recovered from the payee (they lower the paid amount).
    overpaid: Money


AMOUNT_KINDS = ("payable", "zero", "paid", "half", "above", "any")


class ClaimsOfOnePeriod(RuleBasedStateMachine):
    """Claims of one member, coverage and period sharing their accumulators."""

    def __init__(self) -> None:
        super().__init__()
        self.claims: list[Tracked] = []
        self.currency = "EUR"
        self.usage = Usage.zero("EUR")
        self.sum_insured_used = _zero("EUR")
        #: claim index -> accumulators before its consumption became non-zero,
        #: while no other claim has moved them since.
        self.snapshots: dict[int, tuple[Usage, Money]] = {}

    @initialize(
        currency=st.sampled_from(CURRENCIES),
        data=st.data(),
    )
    def cover(self, currency: str, data: st.DataObject) -> None:
        self.currency = currency
        # Small amounts (in minor units) so that limits, deductibles and the sum
        # insured run out within a few claims.
        self.coverage = data.draw(coverages(currency, max_minor=5_000))
        self.sum_insured = _money(data.draw(st.integers(1, 8_000)), currency)
        self.usage = Usage.zero(currency)
        self.sum_insured_used = _zero(currency)

    def amount(self, data: st.DataObject, most: int = 6_000) -> Money:
        return _money(data.draw(st.integers(0, most)), self.currency)

    # ------------------------------------------------------------- the application's steps

    def benefit_of(self, claim: Claim) -> Benefit:
        """application.claim_cover.benefit_of: usage without the claim's own consumption."""
        own = claim.consumption
        return assess(
            claim.details.claimed_amount,
            self.coverage,
            usage=self.usage.minus(own),
            sum_insured=self.sum_insured,
            sum_insured_used=self.sum_insured_used - own.limit,
        )

    def step(self, index: int, change: Any, *, paid: Money | None = None) -> bool:
        """Apply ``change`` (Claim -> Claim) to claim ``index`` and settle the
        accumulators; a refusal must leave everything as it was."""
        tracked = self.claims[index]
        before = tracked.claim
        accumulators = (self.usage, self.sum_insured_used)
        payments = list(tracked.payments)
        try:
            after = change(before)
        except REFUSED:
            assert tracked.claim is before and tracked.payments == payments
            assert (self.usage, self.sum_insured_used) == accumulators
            return False
        self.settle(index, before.consumption, after.consumption)
        tracked.claim = after
        return True

    def settle(self, index: int, before: Consumption, after: Consumption) -> None:
        """application.claim_cover.settle: move from ``before`` to ``after``."""
        if before == after:
            return
        for other in list(self.snapshots):
            if other != index:
                del self.snapshots[other]
        if before.is_zero and index not in self.snapshots:
            self.snapshots[index] = (self.usage, self.sum_insured_used)
        self.usage = self.usage.minus(before).plus(after)
        self.sum_insured_used = self.sum_insured_used - before.limit + after.limit
        if after.is_zero and index in self.snapshots:
            # The claim gave back everything: the accumulators are as before it took any.
            assert (self.usage, self.sum_insured_used) == self.snapshots.pop(index)

    # ------------------------------------------------------------- rules

    @precondition(lambda self: len(self.claims) < 4)
    @rule(data=st.data())
    def new_claim(self, data: st.DataObject) -> None:
        claimed = _money(data.draw(st.integers(1, 6_000)), self.currency)
        details = ClaimDetails(
            claim_type=ClaimType.MEDICAL,
            description="x",
            incident_date=TODAY,
            report_date=TODAY,
            claimed_amount=claimed,
            coverage_code="OUTPATIENT",
        )
        claim = Claim(state=ClaimState.DRAFT, details=details).submit(f"C{len(self.claims)}")
        claim = claim.review()
        claim = claim.assessed(self.benefit_of(claim))  # an estimate: consumes nothing
        assert claim.consumption.is_zero
        self.claims.append(Tracked(claim, [], _zero(self.currency)))

    def pick(self, data: st.DataObject, *states: ClaimState) -> int:
        """A claim; mostly one in ``states`` (where the step can succeed), so that
        long histories of one claim are reached, sometimes any (to be refused)."""
        useful = [i for i, t in enumerate(self.claims) if t.claim.state in states]
        if useful and data.draw(st.integers(0, 4)):
            return data.draw(st.sampled_from(useful))
        return data.draw(st.integers(0, len(self.claims) - 1))

    @precondition(lambda self: self.claims)
    @rule(data=st.data(), kind=st.sampled_from(AMOUNT_KINDS))
    def approve(self, data: st.DataObject, kind: str) -> None:
        index = self.pick(data, ClaimState.UNDER_REVIEW, ClaimState.APPROVED, ClaimState.PAID)

        def change(claim: Claim) -> Claim:
            benefit = self.benefit_of(claim)
            amount = {
                "payable": benefit.payable,
                "zero": _zero(self.currency),
                "paid": claim.paid,
                "half": Money(benefit.payable.amount / 2, self.currency).rounded(),
                "above": benefit.payable + _money(1, self.currency),
                "any": self.amount(data),
            }[kind]
            approved = claim.approve(amount, benefit)
            assert approved.benefit == benefit and approved.benefit.parts_total == (
                claim.details.claimed_amount
            )
            return approved

        self.step(index, change)

    @precondition(lambda self: self.claims)
    @rule(data=st.data(), whole=st.booleans())
    def pay(self, data: st.DataObject, whole: bool) -> None:
        index = self.pick(data, ClaimState.APPROVED)
        tracked = self.claims[index]
        outstanding = tracked.claim.outstanding
        amount = outstanding if whole and outstanding.is_positive else self.amount(data, 3_000)
        if not amount.is_positive:
            return  # the RPC refuses a payment of 0 before the claim is read
        if self.step(index, lambda c: c.pay(CostType.INDEMNITY, amount, "REF")):
            tracked.payments.append(amount)

    @precondition(lambda self: any(t.payments for t in self.claims))
    @rule(data=st.data())
    def void(self, data: st.DataObject) -> None:
        index = data.draw(st.sampled_from([i for i, t in enumerate(self.claims) if t.payments]))
        tracked = self.claims[index]
        which = data.draw(st.integers(0, len(tracked.payments) - 1))
        amount = tracked.payments[which]
        if self.step(index, lambda c: c.void(CostType.INDEMNITY, amount)):
            del tracked.payments[which]

    @precondition(lambda self: self.claims)
    @rule(data=st.data())
    def unapprove(self, data: st.DataObject) -> None:
        self.step(self.pick(data, ClaimState.APPROVED), lambda c: c.unapprove("wrong amount"))

    @precondition(lambda self: self.claims)
    @rule(data=st.data())
    def deny(self, data: st.DataObject) -> None:
        self.step(self.pick(data, ClaimState.UNDER_REVIEW), lambda c: c.deny("not covered"))

    @precondition(lambda self: self.claims)
    @rule(data=st.data())
    def close(self, data: st.DataObject) -> None:
        self.step(self.pick(data, ClaimState.APPROVED, ClaimState.PAID), lambda c: c.close())

    @precondition(lambda self: self.claims)
    @rule(data=st.data(), new_amount=st.booleans())
    def reopen(self, data: st.DataObject, new_amount: bool) -> None:
        claimed = _money(data.draw(st.integers(1, 6_000)), self.currency) if new_amount else None

        def change(claim: Claim) -> Claim:
            reopened = claim.reopen("late invoice", claimed)
            # The estimate is worked out with the reopened claim's own consumption.
            return reopened.assessed(self.benefit_of(reopened))

        self.step(self.pick(data, ClaimState.CLOSED, ClaimState.DENIED), change)

    @precondition(lambda self: self.claims)
    @rule(data=st.data(), kind=st.sampled_from([RecoveryKind.OVERPAYMENT, RecoveryKind.SALVAGE]))
    def recover(self, data: st.DataObject, kind: RecoveryKind) -> None:
        index = self.pick(data, ClaimState.UNDER_REVIEW, ClaimState.APPROVED, ClaimState.PAID)
        claim = self.claims[index].claim
        amount = claim.paid if data.draw(st.booleans()) else self.amount(data, 3_000)
        if not amount.is_positive:
            return
        if self.step(index, lambda c: c.recover(kind, amount)) and kind is RecoveryKind.OVERPAYMENT:
            self.claims[index].overpaid += amount

    # ------------------------------------------------------------- invariants

    @invariant()
    def accumulators_are_the_sum_of_the_claims(self) -> None:
        if not hasattr(self, "coverage"):
            return
        zero = _zero(self.currency)
        limit = sum((t.claim.consumption.limit for t in self.claims), zero)
        deductible = sum((t.claim.consumption.deductible for t in self.claims), zero)
        assert self.usage.limit_used == limit
        assert self.usage.deductible_used == deductible
        assert self.sum_insured_used == limit
        assert not self.usage.limit_used.is_negative
        assert self.usage.limit_used <= self.coverage.limit
        # The deductible is borne once per period, whatever the number of claims.
        assert not self.usage.deductible_used.is_negative
        assert self.usage.deductible_used <= self.coverage.deductible
        assert self.sum_insured_used <= self.sum_insured

    @invariant()
    def every_claims_money_is_consistent(self) -> None:
        for tracked in self.claims:
            claim = tracked.claim
            zero = _zero(claim.currency)
            assert claim.paid == sum(tracked.payments, zero) - tracked.overpaid
            assert not claim.paid.is_negative, claim
            # Net paid is paid less salvage and subrogation; it falls below zero only
            # when the payee refunds (or a payment is voided) after salvage came in.
            recovered = claim.recovered_amount or zero
            assert claim.net_paid == claim.paid - recovered and not recovered.is_negative
            for reserve in (claim.indemnity_reserve, claim.expense_reserve):
                assert reserve is None or not reserve.is_negative, claim
            if claim.state in APPROVED_STATES:
                assert claim.paid <= claim.approved, claim
                assert claim.indemnity_reserve == claim.approved - claim.paid
                assert claim.benefit is not None and claim.approved <= claim.benefit.payable
                assert (claim.state is ClaimState.PAID) == (
                    claim.approved.is_positive and claim.paid == claim.approved
                ) or claim.state is ClaimState.CLOSED
            if claim.benefit is not None:
                assert claim.benefit.parts_total == claim.benefit.claimed
            for part in (claim.paid, claim.approved, *(p for p in tracked.payments)):
                assert _decimals(part) <= minor_units(claim.currency)


def _paid_claim(currency: str = "EUR") -> Claim:
    """A claim of 100 approved and paid in full (one payment of 100)."""
    hundred = _money(100 * 10 ** minor_units(currency), currency)
    coverage = Coverage("OUTPATIENT", "o", hundred, LimitPeriod.PER_YEAR, _zero(currency))
    details = ClaimDetails(ClaimType.MEDICAL, "x", TODAY, TODAY, hundred, "OUTPATIENT")
    claim = Claim(state=ClaimState.DRAFT, details=details).submit("C1").review()
    benefit = assess(
        hundred,
        coverage,
        usage=Usage.zero(currency),
        sum_insured=hundred,
        sum_insured_used=_zero(currency),
    )
    return claim.approve(hundred, benefit).pay(CostType.INDEMNITY, hundred)


def test_a_payment_recovered_as_an_overpayment_cannot_be_voided_as_well() -> None:
    # Found by the state machine: paid 100, reopened, the 100 recovered from the
    # payee, then the (still ISSUED) payment voided left paid_amount at -100.
    claim = _paid_claim().close().reopen("duplicate invoice")
    claim = claim.recover(RecoveryKind.OVERPAYMENT, claim.paid)
    assert claim.paid == _zero("EUR") and claim.consumption.is_zero
    with pytest.raises(FailedPrecondition) as refused:
        claim.void(CostType.INDEMNITY, _money(10_000, "EUR"))
    assert refused.value.reason == "VOID_EXCEEDS_PAID"


def test_a_void_is_at_most_what_is_paid_and_salvage_stays_the_insurers() -> None:
    claim = _paid_claim("KWD").recover(RecoveryKind.SALVAGE, _money(40_000, "KWD"))
    with pytest.raises(FailedPrecondition) as refused:
        claim.void(CostType.INDEMNITY, _money(100_001, "KWD"))
    assert refused.value.reason == "VOID_EXCEEDS_PAID"
    assert refused.value.metadata == {"paid_amount": "100.000", "currency": "KWD"}
    voided = claim.void(CostType.INDEMNITY, _money(100_000, "KWD"))
    assert voided.state is ClaimState.APPROVED and voided.paid == _zero("KWD")
    assert voided.net_paid == _money(-40_000, "KWD")
    assert voided.indemnity_reserve == _money(100_000, "KWD")


def test_a_fraudulent_claim_is_refunded_in_full_after_salvage() -> None:
    # Paid 100, the wreck sold for 30, then fraud: the payee refunds all 100 and the
    # claim can be denied; the salvage stays the insurer's (net paid -30).
    claim = _paid_claim("JPY").recover(RecoveryKind.SALVAGE, _money(30, "JPY"))
    claim = claim.close().reopen("fraud")
    with pytest.raises(FailedPrecondition) as refused:
        claim.recover(RecoveryKind.OVERPAYMENT, _money(101, "JPY"))
    assert refused.value.reason == "RECOVERY_EXCEEDS_PAID"
    assert refused.value.metadata == {"recoverable": "100"}
    refunded = claim.recover(RecoveryKind.OVERPAYMENT, _money(100, "JPY"))
    assert refunded.paid == _zero("JPY") and refunded.net_paid == _money(-30, "JPY")
    assert refunded.deny("fraud").state is ClaimState.DENIED


ClaimsOfOnePeriod.TestCase.settings = settings(
    max_examples=250,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_claims_of_one_period_share_their_accumulators = ClaimsOfOnePeriod.TestCase
