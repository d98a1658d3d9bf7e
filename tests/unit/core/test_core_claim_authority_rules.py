"""The pure parts of claim authority: band limits and their violations, the
refusal for a currency without bands, the limits of an update, the claim
settings' defaults, and etags keyed per company and currency."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from cardinsa_core.application.claim_authority import _limits
from cardinsa_core.application.inputs import MoneyInput
from cardinsa_core.domain.claim_authority import CLAIM_SETTINGS_FIELDS, ClaimSettings
from cardinsa_core.domain.claims import ApprovalBands, no_approval_bands
from cardinsa_core.domain.money import Money
from cardinsa_core.repository.claim_authority import settings_of
from cardinsa_core.repository.models import ApprovalBandsRow, ClaimSettingsRow
from cardinsa_foundation.errors import FailedPrecondition, InvalidArgument


def limits(first: str, second: str) -> dict[str, str]:
    bands = ApprovalBands((Decimal(first), Decimal(second)), "EUR")
    return {v.field: v.description for v in bands.violations()}


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("100", "200", {}),
        ("0.01", "0.02", {}),
        ("200", "200", {"approval_bands.band_2_limit": "must be greater than band_1_limit"}),
        ("200", "100", {"approval_bands.band_2_limit": "must be greater than band_1_limit"}),
        ("0", "100", {"approval_bands.band_1_limit": "must be positive"}),
        ("-5", "100", {"approval_bands.band_1_limit": "must be positive"}),
        ("100", "-1", {"approval_bands.band_2_limit": "must be positive"}),
        (
            "-5",
            "-1",
            {
                "approval_bands.band_1_limit": "must be positive",
                "approval_bands.band_2_limit": "must be positive",
            },
        ),
    ],
)
def test_band_limit_violations(first: str, second: str, expected: dict[str, str]) -> None:
    assert limits(first, second) == expected


def test_an_amount_in_another_currency_has_no_band() -> None:
    bands = ApprovalBands((Decimal(10), Decimal(20)), "USD")
    with pytest.raises(FailedPrecondition) as caught:
        bands.band_of(Money.of("5", "EUR"))
    assert caught.value.reason == "NO_APPROVAL_BANDS_FOR_CURRENCY"
    assert dict(caught.value.metadata) == {"currency": "EUR"}
    assert "UpdateApprovalBands" in str(caught.value) and "EUR" in str(caught.value)
    assert bands.band_of(Money.of("15", "USD")) == 2
    error = no_approval_bands("GBP")
    assert error.reason == "NO_APPROVAL_BANDS_FOR_CURRENCY"
    assert dict(error.metadata) == {"currency": "GBP"}


def money(amount: str, currency: str) -> MoneyInput:
    value = Decimal(amount)
    units = int(value)
    return MoneyInput(units, int((value - units) * 1_000_000_000), currency)


def refused(first: MoneyInput | None, second: MoneyInput | None) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as caught:
        _limits(first, second)
    return {v.field: v.description for v in caught.value.field_violations}


def test_the_limits_of_an_update() -> None:
    first, second = _limits(money("100.5", "EUR"), money("200", "EUR"))
    assert (first, second) == (Money.of("100.5", "EUR"), Money.of("200", "EUR"))
    assert refused(money("1", "EUR"), money("2", "USD")) == {
        "approval_bands.band_2_limit.currency_code": "must be EUR, the currency of band_1_limit"
    }
    assert set(refused(None, None)) == {
        "approval_bands.band_1_limit",
        "approval_bands.band_2_limit",
    }
    assert set(refused(money("1", ""), money("2", "usd"))) == {
        "approval_bands.band_1_limit.currency_code",
        "approval_bands.band_2_limit.currency_code",
    }
    # Both amounts are checked, not just the first.
    assert set(refused(money("1.5", "JPY"), money("2.5", "JPY"))) == {
        "approval_bands.band_1_limit",
        "approval_bands.band_2_limit",
    }


def test_claim_settings_defaults() -> None:
    assert ClaimSettings() == ClaimSettings(require_segregation_of_duties=False)
    assert settings_of(None) == ClaimSettings()
    row = ClaimSettingsRow(company_id=uuid.uuid4(), require_segregation_of_duties=True)
    assert settings_of(row).require_segregation_of_duties
    assert {"require_segregation_of_duties"} == CLAIM_SETTINGS_FIELDS


def test_etags_are_per_company_and_currency() -> None:
    company = uuid.uuid4()

    def bands(currency: str, version: int, owner: uuid.UUID = company) -> str:
        return ApprovalBandsRow(company_id=owner, currency=currency, version=version).etag

    assert bands("EUR", 1) == bands("EUR", 1)
    assert (
        len({bands("EUR", 1), bands("USD", 1), bands("EUR", 2), bands("EUR", 1, uuid.uuid4())}) == 4
    )
    assert bands("EUR", 1).startswith('"') and bands("EUR", 1).endswith('"')
    settings = ClaimSettingsRow(company_id=company, version=1).etag
    assert settings != ClaimSettingsRow(company_id=company, version=2).etag
    assert settings != ClaimSettingsRow(company_id=uuid.uuid4(), version=1).etag
