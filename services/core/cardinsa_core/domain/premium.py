"""Premium transactions: what a policy is charged and returned, in exact money.

The arithmetic of the priced policy transactions (NEW, ENDORSE, CANCEL,
REINSTATE, RENEW); :mod:`cardinsa_core.application.pricing` applies it to a
policy's stored transactions (docs/premium.md).

Each transaction charges (positive) or returns (negative) an amount for a
stretch of the term, ``[effective, end]`` (both days covered). The **written
premium** of a policy is the sum of its transactions. The **earned premium**
on a day is, for every transaction, its amount times the share of its days
that have passed; every computation works on exact fractions and rounds once,
half-even to the currency's minor units, so the remainder of a split is never
lost or counted twice:

- ``new`` prices a term from an annual rate: ``annual * days / 365``.
- ``endorse`` charges the difference of two full-term premiums over the
  remaining days (an additional premium, or a return premium when negative).
- ``cancel`` returns what is unearned on the cancellation date: ``PRO_RATA``
  all of it, ``SHORT_RATE`` less a penalty (a percentage of the return),
  ``FLAT`` nothing (for example fraud). After a pro-rata cancellation the
  written premium is exactly the earned premium of the day, rounded.
- ``reinstate`` charges back what the cancellation returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Final

from cardinsa_core.domain.money import Money, exact_money
from cardinsa_foundation.errors import FieldViolation, InvalidArgument

__all__ = [
    "DAYS_PER_YEAR",
    "PremiumTransaction",
    "RefundMethod",
    "TransactionKind",
    "cancel",
    "earned",
    "endorse",
    "new",
    "reinstate",
    "written",
]

DAYS_PER_YEAR: Final = 365


class TransactionKind(StrEnum):
    NEW = "NEW"
    ENDORSE = "ENDORSE"
    CANCEL = "CANCEL"
    REINSTATE = "REINSTATE"
    RENEW = "RENEW"


class RefundMethod(StrEnum):
    """How much of the unearned premium a cancellation returns."""

    PRO_RATA = "PRO_RATA"
    SHORT_RATE = "SHORT_RATE"
    FLAT = "FLAT"


@dataclass(frozen=True, slots=True)
class PremiumTransaction:
    kind: TransactionKind
    #: First and last day the amount is for (inclusive).
    effective: date
    end: date
    amount: Money

    @property
    def days(self) -> int:
        return (self.end - self.effective).days + 1


def _days(start: date, end: date) -> int:
    return max(0, (end - start).days + 1)


def _invalid(field: str, description: str) -> InvalidArgument:
    return InvalidArgument(
        f"{field}: {description}", field_violations=[FieldViolation(field, description)]
    )


def _check_term(start: date, end: date) -> None:
    if end < start:
        raise _invalid("expiry_date", "must not be before the effective date")


def new(
    annual: Money, start: date, end: date, kind: TransactionKind = TransactionKind.NEW
) -> PremiumTransaction:
    """The premium of ``[start, end]`` at ``annual`` per year (days / 365)."""
    _check_term(start, end)
    days = _days(start, end)
    amount = exact_money(Fraction(annual.amount) * days / DAYS_PER_YEAR, annual.currency)
    return PremiumTransaction(kind, start, end, amount)


def written(transactions: Sequence[PremiumTransaction], currency: str) -> Money:
    """The written premium: the sum of the transactions."""
    return sum((t.amount for t in transactions), Money.zero(currency))


def _earned_exact(transactions: Sequence[PremiumTransaction], day: date) -> Fraction:
    """The exact earned premium up to and including ``day - 1`` (``day`` not yet)."""
    total = Fraction(0)
    for t in transactions:
        passed = _days(t.effective, min(day - timedelta(days=1), t.end))
        total += Fraction(t.amount.amount) * passed / t.days
    return total


def earned(transactions: Sequence[PremiumTransaction], day: date, currency: str) -> Money:
    """The premium earned before ``day`` (the days before it have passed), rounded."""
    return exact_money(_earned_exact(transactions, day), currency)


def endorse(
    transactions: Sequence[PremiumTransaction],
    old_full_term: Money,
    new_full_term: Money,
    effective: date,
) -> PremiumTransaction:
    """The additional (or return) premium of a change from ``effective`` to the
    end of the term: the difference of the full-term premiums over the remaining
    days."""
    start, end = _term(transactions)
    if not start <= effective <= end:
        raise _invalid("effective_date", f"must lie within {start} and {end}")
    remaining = _days(effective, end)
    difference = Fraction(new_full_term.amount - old_full_term.amount)
    amount = exact_money(difference * remaining / _days(start, end), new_full_term.currency)
    return PremiumTransaction(TransactionKind.ENDORSE, effective, end, amount)


def cancel(
    transactions: Sequence[PremiumTransaction],
    effective: date,
    method: RefundMethod,
    *,
    penalty_percent: Decimal = Decimal(10),
) -> PremiumTransaction:
    """The return premium of a cancellation from ``effective`` (the first day
    without cover). The return is the written premium less the earned premium
    of that day, rounded once, so a pro-rata cancellation leaves exactly the
    earned premium written."""
    start, end = _term(transactions)
    if not start <= effective <= end + timedelta(days=1):
        raise _invalid("effective_date", f"must lie within {start} and {end}")
    currency = transactions[0].amount.currency
    unearned = written(transactions, currency) - earned(transactions, effective, currency)
    if method is RefundMethod.FLAT:
        returned = Money.zero(currency)
    elif method is RefundMethod.SHORT_RATE:
        if not Decimal(0) <= penalty_percent <= Decimal(100):
            raise _invalid("penalty_percent", "between 0 and 100")
        keep = exact_money(Fraction(unearned.amount) * Fraction(penalty_percent) / 100, currency)
        returned = unearned - keep
    else:
        returned = unearned
    return PremiumTransaction(
        TransactionKind.CANCEL, effective, max(effective, end), Money.zero(currency) - returned
    )


def reinstate(cancellation: PremiumTransaction) -> PremiumTransaction:
    """Charges back what ``cancellation`` returned: cover runs again through the gap."""
    if cancellation.kind is not TransactionKind.CANCEL:
        raise _invalid("transaction", "only a cancellation is reinstated")
    zero = Money.zero(cancellation.amount.currency)
    return PremiumTransaction(
        TransactionKind.REINSTATE,
        cancellation.effective,
        cancellation.end,
        zero - cancellation.amount,
    )


def _term(transactions: Sequence[PremiumTransaction]) -> tuple[date, date]:
    if not transactions:
        raise _invalid("transactions", "the policy has no premium yet")
    first = transactions[0]
    return first.effective, first.end
