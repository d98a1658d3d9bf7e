"""The benefit calculation and the accumulator periods, on worked examples."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

import pytest

from cardinsa_core.domain.adjudication import (
    LIFETIME_END,
    LIFETIME_START,
    SUM_INSURED_COVERAGE,
    Benefit,
    Consumption,
    Period,
    Usage,
    assess,
    period_of,
    sum_insured_period,
)
from cardinsa_core.domain.money import Money
from cardinsa_core.domain.products import Coverage, LimitPeriod


def eur(amount: str | int) -> Money:
    return Money.of(Decimal(amount), "EUR")


def coverage(**changes: object) -> Coverage:
    values: dict[str, object] = {
        "code": "OUTPATIENT",
        "name": "Outpatient",
        "limit": eur(5000),
        "limit_period": LimitPeriod.PER_TERM,
        "deductible": eur(500),
        "coinsurance_percent": Decimal(20),
    }
    values.update(changes)
    return Coverage(**values)  # type: ignore[arg-type]


def parts(b: Benefit) -> tuple[Decimal, ...]:
    return tuple(m.amount for m in (b.deductible, b.copay, b.coinsurance, b.limit_cut, b.payable))


BIG = eur(1_000_000)


class TestTheIssuesExample:
    """Three claims of 5 000 on a 5 000 per-term limit, 500 deductible, 20 % co-insurance."""

    def test_three_claims_pay_the_limit_once(self) -> None:
        cov = coverage()
        used = Usage.zero("EUR")
        payables = []
        for _ in range(3):
            b = assess(eur(5000), cov, usage=used, sum_insured=BIG, sum_insured_used=eur(0))
            assert b.parts_total == b.claimed
            payables.append(b)
            used = used.plus(Consumption(b.deductible, b.payable))
        first, second, third = payables
        assert parts(first) == (500, 0, 900, 0, 3600)
        # The deductible is consumed once; the limit has 1 400 left.
        assert parts(second) == (0, 0, 1000, 2600, 1400)
        assert parts(third) == (0, 0, 1000, 4000, 0)
        assert used == Usage(eur(500), eur(5000))


class TestParts:
    def test_a_claim_within_the_deductible(self) -> None:
        b = assess(eur(300), coverage(), usage=None, sum_insured=BIG, sum_insured_used=eur(0))
        assert parts(b) == (300, 0, 0, 0, 0)

    def test_the_rest_of_a_partly_used_deductible(self) -> None:
        used = Usage(eur(450), eur(0))
        b = assess(eur(1000), coverage(), usage=used, sum_insured=BIG, sum_insured_used=eur(0))
        assert parts(b) == (50, 0, 190, 0, 760)

    def test_copay_is_at_most_the_rest(self) -> None:
        cov = coverage(coinsurance_percent=None, copay=eur(30), deductible=eur(0))
        assert parts(
            assess(eur(20), cov, usage=None, sum_insured=BIG, sum_insured_used=eur(0))
        ) == (
            0,
            20,
            0,
            0,
            0,
        )
        b = assess(eur(100), cov, usage=None, sum_insured=BIG, sum_insured_used=eur(0))
        assert parts(b) == (0, 30, 0, 0, 70)

    def test_coinsurance_rounds_half_even_to_minor_units(self) -> None:
        cov = coverage(deductible=eur(0), coinsurance_percent=Decimal("12.5"))
        b = assess(eur("0.20"), cov, usage=None, sum_insured=BIG, sum_insured_used=eur(0))
        assert b.coinsurance == eur("0.02")  # 0.025 → 0.02 (half-even)
        b = assess(eur("0.60"), cov, usage=None, sum_insured=BIG, sum_insured_used=eur(0))
        assert b.coinsurance == eur("0.08")  # 0.075 → 0.08
        assert b.parts_total == b.claimed

    def test_yen_has_no_minor_units(self) -> None:
        jpy = Money.of(Decimal(999), "JPY")
        cov = coverage(
            limit=Money.of(Decimal(10_000), "JPY"),
            deductible=Money.zero("JPY"),
            coinsurance_percent=Decimal(15),
        )
        b = assess(
            jpy,
            cov,
            usage=None,
            sum_insured=Money.of(Decimal(10**6), "JPY"),
            sum_insured_used=Money.zero("JPY"),
        )
        assert b.coinsurance == Money.of(Decimal(150), "JPY")  # 149.85 → 150
        assert b.payable == Money.of(Decimal(849), "JPY")

    def test_the_sum_insured_caps_too(self) -> None:
        b = assess(
            eur(5000), coverage(), usage=None, sum_insured=eur(10_000), sum_insured_used=eur(9000)
        )
        assert b.payable == eur(1000) and b.limit_cut == eur(2600)

    def test_more_used_than_the_limit_pays_nothing(self) -> None:
        # A limit lowered by a later product version must not produce a negative payable.
        used = Usage(eur(500), eur(6000))
        b = assess(eur(100), coverage(), usage=used, sum_insured=BIG, sum_insured_used=eur(0))
        assert b.payable == eur(0) and b.parts_total == b.claimed


class TestPeriods:
    POLICY, PRODUCT, MEMBER = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    def period(
        self,
        kind: LimitPeriod,
        incident: date,
        effective: date = date(2025, 1, 1),
        expiry: date = date(2026, 12, 31),
    ) -> Period:
        found = self.maybe(kind, incident, effective, expiry)
        assert found is not None
        return found

    def maybe(
        self, kind: LimitPeriod, incident: date, effective: date, expiry: date
    ) -> Period | None:
        return period_of(
            kind,
            member_id=self.MEMBER,
            coverage_code="OUT",
            incident=incident,
            policy_id=self.POLICY,
            product_id=self.PRODUCT,
            effective=effective,
            expiry=expiry,
        )

    def test_per_claim_has_none(self) -> None:
        day = date(2025, 1, 1)
        assert self.maybe(LimitPeriod.PER_CLAIM, day, day, date(2025, 12, 31)) is None

    @pytest.mark.parametrize(
        ("incident", "start", "end"),
        [
            (date(2024, 2, 29), date(2024, 2, 29), date(2025, 2, 27)),
            (date(2025, 2, 27), date(2024, 2, 29), date(2025, 2, 27)),
            (date(2025, 2, 28), date(2025, 2, 28), date(2026, 2, 27)),
            (date(2027, 3, 1), date(2027, 2, 28), date(2027, 6, 30)),
        ],
    )
    def test_policy_years_run_from_the_effective_date(
        self, incident: date, start: date, end: date
    ) -> None:
        found = self.period(LimitPeriod.PER_YEAR, incident, date(2024, 2, 29), date(2027, 6, 30))
        assert (found.start, found.end, found.scope_id) == (start, end, self.POLICY)

    def test_a_term_and_a_lifetime(self) -> None:
        term = self.period(
            LimitPeriod.PER_TERM, date(2025, 5, 1), date(2025, 1, 1), date(2026, 12, 31)
        )
        assert (term.start, term.end) == (date(2025, 1, 1), date(2026, 12, 31))  # type: ignore[attr-defined]
        life = self.period(
            LimitPeriod.LIFETIME, date(2025, 5, 1), date(2025, 1, 1), date(2025, 12, 31)
        )
        assert (life.scope_id, life.start, life.end) == (  # type: ignore[attr-defined]
            self.PRODUCT,
            LIFETIME_START,
            LIFETIME_END,
        )

    def test_the_sum_insured_period(self) -> None:
        period = sum_insured_period(self.POLICY, date(2025, 1, 1), date(2025, 12, 31))
        assert period.coverage_code == SUM_INSURED_COVERAGE and period.member_id == self.POLICY
