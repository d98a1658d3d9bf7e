"""Money: a Decimal amount and an ISO 4217 currency, never a float.

Amounts carry at most the currency's minor units (2 for USD/EUR, 0 for JPY, 3
for BHD/KWD/...): more decimals is INVALID_ARGUMENT rather than a silent
rounding. Arithmetic between two amounts of different currencies raises
(reason ``CURRENCY_MISMATCH``); there is no implicit conversion anywhere.
Computed results (a premium times a member count) are rounded half-even to
the currency's minor units by :meth:`Money.rounded`.

The wire form is ``units`` + ``nanos`` (google.type.Money): :func:`from_units_nanos`
and :meth:`Money.units_nanos` convert exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from fractions import Fraction
from typing import Final

from cardinsa_foundation.errors import FieldViolation, InvalidArgument

__all__ = [
    "CURRENCY_MISMATCH",
    "MAX_AMOUNT",
    "Money",
    "check_currency",
    "exact_money",
    "from_units_nanos",
    "minor_units",
]

CURRENCY_MISMATCH: Final = "CURRENCY_MISMATCH"
_CURRENCY: Final = re.compile(r"^[A-Z]{3}$")
_NANOS: Final = Decimal(1_000_000_000)
#: Largest amount we store (NUMERIC(19, 4) holds 15 integer digits).
MAX_AMOUNT: Final = Decimal("999999999999999")

# ISO 4217 currencies whose minor unit is not 2 (the rest have 2).
_MINOR_UNITS: Final[dict[str, int]] = {
    **dict.fromkeys(
        (
            *("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX"),
            *("UYI", "VND", "VUV", "XAF", "XOF", "XPF"),
        ),
        0,
    ),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    "CLF": 4,
    "UYW": 4,
}


def minor_units(currency: str) -> int:
    """Decimal places of ``currency`` (ISO 4217; 2 unless listed otherwise)."""
    return _MINOR_UNITS.get(currency, 2)


def check_currency(currency: str, field: str) -> list[FieldViolation]:
    if not _CURRENCY.match(currency or ""):
        return [FieldViolation(field, "must be a three-letter ISO 4217 code such as USD")]
    return []


def _decimals(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _mismatch(left: str, right: str) -> InvalidArgument:
    return InvalidArgument(
        f"amounts in {left} and {right} cannot be combined",
        reason=CURRENCY_MISMATCH,
        metadata={"currency": left, "other_currency": right},
    )


@dataclass(frozen=True, slots=True)
class Money:
    """An amount of one currency. Construct through :meth:`of` to validate; the
    amount is then always quantized to the currency's minor units."""

    amount: Decimal
    currency: str

    @classmethod
    def of(cls, amount: Decimal | int | str, currency: str, *, field: str = "amount") -> Money:
        """A validated amount: finite, within the stored range, at most the
        currency's minor units; INVALID_ARGUMENT on ``field`` otherwise."""
        violations = check_currency(currency, f"{field}.currency_code")
        try:
            value = Decimal(amount)
        except (InvalidOperation, ValueError, TypeError):
            value = Decimal("NaN")
        if not value.is_finite():
            violations.append(FieldViolation(field, "is not a number"))
        elif abs(value) > MAX_AMOUNT:
            violations.append(FieldViolation(field, f"must not exceed {MAX_AMOUNT}"))
        elif not violations and _decimals(value) > minor_units(currency):
            violations.append(
                FieldViolation(
                    field, f"{currency} amounts have at most {minor_units(currency)} decimals"
                )
            )
        if violations:
            raise InvalidArgument("the amount is not valid", field_violations=violations)
        return cls(value, currency).rounded()

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(Decimal(0), currency).rounded()

    # ------------------------------------------------------------- arithmetic

    def _same(self, other: Money) -> None:
        if self.currency != other.currency:
            raise _mismatch(self.currency, other.currency)

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def times(self, factor: int | Decimal) -> Money:
        """The amount multiplied, rounded to the currency's minor units."""
        return Money(self.amount * Decimal(factor), self.currency).rounded()

    def rounded(self) -> Money:
        """Half-even rounding to the currency's minor units."""
        exponent = Decimal(1).scaleb(-minor_units(self.currency))
        return Money(self.amount.quantize(exponent, rounding=ROUND_HALF_EVEN), self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.amount >= other.amount

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        return self.currency == other.currency and self.amount == other.amount

    def __hash__(self) -> int:
        return hash((self.currency, self.amount.normalize()))

    @property
    def is_positive(self) -> bool:
        return self.amount > 0

    @property
    def is_negative(self) -> bool:
        return self.amount < 0

    # ------------------------------------------------------------- wire form

    def units_nanos(self) -> tuple[int, int]:
        """(units, nanos) as google.type.Money carries them (same sign, |nanos| < 1e9)."""
        return units_nanos(self.amount)

    def __str__(self) -> str:
        return f"{self.rounded().amount} {self.currency}"


def units_nanos(amount: Decimal) -> tuple[int, int]:
    """(units, nanos) of an amount as google.type.Money carries them (same sign,
    |nanos| < 1e9), without Money.of's validation: for stored amounts."""
    units = int(amount)  # truncates toward zero, so the signs agree
    return units, int((amount - units) * _NANOS)


def from_units_nanos(units: int, nanos: int, currency: str, *, field: str) -> Money:
    """The exact amount of a google.type.Money; INVALID_ARGUMENT on ``field`` when
    nanos is out of range, its sign disagrees with units', or it has more
    decimals than the currency."""
    if not -999_999_999 <= nanos <= 999_999_999 or (units > 0 > nanos) or (units < 0 < nanos):
        raise InvalidArgument(
            "the amount is not valid",
            field_violations=[
                FieldViolation(
                    f"{field}.nanos", "must be within ±999999999 and have the sign of units"
                )
            ],
        )
    return Money.of(Decimal(units) + Decimal(nanos) / _NANOS, currency, field=field)


def exact_money(value: Fraction, currency: str) -> Money:
    """An exact amount rounded once, half-even, to the currency's minor units.

    In integers: a Decimal division first would round to the context's 28
    digits, and a large amount just off a half would then round the wrong way.
    """
    places = minor_units(currency)
    units, rest = divmod(value.numerator * 10**places, value.denominator)
    if 2 * rest > value.denominator or (2 * rest == value.denominator and units % 2):
        units += 1
    return Money(Decimal(units).scaleb(-places), currency).rounded()
