"""Rating: hand-checked premiums and the properties every rating keeps (exact
lines, never negative, leap years, splitting a term, currencies with 0 and 3
decimals, the flat strategy, the flag that chooses it, the stored JSON)."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardinsa_core.domain.money import Money, minor_units
from cardinsa_core.domain.policies import add_months
from cardinsa_core.domain.rating import (
    BASIS_POINTS,
    AgeBand,
    FlatRating,
    RatedMember,
    Rating,
    RatingRequest,
    RatingRules,
    StandardRating,
    TermBasis,
    age_on,
    exact_money,
    strategy_for,
)

CURRENCIES = ("USD", "JPY", "BHD")
RELATIONS = ("SPOUSE", "CHILD", "PARENT", "SIBLING", "OTHER")
SPOUSE_ID = uuid.UUID(int=1)
CHILD_ID = uuid.UUID(int=2)


def usd(amount: str) -> Money:
    return Money.of(amount, "USD")


def money(minor: int, currency: str) -> Money:
    return Money(Decimal(minor).scaleb(-minor_units(currency)), currency).rounded()


def request(
    rules: RatingRules,
    *,
    base: Money | None = None,
    members: tuple[RatedMember, ...] = (RatedMember.holder(None),),
    start: date = date(2025, 3, 1),
    end: date | None = None,
    sum_insured: Money | None = None,
    term_months: int = 12,
) -> RatingRequest:
    base = base or usd("1000")
    return RatingRequest(
        currency=base.currency,
        base_premium=base,
        term_months=term_months,
        rules=rules,
        members=members,
        start=start,
        end=end or start + timedelta(days=364),
        sum_insured=sum_insured or Money.zero(base.currency),
    )


def lines(rating: Rating) -> list[tuple[str, Decimal]]:
    return [(line.code, line.amount.amount) for line in rating.lines]


# ------------------------------------------------------------------ ages


def test_age_on_the_birthday_is_the_new_age() -> None:
    assert age_on(date(1985, 3, 1), date(2025, 3, 1)) == 40
    assert age_on(date(1985, 3, 1), date(2025, 2, 28)) == 39
    assert age_on(None, date(2025, 3, 1)) is None


def test_a_leap_day_birthday_counts_from_the_first_of_march_in_other_years() -> None:
    born = date(2000, 2, 29)
    assert age_on(born, date(2018, 2, 28)) == 17
    assert age_on(born, date(2018, 3, 1)) == 18
    assert age_on(born, date(2020, 2, 28)) == 19
    assert age_on(born, date(2020, 2, 29)) == 20


# ------------------------------------------------------------------ worked examples

FAMILY_RULES = RatingRules(
    age_bands=(AgeBand(0, 17, 5000), AgeBand(18, 39, 10000), AgeBand(40, 64, 15000)),
    relation_factors={"SPOUSE": 9000, "CHILD": 5000},
    tax_basis_points=1900,
    policy_fee=usd("25"),
)


def test_age_bands_and_relation_factors_with_birthdays_on_the_effective_date() -> None:
    members = (
        # 40 on the effective date: the 40-64 band (1.5).
        RatedMember.holder(date(1985, 3, 1)),
        # 38 (39 the day after): 1 x spouse 0.9.
        RatedMember.dependent(SPOUSE_ID, "SPOUSE", date(1986, 3, 2)),
        # 18 on the effective date: 1 x child 0.5.
        RatedMember.dependent(CHILD_ID, "CHILD", date(2007, 3, 1)),
    )
    rating = StandardRating().rate(request(FAMILY_RULES, members=members))
    assert lines(rating) == [
        ("MEMBER", Decimal("1500.00")),
        ("MEMBER", Decimal("900.00")),
        ("MEMBER", Decimal("500.00")),
        ("TAX", Decimal("551.00")),
        ("FEE", Decimal("25.00")),
    ]
    assert [line.member_key for line in rating.lines[:3]] == [
        "holder",
        str(SPOUSE_ID),
        str(CHILD_ID),
    ]
    assert rating.lines[0].description == "policyholder, age 40: 1000.00 x 1.5000"
    assert (rating.net, rating.tax, rating.fee) == (usd("2900"), usd("551"), usd("25"))
    assert rating.total == usd("3476")
    assert (rating.strategy, rating.term_days) == ("standard", 365)


def test_a_leap_day_birthday_in_the_bands() -> None:
    rules = RatingRules(age_bands=(AgeBand(0, 17, 5000), AgeBand(18, 39, 10000)))
    born = (RatedMember.holder(date(2000, 2, 29)),)
    before = StandardRating().rate(request(rules, members=born, start=date(2018, 2, 28)))
    on = StandardRating().rate(request(rules, members=born, start=date(2018, 3, 1)))
    assert (before.net, on.net) == (usd("500"), usd("1000"))


def test_a_member_in_no_band_and_an_unlisted_relation_have_the_factor_one() -> None:
    members = (
        RatedMember.holder(date(1940, 1, 1)),  # 85: no band
        RatedMember.dependent(CHILD_ID, "PARENT", None),  # no factor for PARENT, age unknown
    )
    rating = StandardRating().rate(request(FAMILY_RULES, members=members))
    assert rating.net == usd("2000")


def test_the_sum_insured_rate_and_a_term_of_181_days() -> None:
    rules = RatingRules(sum_insured_rate_basis_points=25)
    rating = StandardRating().rate(
        request(
            rules,
            sum_insured=usd("100000"),
            start=date(2025, 1, 1),
            end=date(2025, 6, 30),
        )
    )
    # (1000 + 100000 x 0.25 %) x 181 / 365 = 1250 x 181 / 365 = 619.8630...
    assert lines(rating) == [
        ("MEMBER", Decimal("1000.00")),
        ("SUM_INSURED", Decimal("250.00")),
        ("TERM", Decimal("-630.14")),
    ]
    assert rating.net == usd("619.86") and rating.term_days == 181
    assert rating.lines[2].description == "181 days (annual rate x 181/365)"


@pytest.mark.parametrize(
    ("base", "tax"),
    [
        ("0.10", "0.02"),  # 0.025 rounds half to even: down
        ("0.30", "0.08"),  # 0.075 rounds half to even: up
        ("0.50", "0.12"),  # 0.125: down
        ("10.05", "2.51"),  # 2.5125: not a half
    ],
)
def test_tax_rounds_half_even(base: str, tax: str) -> None:
    rules = RatingRules(tax_basis_points=2500)
    rating = FlatRating().rate(request(rules, base=usd(base)))
    assert rating.tax == usd(tax)
    assert lines(rating)[-1] == ("TAX", Decimal(tax))
    assert rating.lines[-1].description == "premium tax 25 %"


@pytest.mark.parametrize(
    ("value", "currency", "expected"),
    [
        (Fraction(1, 200), "USD", "0.00"),
        (Fraction(3, 200), "USD", "0.02"),
        (Fraction(-1, 200), "USD", "0.00"),
        (Fraction(-3, 200), "USD", "-0.02"),
        (Fraction(5, 2), "JPY", "2"),
        (Fraction(7, 2000), "BHD", "0.004"),
        (Fraction(1, 3), "BHD", "0.333"),
        # Just above a half, past the 28 digits of a Decimal division: rounds up.
        (Fraction(10**14) + Fraction(1, 200) + Fraction(1, 10**20), "USD", "100000000000000.01"),
        (Fraction(10**14) + Fraction(1, 200) - Fraction(1, 10**20), "USD", "100000000000000.00"),
    ],
)
def test_exact_money_rounds_the_exact_value_half_even(
    value: Fraction, currency: str, expected: str
) -> None:
    assert exact_money(value, currency) == Money(Decimal(expected), currency)


def test_the_fee_is_added_once_whatever_the_members() -> None:
    rules = RatingRules(policy_fee=usd("12.50"))
    members = (RatedMember.holder(None), RatedMember.dependent(CHILD_ID, "CHILD", None))
    rating = StandardRating().rate(request(rules, members=members))
    assert lines(rating) == [
        ("MEMBER", Decimal("1000.00")),
        ("MEMBER", Decimal("1000.00")),
        ("FEE", Decimal("12.50")),
    ]
    assert rating.total == usd("2012.50")


def test_jpy_and_bhd_round_to_their_minor_units() -> None:
    rules = RatingRules(tax_basis_points=500)
    start, end = date(2025, 1, 1), date(2025, 4, 10)  # 100 days
    jpy = StandardRating().rate(request(rules, base=Money.of(10000, "JPY"), start=start, end=end))
    # 10000 x 100 / 365 = 2739.726 -> 2740; tax 137.0
    assert (jpy.net, jpy.tax) == (Money.of(2740, "JPY"), Money.of(137, "JPY"))
    bhd = StandardRating().rate(request(rules, base=Money.of("100", "BHD"), start=start, end=end))
    # 100 x 100 / 365 = 27.3972602... -> 27.397; tax 1.36985 -> 1.370
    assert (bhd.net, bhd.tax) == (Money.of("27.397", "BHD"), Money.of("1.370", "BHD"))


def test_product_term_a_whole_term_costs_the_base_leap_year_or_not() -> None:
    rules = RatingRules(term_basis=TermBasis.PRODUCT_TERM)
    leap = StandardRating().rate(request(rules, start=date(2024, 1, 1), end=date(2024, 12, 31)))
    normal = StandardRating().rate(request(rules, start=date(2025, 1, 1), end=date(2025, 12, 31)))
    assert (leap.term_days, normal.term_days) == (366, 365)
    assert leap.net == normal.net == usd("1000")
    half = StandardRating().rate(request(rules, start=date(2024, 1, 1), end=date(2024, 6, 30)))
    # 182 of the 366 days of a product term from 2024-01-01: 497.2677...
    assert half.net == usd("497.27")
    assert half.lines[-1].description == "182 days (product term of 12 months)"


def test_the_flat_strategy_prices_each_member_at_the_base() -> None:
    members = (
        RatedMember.holder(date(1950, 1, 1)),
        RatedMember.dependent(CHILD_ID, "CHILD", date(2020, 1, 1)),
    )
    rating = FlatRating().rate(
        request(FAMILY_RULES, members=members, end=date(2025, 3, 31), sum_insured=usd("5000"))
    )
    assert lines(rating) == [
        ("MEMBER", Decimal("1000.00")),
        ("MEMBER", Decimal("1000.00")),
        ("TAX", Decimal("380.00")),
        ("FEE", Decimal("25.00")),
    ]
    assert rating.strategy == "flat" and rating.term_days == 31


def test_the_worked_example_of_docs_rating_md() -> None:
    rules = RatingRules(
        age_bands=(AgeBand(0, 17, 6000), AgeBand(18, 39, 10000), AgeBand(40, 64, 15000)),
        relation_factors={"SPOUSE": 9000, "CHILD": 5000},
        sum_insured_rate_basis_points=25,
        tax_basis_points=500,
        policy_fee=usd("25"),
    )
    members = (
        RatedMember.holder(date(1985, 3, 1)),
        RatedMember.dependent(SPOUSE_ID, "SPOUSE", date(1986, 3, 2)),
        RatedMember.dependent(CHILD_ID, "CHILD", date(2015, 6, 10)),
    )
    req = request(
        rules,
        members=members,
        start=date(2025, 3, 1),
        end=date(2025, 8, 31),
        sum_insured=usd("100000"),
    )
    standard = StandardRating().rate(req)
    assert standard.term_days == 184
    assert lines(standard) == [
        ("MEMBER", Decimal("1500.00")),
        ("MEMBER", Decimal("900.00")),
        ("MEMBER", Decimal("300.00")),
        ("SUM_INSURED", Decimal("250.00")),
        ("TERM", Decimal("-1462.88")),
        ("TAX", Decimal("74.36")),
        ("FEE", Decimal("25.00")),
    ]
    assert (standard.net, standard.total) == (usd("1487.12"), usd("1586.48"))
    flat = FlatRating().rate(req)
    assert (flat.net, flat.tax, flat.total) == (usd("3000"), usd("150"), usd("3175"))


def test_the_flag_chooses_the_strategy() -> None:
    assert isinstance(strategy_for({"flat_rating": True}), FlatRating)
    assert isinstance(strategy_for({"flat_rating": False}), StandardRating)
    assert isinstance(strategy_for({}), StandardRating)
    assert isinstance(strategy_for({"other": True}), StandardRating)


def test_rules_without_anything_set_store_as_an_empty_object() -> None:
    assert RatingRules().to_json() == {}
    assert RatingRules.from_json({}) == RatingRules() == RatingRules.from_json(None)


# ------------------------------------------------------------------ properties


@st.composite
def rules_of(draw: st.DrawFn, currency: str) -> RatingRules:
    bands: list[AgeBand] = []
    age = 0
    for _ in range(draw(st.integers(0, 5))):
        low = age + draw(st.integers(0, 10))
        high = low + draw(st.integers(0, 30))
        if high > 150:
            break
        bands.append(AgeBand(low, high, draw(st.integers(1, 100_000))))
        age = high + 1
    relations = draw(st.lists(st.sampled_from(RELATIONS), unique=True, max_size=5))
    fee = draw(st.none() | st.integers(0, 10**7))
    referral = draw(st.none() | st.integers(1, 10**10))
    return RatingRules(
        term_basis=draw(st.sampled_from(TermBasis)),
        age_bands=tuple(bands),
        relation_factors={r: draw(st.integers(0, 100_000)) for r in relations},
        sum_insured_rate_basis_points=draw(st.integers(0, 10_000)),
        tax_basis_points=draw(st.integers(0, 10_000)),
        policy_fee=None if fee is None else money(fee, currency),
        short_rate_penalty_basis_points=draw(st.integers(0, 10_000)),
        manual_underwriting=draw(st.booleans()),
        referral_sum_insured=None if referral is None else money(referral, currency),
    )


@st.composite
def members_of(draw: st.DrawFn, *, with_birth: bool = True) -> tuple[RatedMember, ...]:
    birth = st.dates(date(1900, 1, 1), date(2030, 12, 31)) if with_birth else st.none()
    out = [RatedMember.holder(draw(st.none() | birth))] if draw(st.booleans()) else []
    for index in range(draw(st.integers(0 if out else 1, 4))):
        relation = draw(st.sampled_from(RELATIONS))
        out.append(
            RatedMember.dependent(uuid.UUID(int=index + 1), relation, draw(st.none() | birth))
        )
    return tuple(out)


@st.composite
def requests(draw: st.DrawFn, *, with_birth: bool = True, days: int | None = None) -> RatingRequest:
    currency = draw(st.sampled_from(CURRENCIES))
    start = draw(st.dates(date(2020, 1, 1), date(2032, 12, 31)))
    length = days or draw(st.integers(1, 3660))
    return RatingRequest(
        currency=currency,
        base_premium=money(draw(st.integers(0, 10**9)), currency),
        term_months=draw(st.integers(1, 120)),
        rules=draw(rules_of(currency)),
        members=draw(members_of(with_birth=with_birth)),
        start=start,
        end=start + timedelta(days=length - 1),
        sum_insured=money(draw(st.integers(0, 10**12)), currency),
    )


STRATEGIES = st.sampled_from([StandardRating(), FlatRating()])


@settings(max_examples=400, deadline=None)
@given(requests(), STRATEGIES)
def test_the_lines_sum_exactly_to_the_total_which_is_never_negative(
    req: RatingRequest, strategy: StandardRating | FlatRating
) -> None:
    rating = strategy.rate(req)
    assert sum((line.amount for line in rating.lines), Money.zero(req.currency)) == rating.total
    assert rating.total == rating.net + rating.tax + rating.fee
    assert not rating.total.is_negative and not rating.net.is_negative
    for amount in (line.amount for line in rating.lines):
        assert amount == amount.rounded()  # in the currency's minor units
    assert Rating.from_json(json.loads(json.dumps(rating.to_json()))) == rating


def _yearly(req: RatingRequest) -> Fraction:
    """The yearly premium worked out independently of the strategy's lines."""
    rules, total = req.rules, Fraction(0)
    for member in req.members:
        factor = rules.age_factor(age_on(member.date_of_birth, req.start))
        factor *= rules.relation_factor(member.relation)
        total += Fraction(req.base_premium.amount) * factor / BASIS_POINTS**2
    total += Fraction(req.sum_insured.amount) * rules.sum_insured_rate_basis_points / BASIS_POINTS
    return total


@settings(max_examples=300, deadline=None)
@given(requests(), st.integers(1, 24))
def test_product_term_a_whole_term_costs_the_same_in_leap_and_normal_years(
    req: RatingRequest, months: int
) -> None:
    rules = RatingRules(
        term_basis=TermBasis.PRODUCT_TERM,
        sum_insured_rate_basis_points=req.rules.sum_insured_rate_basis_points,
        relation_factors=req.rules.relation_factors,
    )
    members = tuple(RatedMember(m.key, m.relation, None) for m in req.members)
    req = replace(req, rules=rules, members=members)
    month, day = req.start.month, min(req.start.day, 28)
    nets = []
    # The same start in 2023 and 2024: terms over February 2024 have a day more.
    for year in (2023, 2024):
        start = date(year, month, day)
        end = add_months(start, months) - timedelta(days=1)
        nets.append(
            StandardRating().rate(replace(req, term_months=months, start=start, end=end)).net
        )
    assert nets[0] == nets[1] == exact_money(_yearly(req), req.currency)


@settings(max_examples=300, deadline=None)
@given(requests(days=365))
def test_days_over_365_a_365_day_term_is_the_yearly_amount(req: RatingRequest) -> None:
    rules = RatingRules(
        age_bands=req.rules.age_bands,
        relation_factors=req.rules.relation_factors,
        sum_insured_rate_basis_points=req.rules.sum_insured_rate_basis_points,
        tax_basis_points=req.rules.tax_basis_points,
    )
    req = replace(req, rules=rules)
    rating = StandardRating().rate(req)
    assert rating.term_days == 365
    assert rating.net == exact_money(_yearly(req), req.currency)


@settings(max_examples=400, deadline=None)
@given(requests(with_birth=False), st.data())
def test_days_over_365_two_adjacent_parts_cost_the_whole_within_a_minor_unit_each(
    req: RatingRequest, data: st.DataObject
) -> None:
    rules = RatingRules(
        relation_factors=req.rules.relation_factors,
        sum_insured_rate_basis_points=req.rules.sum_insured_rate_basis_points,
    )
    if req.days < 2:
        return
    split = req.start + timedelta(days=data.draw(st.integers(1, req.days - 1)))

    def net(start: date, end: date) -> Decimal:
        return StandardRating().rate(replace(req, rules=rules, start=start, end=end)).net.amount

    whole = net(req.start, req.end)
    parts = net(req.start, split - timedelta(days=1)) + net(split, req.end)
    unit = Decimal(1).scaleb(-minor_units(req.currency))
    assert abs(parts - whole) <= 2 * unit


@settings(max_examples=200, deadline=None)
@given(requests(), st.integers(1, 3660))
def test_the_flat_strategy_ignores_the_length_of_the_term(req: RatingRequest, days: int) -> None:
    other = replace(req, end=req.start + timedelta(days=days - 1))
    rating, longer = FlatRating().rate(req), FlatRating().rate(other)
    assert rating.total == longer.total
    assert rating.net == req.base_premium.times(len(req.members))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CURRENCIES).flatmap(rules_of))
def test_rules_round_trip_through_the_stored_json(rules: RatingRules) -> None:
    stored = json.loads(json.dumps(rules.to_json()))
    assert RatingRules.from_json(stored) == rules
