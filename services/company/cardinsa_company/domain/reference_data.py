"""Code lists shipped with the service: ISO 3166-1 countries, ISO 4217 currencies, IANA zones.

The country and currency lists are data files in this package (``countries.txt``,
``currencies.txt``), read once; nothing is fetched from the network. Time zones
come from the system's IANA database through :mod:`zoneinfo`.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType

__all__ = [
    "Currency",
    "countries",
    "currencies",
    "is_country",
    "is_currency",
    "is_time_zone",
    "minor_units",
]


@dataclass(frozen=True, slots=True)
class Currency:
    code: str
    minor_units: int
    name: str


def _lines(name: str) -> list[list[str]]:
    text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    return [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]


@functools.cache
def countries() -> Mapping[str, str]:
    """ISO 3166-1 alpha-2 code → short name."""
    return MappingProxyType({code: name for code, name in _lines("countries.txt")})


@functools.cache
def currencies() -> Mapping[str, Currency]:
    """ISO 4217 code → currency, for circulating currencies."""
    return MappingProxyType(
        {code: Currency(code, int(minor), name) for code, minor, name in _lines("currencies.txt")}
    )


def is_country(code: str) -> bool:
    return code in countries()


def is_currency(code: str) -> bool:
    return code in currencies()


def minor_units(code: str) -> int:
    """Decimal places of a currency (2 when the code is unknown, which validation reports)."""
    currency = currencies().get(code)
    return currency.minor_units if currency else 2


@functools.cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def is_time_zone(name: str) -> bool:
    """Whether ``name`` is an IANA zone key this system knows (``Europe/Berlin``, ``UTC``).

    Checked against the list of zones, not by loading a file named after the
    input, so no path-like value ever reaches the file system.
    """
    return name in _time_zones()
