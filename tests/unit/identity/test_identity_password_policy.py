"""The password policy: each rule, and descriptions that never echo the password."""

from __future__ import annotations

import pytest

from cardinsa_foundation.errors import FieldViolation
from cardinsa_identity.domain.password_policy import (
    check_password,
    common_passwords,
    is_common_password,
)

EMAIL = "jane.doe@example.com"
GOOD = "violet kettle drums at noon"


def descriptions(violations: list[FieldViolation]) -> list[str]:
    return [v.description for v in violations]


def test_a_good_password_passes() -> None:
    assert check_password(GOOD, email=EMAIL) == []


def test_violations_use_the_given_field_name() -> None:
    violations = check_password("short", email=EMAIL, field="new_password")
    assert violations and {v.field for v in violations} == {"new_password"}
    assert {v.field for v in check_password("short", email=EMAIL)} == {"password"}


@pytest.mark.parametrize(
    ("password", "expected"),
    [
        ("x7#kq9!mz2", "must be at least 12 characters long"),  # 10
        ("x7#kq9!mz2p", "must be at least 12 characters long"),  # 11
    ],
)
def test_minimum_length(password: str, expected: str) -> None:
    assert descriptions(check_password(password, email=EMAIL)) == [expected]


def test_exactly_the_limits_pass() -> None:
    assert check_password("x7#kq9!mz2pw", email=EMAIL) == []  # 12
    assert check_password("ab3$" * 32, email=EMAIL) == []  # 128


def test_maximum_length_in_characters() -> None:
    assert descriptions(check_password("ab3$" * 32 + "z", email=EMAIL)) == [
        "must be at most 128 characters long"
    ]


def test_length_counts_characters_not_bytes() -> None:
    # 12 characters, 24 bytes: long enough.
    assert check_password("ĀčēĪōŨŷžǅǈǋǲ", email=EMAIL) == []
    # 11 multi-byte characters (33 bytes): too short although over 12 bytes.
    assert descriptions(check_password("漢字仮名交じり文です", email=EMAIL)) == [
        "must be at least 12 characters long"
    ]


def test_configurable_limits() -> None:
    assert check_password("x7#kq9!mz2", email=EMAIL, min_length=10) == []
    assert descriptions(check_password(GOOD, email=EMAIL, max_length=20)) == [
        "must be at most 20 characters long"
    ]
    with pytest.raises(ValueError):
        check_password(GOOD, email=EMAIL, min_length=20, max_length=10)


def test_byte_limit_bounds_hashing_cost() -> None:
    # 300 characters (within a raised character limit) but 1200 bytes.
    password = "😀" * 300
    violations = check_password(password, email=EMAIL, max_length=2000)
    assert len(violations) == 1
    assert "1024 bytes" in violations[0].description


@pytest.mark.parametrize(
    "password",
    [
        "password1234",
        "PASSWORD1234",
        "PassWord1234",
        "qwertyuiop123",
        "Football2024",
        "iloveyou1234",
    ],
)
def test_common_passwords_are_refused_in_any_case(password: str) -> None:
    assert descriptions(check_password(password, email=EMAIL)) == [
        "is too common: it appears in a list of frequently used passwords"
    ]


def test_bundled_list_is_large_and_loaded_once() -> None:
    first = common_passwords()
    assert len(first) >= 10_000
    assert common_passwords() is first
    assert all(p == p.casefold() for p in first)
    assert "password" in first and "123456" in first
    assert not any(p.startswith("#") for p in first)  # comments are not entries
    assert is_common_password("Welcome@123")
    assert not is_common_password(GOOD)


def test_email_in_password_is_refused_case_insensitively() -> None:
    assert descriptions(check_password("xx JANE.DOE@Example.com xx", email=EMAIL)) == [
        "must not contain the account's email address"
    ]


def test_local_part_in_password_is_refused() -> None:
    assert descriptions(check_password("my name is Jane.Doe ok", email=EMAIL)) == [
        "must not contain the part of the email address before '@'"
    ]


def test_short_local_part_is_not_checked() -> None:
    assert check_password("bolt jo river stone", email="jo@example.com") == []
    assert descriptions(check_password("bolt joe river stone", email="joe@example.com")) == [
        "must not contain the part of the email address before '@'"
    ]


def test_no_email_no_email_rule() -> None:
    assert check_password(GOOD, email=None) == []
    assert check_password(GOOD, email="  ") == []


def test_one_repeated_character_is_refused() -> None:
    assert descriptions(check_password("é" * 14, email=EMAIL)) == [
        "must not consist of one repeated character"
    ]
    assert check_password("ab" * 7, email=EMAIL) == []


def test_several_rules_are_reported_together() -> None:
    got = descriptions(check_password("jane.doe", email=EMAIL))
    assert "must be at least 12 characters long" in got
    assert "must not contain the part of the email address before '@'" in got


def test_empty_password_is_too_short() -> None:
    assert descriptions(check_password("", email=EMAIL)) == ["must be at least 12 characters long"]


@pytest.mark.parametrize(
    "password",
    [
        "sekret",
        "password1234",
        "a" * 20,
        "xx jane.doe@example.com xx",
        "jane.doe is here",
        "Ab1!" * 40,
        "😀" * 300,
    ],
)
def test_descriptions_never_echo_the_password(password: str) -> None:
    violations = check_password(password, email=EMAIL)
    assert violations
    for v in violations:
        assert password not in v.description
        assert password.casefold() not in v.description.casefold()
