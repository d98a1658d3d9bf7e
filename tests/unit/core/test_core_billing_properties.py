"""Billing: instalments, adjustments, credit notes and payments in exact money
(hypothesis), and worked examples."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardinsa_core.domain.billing import (
    InvoiceKind,
    InvoiceState,
    Ledger,
    instalment_periods,
    invoices_for,
    paid_to_date,
    split,
    state_of,
)
from cardinsa_core.domain.money import Money, minor_units
from cardinsa_core.domain.policies import PaymentFrequency
from cardinsa_core.domain.premium import PremiumTransaction, TransactionKind

CURRENCIES = ("EUR", "JPY", "KWD")


def money(minor: int, currency: str) -> Money:
    return Money(Decimal(minor).scaleb(-minor_units(currency)), currency).rounded()


def eur(value: str) -> Money:
    return Money.of(value, "EUR")


# ------------------------------------------------------------------ examples


def test_a_monthly_year_is_twelve_instalments_due_on_each_period_start() -> None:
    first = PremiumTransaction(
        TransactionKind.NEW, date(2027, 1, 31), date(2028, 1, 30), eur("1000.00")
    )
    drafts = invoices_for(first, PaymentFrequency.MONTHLY, date(2027, 1, 31))
    assert len(drafts) == 12
    assert [d.amount for d in drafts] == [eur("83.37")] + [eur("83.33")] * 11
    assert drafts[0].due_date == date(2027, 1, 31)
    # month arithmetic from the effective date: the 31st clamps, then returns
    assert drafts[1].due_date == date(2027, 2, 28)
    assert drafts[2].due_date == date(2027, 3, 31)
    assert drafts[0].period.end == date(2027, 2, 27)
    assert drafts[-1].period.end == date(2028, 1, 30)
    assert [d.instalment for d in drafts] == list(range(1, 13))


@pytest.mark.parametrize(
    ("frequency", "count"),
    [
        (PaymentFrequency.MONTHLY, 12),
        (PaymentFrequency.QUARTERLY, 4),
        (PaymentFrequency.SEMI_ANNUAL, 2),
        (PaymentFrequency.ANNUAL, 1),
        (PaymentFrequency.SINGLE, 1),
    ],
)
def test_a_year_has_the_frequencys_number_of_instalments(
    frequency: PaymentFrequency, count: int
) -> None:
    assert len(instalment_periods(frequency, date(2027, 3, 1), date(2028, 2, 29))) == count


def test_a_shorter_term_has_fewer_monthly_instalments() -> None:
    assert (
        len(instalment_periods(PaymentFrequency.MONTHLY, date(2027, 1, 1), date(2027, 6, 30))) == 6
    )


def test_the_remainder_of_a_split_goes_on_the_first_part() -> None:
    assert split(Money.of("100", "JPY"), 3) == [
        Money.of(34, "JPY"),
        Money.of(33, "JPY"),
        Money.of(33, "JPY"),
    ]
    assert split(eur("-0.05"), 2) == [eur("-0.03"), eur("-0.02")]


def test_later_transactions_are_one_adjustment_or_credit_note() -> None:
    endorse = PremiumTransaction(
        TransactionKind.ENDORSE, date(2027, 3, 1), date(2027, 12, 31), eur("120.00")
    )
    (adjustment,) = invoices_for(endorse, PaymentFrequency.MONTHLY, date(2027, 2, 1))
    assert adjustment.kind is InvoiceKind.ADJUSTMENT
    assert adjustment.due_date == date(2027, 3, 1)
    cancel = PremiumTransaction(
        TransactionKind.CANCEL, date(2027, 3, 1), date(2027, 12, 31), eur("-50.00")
    )
    (note,) = invoices_for(cancel, PaymentFrequency.MONTHLY, date(2027, 4, 1))
    assert note.kind is InvoiceKind.CREDIT_NOTE
    assert note.due_date == date(2027, 4, 1)
    nothing = PremiumTransaction(
        TransactionKind.ENDORSE, date(2027, 3, 1), date(2027, 12, 31), eur("0")
    )
    assert invoices_for(nothing, PaymentFrequency.MONTHLY, date(2027, 2, 1)) == []


def _bound_ledger(total: str, frequency: PaymentFrequency) -> Ledger:
    ledger = Ledger("EUR")
    first = PremiumTransaction(
        TransactionKind.NEW, date(2027, 1, 1), date(2027, 12, 31), eur(total)
    )
    for i, draft in enumerate(invoices_for(first, frequency, date(2027, 1, 1))):
        ledger.issue(draft, f"i{i:03}", f"INV-{i:03}", date(2027, 1, 1))
    return ledger


def test_a_payment_settles_oldest_first_and_keeps_the_rest_as_credit() -> None:
    ledger = _bound_ledger("1200.00", PaymentFrequency.MONTHLY)
    made = ledger.pay("p1", eur("250.00"), date(2027, 1, 5))
    assert [(a.invoice, a.amount) for a in made] == [
        ("i000", eur("100.00")),
        ("i001", eur("100.00")),
        ("i002", eur("50.00")),
    ]
    assert paid_to_date(ledger.invoices) == date(2027, 2, 28)
    third = ledger.invoices[2]
    assert state_of(third.amount, third.settled, third.due_date, date(2027, 1, 5)) is (
        InvoiceState.PARTIALLY_PAID
    )
    assert state_of(third.amount, third.settled, third.due_date, date(2027, 3, 2)) is (
        InvoiceState.OVERDUE
    )
    ledger.pay("p2", eur("1000.00"), date(2027, 1, 6))
    assert ledger.credit == eur("50.00")
    assert paid_to_date(ledger.invoices) == date(2027, 12, 31)
    # the credit settles the next invoice issued
    endorse = PremiumTransaction(
        TransactionKind.ENDORSE, date(2027, 6, 1), date(2027, 12, 31), eur("80.00")
    )
    (draft,) = invoices_for(endorse, PaymentFrequency.MONTHLY, date(2027, 5, 1))
    made = ledger.issue(draft, "adj", "INV-100", date(2027, 5, 1))
    assert made[0].amount == eur("50.00")
    assert ledger.credit == eur("0.00")
    assert ledger.invoices[-1].outstanding == eur("30.00")


def test_a_credit_note_settles_the_latest_instalments_first() -> None:
    ledger = _bound_ledger("1200.00", PaymentFrequency.MONTHLY)
    ledger.pay("p1", eur("300.00"), date(2027, 1, 5))
    cancel = PremiumTransaction(
        TransactionKind.CANCEL, date(2027, 7, 1), date(2027, 12, 31), eur("-600.00")
    )
    (draft,) = invoices_for(cancel, PaymentFrequency.MONTHLY, date(2027, 4, 1))
    made = ledger.issue(draft, "cn", "INV-100", date(2027, 4, 1))
    assert [a.invoice for a in made] == [f"i{i:03}" for i in range(11, 5, -1)]
    assert ledger.outstanding == eur("300.00")  # April to June still owed
    assert ledger.invoices[-1].settled == eur("-600.00")
    assert paid_to_date(ledger.invoices) == date(2027, 3, 31)


# ------------------------------------------------------------------ properties

FREQUENCIES = list(PaymentFrequency)


@st.composite
def histories(draw: st.DrawFn) -> tuple[str, PaymentFrequency, list[tuple[str, int]]]:
    """A NEW amount, then up to 12 steps: a transaction (+/-) or a payment."""
    currency = draw(st.sampled_from(CURRENCIES))
    frequency = draw(st.sampled_from(FREQUENCIES))
    first = draw(st.integers(min_value=0, max_value=10**8))
    steps: list[tuple[str, int]] = [("NEW", first)]
    for _ in range(draw(st.integers(min_value=0, max_value=12))):
        kind = draw(st.sampled_from(["ENDORSE", "CANCEL", "REINSTATE", "PAY"]))
        if kind == "PAY":
            steps.append((kind, draw(st.integers(min_value=1, max_value=10**8))))
        else:
            steps.append((kind, draw(st.integers(min_value=-(10**8), max_value=10**8))))
    return currency, frequency, steps


@settings(max_examples=300, deadline=None)
@given(histories(), st.dates(min_value=date(2024, 1, 1), max_value=date(2030, 12, 31)))
def test_invoices_sum_to_the_written_premium_and_allocations_balance(
    history: tuple[str, PaymentFrequency, list[tuple[str, int]]], start: date
) -> None:
    currency, frequency, steps = history
    end = start + timedelta(days=364)
    ledger = Ledger(currency)
    written = Money.zero(currency)
    paid = Money.zero(currency)
    credited = Money.zero(currency)
    allocated = Money.zero(currency)
    for n, (kind, minor) in enumerate(steps):
        amount = money(minor, currency)
        day = start + timedelta(days=n * 20)
        if kind == "PAY":
            made = ledger.pay(f"p{n:03}", amount, day)
            paid = paid + amount
        else:
            t = PremiumTransaction(TransactionKind(kind), min(day, end), end, amount)
            written = written + amount
            made = []
            for i, draft in enumerate(invoices_for(t, frequency, day)):
                made += ledger.issue(draft, f"t{n:03}-{i:03}", f"INV-{n:03}-{i:03}", day)
                if draft.kind is InvoiceKind.CREDIT_NOTE:
                    credited = credited - draft.amount
        allocated = allocated + sum((a.amount for a in made), Money.zero(currency))
        assert all(a.amount.is_positive for a in made)

        # the non-void invoices sum exactly to the written premium
        invoiced = sum((i.amount for i in ledger.invoices if not i.void), Money.zero(currency))
        assert invoiced == written
        # no invoice or source is settled beyond its amount
        for invoice in ledger.invoices:
            assert abs(invoice.settled.amount) <= abs(invoice.amount.amount)
            assert invoice.settled.amount * invoice.amount.amount >= 0
        for source in ledger.sources:
            assert Money.zero(currency) <= source.allocated <= source.amount
        # allocation + credit == payments (and credit notes)
        assert allocated + ledger.credit == paid + credited
        # credit is only held while nothing is open
        assert not (ledger.credit.is_positive and ledger.outstanding.is_positive)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(FREQUENCIES),
    st.integers(min_value=0, max_value=10**10),
    st.sampled_from(CURRENCIES),
    st.dates(min_value=date(2024, 1, 1), max_value=date(2030, 12, 31)),
    st.integers(min_value=1, max_value=800),
)
def test_instalments_cover_the_term_without_gaps(
    frequency: PaymentFrequency, minor: int, currency: str, start: date, days: int
) -> None:
    end = start + timedelta(days=days - 1)
    first = PremiumTransaction(TransactionKind.NEW, start, end, money(minor, currency))
    drafts = invoices_for(first, frequency, start)
    assert sum((d.amount for d in drafts), Money.zero(currency)) == first.amount
    assert drafts[0].period.start == start and drafts[-1].period.end == end
    for before, after in pairwise(drafts):
        assert after.period.start == before.period.end + timedelta(days=1)
        assert before.amount >= after.amount
        assert after.due_date == after.period.start
    # the remainder on the first is less than one minor unit per other instalment
    assert _minor_diff(drafts[0].amount, drafts[-1].amount) < len(drafts)


def _minor_diff(a: Money, b: Money) -> int:
    return int((a.amount - b.amount).scaleb(minor_units(a.currency)))
