"""Benefit calculation: what a claim may be paid under its coverage.

The payable amount of a claim is worked out from the claimed amount in this
order (openIMIS's valuation, the common health and indemnity rule):

1. **Deductible**: what remains of the coverage's deductible for the limit
   period is borne by the insured first (``min(claimed, remaining)``).
2. **Cost sharing** on the rest: a fixed co-payment per claim (at most the
   rest) *or* co-insurance, the insured's share in percent, rounded half-even
   to the currency's minor units.
3. **Limits**: the result is capped by what remains of the coverage limit for
   its period and by what remains of the policy's sum insured. What the caps
   cut off is ``limit_cut``.

So ``claimed = deductible + copay + coinsurance + limit_cut + payable`` always
holds, to the minor unit, and no part is negative.

**Accumulators.** Deductible and limit consumption are kept per insured
member, coverage and period (:class:`Period`): a policy year or the whole
term for ``PER_YEAR`` and ``PER_TERM``, every policy of the product for
``LIFETIME``. A ``PER_CLAIM`` coverage has no accumulator: each claim has the
full limit and the full deductible. A second accumulator per policy term
counts the sum insured. Approving a claim consumes its deductible and its
approved amount; the claim remembers what it consumed (:class:`Consumption`),
so un-approving or re-approving gives back exactly that.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Final

from cardinsa_core.domain.money import Money
from cardinsa_core.domain.policies import add_months
from cardinsa_core.domain.products import Coverage, LimitPeriod

__all__ = [
    "LIFETIME_END",
    "LIFETIME_START",
    "SUM_INSURED_COVERAGE",
    "Benefit",
    "Consumption",
    "Period",
    "Usage",
    "assess",
    "period_of",
    "sum_insured_period",
]

#: The coverage code of a policy's sum-insured accumulator (not a valid product code).
SUM_INSURED_COVERAGE: Final = "*SUM_INSURED"
LIFETIME_START: Final = date(1, 1, 1)
LIFETIME_END: Final = date(9999, 12, 31)
_HUNDRED: Final = Decimal(100)


@dataclass(frozen=True, slots=True)
class Period:
    """An accumulator's key: whose, which coverage, which stretch of time.

    ``scope_id`` is the policy for a year or a term, the product for a lifetime.
    """

    member_id: uuid.UUID
    coverage_code: str
    scope_id: uuid.UUID
    start: date
    end: date


def period_of(
    limit_period: LimitPeriod,
    *,
    member_id: uuid.UUID,
    coverage_code: str,
    incident: date,
    policy_id: uuid.UUID,
    product_id: uuid.UUID,
    effective: date,
    expiry: date,
) -> Period | None:
    """The accumulator period an incident falls in; None for ``PER_CLAIM``."""
    if limit_period is LimitPeriod.PER_CLAIM:
        return None
    if limit_period is LimitPeriod.LIFETIME:
        return Period(member_id, coverage_code, product_id, LIFETIME_START, LIFETIME_END)
    if limit_period is LimitPeriod.PER_TERM:
        return Period(member_id, coverage_code, policy_id, effective, expiry)
    # PER_YEAR: policy years run from the effective date, twelve months each.
    years = max(0, incident.year - effective.year - 1)
    while add_months(effective, 12 * (years + 1)) <= incident:
        years += 1
    start = add_months(effective, 12 * years)
    end = min(add_months(effective, 12 * (years + 1)) - timedelta(days=1), expiry)
    return Period(member_id, coverage_code, policy_id, start, end)


def sum_insured_period(policy_id: uuid.UUID, effective: date, expiry: date) -> Period:
    """The policy's sum-insured accumulator: every claim on the policy, its whole term."""
    return Period(policy_id, SUM_INSURED_COVERAGE, policy_id, effective, expiry)


@dataclass(frozen=True, slots=True)
class Usage:
    """What a period's accumulator holds: deductible borne and limit consumed."""

    deductible_used: Money
    limit_used: Money

    @classmethod
    def zero(cls, currency: str) -> Usage:
        return cls(Money.zero(currency), Money.zero(currency))

    def plus(self, consumption: Consumption) -> Usage:
        return Usage(
            self.deductible_used + consumption.deductible, self.limit_used + consumption.limit
        )

    def minus(self, consumption: Consumption) -> Usage:
        return Usage(
            self.deductible_used - consumption.deductible, self.limit_used - consumption.limit
        )


@dataclass(frozen=True, slots=True)
class Consumption:
    """What one claim has taken from its accumulators."""

    deductible: Money
    limit: Money

    @classmethod
    def zero(cls, currency: str) -> Consumption:
        return cls(Money.zero(currency), Money.zero(currency))

    @property
    def is_zero(self) -> bool:
        return not self.deductible.amount and not self.limit.amount


@dataclass(frozen=True, slots=True)
class Benefit:
    """The breakdown of a claim's payable amount (see the module docstring)."""

    claimed: Money
    deductible: Money
    copay: Money
    coinsurance: Money
    limit_cut: Money
    payable: Money

    @property
    def parts_total(self) -> Money:
        return self.deductible + self.copay + self.coinsurance + self.limit_cut + self.payable


def _clamp(value: Money) -> Money:
    return value if not value.is_negative else Money.zero(value.currency)


def _least(*values: Money) -> Money:
    return min(values, key=lambda m: m.amount)


def assess(
    claimed: Money,
    coverage: Coverage,
    *,
    usage: Usage | None,
    sum_insured: Money,
    sum_insured_used: Money,
) -> Benefit:
    """The benefit of ``claimed`` under ``coverage`` given what its period has used.

    ``usage`` None means a ``PER_CLAIM`` coverage (nothing used before this
    claim). ``usage`` and ``sum_insured_used`` must not include this claim's own
    consumption.
    """
    currency = claimed.currency
    used = usage or Usage.zero(currency)
    deductible = _least(claimed, _clamp(coverage.deductible - used.deductible_used))
    rest = claimed - deductible
    copay = coinsurance = Money.zero(currency)
    if coverage.copay is not None:
        copay = _least(rest, _clamp(coverage.copay))
    elif coverage.coinsurance_percent:
        coinsurance = Money(rest.amount * coverage.coinsurance_percent / _HUNDRED, currency)
        coinsurance = coinsurance.rounded()
    shared = rest - copay - coinsurance
    cap = _least(
        _clamp(coverage.limit - used.limit_used),
        _clamp(sum_insured - sum_insured_used),
    )
    payable = _least(shared, cap)
    return Benefit(
        claimed=claimed,
        deductible=deductible,
        copay=copay,
        coinsurance=coinsurance,
        limit_cut=shared - payable,
        payable=payable,
    )
