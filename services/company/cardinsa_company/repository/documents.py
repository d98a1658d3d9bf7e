"""Company rows ⇄ domain values: the JSON documents ``contact``, ``settings`` and
``feature_flags`` and the typed columns.

Money is stored as ``{"currency_code": "EUR", "amount": "1000.5"}`` -- a decimal
string, never a float -- so core reads exact amounts straight from the document
too. ``max_backdate_days`` and ``renewal_offer_days`` are numbers, or null
when unset (older rows lack the keys: also unset), so no migration is needed.
"""

from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal
from typing import Any

from cardinsa_company.domain.companies import (
    BAND_FIELDS,
    ApprovalBands,
    CompanyProfile,
    CompanySettings,
    Contact,
    DateParts,
    MoneyAmount,
)
from cardinsa_company.repository.models import CompanyRow


def _money_to_document(money: MoneyAmount | None) -> dict[str, str] | None:
    if money is None:
        return None
    return {"currency_code": money.currency_code, "amount": format(money.amount.normalize(), "f")}


def _money_from_document(document: Any) -> MoneyAmount | None:
    if not isinstance(document, dict):
        return None
    return MoneyAmount.of(str(document["currency_code"]), Decimal(str(document["amount"])))


def _bands_to_document(bands: ApprovalBands) -> dict[str, Any]:
    document: dict[str, Any] = {"line_of_business": bands.line_of_business}
    for name in BAND_FIELDS:
        document[name] = _money_to_document(getattr(bands, name))
    return document


def _bands_from_document(document: dict[str, Any]) -> ApprovalBands:
    return ApprovalBands(
        line_of_business=str(document.get("line_of_business", "")),
        band_1_limit=_money_from_document(document.get("band_1_limit")),
        band_2_limit=_money_from_document(document.get("band_2_limit")),
        band_3_limit=_money_from_document(document.get("band_3_limit")),
    )


def settings_to_document(settings: CompanySettings) -> dict[str, Any]:
    default = settings.default_claim_approval_bands
    return {
        "fiscal_year_start_month": settings.fiscal_year_start_month,
        "default_claim_approval_bands": _bands_to_document(default) if default else None,
        "claim_approval_bands": [_bands_to_document(b) for b in settings.claim_approval_bands],
        "max_backdate_days": settings.max_backdate_days,
        "renewal_offer_days": settings.renewal_offer_days,
    }


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def settings_from_document(document: dict[str, Any]) -> CompanySettings:
    default = document.get("default_claim_approval_bands")
    return CompanySettings(
        fiscal_year_start_month=int(document.get("fiscal_year_start_month") or 1),
        default_claim_approval_bands=_bands_from_document(default)
        if isinstance(default, dict)
        else None,
        claim_approval_bands=tuple(
            _bands_from_document(b) for b in document.get("claim_approval_bands") or ()
        ),
        max_backdate_days=_optional_int(document.get("max_backdate_days")),
        renewal_offer_days=_optional_int(document.get("renewal_offer_days")),
    )


def contact_from_document(document: dict[str, Any]) -> Contact:
    known = Contact.__dataclass_fields__
    return Contact(**{k: str(v) for k, v in document.items() if k in known})


def profile_of(row: CompanyRow) -> CompanyProfile:
    """The stored company as a domain profile."""
    expiry = row.licence_expiry_date
    return CompanyProfile(
        display_name=row.display_name,
        legal_name=row.legal_name,
        registration_number=row.registration_number,
        tax_id=row.tax_id,
        licence_number=row.licence_number,
        licence_expiry_date=DateParts.of(expiry) if expiry is not None else None,
        country=row.country,
        default_currency=row.default_currency,
        time_zone=row.time_zone,
        locale=row.locale,
        contact=contact_from_document(row.contact or {}),
        settings=settings_from_document(row.settings or {}),
        feature_flags={str(k): bool(v) for k, v in (row.feature_flags or {}).items()},
    )


def write_profile(row: CompanyRow, profile: CompanyProfile) -> None:
    """Put a normalised, valid profile into the row (new JSON documents each time,
    so the ORM sees the change)."""
    expiry = profile.licence_expiry_date
    row.display_name = profile.display_name
    row.legal_name = profile.legal_name
    row.registration_number = profile.registration_number
    row.tax_id = profile.tax_id
    row.licence_number = profile.licence_number
    row.licence_expiry_date = expiry.as_date() if expiry is not None else None
    row.country = profile.country
    row.default_currency = profile.default_currency
    row.time_zone = profile.time_zone
    row.locale = profile.locale
    row.contact = asdict(profile.contact)
    row.settings = settings_to_document(profile.settings)
    row.feature_flags = dict(sorted(profile.feature_flags.items()))
