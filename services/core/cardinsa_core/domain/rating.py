"""Rating: what a policy version costs, line by line.

The use cases ask a :class:`RatingStrategy` for the :class:`Rating` of a
:class:`RatingRequest` (the product version's terms and rules, the insured
members with their ages and relations, the term, the sum insured) and store
the result; which strategy a company uses comes from its feature flags
(:func:`strategy_for`), so another strategy (another pricing service) is one
more class and one more flag, not a change of the use cases.

``standard`` (the default): for each member the base premium times the
member's age-band factor and, for a dependent, the relation factor; plus the
sum insured times the product's yearly rate; that yearly amount scaled to the
term (``DAYS_OVER_365``: days / 365; ``PRODUCT_TERM``: a whole product term
costs the base, other lengths their days over the days of a product term from
the same start) is the **net premium**. Tax is a share of the net premium and
the policy fee is added once per term. Every line is rounded half-even to the
currency's minor units, and the ``TERM`` line is what makes the lines sum to
the net premium exactly (the rounding remainder is never lost).

``flat`` (feature flag ``flat_rating``): the product's base premium per insured
member for the term whatever its length, no factors -- how Cardinsa priced
before rating existed; tax and fee as in ``standard``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Any, Final, Protocol

from cardinsa_core.domain.money import Money, exact_money
from cardinsa_core.domain.policies import add_months

__all__ = [
    "BASIS_POINTS",
    "FLAT_RATING_FLAG",
    "AgeBand",
    "FlatRating",
    "PremiumLine",
    "RatedMember",
    "Rating",
    "RatingRequest",
    "RatingRules",
    "RatingStrategy",
    "StandardRating",
    "TermBasis",
    "age_on",
    "exact_money",
    "strategy_for",
    "tax_of",
]

BASIS_POINTS: Final = 10_000
DAYS_PER_YEAR: Final = 365
#: The company feature flag that selects :class:`FlatRating`.
FLAT_RATING_FLAG: Final = "flat_rating"
HOLDER: Final = "holder"


class TermBasis(StrEnum):
    DAYS_OVER_365 = "DAYS_OVER_365"
    PRODUCT_TERM = "PRODUCT_TERM"


@dataclass(frozen=True, slots=True)
class AgeBand:
    min_age: int
    max_age: int
    factor_basis_points: int

    def contains(self, age: int) -> bool:
        return self.min_age <= age <= self.max_age


@dataclass(frozen=True, slots=True)
class RatingRules:
    """A product version's rating and underwriting rules (all optional)."""

    term_basis: TermBasis = TermBasis.DAYS_OVER_365
    age_bands: tuple[AgeBand, ...] = ()
    #: Relation name (``SPOUSE``, ``CHILD``, ...) → factor in basis points.
    relation_factors: Mapping[str, int] = field(default_factory=dict)
    sum_insured_rate_basis_points: int = 0
    tax_basis_points: int = 0
    policy_fee: Money | None = None
    short_rate_penalty_basis_points: int = 0
    manual_underwriting: bool = False
    referral_sum_insured: Money | None = None

    def age_factor(self, age: int | None) -> int:
        if age is None:
            return BASIS_POINTS
        band = next((b for b in self.age_bands if b.contains(age)), None)
        return band.factor_basis_points if band else BASIS_POINTS

    def relation_factor(self, relation: str | None) -> int:
        if relation is None:
            return BASIS_POINTS
        return self.relation_factors.get(relation, BASIS_POINTS)

    # ------------------------------------------------------------- storage

    def to_json(self) -> dict[str, Any]:
        """The JSON stored with the product version (only what is set)."""
        out: dict[str, Any] = {}
        if self.term_basis is not TermBasis.DAYS_OVER_365:
            out["term_basis"] = self.term_basis.value
        if self.age_bands:
            out["age_bands"] = [
                [b.min_age, b.max_age, b.factor_basis_points] for b in self.age_bands
            ]
        if self.relation_factors:
            out["relation_factors"] = dict(sorted(self.relation_factors.items()))
        for name in (
            "sum_insured_rate_basis_points",
            "tax_basis_points",
            "short_rate_penalty_basis_points",
        ):
            if getattr(self, name):
                out[name] = getattr(self, name)
        if self.manual_underwriting:
            out["manual_underwriting"] = True
        for name in ("policy_fee", "referral_sum_insured"):
            money: Money | None = getattr(self, name)
            if money is not None:
                out[name] = [str(money.amount), money.currency]
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> RatingRules:
        if not data:
            return cls()

        def money(name: str) -> Money | None:
            value = data.get(name)
            return Money(Decimal(value[0]), value[1]).rounded() if value else None

        return cls(
            term_basis=TermBasis(data.get("term_basis", TermBasis.DAYS_OVER_365.value)),
            age_bands=tuple(AgeBand(*map(int, b)) for b in data.get("age_bands", ())),
            relation_factors={str(k): int(v) for k, v in data.get("relation_factors", {}).items()},
            sum_insured_rate_basis_points=int(data.get("sum_insured_rate_basis_points", 0)),
            tax_basis_points=int(data.get("tax_basis_points", 0)),
            policy_fee=money("policy_fee"),
            short_rate_penalty_basis_points=int(data.get("short_rate_penalty_basis_points", 0)),
            manual_underwriting=bool(data.get("manual_underwriting", False)),
            referral_sum_insured=money("referral_sum_insured"),
        )


def age_on(birth: date | None, day: date) -> int | None:
    """Age in whole years on ``day`` (None when the date of birth is unknown)."""
    if birth is None:
        return None
    before_birthday = (day.month, day.day) < (birth.month, birth.day)
    return day.year - birth.year - int(before_birthday)


@dataclass(frozen=True, slots=True)
class RatedMember:
    """An insured member as rating sees them."""

    #: ``holder`` or the dependent's id.
    key: str
    #: ``None`` for the policyholder, else the relation name (``SPOUSE``, ...).
    relation: str | None
    date_of_birth: date | None

    @classmethod
    def holder(cls, date_of_birth: date | None) -> RatedMember:
        return cls(HOLDER, None, date_of_birth)

    @classmethod
    def dependent(
        cls, dependent_id: uuid.UUID, relation: str, date_of_birth: date | None
    ) -> RatedMember:
        return cls(str(dependent_id), relation, date_of_birth)

    @property
    def dependent_id(self) -> uuid.UUID | None:
        return None if self.key == HOLDER else uuid.UUID(self.key)

    def label(self) -> str:
        return "policyholder" if self.relation is None else f"{self.relation.lower()} {self.key}"


@dataclass(frozen=True, slots=True)
class RatingRequest:
    currency: str
    base_premium: Money
    term_months: int
    rules: RatingRules
    members: tuple[RatedMember, ...]
    #: First and last covered day of the term priced.
    start: date
    end: date
    sum_insured: Money

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


@dataclass(frozen=True, slots=True)
class PremiumLine:
    #: MEMBER, SUM_INSURED, TERM, TAX or FEE.
    code: str
    description: str
    amount: Money
    #: The member a MEMBER line prices.
    member_key: str | None = None


@dataclass(frozen=True, slots=True)
class Rating:
    strategy: str
    term_days: int
    lines: tuple[PremiumLine, ...]
    net: Money
    tax: Money
    fee: Money

    @property
    def total(self) -> Money:
        return self.net + self.tax + self.fee

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "term_days": self.term_days,
            "currency": self.net.currency,
            "lines": [
                [line.code, line.description, str(line.amount.amount), line.member_key]
                for line in self.lines
            ],
            "net": str(self.net.amount),
            "tax": str(self.tax.amount),
            "fee": str(self.fee.amount),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Rating:
        currency = str(data["currency"])

        def money(value: str) -> Money:
            return Money(Decimal(value), currency)

        return cls(
            strategy=str(data["strategy"]),
            term_days=int(data["term_days"]),
            lines=tuple(
                PremiumLine(code, description, money(amount), key)
                for code, description, amount, key in data["lines"]
            ),
            net=money(data["net"]),
            tax=money(data["tax"]),
            fee=money(data["fee"]),
        )


def tax_of(net: Money, rules: RatingRules) -> Money:
    """The premium tax on a net amount (also on additional and return premiums)."""
    return exact_money(Fraction(net.amount) * rules.tax_basis_points / BASIS_POINTS, net.currency)


class RatingStrategy(Protocol):
    #: Shown in the premium breakdown.
    name: str

    def rate(self, request: RatingRequest) -> Rating:
        """The premium of ``request``'s term, itemised."""


def _finish(
    name: str, request: RatingRequest, lines: list[PremiumLine], net_exact: Fraction
) -> Rating:
    """Add the TERM adjustment, tax and fee lines to the yearly lines."""
    currency = request.currency
    net = exact_money(net_exact, currency)
    shown = sum((line.amount for line in lines), Money.zero(currency))
    if net != shown:
        lines.append(
            PremiumLine("TERM", f"{request.days} days ({_term_text(request)})", net - shown)
        )
    tax = tax_of(net, request.rules)
    if request.rules.tax_basis_points:
        percent = Decimal(request.rules.tax_basis_points) / 100
        lines.append(PremiumLine("TAX", f"premium tax {percent.normalize():f} %", tax))
    fee = request.rules.policy_fee or Money.zero(currency)
    if fee.is_positive:
        lines.append(PremiumLine("FEE", "policy fee", fee))
    return Rating(name, request.days, tuple(lines), net, tax, fee)


def _term_text(request: RatingRequest) -> str:
    if request.rules.term_basis is TermBasis.PRODUCT_TERM:
        return f"product term of {request.term_months} months"
    return f"annual rate x {request.days}/{DAYS_PER_YEAR}"


def _term_factor(request: RatingRequest) -> Fraction:
    if request.rules.term_basis is TermBasis.PRODUCT_TERM:
        standard_end = add_months(request.start, request.term_months) - timedelta(days=1)
        if request.end == standard_end:
            return Fraction(1)
        return Fraction(request.days, (standard_end - request.start).days + 1)
    return Fraction(request.days, DAYS_PER_YEAR)


class StandardRating:
    """Age bands, relation factors, sum-insured rate, term, tax and fee."""

    name = "standard"

    def rate(self, request: RatingRequest) -> Rating:
        rules, currency = request.rules, request.currency
        base = Fraction(request.base_premium.amount)
        lines: list[PremiumLine] = []
        yearly = Fraction(0)
        for member in request.members:
            age = age_on(member.date_of_birth, request.start)
            factor = Fraction(rules.age_factor(age) * rules.relation_factor(member.relation))
            amount = base * factor / (BASIS_POINTS * BASIS_POINTS)
            yearly += amount
            aged = "age unknown" if age is None else f"age {age}"
            lines.append(
                PremiumLine(
                    "MEMBER",
                    f"{member.label()}, {aged}: {request.base_premium.amount} x "
                    f"{Decimal(factor.numerator) / BASIS_POINTS**2:.4f}",
                    exact_money(amount, currency),
                    member.key,
                )
            )
        if rules.sum_insured_rate_basis_points:
            amount = (
                Fraction(request.sum_insured.amount)
                * rules.sum_insured_rate_basis_points
                / BASIS_POINTS
            )
            yearly += amount
            lines.append(
                PremiumLine(
                    "SUM_INSURED",
                    f"sum insured {request.sum_insured.amount} x "
                    f"{rules.sum_insured_rate_basis_points} bp",
                    exact_money(amount, currency),
                )
            )
        return _finish(self.name, request, lines, yearly * _term_factor(request))


class FlatRating:
    """The base premium per insured member for the term, whatever its length."""

    name = "flat"

    def rate(self, request: RatingRequest) -> Rating:
        lines = [
            PremiumLine(
                "MEMBER",
                f"{member.label()}: {request.base_premium.amount} per term",
                request.base_premium,
                member.key,
            )
            for member in request.members
        ]
        total = Fraction(request.base_premium.amount) * len(request.members)
        return _finish(self.name, request, lines, total)


def strategy_for(flags: Mapping[str, bool]) -> RatingStrategy:
    """The rating strategy a company's feature flags choose."""
    if flags.get(FLAT_RATING_FLAG, False):
        return FlatRating()
    return StandardRating()
