"""Underwriting rules: which findings a quote raises, and how issues are decided."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from cardinsa_core.domain.money import Money
from cardinsa_core.domain.policies import PolicyState
from cardinsa_core.domain.products import Coverage, LimitPeriod
from cardinsa_core.domain.rating import RatedMember, RatingRequest, RatingRules
from cardinsa_core.domain.underwriting import (
    AGE_LIMIT,
    BACKDATED,
    ISSUE_DECIDED,
    MANUAL_UNDERWRITING,
    POLICY_NOT_QUOTED,
    SUM_INSURED_REFERRAL,
    Decision,
    Finding,
    IssueState,
    backdated,
    blocks_bind,
    check_decidable,
    check_decision_note,
    decide,
    evaluate,
    evaluate_quote,
)
from cardinsa_foundation.errors import FailedPrecondition

TODAY = date(2026, 12, 7)
EFFECTIVE = date(2027, 1, 1)
EXPIRY = date(2027, 12, 31)
CHILD = uuid.UUID("00000000-0000-0000-0000-0000000000c1")


@dataclass(frozen=True)
class Cover:
    code: str
    min_entry_age: int = 0
    max_entry_age: int = 0


def usd(amount: str | int) -> Money:
    return Money.of(Decimal(amount), "USD")


def findings(**overrides: Any) -> list[Finding]:
    arguments: dict[str, Any] = {
        "rules": RatingRules(),
        "coverages": [Cover("OUTPATIENT")],
        "members": [RatedMember.holder(date(1990, 2, 3))],
        "effective_date": EFFECTIVE,
        "expiry_date": EXPIRY,
        "sum_insured": usd(100_000),
        "today": TODAY,
        "max_backdate_days": 30,
    }
    arguments.update(overrides)
    return evaluate(**arguments)


def codes(found: list[Finding]) -> list[str]:
    return [f.code for f in found]


def test_a_plain_quote_raises_nothing() -> None:
    assert findings() == []


# ------------------------------------------------------------------ ages


def age_findings(birth: date | None, cover: Cover, effective: date = EFFECTIVE) -> list[Finding]:
    return findings(
        members=[RatedMember.holder(birth)],
        coverages=[cover],
        effective_date=effective,
        today=effective,
    )


@pytest.mark.parametrize(
    ("birth", "limited"),
    [
        # 65 on the effective date itself: still within 18-65.
        (date(1962, 1, 1), False),
        # 66 on the effective date: above.
        (date(1961, 1, 1), True),
        # 65 until tomorrow: within.
        (date(1961, 1, 2), False),
        # 18 on the effective date: within.
        (date(2009, 1, 1), False),
        # 18 only tomorrow: below.
        (date(2009, 1, 2), True),
    ],
)
def test_entry_ages_count_on_the_birthday(birth: date, limited: bool) -> None:
    found = age_findings(birth, Cover("INPATIENT", 18, 65))
    assert codes(found) == ([AGE_LIMIT] if limited else [])


def test_the_age_finding_says_who_what_and_why() -> None:
    (found,) = findings(
        members=[
            RatedMember.holder(date(1990, 2, 3)),
            RatedMember.dependent(CHILD, "CHILD", date(1950, 6, 1)),
        ],
        coverages=[Cover("OUTPATIENT"), Cover("INPATIENT", 0, 65)],
    )
    assert found.code == AGE_LIMIT
    assert found.key == f"{CHILD}/INPATIENT"
    assert found.description == (
        f"child {CHILD}: age 76 is above 65 for INPATIENT (entry ages up to 65 on 2027-01-01)"
    )


def test_each_member_and_coverage_is_its_own_finding() -> None:
    found = findings(
        members=[
            RatedMember.holder(date(1940, 1, 1)),
            RatedMember.dependent(CHILD, "CHILD", date(2020, 1, 1)),
        ],
        coverages=[Cover("INPATIENT", 18, 65), Cover("DENTAL", 0, 70), Cover("OPTICAL")],
    )
    assert [f.key for f in found] == [
        "holder/INPATIENT",
        "holder/DENTAL",
        f"{CHILD}/INPATIENT",
    ]
    assert "age 7 is below 18" in found[2].description


@pytest.mark.parametrize(
    ("effective", "age"),
    [
        (date(2027, 2, 28), 62),
        (date(2027, 3, 1), 63),
        (date(2028, 2, 28), 63),
        (date(2028, 2, 29), 64),
    ],
)
def test_a_leap_day_birthday_is_on_1_march_in_common_years(effective: date, age: int) -> None:
    birth = date(1964, 2, 29)
    assert age_findings(birth, Cover("INPATIENT", 0, age), effective) == []
    (found,) = age_findings(birth, Cover("INPATIENT", 0, age - 1), effective)
    assert f"age {age} is above {age - 1}" in found.description
    (found,) = age_findings(birth, Cover("INPATIENT", age + 1, 0), effective)
    assert f"age {age} is below {age + 1}" in found.description


@pytest.mark.parametrize(
    ("cover", "shown"),
    [
        (Cover("INPATIENT", 18, 65), "entry ages 18-65"),
        (Cover("INPATIENT", 18, 0), "entry ages from 18"),
        (Cover("INPATIENT", 0, 65), "entry ages up to 65"),
    ],
)
def test_an_unknown_date_of_birth_is_a_finding_where_ages_are_limited(
    cover: Cover, shown: str
) -> None:
    (found,) = age_findings(None, cover)
    assert found.key == "holder/INPATIENT"
    assert found.description.startswith("policyholder: date of birth unknown for INPATIENT")
    assert shown in found.description


def test_an_unknown_date_of_birth_is_fine_without_limits() -> None:
    assert age_findings(None, Cover("INPATIENT")) == []


# ------------------------------------------------------------------ sum insured


@pytest.mark.parametrize(
    ("sum_insured", "referred"),
    [("500000", False), ("500000.01", True), ("499999.99", False), ("2000000", True)],
)
def test_a_referral_is_for_a_sum_insured_above_the_limit(sum_insured: str, referred: bool) -> None:
    rules = RatingRules(referral_sum_insured=usd(500_000))
    found = findings(rules=rules, sum_insured=usd(sum_insured))
    assert codes(found) == ([SUM_INSURED_REFERRAL] if referred else [])
    if referred:
        assert found[0].key == f"{usd(sum_insured).amount} USD"
        assert "above the referral limit 500000.00 USD" in found[0].description


def test_a_higher_sum_insured_is_another_referral() -> None:
    rules = RatingRules(referral_sum_insured=usd(500_000))
    first = findings(rules=rules, sum_insured=usd(600_000))
    second = findings(rules=rules, sum_insured=usd(700_000))
    assert first[0].key != second[0].key


def test_no_referral_limit_no_referral() -> None:
    assert findings(sum_insured=usd(10**9)) == []


def test_a_sum_insured_in_another_currency_is_referred() -> None:
    rules = RatingRules(referral_sum_insured=usd(500_000))
    assert codes(findings(rules=rules, sum_insured=Money.of(1, "EUR"))) == [SUM_INSURED_REFERRAL]


# ------------------------------------------------------------------ backdating


@pytest.mark.parametrize(
    ("days_back", "limit", "late"),
    [
        (30, 30, False),  # exactly at the limit
        (31, 30, True),  # one day beyond
        (0, 0, False),  # today, nothing allowed
        (1, 0, True),
        (-10, 0, False),  # a future start
        (1, -5, True),  # a negative limit counts as none
    ],
)
def test_backdating_at_the_limit_and_one_day_beyond(days_back: int, limit: int, late: bool) -> None:
    effective = TODAY - timedelta(days=days_back)
    found = findings(effective_date=effective, max_backdate_days=limit)
    assert codes(found) == ([BACKDATED] if late else [])
    assert (backdated(effective, TODAY, limit) is not None) is late
    if late:
        assert found[0].key == effective.isoformat()
        assert f"{days_back} days before 2026-12-07" in found[0].description


# ------------------------------------------------------------------ manual underwriting


def test_manual_underwriting_is_keyed_by_the_terms() -> None:
    rules = RatingRules(manual_underwriting=True)
    (found,) = findings(rules=rules)
    assert found.code == MANUAL_UNDERWRITING and found.key.startswith("terms:")
    assert findings(rules=rules) == [found]
    for change in (
        {"sum_insured": usd(100_001)},
        {"expiry_date": EXPIRY - timedelta(days=1)},
        {"effective_date": EFFECTIVE + timedelta(days=1)},
        {"members": [RatedMember.holder(date(1990, 2, 4))]},
        {"members": [RatedMember.holder(date(1990, 2, 3)), RatedMember.holder(None)]},
    ):
        (other,) = findings(rules=rules, **change)
        assert other.key != found.key, change


def test_every_rule_at_once_in_order() -> None:
    rules = RatingRules(manual_underwriting=True, referral_sum_insured=usd(1000))
    found = findings(
        rules=rules,
        effective_date=TODAY - timedelta(days=90),
        coverages=[Cover("INPATIENT", 0, 30)],
    )
    assert codes(found) == [MANUAL_UNDERWRITING, BACKDATED, SUM_INSURED_REFERRAL, AGE_LIMIT]


# ------------------------------------------------------------------ decisions


@pytest.mark.parametrize("state", list(IssueState))
@pytest.mark.parametrize("decision", list(Decision))
def test_only_an_open_issue_can_be_decided(state: IssueState, decision: Decision) -> None:
    if state is IssueState.OPEN:
        expected = IssueState.APPROVED if decision is Decision.APPROVE else IssueState.DECLINED
        assert decide(state, decision) is expected
        return
    with pytest.raises(FailedPrecondition) as caught:
        decide(state.value, decision)
    assert caught.value.reason == ISSUE_DECIDED
    assert caught.value.metadata == {"state": state.value, "decision": decision.value}


def test_open_and_declined_issues_block_the_bind() -> None:
    assert [s for s in IssueState if blocks_bind(s)] == [IssueState.OPEN, IssueState.DECLINED]


@pytest.mark.parametrize("state", list(PolicyState))
def test_issues_are_decided_while_the_policy_is_quoted(state: PolicyState) -> None:
    if state is PolicyState.QUOTED:
        check_decidable(state)
        return
    with pytest.raises(FailedPrecondition) as caught:
        check_decidable(state.value)
    assert caught.value.reason == POLICY_NOT_QUOTED
    assert caught.value.metadata == {"policy_state": state.value}


@pytest.mark.parametrize(
    ("note", "problem"),
    [
        ("", "required"),
        ("   ", "required"),
        ("x", None),
        ("x" * 1000, None),
        ("x" * 1001, "at most 1000 characters"),
    ],
)
def test_a_decision_note_has_1_to_1000_characters(note: str, problem: str | None) -> None:
    found = check_decision_note(note)
    assert [(v.field, v.description) for v in found] == ([("note", problem)] if problem else [])


def test_a_renewal_does_not_check_entry_ages_again() -> None:
    old = [RatedMember.holder(date(1940, 1, 1))]
    cover = [Cover("INPATIENT", 18, 65)]
    assert codes(findings(members=old, coverages=cover)) == [AGE_LIMIT]
    assert findings(members=old, coverages=cover, renewal=True) == []


def test_evaluate_quote_reads_the_rating_request() -> None:
    rules = RatingRules(manual_underwriting=True, referral_sum_insured=usd(1000))
    members = (RatedMember.holder(None),)
    request = RatingRequest(
        currency="USD",
        base_premium=usd(500),
        term_months=12,
        rules=rules,
        members=members,
        start=TODAY - timedelta(days=31),
        end=TODAY + timedelta(days=300),
        sum_insured=usd(2000),
    )
    cover = [Cover("INPATIENT", 0, 65)]
    found = evaluate_quote(request, cover, today=TODAY, max_backdate_days=30)
    assert found == findings(
        rules=rules,
        members=list(members),
        coverages=cover,
        effective_date=request.start,
        expiry_date=request.end,
        sum_insured=usd(2000),
    )
    assert codes(found) == [MANUAL_UNDERWRITING, BACKDATED, SUM_INSURED_REFERRAL, AGE_LIMIT]
    renewal = evaluate_quote(request, cover, today=TODAY, max_backdate_days=30, renewal=True)
    assert codes(renewal) == [MANUAL_UNDERWRITING, BACKDATED, SUM_INSURED_REFERRAL]


def test_a_product_coverage_carries_its_entry_ages() -> None:
    coverage = Coverage(
        code="INPATIENT",
        name="Inpatient care",
        limit=usd(50_000),
        limit_period=LimitPeriod.PER_YEAR,
        deductible=usd(0),
        min_entry_age=18,
        max_entry_age=65,
    )
    (found,) = findings(members=[RatedMember.holder(date(2015, 1, 1))], coverages=[coverage])
    assert found.key == "holder/INPATIENT" and "age 12 is below 18" in found.description
