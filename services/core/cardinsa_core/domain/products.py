"""Products: the catalogue, coverages and versions.

Lifecycle (``PRODUCT_LIFECYCLE``)::

    DRAFT --activate--> ACTIVE --retire--> RETIRED
    DRAFT --update--> DRAFT          (edits the unsold version in place)
    ACTIVE --update--> ACTIVE        (a new version; earlier ones stay as sold)
    DRAFT / RETIRED --delete-->      (soft delete; an ACTIVE product is retired first)

The terms of a product (name, description, currency, base premium, term,
coverages with their entry ages, rating rules) live in numbered, immutable
versions once the product has been on sale: policies reference the exact
``(product, version)`` they were quoted on, so changing an active product never
changes what an existing policy covers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum
from typing import Final

from cardinsa_core.domain.money import Money, minor_units
from cardinsa_core.domain.policyholders import Relation
from cardinsa_core.domain.rating import BASIS_POINTS, RatingRules
from cardinsa_foundation.errors import FailedPrecondition, FieldViolation
from cardinsa_foundation.lifecycle import Lifecycle

__all__ = [
    "DEFAULT_GRACE_PERIOD_DAYS",
    "MAX_AGE",
    "MAX_AGE_BANDS",
    "MAX_FACTOR_BASIS_POINTS",
    "MAX_GRACE_PERIOD_DAYS",
    "MAX_TERM_MONTHS",
    "PRODUCT_LIFECYCLE",
    "TERMS_FIELDS",
    "Coverage",
    "LimitPeriod",
    "LineOfBusiness",
    "Product",
    "ProductAction",
    "ProductState",
    "ProductTerms",
    "check_code",
    "check_rating_rules",
    "check_relations",
    "check_terms",
]

MAX_TERM_MONTHS: Final = 120
MAX_COVERAGES: Final = 50
MAX_WAITING_DAYS: Final = 3650
#: Ages (age bands, entry ages) are whole years from 0 to this.
MAX_AGE: Final = 150
MAX_AGE_BANDS: Final = 20
#: Largest age-band or relation factor (10 times the base premium).
MAX_FACTOR_BASIS_POINTS: Final = 100_000
_CODE: Final = re.compile(r"^[A-Z0-9][A-Z0-9_-]{0,31}$")


#: The grace period of a product that names none, and the longest one.
DEFAULT_GRACE_PERIOD_DAYS: Final = 30
MAX_GRACE_PERIOD_DAYS: Final = 365


class ProductState(StrEnum):
    DRAFT = "DRAFT"
    ACTIVE = "ACTIVE"
    RETIRED = "RETIRED"


class ProductAction(StrEnum):
    UPDATE = "update"
    ACTIVATE = "activate"
    RETIRE = "retire"
    DELETE = "delete"


class LineOfBusiness(StrEnum):
    MEDICAL = "MEDICAL"
    MOTOR = "MOTOR"
    LIFE = "LIFE"
    TRAVEL = "TRAVEL"
    PROPERTY = "PROPERTY"
    LIABILITY = "LIABILITY"
    MARINE = "MARINE"
    AVIATION = "AVIATION"
    OTHER = "OTHER"


class LimitPeriod(StrEnum):
    """What a coverage limit applies to (`Coverage.LimitPeriod` names)."""

    PER_CLAIM = "PER_CLAIM"
    PER_YEAR = "PER_YEAR"
    PER_TERM = "PER_TERM"
    LIFETIME = "LIFETIME"


_D, _A, _R = ProductState.DRAFT, ProductState.ACTIVE, ProductState.RETIRED

PRODUCT_LIFECYCLE: Final = Lifecycle(
    "product",
    ProductState,
    ProductAction,
    {
        (_D, ProductAction.UPDATE): _D,
        (_A, ProductAction.UPDATE): _A,
        (_D, ProductAction.ACTIVATE): _A,
        (_A, ProductAction.RETIRE): _R,
        (_D, ProductAction.DELETE): _D,
        (_R, ProductAction.DELETE): _R,
    },
)


@dataclass(frozen=True, slots=True)
class Coverage:
    """One benefit of a product: what it pays at most and what the insured bears.

    Cost sharing is either a fixed co-payment per claim or a co-insurance
    percentage, never both.
    """

    code: str
    name: str
    limit: Money
    limit_period: LimitPeriod
    deductible: Money
    copay: Money | None = None
    coinsurance_percent: Decimal | None = None
    waiting_period_days: int = 0
    #: Youngest and oldest age (whole years at the policy's effective date) an
    #: insured member may have; 0: no limit on that side.
    min_entry_age: int = 0
    max_entry_age: int = 0


@dataclass(frozen=True, slots=True)
class ProductTerms:
    """What one version of a product sells."""

    name: str
    description: str
    currency: str
    base_premium: Money
    term_months: int
    coverages: tuple[Coverage, ...]
    rating: RatingRules = field(default_factory=RatingRules)
    #: Days an instalment may stay unpaid after its due date before the policy lapses.
    grace_period_days: int = DEFAULT_GRACE_PERIOD_DAYS

    def coverage(self, code: str) -> Coverage | None:
        return next((c for c in self.coverages if c.code == code), None)


#: Fields of the terms an update mask may name (``coverages`` and
#: ``rating_rules`` as a whole; the entry ages travel with the coverages).
TERMS_FIELDS: Final = frozenset(
    {
        "name",
        "description",
        "currency",
        "base_premium",
        "term_months",
        "coverages",
        "rating_rules",
        "grace_period_days",
    }
)


def check_code(code: str, path: str) -> list[FieldViolation]:
    if not _CODE.match(code):
        return [FieldViolation(path, "1-32 upper-case letters, digits, '_' or '-'")]
    return []


def check_terms(terms: ProductTerms, *, prefix: str = "product") -> list[FieldViolation]:
    """Violations of a product's terms (amounts are already valid Money values)."""
    violations: list[FieldViolation] = []
    if not terms.name:
        violations.append(FieldViolation(f"{prefix}.name", "required"))
    elif len(terms.name) > 200:
        violations.append(FieldViolation(f"{prefix}.name", "at most 200 characters"))
    if len(terms.description) > 4000:
        violations.append(FieldViolation(f"{prefix}.description", "at most 4000 characters"))
    if terms.base_premium.currency != terms.currency:
        violations.append(FieldViolation(f"{prefix}.base_premium", f"must be in {terms.currency}"))
    elif terms.base_premium.is_negative:
        violations.append(FieldViolation(f"{prefix}.base_premium", "must not be negative"))
    if not 1 <= terms.term_months <= MAX_TERM_MONTHS:
        violations.append(
            FieldViolation(f"{prefix}.term_months", f"between 1 and {MAX_TERM_MONTHS}")
        )
    if not 0 <= terms.grace_period_days <= MAX_GRACE_PERIOD_DAYS:
        violations.append(
            FieldViolation(f"{prefix}.grace_period_days", f"between 0 and {MAX_GRACE_PERIOD_DAYS}")
        )
    if len(terms.coverages) > MAX_COVERAGES:
        violations.append(FieldViolation(f"{prefix}.coverages", f"at most {MAX_COVERAGES}"))
    seen: set[str] = set()
    for index, cov in enumerate(terms.coverages):
        path = f"{prefix}.coverages[{index}]"
        violations += check_code(cov.code, f"{path}.code")
        if cov.code in seen:
            violations.append(FieldViolation(f"{path}.code", "listed more than once"))
        seen.add(cov.code)
        if not cov.name:
            violations.append(FieldViolation(f"{path}.name", "required"))
        elif len(cov.name) > 200:
            violations.append(FieldViolation(f"{path}.name", "at most 200 characters"))
        for name in ("limit", "deductible", "copay"):
            amount: Money | None = getattr(cov, name)
            if amount is not None and amount.currency != terms.currency:
                violations.append(FieldViolation(f"{path}.{name}", f"must be in {terms.currency}"))
            elif amount is not None and amount.is_negative:
                violations.append(FieldViolation(f"{path}.{name}", "must not be negative"))
        if cov.limit.currency == terms.currency and not cov.limit.is_positive:
            violations.append(FieldViolation(f"{path}.limit", "must be positive"))
        if (
            cov.deductible.currency == cov.limit.currency == terms.currency
            and cov.deductible > cov.limit
        ):
            violations.append(FieldViolation(f"{path}.deductible", "must not exceed the limit"))
        if cov.copay is not None and cov.coinsurance_percent is not None:
            violations.append(
                FieldViolation(f"{path}.copay", "either a co-payment or co-insurance, not both")
            )
        if cov.coinsurance_percent is not None and not (
            Decimal(0) <= cov.coinsurance_percent <= Decimal(100)
        ):
            violations.append(FieldViolation(f"{path}.coinsurance_percent", "between 0 and 100"))
        if not 0 <= cov.waiting_period_days <= MAX_WAITING_DAYS:
            violations.append(
                FieldViolation(f"{path}.waiting_period_days", f"between 0 and {MAX_WAITING_DAYS}")
            )
        violations += _check_entry_ages(cov, path)
    violations += check_rating_rules(terms.rating, terms.currency, prefix=f"{prefix}.rating_rules")
    return violations


def _check_entry_ages(cov: Coverage, path: str) -> list[FieldViolation]:
    violations = [
        FieldViolation(f"{path}.{name}", f"between 0 and {MAX_AGE}")
        for name in ("min_entry_age", "max_entry_age")
        if not 0 <= getattr(cov, name) <= MAX_AGE
    ]
    if (
        not violations
        and cov.min_entry_age
        and cov.max_entry_age
        and cov.min_entry_age > cov.max_entry_age
    ):
        violations.append(
            FieldViolation(f"{path}.max_entry_age", "must not be less than min_entry_age")
        )
    return violations


def _check_basis_points(value: int, path: str, low: int, high: int) -> list[FieldViolation]:
    if low <= value <= high:
        return []
    return [FieldViolation(path, f"between {low} and {high} basis points")]


def _check_amount(
    value: Money | None, currency: str, path: str, *, positive: bool
) -> list[FieldViolation]:
    if value is None:
        return []
    if value.currency != currency:
        return [FieldViolation(f"{path}.currency_code", f"must be {currency}")]
    if value.rounded().amount != value.amount:
        return [
            FieldViolation(
                path, f"{currency} amounts have at most {minor_units(currency)} decimals"
            )
        ]
    if positive and not value.is_positive:
        return [FieldViolation(path, "must be positive")]
    if value.is_negative:
        return [FieldViolation(path, "must not be negative")]
    return []


def check_relations(
    relations: Sequence[Relation | None], prefix: str = "product.rating_rules"
) -> list[FieldViolation]:
    """Violations of the relations of a list of relation factors as sent: each
    a known relation (``None``: unspecified or unknown), at most one per relation."""
    violations: list[FieldViolation] = []
    seen: dict[Relation, int] = {}
    for index, relation in enumerate(relations):
        path = f"{prefix}.relation_factors[{index}].relation"
        if relation is None:
            violations.append(
                FieldViolation(path, "required: SPOUSE, CHILD, PARENT, SIBLING or OTHER")
            )
        elif relation in seen:
            violations.append(
                FieldViolation(
                    path,
                    f"{relation.value} already has a factor (relation_factors[{seen[relation]}])",
                )
            )
        else:
            seen[relation] = index
    return violations


def check_rating_rules(
    rules: RatingRules, currency: str, *, prefix: str = "product.rating_rules"
) -> list[FieldViolation]:
    """Violations of a product version's rating rules (amounts in ``currency``)."""
    violations: list[FieldViolation] = []
    bands = rules.age_bands
    if len(bands) > MAX_AGE_BANDS:
        violations.append(FieldViolation(f"{prefix}.age_bands", f"at most {MAX_AGE_BANDS}"))
    else:
        for index, band in enumerate(bands):
            path = f"{prefix}.age_bands[{index}]"
            ages_valid = True
            for name in ("min_age", "max_age"):
                if not 0 <= getattr(band, name) <= MAX_AGE:
                    violations.append(FieldViolation(f"{path}.{name}", f"between 0 and {MAX_AGE}"))
                    ages_valid = False
            if ages_valid and band.min_age > band.max_age:
                violations.append(
                    FieldViolation(f"{path}.max_age", "must not be less than min_age")
                )
                ages_valid = False
            violations += _check_basis_points(
                band.factor_basis_points, f"{path}.factor_basis_points", 1, MAX_FACTOR_BASIS_POINTS
            )
            if not ages_valid:
                continue
            for earlier_index, earlier in enumerate(bands[:index]):
                if (
                    0 <= earlier.min_age <= earlier.max_age <= MAX_AGE
                    and band.min_age <= earlier.max_age
                    and earlier.min_age <= band.max_age
                ):
                    violations.append(
                        FieldViolation(
                            f"{path}.min_age",
                            f"ages {band.min_age}-{band.max_age} overlap age_bands[{earlier_index}]"
                            f" ({earlier.min_age}-{earlier.max_age})",
                        )
                    )
                    break
    for index, (relation, factor) in enumerate(rules.relation_factors.items()):
        path = f"{prefix}.relation_factors[{index}]"
        if relation not in Relation.__members__:
            violations.append(FieldViolation(f"{path}.relation", "not a relation"))
        violations += _check_basis_points(
            factor, f"{path}.factor_basis_points", 0, MAX_FACTOR_BASIS_POINTS
        )
    for name in (
        "sum_insured_rate_basis_points",
        "tax_basis_points",
        "short_rate_penalty_basis_points",
    ):
        violations += _check_basis_points(getattr(rules, name), f"{prefix}.{name}", 0, BASIS_POINTS)
    violations += _check_amount(rules.policy_fee, currency, f"{prefix}.policy_fee", positive=False)
    violations += _check_amount(
        rules.referral_sum_insured, currency, f"{prefix}.referral_sum_insured", positive=True
    )
    return violations


@dataclass(frozen=True, slots=True)
class Product:
    """A product's lifecycle state and its current version's terms."""

    state: ProductState
    version: int
    terms: ProductTerms

    def update(self, terms: ProductTerms) -> tuple[Product, bool]:
        """The product with new terms, and whether they form a new version
        (always on an ACTIVE product: what was sold stays as it was)."""
        PRODUCT_LIFECYCLE.next_state(self.state, ProductAction.UPDATE)
        if self.state is ProductState.DRAFT:
            return replace(self, terms=terms), False
        if not terms.coverages:
            raise FailedPrecondition(
                "a product on sale keeps at least one coverage",
                reason="PRODUCT_INCOMPLETE",
                metadata={"missing": "coverages"},
            )
        return replace(self, terms=terms, version=self.version + 1), True

    def activate(self) -> Product:
        """On sale. A product needs at least one coverage to be sold."""
        state = PRODUCT_LIFECYCLE.next_state(self.state, ProductAction.ACTIVATE)
        if not self.terms.coverages:
            raise FailedPrecondition(
                "a product needs at least one coverage before it can be activated",
                reason="PRODUCT_INCOMPLETE",
                metadata={"missing": "coverages"},
            )
        return replace(self, state=state)

    def retire(self) -> Product:
        """Off sale: no new policies; existing ones keep their version."""
        return replace(self, state=PRODUCT_LIFECYCLE.next_state(self.state, ProductAction.RETIRE))

    def check_delete(self) -> None:
        PRODUCT_LIFECYCLE.next_state(self.state, ProductAction.DELETE)

    def check_on_sale(self) -> None:
        """FAILED_PRECONDITION unless new business may be written on the product."""
        if self.state is not ProductState.ACTIVE:
            raise FailedPrecondition(
                f"the product is {self.state.value}, not on sale",
                reason="PRODUCT_NOT_ACTIVE",
                metadata={"product_state": self.state.value},
            )
