"""Policyholders: people or organisations, their dependents, national ids.

A policyholder is the party a policy is sold to. A person has given and family
names and a date of birth; an organisation has a legal name and a registration
number. Dependents (spouse, child, parent, ...) belong to one policyholder and
can be insured by that holder's policies.

National ids are stored normalised (upper case, no spaces or dashes) and shown
in full only to callers holding ``policyholders.read_national_id``; everyone
else sees :func:`mask_national_id` (the last four characters). A masked value
sent back unchanged on an update means "unchanged", so a read-modify-write by
a caller who sees masks never overwrites the real id with its mask.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import date
from enum import StrEnum
from typing import Final

from cardinsa_foundation.errors import FieldViolation

__all__ = [
    "MASK_CHARACTER",
    "MAX_DEPENDENTS",
    "MAX_NAME_LENGTH",
    "PARTY_FIELDS",
    "READ_NATIONAL_ID",
    "Address",
    "DependentSpec",
    "Gender",
    "PartyKind",
    "PolicyholderSpec",
    "Relation",
    "check_dependent",
    "check_email",
    "check_policyholder",
    "display_name",
    "mask_national_id",
    "normalize_email",
    "normalize_national_id",
    "normalize_policyholder",
    "normalize_text",
    "shown_national_id",
]

READ_NATIONAL_ID: Final = "policyholders.read_national_id"
MASK_CHARACTER: Final = "•"
MAX_NAME_LENGTH: Final = 200
MAX_DEPENDENTS: Final = 50
_MAX_TEXT: Final = 500
_VISIBLE_TAIL: Final = 4
_NATIONAL_ID: Final = re.compile(r"^[A-Z0-9]{4,32}$")
_EMAIL: Final = re.compile(
    r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"
)
_PHONE: Final = re.compile(r"^\+[1-9][0-9]{1,14}$")
_COUNTRY: Final = re.compile(r"^[A-Z]{2}$")


class PartyKind(StrEnum):
    """Values match `Policyholder.Kind` names."""

    PERSON = "PERSON"
    ORGANIZATION = "ORGANIZATION"


class Gender(StrEnum):
    UNSPECIFIED = "GENDER_UNSPECIFIED"
    FEMALE = "FEMALE"
    MALE = "MALE"
    OTHER = "OTHER"


class Relation(StrEnum):
    """A dependent's relation to the policyholder (`Dependent.Relation` names)."""

    SPOUSE = "SPOUSE"
    CHILD = "CHILD"
    PARENT = "PARENT"
    SIBLING = "SIBLING"
    OTHER = "OTHER"


@dataclass(frozen=True, slots=True)
class Address:
    line1: str = ""
    line2: str = ""
    city: str = ""
    region: str = ""
    postal_code: str = ""
    country_code: str = ""


@dataclass(frozen=True, slots=True)
class DependentSpec:
    """A dependent as a request describes it (``id`` empty for a new one)."""

    relation: Relation | None
    given_name: str
    family_name: str
    date_of_birth: date | None = None
    gender: Gender = Gender.UNSPECIFIED
    national_id: str = ""
    id: str = ""


@dataclass(frozen=True, slots=True)
class PolicyholderSpec:
    """The writable fields of a policyholder."""

    kind: PartyKind | None
    given_name: str = ""
    family_name: str = ""
    date_of_birth: date | None = None
    gender: Gender = Gender.UNSPECIFIED
    legal_name: str = ""
    registration_number: str = ""
    national_id: str = ""
    email: str = ""
    phone: str = ""
    address: Address = field(default_factory=Address)
    dependents: tuple[DependentSpec, ...] = ()


#: Fields an update mask may name (``address`` and ``dependents`` as a whole).
PARTY_FIELDS: Final = frozenset(
    {
        "given_name",
        "family_name",
        "date_of_birth",
        "gender",
        "legal_name",
        "registration_number",
        "national_id",
        "email",
        "phone",
        "address",
        "dependents",
    }
)


def normalize_text(value: str) -> str:
    """NFC, surrounding whitespace trimmed, inner runs of whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFC", value or "").split())


def normalize_national_id(value: str) -> str:
    """Upper case without spaces, dashes, dots or slashes."""
    return re.sub(r"[\s\-./]", "", unicodedata.normalize("NFKC", value or "")).upper()


def normalize_email(value: str) -> str:
    return (value or "").strip().lower()


def check_email(value: str, path: str) -> list[FieldViolation]:
    if value and (len(value) > 254 or not _EMAIL.match(value)):
        return [FieldViolation(path, "is not a valid email address")]
    return []


def mask_national_id(value: str) -> str:
    """All but the last four characters replaced (all of a short id)."""
    if not value:
        return ""
    tail = value[-_VISIBLE_TAIL:] if len(value) > _VISIBLE_TAIL * 2 else ""
    return MASK_CHARACTER * (len(value) - len(tail)) + tail


def shown_national_id(value: str, permissions: Collection[str]) -> tuple[str, bool]:
    """What a caller sees of a national id, and whether it is masked."""
    if not value or READ_NATIONAL_ID in permissions:
        return value, False
    return mask_national_id(value), True


def display_name(spec: PolicyholderSpec) -> str:
    if spec.kind is PartyKind.ORGANIZATION:
        return spec.legal_name
    return " ".join(part for part in (spec.given_name, spec.family_name) if part)


def _normalize_dependent(dep: DependentSpec) -> DependentSpec:
    return replace(
        dep,
        given_name=normalize_text(dep.given_name),
        family_name=normalize_text(dep.family_name),
        national_id=normalize_national_id(dep.national_id),
        id=dep.id.strip(),
    )


def normalize_policyholder(spec: PolicyholderSpec) -> PolicyholderSpec:
    address = spec.address
    return replace(
        spec,
        given_name=normalize_text(spec.given_name),
        family_name=normalize_text(spec.family_name),
        legal_name=normalize_text(spec.legal_name),
        registration_number=normalize_text(spec.registration_number),
        national_id=normalize_national_id(spec.national_id),
        email=normalize_email(spec.email),
        phone=re.sub(r"[\s\-().]", "", spec.phone or ""),
        address=Address(
            line1=normalize_text(address.line1),
            line2=normalize_text(address.line2),
            city=normalize_text(address.city),
            region=normalize_text(address.region),
            postal_code=normalize_text(address.postal_code),
            country_code=normalize_text(address.country_code).upper(),
        ),
        dependents=tuple(_normalize_dependent(d) for d in spec.dependents),
    )


def _length(value: str, path: str, limit: int = MAX_NAME_LENGTH) -> list[FieldViolation]:
    return [FieldViolation(path, f"at most {limit} characters")] if len(value) > limit else []


def _check_birth(value: date | None, today: date, path: str) -> list[FieldViolation]:
    if value is not None and (value > today or value.year < 1900):
        return [FieldViolation(path, "must be a past date after 1900")]
    return []


def _check_national_id(value: str, path: str) -> list[FieldViolation]:
    if value and not _NATIONAL_ID.match(value):
        return [FieldViolation(path, "4 to 32 letters and digits (spaces and dashes are ignored)")]
    return []


def check_dependent(dep: DependentSpec, today: date, path: str) -> list[FieldViolation]:
    """Violations of one (normalised) dependent."""
    violations: list[FieldViolation] = []
    if dep.relation is None:
        violations.append(FieldViolation(f"{path}.relation", "required"))
    for name in ("given_name", "family_name"):
        value = getattr(dep, name)
        if not value:
            violations.append(FieldViolation(f"{path}.{name}", "required"))
        violations += _length(value, f"{path}.{name}")
    violations += _check_birth(dep.date_of_birth, today, f"{path}.date_of_birth")
    violations += _check_national_id(dep.national_id, f"{path}.national_id")
    return violations


def check_policyholder(
    spec: PolicyholderSpec,
    today: date,
    *,
    prefix: str = "policyholder",
    fields: Collection[str] | None = None,
) -> list[FieldViolation]:
    """Violations of a (normalised) policyholder; ``fields`` limits the check to
    the fields an update names (the kind-specific required names are checked
    whenever one of them is named)."""
    names = PARTY_FIELDS if fields is None else frozenset(fields)
    violations: list[FieldViolation] = []

    def path(name: str) -> str:
        return f"{prefix}.{name}"

    if spec.kind is None:
        violations.append(FieldViolation(path("kind"), "PERSON or ORGANIZATION is required"))
    elif spec.kind is PartyKind.PERSON:
        for name in ("given_name", "family_name"):
            if name in names and not getattr(spec, name):
                violations.append(FieldViolation(path(name), "required for a person"))
        if fields is None and (spec.legal_name or spec.registration_number):
            violations.append(
                FieldViolation(path("legal_name"), "only organisations have a legal name")
            )
    else:
        if "legal_name" in names and not spec.legal_name:
            violations.append(FieldViolation(path("legal_name"), "required for an organisation"))
        if fields is None and (spec.given_name or spec.family_name or spec.date_of_birth):
            violations.append(
                FieldViolation(path("given_name"), "organisations have a legal name instead")
            )
    for name in ("given_name", "family_name", "legal_name", "registration_number"):
        if name in names:
            violations += _length(getattr(spec, name), path(name))
    if "date_of_birth" in names:
        violations += _check_birth(spec.date_of_birth, today, path("date_of_birth"))
    if "national_id" in names:
        violations += _check_national_id(spec.national_id, path("national_id"))
    if "email" in names:
        violations += check_email(spec.email, path("email"))
    if "phone" in names and spec.phone and not _PHONE.match(spec.phone):
        violations.append(FieldViolation(path("phone"), "E.164 form, for example +4915112345678"))
    if "address" in names:
        for name in ("line1", "line2", "city", "region", "postal_code"):
            violations += _length(getattr(spec.address, name), path(f"address.{name}"), _MAX_TEXT)
        country = spec.address.country_code
        if country and not _COUNTRY.match(country):
            violations.append(
                FieldViolation(path("address.country_code"), "ISO 3166-1 alpha-2, e.g. DE")
            )
    if "dependents" in names and len(spec.dependents) > MAX_DEPENDENTS:
        violations.append(FieldViolation(path("dependents"), f"at most {MAX_DEPENDENTS}"))
    elif "dependents" in names:
        seen: set[str] = set()
        for index, dep in enumerate(spec.dependents):
            dep_path = path(f"dependents[{index}]")
            violations += check_dependent(dep, today, dep_path)
            if dep.id:
                if dep.id in seen:
                    violations.append(FieldViolation(f"{dep_path}.id", "listed more than once"))
                seen.add(dep.id)
    return violations
