"""A company's writable fields: their stored form, their rules and update masks.

Rules return field violations (paths like ``company.country``) so a request
learns everything wrong with it at once. Values arrive as plain Python values
(dates as year/month/day, money as units/nanos) and are judged here, not in the
handlers. An update applies its mask to the stored company and the result is
validated as a whole, so cross-field rules (claim approval bands in the default
currency) hold whichever field changed.

Settings shape (what core reads):

* ``fiscal_year_start_month``: 1-12.
* ``default_claim_approval_bands`` and ``claim_approval_bands`` (per line of
  business): the highest claim amount each authority band may approve
  (``claims.approve_band_1`` … ``_band_3``); band 1 and 2 limits are required,
  an unset band 3 limit means no upper limit; positive, strictly increasing,
  in the company's default currency, with no more decimals than it has.
* ``max_backdate_days``: how many days before the company's today a policy may
  start without an underwriter, 0-3650; unset (None) means
  :data:`DEFAULT_MAX_BACKDATE_DAYS`.
* ``renewal_offer_days``: how many days before a policy's expiry the renewal
  offer is made, 1-365; unset (None) means :data:`DEFAULT_RENEWAL_OFFER_DAYS`.
  Both are stored as given (unset stays unset, so a later change of the default
  reaches the companies that never chose); ``GetCompanyStatus`` fills the
  defaults in.

Feature flags follow a naming rule rather than a whitelist (lower snake case,
at most 63 characters, at most 64 flags): services introduce flags without a
company-service release, and an unlisted flag is simply off.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import date
from decimal import Decimal
from itertools import pairwise
from types import MappingProxyType
from typing import Any, Final, NamedTuple
from urllib.parse import urlsplit

from cardinsa_company.domain import reference_data
from cardinsa_foundation.errors import FieldViolation, InvalidArgument
from cardinsa_foundation.fields import is_locale_tag, normalize_phone
from cardinsa_foundation.fields import normalize_locale as normalize_locale_tag

__all__ = [
    "CONTACT_FIELDS",
    "DEFAULT_LOCALE",
    "DEFAULT_MAX_BACKDATE_DAYS",
    "DEFAULT_RENEWAL_OFFER_DAYS",
    "FEATURE_FLAGS",
    "OUTPUT_ONLY_FIELDS",
    "SETTINGS_FIELDS",
    "UPDATABLE_FIELDS",
    "ApprovalBands",
    "CompanyProfile",
    "CompanySettings",
    "Contact",
    "DateParts",
    "MoneyAmount",
    "changed_fields",
    "check_profile",
    "merge_update",
    "normalize_profile",
    "parse_update_mask",
]

DEFAULT_LOCALE: Final = "en"
MAX_DISPLAY_NAME: Final = 200
MAX_LEGAL_NAME: Final = 300
MAX_IDENTIFIER: Final = 64
MAX_ADDRESS_LINE: Final = 200
MAX_CITY: Final = 100
MAX_POSTAL_CODE: Final = 20
MAX_WEBSITE: Final = 2048
MAX_FEATURE_FLAGS: Final = 64
MAX_LINES_OF_BUSINESS: Final = 50
NANOS_PER_UNIT: Final = 1_000_000_000
DEFAULT_MAX_BACKDATE_DAYS: Final = 30
MAX_BACKDATE_DAYS_LIMIT: Final = 3650
DEFAULT_RENEWAL_OFFER_DAYS: Final = 30
MAX_RENEWAL_OFFER_DAYS: Final = 365

FEATURE_FLAG_NAME: Final = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
#: The feature flags a company may set, each with the service that reads it and
#: what it changes (docs/company-settings.md). A flag nothing reads is refused:
#: a service that starts reading a new flag adds it here.
FEATURE_FLAGS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "flat_rating": "core prices with the flat rating strategy instead of the standard one",
    }
)
LINE_OF_BUSINESS_NAME: Final = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
_IDENTIFIER: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ./-]*$")
_POSTAL_CODE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 -]*$")
_E164: Final = re.compile(r"^\+[1-9][0-9]{1,14}$")
_EMAIL: Final = re.compile(
    r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})$"
)
_HOST: Final = re.compile(
    r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})$"
)


class DateParts(NamedTuple):
    """A calendar date as google.type.Date carries it (validated by check_profile)."""

    year: int
    month: int
    day: int

    def as_date(self) -> date | None:
        try:
            return date(self.year, self.month, self.day)
        except ValueError:
            return None

    @classmethod
    def of(cls, value: date) -> DateParts:
        return cls(value.year, value.month, value.day)


@dataclass(frozen=True, slots=True)
class MoneyAmount:
    """An amount as google.type.Money carries it: whole units and nanos (10^-9)."""

    currency_code: str
    units: int
    nanos: int = 0

    @property
    def well_formed(self) -> bool:
        """Nanos in range and of the same sign as units (google.type.Money's rule)."""
        if abs(self.nanos) >= NANOS_PER_UNIT:
            return False
        return not (self.units > 0 > self.nanos or self.units < 0 < self.nanos)

    @property
    def amount(self) -> Decimal:
        return Decimal(self.units) + Decimal(self.nanos).scaleb(-9)

    @classmethod
    def of(cls, currency_code: str, amount: Decimal) -> MoneyAmount:
        units = int(amount)  # truncates toward zero, so nanos keep the sign of units
        nanos = int((amount - units).scaleb(9))
        return cls(currency_code, units, nanos)


@dataclass(frozen=True, slots=True)
class ApprovalBands:
    """Claim approval limits of one line of business ("" for the default bands)."""

    line_of_business: str = ""
    band_1_limit: MoneyAmount | None = None
    band_2_limit: MoneyAmount | None = None
    band_3_limit: MoneyAmount | None = None


#: The limits of :class:`ApprovalBands`, lowest first.
BAND_FIELDS: Final = ("band_1_limit", "band_2_limit", "band_3_limit")


@dataclass(frozen=True, slots=True)
class CompanySettings:
    fiscal_year_start_month: int = 1
    default_claim_approval_bands: ApprovalBands | None = None
    claim_approval_bands: tuple[ApprovalBands, ...] = ()
    #: None: unset (the default applies).
    max_backdate_days: int | None = None
    renewal_offer_days: int | None = None

    @property
    def effective_max_backdate_days(self) -> int:
        if self.max_backdate_days is None:
            return DEFAULT_MAX_BACKDATE_DAYS
        return self.max_backdate_days

    @property
    def effective_renewal_offer_days(self) -> int:
        if self.renewal_offer_days is None:
            return DEFAULT_RENEWAL_OFFER_DAYS
        return self.renewal_offer_days


@dataclass(frozen=True, slots=True)
class Contact:
    email: str = ""
    phone: str = ""
    address_line_1: str = ""
    address_line_2: str = ""
    city: str = ""
    postal_code: str = ""
    website: str = ""


@dataclass(frozen=True, slots=True)
class CompanyProfile:
    """The fields of a company that a client sets (create, or update with a mask)."""

    display_name: str = ""
    legal_name: str = ""
    registration_number: str = ""
    tax_id: str = ""
    licence_number: str = ""
    licence_expiry_date: DateParts | None = None
    country: str = ""
    default_currency: str = ""
    time_zone: str = ""
    locale: str = ""
    contact: Contact = field(default_factory=Contact)
    settings: CompanySettings = field(default_factory=CompanySettings)
    feature_flags: Mapping[str, bool] = field(default_factory=dict)


#: Top-level fields an update mask may name.
UPDATABLE_FIELDS: Final = frozenset(f.name for f in fields(CompanyProfile))
CONTACT_FIELDS: Final = frozenset(f.name for f in fields(Contact))
SETTINGS_FIELDS: Final = frozenset(f.name for f in fields(CompanySettings))
#: Fields of the Company message that no update may name.
OUTPUT_ONLY_FIELDS: Final = frozenset(
    {
        "id",
        "state",
        "state_reason",
        "state_change_time",
        "create_time",
        "update_time",
        "delete_time",
        "etag",
    }
)
_NESTED: Final[Mapping[str, frozenset[str]]] = {
    "contact": CONTACT_FIELDS,
    "settings": SETTINGS_FIELDS,
}


# ------------------------------------------------------------------ normalisation


def _clean(value: str) -> str:
    return unicodedata.normalize("NFC", value.strip())


def normalize_locale(raw: str) -> str:
    """``en_us`` → ``en-US``, ``zh-hant-tw`` → ``zh-Hant-TW``; empty → ``en``."""
    return normalize_locale_tag(raw) or DEFAULT_LOCALE


def _normalize_money(money: MoneyAmount | None, currency: str) -> MoneyAmount | None:
    if money is None:
        return None
    code = money.currency_code.strip().upper() or currency
    return replace(money, currency_code=code)


def _normalize_bands(bands: ApprovalBands, currency: str) -> ApprovalBands:
    return ApprovalBands(
        line_of_business=bands.line_of_business.strip(),
        band_1_limit=_normalize_money(bands.band_1_limit, currency),
        band_2_limit=_normalize_money(bands.band_2_limit, currency),
        band_3_limit=_normalize_money(bands.band_3_limit, currency),
    )


def normalize_profile(profile: CompanyProfile) -> CompanyProfile:
    """Every field in its stored form: trimmed, codes in upper case, the phone in
    E.164 form, the email in lower case, an empty locale ``en``, an empty money
    currency the default currency, fiscal month 0 → 1."""
    currency = profile.default_currency.strip().upper()
    contact = profile.contact
    settings = profile.settings
    return replace(
        profile,
        display_name=_clean(profile.display_name),
        legal_name=_clean(profile.legal_name),
        registration_number=_clean(profile.registration_number),
        tax_id=_clean(profile.tax_id),
        licence_number=_clean(profile.licence_number),
        country=profile.country.strip().upper(),
        default_currency=currency,
        time_zone=profile.time_zone.strip(),
        locale=normalize_locale(profile.locale),
        contact=Contact(
            email=_clean(contact.email).lower(),
            phone=normalize_phone(contact.phone),
            address_line_1=_clean(contact.address_line_1),
            address_line_2=_clean(contact.address_line_2),
            city=_clean(contact.city),
            postal_code=_clean(contact.postal_code).upper(),
            website=contact.website.strip(),
        ),
        settings=CompanySettings(
            fiscal_year_start_month=settings.fiscal_year_start_month or 1,
            default_claim_approval_bands=_normalize_bands(
                settings.default_claim_approval_bands, currency
            )
            if settings.default_claim_approval_bands is not None
            else None,
            claim_approval_bands=tuple(
                _normalize_bands(b, currency) for b in settings.claim_approval_bands
            ),
            max_backdate_days=settings.max_backdate_days,
            renewal_offer_days=settings.renewal_offer_days,
        ),
        feature_flags=dict(profile.feature_flags),
    )


# ------------------------------------------------------------------ rules


def _text(value: str, path: str, maximum: int, *, required: bool = False) -> list[FieldViolation]:
    if not value:
        return [FieldViolation(path, "required")] if required else []
    if len(value) > maximum:
        return [FieldViolation(path, f"must be at most {maximum} characters long")]
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in value):
        return [FieldViolation(path, "must not contain control characters or line breaks")]
    return []


def _identifier(value: str, path: str) -> list[FieldViolation]:
    if not value:
        return []
    if len(value) > MAX_IDENTIFIER or not _IDENTIFIER.fullmatch(value):
        return [
            FieldViolation(
                path,
                f"at most {MAX_IDENTIFIER} characters: letters, digits, spaces, '.', '/' and '-'",
            )
        ]
    return []


def _check_contact(contact: Contact, prefix: str) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    if contact.email and (len(contact.email) > 254 or not _EMAIL.fullmatch(contact.email)):
        out.append(FieldViolation(f"{prefix}.email", "must be an email address (name@example.com)"))
    if contact.phone and not _E164.fullmatch(contact.phone):
        out.append(
            FieldViolation(
                f"{prefix}.phone",
                "must be in E.164 form: '+', the country code and the number (+4930123456)",
            )
        )
    out += _text(contact.address_line_1, f"{prefix}.address_line_1", MAX_ADDRESS_LINE)
    out += _text(contact.address_line_2, f"{prefix}.address_line_2", MAX_ADDRESS_LINE)
    out += _text(contact.city, f"{prefix}.city", MAX_CITY)
    if contact.postal_code and (
        len(contact.postal_code) > MAX_POSTAL_CODE
        or not _POSTAL_CODE.fullmatch(contact.postal_code)
    ):
        out.append(
            FieldViolation(
                f"{prefix}.postal_code",
                f"at most {MAX_POSTAL_CODE} characters: letters, digits, spaces and '-'",
            )
        )
    if contact.website and not _is_web_url(contact.website):
        out.append(
            FieldViolation(f"{prefix}.website", "must be an http:// or https:// URL with a host")
        )
    return out


def _is_web_url(value: str) -> bool:
    if len(value) > MAX_WEBSITE or any(ch.isspace() for ch in value):
        return False
    try:
        parts = urlsplit(value)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or parts.username or parts.password:
        return False
    return bool(_HOST.fullmatch(host))


def _check_money(money: MoneyAmount, path: str, currency: str) -> list[FieldViolation]:
    if not money.well_formed:
        return [
            FieldViolation(
                path, "nanos must be within ±999,999,999 and have the same sign as units"
            )
        ]
    if money.currency_code != currency:
        return [
            FieldViolation(
                f"{path}.currency_code",
                f"must be the company's default currency ({currency or 'unset'})",
            )
        ]
    if money.amount <= 0:
        return [FieldViolation(path, "must be positive")]
    places = reference_data.minor_units(currency)
    if money.amount != money.amount.quantize(Decimal(1).scaleb(-places)):
        return [FieldViolation(path, f"{currency} amounts have at most {places} decimals")]
    return []


def _check_bands(bands: ApprovalBands, path: str, currency: str) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    limits: list[tuple[str, MoneyAmount]] = []
    for name in BAND_FIELDS:
        money: MoneyAmount | None = getattr(bands, name)
        if money is None:
            if name != "band_3_limit":
                out.append(FieldViolation(f"{path}.{name}", "required"))
            continue
        problems = _check_money(money, f"{path}.{name}", currency)
        out += problems
        if not problems:
            limits.append((name, money))
    for (_, lower), (name, higher) in pairwise(limits):
        if higher.amount <= lower.amount:
            out.append(
                FieldViolation(f"{path}.{name}", "must be greater than the limit of the band below")
            )
    return out


def _check_setting_numbers(settings: CompanySettings, prefix: str) -> list[FieldViolation]:
    """The settings that do not depend on the currency."""
    out: list[FieldViolation] = []
    if not 1 <= settings.fiscal_year_start_month <= 12:
        out.append(FieldViolation(f"{prefix}.fiscal_year_start_month", "must be 1 (January) to 12"))
    backdate = settings.max_backdate_days
    if backdate is not None and not 0 <= backdate <= MAX_BACKDATE_DAYS_LIMIT:
        out.append(
            FieldViolation(
                f"{prefix}.max_backdate_days",
                f"must be 0 to {MAX_BACKDATE_DAYS_LIMIT} days (unset means "
                f"{DEFAULT_MAX_BACKDATE_DAYS})",
            )
        )
    renewal = settings.renewal_offer_days
    if renewal is not None and not 1 <= renewal <= MAX_RENEWAL_OFFER_DAYS:
        out.append(
            FieldViolation(
                f"{prefix}.renewal_offer_days",
                f"must be 1 to {MAX_RENEWAL_OFFER_DAYS} days (unset means "
                f"{DEFAULT_RENEWAL_OFFER_DAYS})",
            )
        )
    return out


def _check_settings(settings: CompanySettings, prefix: str, currency: str) -> list[FieldViolation]:
    out = _check_setting_numbers(settings, prefix)
    default = settings.default_claim_approval_bands
    if default is not None:
        path = f"{prefix}.default_claim_approval_bands"
        if default.line_of_business:
            out.append(
                FieldViolation(f"{path}.line_of_business", "must be empty for the default bands")
            )
        out += _check_bands(default, path, currency)
    if len(settings.claim_approval_bands) > MAX_LINES_OF_BUSINESS:
        out.append(
            FieldViolation(
                f"{prefix}.claim_approval_bands",
                f"at most {MAX_LINES_OF_BUSINESS} lines of business",
            )
        )
        return out
    seen: set[str] = set()
    for index, bands in enumerate(settings.claim_approval_bands):
        path = f"{prefix}.claim_approval_bands[{index}]"
        line = bands.line_of_business
        if not LINE_OF_BUSINESS_NAME.fullmatch(line):
            out.append(
                FieldViolation(
                    f"{path}.line_of_business",
                    "required: lower snake case, 2 to 40 characters (motor, health, property)",
                )
            )
        elif line in seen:
            out.append(
                FieldViolation(f"{path}.line_of_business", f"'{line}' is listed more than once")
            )
        seen.add(line)
        out += _check_bands(bands, path, currency)
    return out


def _check_flags(
    flags: Mapping[str, bool], path: str, tolerated: Collection[str]
) -> list[FieldViolation]:
    if len(flags) > MAX_FEATURE_FLAGS:
        return [FieldViolation(path, f"at most {MAX_FEATURE_FLAGS} flags")]
    out: list[FieldViolation] = []
    for name in sorted(flags):
        where = f'{path}["{name[:70]}"]'
        if not FEATURE_FLAG_NAME.fullmatch(name):
            out.append(
                FieldViolation(
                    where,
                    "flag names are lower snake case, at most 63 characters ([a-z][a-z0-9_]*)",
                )
            )
        elif name not in FEATURE_FLAGS and name not in tolerated:
            out.append(
                FieldViolation(where, f"unknown feature flag; known: {', '.join(FEATURE_FLAGS)}")
            )
    return out


def check_profile(
    profile: CompanyProfile, *, prefix: str = "company", tolerated_flags: Collection[str] = ()
) -> list[FieldViolation]:
    """Violations of a normalised profile (empty list when valid).

    A feature flag must be one of :data:`FEATURE_FLAGS`, except those named in
    ``tolerated_flags`` (an update keeps the flags a company already has)."""
    out: list[FieldViolation] = []
    out += _text(profile.display_name, f"{prefix}.display_name", MAX_DISPLAY_NAME, required=True)
    out += _text(profile.legal_name, f"{prefix}.legal_name", MAX_LEGAL_NAME)
    out += _identifier(profile.registration_number, f"{prefix}.registration_number")
    out += _identifier(profile.tax_id, f"{prefix}.tax_id")
    out += _identifier(profile.licence_number, f"{prefix}.licence_number")
    expiry = profile.licence_expiry_date
    if expiry is not None and (expiry.as_date() is None or expiry.year < 1900):
        out.append(
            FieldViolation(
                f"{prefix}.licence_expiry_date",
                "must be a full calendar date (year from 1900, month and day)",
            )
        )
    if not profile.country:
        out.append(FieldViolation(f"{prefix}.country", "required"))
    elif not reference_data.is_country(profile.country):
        out.append(
            FieldViolation(
                f"{prefix}.country", "must be an ISO 3166-1 alpha-2 country code such as DE or KE"
            )
        )
    currency_ok = reference_data.is_currency(profile.default_currency)
    if not profile.default_currency:
        out.append(FieldViolation(f"{prefix}.default_currency", "required"))
    elif not currency_ok:
        out.append(
            FieldViolation(
                f"{prefix}.default_currency",
                "must be the ISO 4217 code of a circulating currency such as EUR or KES",
            )
        )
    if not profile.time_zone:
        out.append(FieldViolation(f"{prefix}.time_zone", "required"))
    elif not reference_data.is_time_zone(profile.time_zone):
        out.append(
            FieldViolation(
                f"{prefix}.time_zone",
                "must be an IANA time zone such as Europe/Berlin, Africa/Nairobi or UTC",
            )
        )
    if not is_locale_tag(profile.locale):
        out.append(
            FieldViolation(
                f"{prefix}.locale", "must be a BCP 47 language tag such as en, de-DE or pt-BR"
            )
        )
    out += _check_contact(profile.contact, f"{prefix}.contact")
    # Bands are judged against the default currency only once it is valid: one
    # wrong currency code is one violation, not one per band.
    if currency_ok:
        out += _check_settings(profile.settings, f"{prefix}.settings", profile.default_currency)
    else:
        out += _check_setting_numbers(profile.settings, f"{prefix}.settings")
    out += _check_flags(profile.feature_flags, f"{prefix}.feature_flags", tolerated_flags)
    return out


# ------------------------------------------------------------------ updates


def parse_update_mask(paths: Iterable[str], *, prefix: str = "company") -> list[str]:
    """The mask's paths, checked: top-level updatable fields, ``contact.<field>``,
    ``settings.<field>``, or ``*`` for every updatable field. Anything else is
    INVALID_ARGUMENT on ``update_mask``."""
    requested = [p.strip() for p in paths]
    if not requested:
        raise InvalidArgument(
            "update_mask is required", field_violations=[FieldViolation("update_mask", "required")]
        )
    if "*" in requested:
        if len(requested) > 1:
            raise InvalidArgument(
                "update_mask '*' cannot be combined with other paths",
                field_violations=[FieldViolation("update_mask", "'*' must be the only path")],
            )
        return sorted(UPDATABLE_FIELDS)
    violations: list[FieldViolation] = []
    for path in requested:
        head, _, tail = path.partition(".")
        if head in OUTPUT_ONLY_FIELDS:
            violations.append(FieldViolation("update_mask", f"'{path}' is output only"))
        elif head not in UPDATABLE_FIELDS or (
            tail and (head not in _NESTED or tail not in _NESTED[head])
        ):
            violations.append(
                FieldViolation(
                    "update_mask",
                    f"'{path[:100]}' cannot be updated; updatable: "
                    + ", ".join(sorted(UPDATABLE_FIELDS))
                    + ", contact.<field>, settings.<field>, *",
                )
            )
    if violations:
        raise InvalidArgument(
            f"update_mask names fields of {prefix} that cannot be updated",
            field_violations=violations,
        )
    return list(dict.fromkeys(requested))


def merge_update(
    current: CompanyProfile, patch: CompanyProfile, mask: Collection[str]
) -> CompanyProfile:
    """``current`` with the fields named in ``mask`` taken from ``patch``
    (normalise and check the result as a whole)."""
    values: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for path in mask:
        head, _, tail = path.partition(".")
        if tail:
            nested.setdefault(head, {})[tail] = getattr(getattr(patch, head), tail)
        else:
            values[head] = getattr(patch, head)
    for head, parts in nested.items():
        if head not in values:
            values[head] = replace(getattr(current, head), **parts)
    return replace(current, **values)


def changed_fields(before: CompanyProfile, after: CompanyProfile) -> list[str]:
    """The paths whose values differ (``contact.email``, not just ``contact``), for
    the audit log."""
    changed: list[str] = []
    for name in sorted(UPDATABLE_FIELDS):
        old, new = getattr(before, name), getattr(after, name)
        if old == new:
            continue
        if name in _NESTED:
            changed += [
                f"{name}.{sub}"
                for sub in sorted(_NESTED[name])
                if getattr(old, sub) != getattr(new, sub)
            ]
        else:
            changed.append(name)
    return changed
