"""Money: Decimal amounts, currency checks, the google.type.Money wire form."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cardinsa_core.domain.money import Money, from_units_nanos, minor_units
from cardinsa_foundation.errors import InvalidArgument


def test_amounts_are_quantized_to_the_currency() -> None:
    assert Money.of("10.5", "USD").amount == Decimal("10.50")
    assert str(Money.of("10.5", "USD").amount) == "10.50"
    assert Money.of("7", "JPY").amount == Decimal(7)
    assert Money.of("1.234", "BHD").amount == Decimal("1.234")
    assert (minor_units("USD"), minor_units("JPY"), minor_units("KWD")) == (2, 0, 3)


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        ("10.005", "USD"),
        ("1.5", "JPY"),
        ("NaN", "USD"),
        ("Infinity", "USD"),
        ("1e16", "USD"),
        ("1", "usd"),
        ("1", "US"),
        ("x", "USD"),
    ],
)
def test_invalid_amounts(amount: str, currency: str) -> None:
    with pytest.raises(InvalidArgument):
        Money.of(amount, currency)


def test_trailing_zeros_are_not_extra_decimals() -> None:
    assert Money.of("10.500000", "USD") == Money.of("10.5", "USD")


def test_arithmetic_within_one_currency() -> None:
    a, b = Money.of("10.10", "USD"), Money.of("0.20", "USD")
    assert a + b == Money.of("10.30", "USD")
    assert a - b == Money.of("9.90", "USD")
    assert b < a and a >= b and not a <= b
    assert Money.of("0.125", "BHD").times(3) == Money.of("0.375", "BHD")


def test_multiplication_rounds_half_even() -> None:
    assert Money.of("0.05", "USD").times(Decimal("0.5")).amount == Decimal("0.02")
    assert Money.of("0.15", "USD").times(Decimal("0.5")).amount == Decimal("0.08")


@pytest.mark.parametrize("op", ["add", "sub", "lt", "le", "gt", "ge"])
def test_no_arithmetic_across_currencies(op: str) -> None:
    usd, eur = Money.of(1, "USD"), Money.of(1, "EUR")
    with pytest.raises(InvalidArgument) as caught:
        getattr(usd, f"__{op}__")(eur)
    assert caught.value.reason == "CURRENCY_MISMATCH"
    assert usd != eur


@pytest.mark.parametrize(
    ("amount", "units", "nanos"),
    [
        ("1234.56", 1234, 560_000_000),
        ("-1.75", -1, -750_000_000),
        ("0.01", 0, 10_000_000),
        ("-0.01", 0, -10_000_000),
        ("999999999999999", 999999999999999, 0),
    ],
)
def test_units_and_nanos_round_trip(amount: str, units: int, nanos: int) -> None:
    money = Money.of(amount, "USD")
    assert money.units_nanos() == (units, nanos)
    assert from_units_nanos(units, nanos, "USD", field="m") == money


@pytest.mark.parametrize(("units", "nanos"), [(1, -1), (-1, 1), (0, 1_000_000_000), (0, 1)])
def test_invalid_wire_amounts(units: int, nanos: int) -> None:
    with pytest.raises(InvalidArgument) as caught:
        from_units_nanos(units, nanos, "USD", field="premium")
    assert caught.value.field_violations[0].field.startswith("premium")
