"""The ISO code lists shipped with the service, and IANA zones."""

from __future__ import annotations

import re

from cardinsa_company.domain import reference_data


def test_every_iso_3166_country_code_is_there_once() -> None:
    countries = reference_data.countries()
    assert len(countries) == 249
    assert all(re.fullmatch(r"[A-Z]{2}", code) for code in countries)
    for code in ("DE", "KE", "US", "GB", "BR", "JP", "AX", "SS", "ZW"):
        assert reference_data.is_country(code), code
    for code in ("XX", "UK", "EU", "de", ""):
        assert not reference_data.is_country(code), code


def test_circulating_iso_4217_currencies_with_minor_units() -> None:
    currencies = reference_data.currencies()
    assert len(currencies) == 157
    assert all(re.fullmatch(r"[A-Z]{3}", code) for code in currencies)
    assert {c.minor_units for c in currencies.values()} == {0, 2, 3}
    assert (
        reference_data.minor_units("EUR"),
        reference_data.minor_units("JPY"),
        reference_data.minor_units("BHD"),
    ) == (2, 0, 3)
    for code in ("EUR", "KES", "USD", "CHF", "XOF", "ZWG"):
        assert reference_data.is_currency(code), code
    # Funds, metals, testing codes and withdrawn currencies are not a company's currency.
    for code in ("XAU", "XTS", "XXX", "CHE", "USN", "DEM", "HRK", "eur", ""):
        assert not reference_data.is_currency(code), code


def test_time_zones_are_iana_keys_only() -> None:
    for zone in ("UTC", "Europe/Berlin", "Africa/Nairobi", "America/Argentina/Buenos_Aires"):
        assert reference_data.is_time_zone(zone), zone
    for zone in ("Mars/Olympus", "europe/berlin", "../../etc/passwd", "", "CEST"):
        assert not reference_data.is_time_zone(zone), zone
