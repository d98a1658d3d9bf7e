"""The rules of a product's rating rules and coverage entry ages (check_terms)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from cardinsa_core.domain.money import Money
from cardinsa_core.domain.policyholders import Relation
from cardinsa_core.domain.products import (
    TERMS_FIELDS,
    Coverage,
    LimitPeriod,
    ProductTerms,
    check_relations,
    check_terms,
)
from cardinsa_core.domain.rating import AgeBand, RatingRules, TermBasis

P = "product.rating_rules"


def usd(amount: str) -> Money:
    return Money.of(amount, "USD")


COVERAGE = Coverage(
    code="OUTPATIENT",
    name="Outpatient care",
    limit=usd("5000"),
    limit_period=LimitPeriod.PER_YEAR,
    deductible=usd("0"),
)
GOOD_RULES = RatingRules(
    term_basis=TermBasis.PRODUCT_TERM,
    age_bands=(AgeBand(0, 17, 5000), AgeBand(18, 64, 10000), AgeBand(65, 150, 100_000)),
    relation_factors={"SPOUSE": 0, "CHILD": 100_000},
    sum_insured_rate_basis_points=10_000,
    tax_basis_points=10_000,
    policy_fee=usd("0"),
    short_rate_penalty_basis_points=10_000,
    manual_underwriting=True,
    referral_sum_insured=usd("0.01"),
)
TERMS = ProductTerms(
    name="Health Basic",
    description="",
    currency="USD",
    base_premium=usd("1200"),
    term_months=12,
    coverages=(dataclasses.replace(COVERAGE, min_entry_age=0, max_entry_age=150),),
    rating=GOOD_RULES,
)


def violations(**changes: object) -> list[tuple[str, str]]:
    rules = dataclasses.replace(GOOD_RULES, **changes)  # type: ignore[arg-type]
    return [(v.field, v.description) for v in check_terms(dataclasses.replace(TERMS, rating=rules))]


def paths(**changes: object) -> list[str]:
    return [field for field, _ in violations(**changes)]


def test_the_limits_themselves_are_valid() -> None:
    assert check_terms(TERMS) == []
    assert check_terms(dataclasses.replace(TERMS, rating=RatingRules())) == []


def test_rating_rules_are_terms_an_update_mask_names_as_a_whole() -> None:
    assert "rating_rules" in TERMS_FIELDS
    assert not any(f.startswith("rating_rules.") or "entry_age" in f for f in TERMS_FIELDS)


@pytest.mark.parametrize(
    ("band", "expected"),
    [
        (AgeBand(-1, 10, 10000), [f"{P}.age_bands[1].min_age"]),
        (AgeBand(0, 151, 10000), [f"{P}.age_bands[1].max_age"]),
        (AgeBand(30, 20, 10000), [f"{P}.age_bands[1].max_age"]),
        (AgeBand(70, 80, 0), [f"{P}.age_bands[1].factor_basis_points"]),
        (AgeBand(70, 80, 100_001), [f"{P}.age_bands[1].factor_basis_points"]),
        # overlaps age_bands[0] (the later band is the one reported)
        (AgeBand(40, 70, 10000), [f"{P}.age_bands[1].min_age"]),
        (AgeBand(10, 10, 10000), [f"{P}.age_bands[1].min_age"]),
        (AgeBand(0, 150, 10000), [f"{P}.age_bands[1].min_age"]),
    ],
)
def test_age_bands(band: AgeBand, expected: list[str]) -> None:
    assert paths(age_bands=(AgeBand(5, 60, 12000), band)) == expected


def test_touching_bands_do_not_overlap_and_the_overlap_names_the_band() -> None:
    assert paths(age_bands=(AgeBand(0, 17, 1), AgeBand(18, 18, 1), AgeBand(19, 150, 1))) == []
    assert violations(age_bands=(AgeBand(0, 17, 1), AgeBand(30, 40, 1), AgeBand(17, 20, 1))) == [
        (f"{P}.age_bands[2].min_age", "ages 17-20 overlap age_bands[0] (0-17)")
    ]


def test_at_most_twenty_age_bands() -> None:
    twenty = tuple(AgeBand(i, i, 10000) for i in range(20))
    assert paths(age_bands=twenty) == []
    assert paths(age_bands=(*twenty, AgeBand(20, 20, 10000))) == [f"{P}.age_bands"]


@pytest.mark.parametrize(
    ("factors", "expected"),
    [
        ({"SPOUSE": -1}, [f"{P}.relation_factors[0].factor_basis_points"]),
        ({"SPOUSE": 1, "CHILD": 100_001}, [f"{P}.relation_factors[1].factor_basis_points"]),
        ({"COUSIN": 1}, [f"{P}.relation_factors[0].relation"]),
    ],
)
def test_relation_factors(factors: dict[str, int], expected: list[str]) -> None:
    assert paths(relation_factors=factors) == expected


def test_relations_as_sent_are_real_and_listed_once() -> None:
    assert check_relations([Relation.SPOUSE, Relation.CHILD]) == []
    found = check_relations([Relation.CHILD, None, Relation.CHILD])
    assert [v.field for v in found] == [
        f"{P}.relation_factors[1].relation",
        f"{P}.relation_factors[2].relation",
    ]
    assert "relation_factors[0]" in found[1].description


@pytest.mark.parametrize(
    "name",
    ["sum_insured_rate_basis_points", "tax_basis_points", "short_rate_penalty_basis_points"],
)
@pytest.mark.parametrize("value", [-1, 10_001])
def test_rates_are_basis_points_from_0_to_10000(name: str, value: int) -> None:
    assert violations(**{name: value}) == [(f"{P}.{name}", "between 0 and 10000 basis points")]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"policy_fee": usd("-1")}, (f"{P}.policy_fee", "must not be negative")),
        ({"policy_fee": Money.of("1", "EUR")}, (f"{P}.policy_fee.currency_code", "must be USD")),
        (
            {"policy_fee": Money(Decimal("1.005"), "USD")},
            (f"{P}.policy_fee", "USD amounts have at most 2 decimals"),
        ),
        ({"referral_sum_insured": usd("0")}, (f"{P}.referral_sum_insured", "must be positive")),
        (
            {"referral_sum_insured": Money.of("1", "JPY")},
            (f"{P}.referral_sum_insured.currency_code", "must be USD"),
        ),
    ],
)
def test_amounts_are_in_the_products_currency(
    changes: dict[str, Money], expected: tuple[str, str]
) -> None:
    assert violations(**changes) == [expected]


@pytest.mark.parametrize(
    ("ages", "expected"),
    [
        ((0, 0), []),
        ((18, 0), []),
        ((0, 65), []),
        ((65, 65), []),
        ((66, 65), ["product.coverages[0].max_entry_age"]),
        ((-1, 0), ["product.coverages[0].min_entry_age"]),
        ((0, 151), ["product.coverages[0].max_entry_age"]),
    ],
)
def test_entry_ages(ages: tuple[int, int], expected: list[str]) -> None:
    coverage = dataclasses.replace(COVERAGE, min_entry_age=ages[0], max_entry_age=ages[1])
    found = check_terms(dataclasses.replace(TERMS, coverages=(coverage,)))
    assert [v.field for v in found] == expected


def test_the_prefix_applies_to_the_rating_rules() -> None:
    terms = dataclasses.replace(TERMS, rating=RatingRules(tax_basis_points=-5))
    assert [v.field for v in check_terms(terms, prefix="version")] == [
        "version.rating_rules.tax_basis_points"
    ]
