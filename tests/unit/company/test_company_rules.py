"""Company field rules, update masks, money and the stored documents."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from cardinsa_company.domain.companies import (
    FEATURE_FLAGS,
    UPDATABLE_FIELDS,
    ApprovalBands,
    CompanyProfile,
    CompanySettings,
    Contact,
    DateParts,
    MoneyAmount,
    changed_fields,
    check_profile,
    merge_update,
    normalize_profile,
    parse_update_mask,
)
from cardinsa_company.repository.documents import (
    settings_from_document,
    settings_to_document,
)
from cardinsa_core.domain.rating import FLAT_RATING_FLAG
from cardinsa_foundation.errors import InvalidArgument


def valid(**changes: Any) -> CompanyProfile:
    base = CompanyProfile(
        display_name="Acme", country="DE", default_currency="EUR", time_zone="Europe/Berlin"
    )
    return normalize_profile(replace(base, **changes))


def fields_of(profile: CompanyProfile) -> set[str]:
    return {v.field for v in check_profile(profile)}


def eur(units: int, nanos: int = 0, currency: str = "") -> MoneyAmount:
    return MoneyAmount(currency, units, nanos)


def test_a_minimal_company_is_valid_and_normalised() -> None:
    profile = valid(country=" de ", default_currency="eur", locale="pt_br")
    assert check_profile(profile) == []
    assert (profile.country, profile.default_currency, profile.locale) == ("DE", "EUR", "pt-BR")
    assert valid().locale == "en"
    assert profile.settings.fiscal_year_start_month == 1


def test_required_fields_and_codes() -> None:
    assert fields_of(normalize_profile(CompanyProfile())) == {
        "company.display_name",
        "company.country",
        "company.default_currency",
        "company.time_zone",
    }
    assert fields_of(valid(country="XX", default_currency="ABC", time_zone="Europe/Paris ")) == {
        "company.country",
        "company.default_currency",
    }
    assert fields_of(valid(time_zone="Europe/Nowhere", locale="english")) == {
        "company.time_zone",
        "company.locale",
    }


def test_contact_rules() -> None:
    good = valid(
        contact=Contact(
            email="Info@Acme.example",
            phone="0049 (30) 123-45",
            postal_code="sw1a 1aa",
            website="https://acme.example/about",
        )
    )
    assert check_profile(good) == []
    assert (good.contact.email, good.contact.phone, good.contact.postal_code) == (
        "info@acme.example",
        "+493012345",
        "SW1A 1AA",
    )
    bad = valid(
        contact=Contact(
            email="a@b", phone="12345", website="javascript:alert(1)", postal_code="<script>"
        )
    )
    assert fields_of(bad) == {
        "company.contact.email",
        "company.contact.phone",
        "company.contact.website",
        "company.contact.postal_code",
    }
    assert fields_of(valid(contact=Contact(website="https://user:pw@acme.example"))) == {
        "company.contact.website"
    }


def test_licence_expiry_must_be_a_real_date() -> None:
    assert check_profile(valid(licence_expiry_date=DateParts(2030, 12, 31))) == []
    for parts in (DateParts(2030, 2, 30), DateParts(0, 1, 1), DateParts(2030, 13, 1)):
        assert fields_of(valid(licence_expiry_date=parts)) == {"company.licence_expiry_date"}


def test_claim_approval_bands() -> None:
    good = CompanySettings(
        default_claim_approval_bands=ApprovalBands("", eur(1000), eur(5000, 500_000_000)),
        claim_approval_bands=(ApprovalBands("motor", eur(500), eur(1000), eur(2000, 0, "eur")),),
    )
    profile = valid(settings=good)
    assert check_profile(profile) == []
    motor = profile.settings.claim_approval_bands[0]
    assert motor.band_3_limit == MoneyAmount("EUR", 2000, 0)
    bad = CompanySettings(
        fiscal_year_start_month=13,
        default_claim_approval_bands=ApprovalBands("motor", eur(10), None),
        claim_approval_bands=(
            ApprovalBands("motor", eur(0), eur(1, 1)),
            ApprovalBands("motor", eur(-1, 5), eur(10, 0, "USD")),
            ApprovalBands("x", eur(10), eur(5)),
        ),
    )
    found = fields_of(valid(settings=bad))
    p = "company.settings"
    assert found == {
        f"{p}.fiscal_year_start_month",
        f"{p}.default_claim_approval_bands.line_of_business",
        f"{p}.default_claim_approval_bands.band_2_limit",
        f"{p}.claim_approval_bands[0].band_1_limit",  # not positive
        f"{p}.claim_approval_bands[0].band_2_limit",  # more decimals than EUR has
        f"{p}.claim_approval_bands[1].line_of_business",  # twice
        f"{p}.claim_approval_bands[1].band_1_limit",  # malformed sign
        f"{p}.claim_approval_bands[1].band_2_limit.currency_code",
        f"{p}.claim_approval_bands[2].line_of_business",  # too short
        f"{p}.claim_approval_bands[2].band_2_limit",  # not above band 1
    }


def test_feature_flag_names() -> None:
    assert check_profile(valid(feature_flags={"flat_rating": True})) == []
    assert fields_of(valid(feature_flags={"Claims": True})) == {'company.feature_flags["Claims"]'}
    assert fields_of(valid(feature_flags={f"f{i}": True for i in range(65)})) == {
        "company.feature_flags"
    }


def test_only_flags_a_service_reads_are_accepted() -> None:
    # Each known flag is read where it means something: core's rating strategy.
    assert set(FEATURE_FLAGS) == {FLAT_RATING_FLAG}
    unknown = valid(feature_flags={"flat_rating": True, "beta_ui": False})
    (violation,) = check_profile(unknown)
    assert violation.field == 'company.feature_flags["beta_ui"]'
    assert violation.description == "unknown feature flag; known: flat_rating"
    # An update keeps the flags a company already has (stored before the list).
    assert check_profile(unknown, tolerated_flags={"beta_ui"}) == []


def test_money_amounts_are_exact() -> None:
    money = MoneyAmount("EUR", 12, 340_000_000)
    assert money.amount == Decimal("12.34")
    assert MoneyAmount.of("EUR", Decimal("-1.75")) == MoneyAmount("EUR", -1, -750_000_000)
    assert not MoneyAmount("EUR", 1, -1).well_formed
    assert not MoneyAmount("EUR", 0, 1_000_000_000).well_formed


def test_settings_documents_round_trip_without_floats() -> None:
    settings = normalize_profile(
        valid(
            settings=CompanySettings(
                fiscal_year_start_month=4,
                default_claim_approval_bands=ApprovalBands("", eur(1000), eur(10_000)),
                claim_approval_bands=(ApprovalBands("motor", eur(0, 500_000_000), eur(7)),),
            )
        )
    ).settings
    document = settings_to_document(settings)
    assert document["claim_approval_bands"][0]["band_1_limit"] == {
        "currency_code": "EUR",
        "amount": "0.5",
    }
    assert document["default_claim_approval_bands"]["band_2_limit"]["amount"] == "10000"
    assert settings_from_document(document) == settings


def test_update_masks() -> None:
    assert parse_update_mask(["*"]) == sorted(UPDATABLE_FIELDS)
    assert parse_update_mask(["contact.city", "settings.claim_approval_bands"]) == [
        "contact.city",
        "settings.claim_approval_bands",
    ]
    for paths in ([], ["state"], ["etag"], ["contact.fax"], ["display_name.x"], ["*", "country"]):
        with pytest.raises(InvalidArgument) as caught:
            parse_update_mask(paths)
        assert caught.value.field_violations[0].field == "update_mask", paths


def test_merge_takes_only_masked_fields_and_reports_real_changes() -> None:
    current = valid(legal_name="Acme AG", contact=Contact(city="Berlin", email="a@acme.example"))
    patch = CompanyProfile(
        display_name="Acme New",
        legal_name="Ignored",
        contact=Contact(city="Hamburg"),
        licence_expiry_date=DateParts.of(date(2031, 1, 1)),
    )
    merged = normalize_profile(
        merge_update(current, patch, ["display_name", "contact.city", "licence_expiry_date"])
    )
    assert merged.legal_name == "Acme AG"
    assert merged.contact == Contact(city="Hamburg", email="a@acme.example")
    assert changed_fields(current, merged) == [
        "contact.city",
        "display_name",
        "licence_expiry_date",
    ]
    same = normalize_profile(
        merge_update(current, CompanyProfile(display_name=" Acme "), ["display_name"])
    )
    assert changed_fields(current, same) == []


def test_backdating_and_renewal_offer_days() -> None:
    p = "company.settings"
    unset = valid()
    assert (unset.settings.max_backdate_days, unset.settings.renewal_offer_days) == (None, None)
    assert unset.settings.effective_max_backdate_days == 30
    assert unset.settings.effective_renewal_offer_days == 30
    edges = valid(settings=CompanySettings(max_backdate_days=0, renewal_offer_days=365))
    assert check_profile(edges) == []
    assert edges.settings.effective_max_backdate_days == 0  # 0 is a choice, not "unset"
    assert check_profile(valid(settings=CompanySettings(max_backdate_days=3650))) == []
    assert check_profile(valid(settings=CompanySettings(renewal_offer_days=1))) == []
    for backdate, renewal in ((-1, 0), (3651, 366)):
        found = fields_of(
            valid(settings=CompanySettings(max_backdate_days=backdate, renewal_offer_days=renewal))
        )
        assert found == {f"{p}.max_backdate_days", f"{p}.renewal_offer_days"}
    # Judged even when the currency is wrong (the bands are then not judged).
    assert fields_of(
        valid(default_currency="XYZ", settings=CompanySettings(renewal_offer_days=0))
    ) == {"company.default_currency", f"{p}.renewal_offer_days"}


def test_the_limits_round_trip_and_unset_stays_unset() -> None:
    chosen = CompanySettings(max_backdate_days=0, renewal_offer_days=45)
    assert settings_from_document(settings_to_document(chosen)) == chosen
    assert settings_from_document(settings_to_document(CompanySettings())) == CompanySettings()
    # A document written before the fields existed: both unset.
    legacy = {"fiscal_year_start_month": 4, "claim_approval_bands": []}
    old = settings_from_document(legacy)
    assert (old.max_backdate_days, old.renewal_offer_days) == (None, None)


def test_masks_name_one_limit_or_all_settings() -> None:
    current = valid(settings=CompanySettings(fiscal_year_start_month=4, renewal_offer_days=60))
    assert parse_update_mask(["settings.max_backdate_days", "settings.renewal_offer_days"]) == [
        "settings.max_backdate_days",
        "settings.renewal_offer_days",
    ]
    patch = CompanyProfile(settings=CompanySettings(max_backdate_days=7))
    one = normalize_profile(merge_update(current, patch, ["settings.max_backdate_days"]))
    assert (one.settings.max_backdate_days, one.settings.renewal_offer_days) == (7, 60)
    assert one.settings.fiscal_year_start_month == 4
    assert changed_fields(current, one) == ["settings.max_backdate_days"]
    # A masked field the patch leaves unset goes back to unset (the default).
    cleared = normalize_profile(merge_update(current, patch, ["settings.renewal_offer_days"]))
    assert cleared.settings.renewal_offer_days is None
    # "settings" replaces every setting.
    whole = normalize_profile(merge_update(current, patch, ["settings"]))
    assert whole.settings == CompanySettings(max_backdate_days=7)
    assert changed_fields(current, whole) == [
        "settings.fiscal_year_start_month",
        "settings.max_backdate_days",
        "settings.renewal_offer_days",
    ]
