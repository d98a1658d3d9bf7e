"""Policyholder rules: normalisation, validation, national-id masking."""

from __future__ import annotations

from datetime import date

import pytest

from cardinsa_core.domain.policyholders import (
    READ_NATIONAL_ID,
    DependentSpec,
    PartyKind,
    PolicyholderSpec,
    Relation,
    check_policyholder,
    display_name,
    mask_national_id,
    normalize_national_id,
    normalize_policyholder,
    shown_national_id,
)

TODAY = date(2025, 6, 15)
PERSON = PolicyholderSpec(
    kind=PartyKind.PERSON,
    given_name="  Amira ",
    family_name="Haddad",
    date_of_birth=date(1990, 2, 3),
    national_id="784-1990-1234567-1",
    email=" Amira@Example.COM ",
    phone="+971 50 123 4567",
    dependents=(DependentSpec(relation=Relation.CHILD, given_name="Lina", family_name="Haddad"),),
)


def test_normalisation() -> None:
    spec = normalize_policyholder(PERSON)
    assert spec.given_name == "Amira"
    assert spec.national_id == "784199012345671"
    assert spec.email == "amira@example.com"
    assert spec.phone == "+971501234567"
    assert check_policyholder(spec, TODAY) == []
    assert display_name(spec) == "Amira Haddad"


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("784199012345671", "•••••••••••5671"),
        ("AB123456", "••••••••"),  # too short to show a tail safely
        ("", ""),
    ],
)
def test_masking(value: str, masked: str) -> None:
    assert mask_national_id(value) == masked


def test_only_the_permission_shows_the_full_id() -> None:
    assert shown_national_id("784199012345671", {READ_NATIONAL_ID}) == ("784199012345671", False)
    assert shown_national_id("784199012345671", {"policyholders.get"}) == (
        "•••••••••••5671",
        True,
    )
    assert shown_national_id("", set()) == ("", False)


def test_normalize_national_id() -> None:
    assert normalize_national_id(" ab 12-34/5.6 ") == "AB123456"


def test_person_and_organisation_rules() -> None:
    person = normalize_policyholder(
        PolicyholderSpec(kind=PartyKind.PERSON, legal_name="Acme", date_of_birth=date(2030, 1, 1))
    )
    fields = {v.field for v in check_policyholder(person, TODAY)}
    assert {
        "policyholder.given_name",
        "policyholder.family_name",
        "policyholder.legal_name",
        "policyholder.date_of_birth",
    } <= fields
    org = normalize_policyholder(
        PolicyholderSpec(kind=PartyKind.ORGANIZATION, legal_name="Acme LLC", email="x@acme.io")
    )
    assert check_policyholder(org, TODAY) == []
    assert display_name(org) == "Acme LLC"
    assert {v.field for v in check_policyholder(PolicyholderSpec(kind=None), TODAY)} == {
        "policyholder.kind"
    }


def test_field_rules() -> None:
    spec = normalize_policyholder(
        PolicyholderSpec(
            kind=PartyKind.PERSON,
            given_name="A",
            family_name="B",
            national_id="12",
            email="not-an-email",
            phone="0501234",
            dependents=(
                DependentSpec(relation=None, given_name="", family_name="X", id="d1"),
                DependentSpec(relation=Relation.SPOUSE, given_name="Y", family_name="X", id="d1"),
            ),
        )
    )
    fields = {v.field for v in check_policyholder(spec, TODAY)}
    assert fields == {
        "policyholder.national_id",
        "policyholder.email",
        "policyholder.phone",
        "policyholder.dependents[0].relation",
        "policyholder.dependents[0].given_name",
        "policyholder.dependents[1].id",
    }


def test_an_update_checks_only_the_fields_it_names() -> None:
    spec = PolicyholderSpec(kind=PartyKind.PERSON, given_name="", family_name="", email="bad")
    assert {v.field for v in check_policyholder(spec, TODAY, fields={"email"})} == {
        "policyholder.email"
    }
