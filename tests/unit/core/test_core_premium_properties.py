"""Premium transactions: exact money over leap years, one-day terms and many
endorsements (hypothesis), and worked examples."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardinsa_core.domain.money import Money, minor_units
from cardinsa_core.domain.premium import (
    RefundMethod,
    TransactionKind,
    cancel,
    earned,
    endorse,
    new,
    reinstate,
    written,
)
from cardinsa_foundation.errors import InvalidArgument

CURRENCIES = ("EUR", "JPY", "KWD")


def money(minor: int, currency: str) -> Money:
    return Money(Decimal(minor).scaleb(-minor_units(currency)), currency).rounded()


@st.composite
def terms(draw: st.DrawFn) -> tuple[date, date]:
    start = draw(st.dates(min_value=date(2023, 1, 1), max_value=date(2030, 12, 31)))
    days = draw(st.integers(min_value=1, max_value=3653))
    return start, start + timedelta(days=days - 1)


@st.composite
def policies(draw: st.DrawFn) -> tuple[str, date, date, list, Money]:  # type: ignore[type-arg]
    """A NEW transaction and up to eight endorsements; the current full-term premium."""
    currency = draw(st.sampled_from(CURRENCIES))
    start, end = draw(terms())
    annual = money(draw(st.integers(min_value=0, max_value=10**9)), currency)
    first = new(annual, start, end)
    transactions = [first]
    full_term = first.amount
    for _ in range(draw(st.integers(min_value=0, max_value=8))):
        day = start + timedelta(days=draw(st.integers(0, (end - start).days)))
        changed = money(draw(st.integers(min_value=0, max_value=10**9)), currency)
        transactions.append(endorse(transactions, full_term, changed, day))
        full_term = changed
    return currency, start, end, transactions, full_term


@settings(max_examples=300, deadline=None)
@given(policies(), st.data())
def test_a_pro_rata_cancellation_leaves_exactly_the_earned_premium(
    policy: tuple,
    data: st.DataObject,  # type: ignore[type-arg]
) -> None:
    currency, start, end, transactions, _ = policy
    day = start + timedelta(days=data.draw(st.integers(0, (end - start).days + 1)))
    before_earned = earned(transactions, day, currency)
    cancellation = cancel(transactions, day, RefundMethod.PRO_RATA)
    assert cancellation.kind is TransactionKind.CANCEL
    after = [*transactions, cancellation]
    assert written(after, currency) == before_earned
    # Nothing more is earned after the cancellation date.
    assert earned(after, end + timedelta(days=1), currency) == before_earned
    for t in after:
        assert t.amount.rounded() == t.amount  # exact minor units everywhere
    # Reinstating charges back exactly what was returned.
    back = [*after, reinstate(cancellation)]
    assert written(back, currency) == written(transactions, currency)


@settings(max_examples=300, deadline=None)
@given(policies(), st.data(), st.decimals(min_value=0, max_value=100, places=2))
def test_short_rate_returns_less_than_pro_rata_and_flat_nothing(
    policy: tuple,  # type: ignore[type-arg]
    data: st.DataObject,
    penalty: Decimal,
) -> None:
    currency, start, end, transactions, _ = policy
    day = start + timedelta(days=data.draw(st.integers(0, (end - start).days)))
    pro_rata = cancel(transactions, day, RefundMethod.PRO_RATA).amount
    short = cancel(transactions, day, RefundMethod.SHORT_RATE, penalty_percent=penalty).amount
    flat = cancel(transactions, day, RefundMethod.FLAT).amount
    zero = Money.zero(currency)
    assert flat == zero
    # Returns are negative amounts: short-rate returns at most what pro-rata does.
    if pro_rata <= zero:
        assert pro_rata <= short <= zero
    else:  # a policy whose later endorsements cut the premium below what was earned
        assert zero <= short <= pro_rata


@settings(max_examples=300, deadline=None)
@given(policies())
def test_everything_is_earned_after_the_term(policy: tuple) -> None:  # type: ignore[type-arg]
    currency, start, end, transactions, _ = policy
    assert earned(transactions, end + timedelta(days=1), currency) == written(
        transactions, currency
    )
    assert earned(transactions, start, currency) == Money.zero(currency)


class TestWorkedExamples:
    def test_a_year_a_leap_year_and_a_day(self) -> None:
        annual = Money.of(Decimal(365), "EUR")
        assert new(annual, date(2025, 1, 1), date(2025, 12, 31)).amount == annual
        leap = new(annual, date(2024, 1, 1), date(2024, 12, 31)).amount
        assert leap == Money.of(Decimal(366), "EUR")
        assert new(annual, date(2025, 3, 1), date(2025, 3, 1)).amount == Money.of(1, "EUR")

    def test_an_endorsement_halfway(self) -> None:
        first = new(Money.of(Decimal(1200), "EUR"), date(2025, 1, 1), date(2025, 12, 31))
        added = endorse([first], first.amount, Money.of(Decimal(2400), "EUR"), date(2025, 7, 2))
        # 183 of 365 days remain: 1 200 * 183 / 365 = 601.64...
        assert added.amount == Money.of(Decimal("601.64"), "EUR")
        back = endorse(
            [first, added], Money.of(2400, "EUR"), Money.of(1200, "EUR"), date(2025, 7, 2)
        )
        assert back.amount == Money.of(Decimal("-601.64"), "EUR")

    def test_cancellations_by_method(self) -> None:
        first = new(Money.of(Decimal(365), "EUR"), date(2025, 1, 1), date(2025, 12, 31))
        day = date(2025, 4, 1)  # 90 days earned
        assert cancel([first], day, RefundMethod.PRO_RATA).amount == Money.of(-275, "EUR")
        short = cancel([first], day, RefundMethod.SHORT_RATE, penalty_percent=Decimal(10))
        assert short.amount == Money.of(Decimal("-247.50"), "EUR")
        assert cancel([first], day, RefundMethod.FLAT).amount == Money.zero("EUR")

    def test_bad_dates_are_precise_errors(self) -> None:
        first = new(Money.of(Decimal(365), "EUR"), date(2025, 1, 1), date(2025, 12, 31))
        with pytest.raises(InvalidArgument):
            new(Money.of(1, "EUR"), date(2025, 2, 1), date(2025, 1, 1))
        with pytest.raises(InvalidArgument):
            endorse([first], first.amount, first.amount, date(2026, 1, 1))
        with pytest.raises(InvalidArgument):
            cancel([first], date(2024, 12, 31), RefundMethod.PRO_RATA)
        with pytest.raises(InvalidArgument):
            reinstate(first)
