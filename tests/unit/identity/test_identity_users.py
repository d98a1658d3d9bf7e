"""User lifecycle (every state x action pair) and profile field rules."""

from __future__ import annotations

import itertools

import pytest

from cardinsa_foundation.errors import FailedPrecondition
from cardinsa_identity.domain.users import (
    MAX_DISPLAY_NAME_LENGTH,
    MAX_NAME_LENGTH,
    UserAction,
    UserProfile,
    UserState,
    allowed_actions,
    check_email,
    check_locale,
    check_phone,
    check_profile,
    default_display_name,
    normalize_email,
    normalize_locale,
    normalize_phone,
    normalize_profile,
    revokes_sessions,
    transition,
)

A, L, D = UserState.ACTIVE, UserState.LOCKED, UserState.DEACTIVATED

# The whole lifecycle, written out independently of the module's table.
EXPECTED: dict[tuple[UserState, UserAction], UserState] = {
    (A, UserAction.LOCK): L,
    (L, UserAction.UNLOCK): A,
    (A, UserAction.DEACTIVATE): D,
    (L, UserAction.DEACTIVATE): D,
    (D, UserAction.REACTIVATE): A,
}

ALL_PAIRS = list(itertools.product(UserState, UserAction))


@pytest.mark.parametrize(("state", "action"), ALL_PAIRS)
def test_every_state_and_action(state: UserState, action: UserAction) -> None:
    expected = EXPECTED.get((state, action))
    if expected is not None:
        assert transition(state, action) is expected
        assert action in allowed_actions(state)
        return
    with pytest.raises(FailedPrecondition) as caught:
        transition(state, action)
    error = caught.value
    assert error.reason == "INVALID_STATE_TRANSITION"
    assert error.metadata == {"current_state": state.value, "transition": action.value}
    assert state.value in error.message and action.value in error.message
    assert action not in allowed_actions(state)


def test_there_are_sixteen_pairs_five_allowed() -> None:
    assert len(ALL_PAIRS) == 16
    assert sum(len(allowed_actions(s)) for s in UserState) == 5
    # An invited user takes no lifecycle action: AcceptInvitation activates it.
    assert allowed_actions(UserState.INVITED) == frozenset()


def test_transition_accepts_plain_strings() -> None:
    assert transition("ACTIVE", "lock") is L  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("action", "revokes"),
    [
        (UserAction.LOCK, True),
        (UserAction.DEACTIVATE, True),
        (UserAction.UNLOCK, False),
        (UserAction.REACTIVATE, False),
    ],
)
def test_lock_and_deactivate_revoke_sessions(action: UserAction, revokes: bool) -> None:
    assert revokes_sessions(action) is revokes


def test_states_match_the_proto_enum_names() -> None:
    assert [s.value for s in UserState] == ["ACTIVE", "LOCKED", "DEACTIVATED", "INVITED"]


# ----------------------------------------------------------------------- email


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("  Jane.Doe@Example.COM ", "jane.doe@example.com"),
        ("ADMIN@cardinsa.io", "admin@cardinsa.io"),
        ("user@Bücher.example", "user@xn--bcher-kva.example"),
        ("no-at-sign", "no-at-sign"),
        ("", ""),
    ],
)
def test_normalize_email(raw: str, normalized: str) -> None:
    assert normalize_email(raw) == normalized


def test_normalized_emails_compare_case_insensitively() -> None:
    assert normalize_email("JANE@EXAMPLE.COM") == normalize_email("jane@example.com")


@pytest.mark.parametrize(
    "email",
    [
        "jane@example.com",
        "jane.doe+claims@mail.example.co.uk",
        "o'brien@example.ie",
        "a@b.io",
        "user@xn--bcher-kva.example",
        "x_y-z@sub-domain.example.org",
    ],
)
def test_valid_emails(email: str) -> None:
    assert check_email(email) == []


@pytest.mark.parametrize(
    ("email", "fragment"),
    [
        ("", "is required"),
        ("jane", "must be an email address"),
        ("@example.com", "must be an email address"),
        ("jane@", "must be an email address"),
        ("jane..doe@example.com", "the part before '@'"),
        (".jane@example.com", "the part before '@'"),
        ("jane.@example.com", "the part before '@'"),
        ('"jane doe"@example.com', "the part before '@'"),
        ("jäne@example.com", "the part before '@'"),
        ("jane@localhost", "the part after '@'"),
        ("jane@-example.com", "the part after '@'"),
        ("jane@example-.com", "the part after '@'"),
        ("jane@example..com", "the part after '@'"),
        ("jane@example.c", "the part after '@'"),
        ("jane@example.123", "the part after '@'"),
        ("jane@exa_mple.com", "the part after '@'"),
        ("jane@example.com\n", "the part after '@'"),
        ("a" * 65 + "@example.com", "at most 64 characters"),
        ("a@" + "b" * 250 + ".com", "at most 254 characters"),
        ("jane@" + "b" * 64 + ".com", "the part after '@'"),
    ],
)
def test_invalid_emails(email: str, fragment: str) -> None:
    violations = check_email(email)
    assert len(violations) == 1
    assert violations[0].field == "user.email"
    assert fragment in violations[0].description


def test_email_field_path_is_configurable() -> None:
    assert check_email("bad", field="email")[0].field == "email"


# ----------------------------------------------------------------------- phone


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("+49 151 1234-5678", "+4915112345678"),
        ("(+1) 212.555.0100", "+12125550100"),
        ("0044 20 7946 0958", "+442079460958"),
        ("", ""),
    ],
)
def test_normalize_phone(raw: str, normalized: str) -> None:
    assert normalize_phone(raw) == normalized


@pytest.mark.parametrize("phone", ["", "+4915112345678", "+12125550100", "+999999999999999"])
def test_valid_phones(phone: str) -> None:
    assert check_phone(phone) == []


@pytest.mark.parametrize(
    "phone",
    [
        "4915112345678",
        "+0123456789",
        "+1",
        "+1234567890123456",
        "+49 151",
        "+49-151",
        "+4915112345678\n",
        "+49151abc",
        "+٤٩١٥١١٢٣٤٥",
    ],
)
def test_invalid_phones(phone: str) -> None:
    violations = check_phone(phone)
    assert [v.field for v in violations] == ["user.phone"]
    assert "E.164" in violations[0].description


# ---------------------------------------------------------------------- locale


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("en-us", "en-US"),
        ("EN_gb", "en-GB"),
        ("zh-hant-tw", "zh-Hant-TW"),
        ("es-419", "es-419"),
        ("de", "de"),
        (" fr-CA ", "fr-CA"),
    ],
)
def test_normalize_locale(raw: str, normalized: str) -> None:
    assert normalize_locale(raw) == normalized


@pytest.mark.parametrize(
    "locale", ["", "en", "en-US", "pt-BR", "zh-Hant-TW", "es-419", "sr-Latn", "de-CH-1996", "fil"]
)
def test_valid_locales(locale: str) -> None:
    assert check_locale(locale) == []


@pytest.mark.parametrize(
    "locale",
    ["e", "english", "en_US", "en-", "en-USA-x", "x-private", "en-US-u-ca-buddhist", "12", "en US"],
)
def test_invalid_locales(locale: str) -> None:
    violations = check_locale(locale)
    assert [v.field for v in violations] == ["user.locale"]
    assert "BCP 47" in violations[0].description


# --------------------------------------------------------------------- profile


def test_display_name_defaults() -> None:
    assert default_display_name(" Jane ", "Doe", "jane@example.com") == "Jane Doe"
    assert default_display_name("Jane", "", "jane@example.com") == "Jane"
    assert default_display_name("", "Doe", "jane@example.com") == "Doe"
    assert default_display_name("", "", "jane.doe@example.com") == "jane.doe"


def test_normalize_profile() -> None:
    profile = normalize_profile(
        UserProfile(
            email=" Jane@Example.com ",
            given_name="  Jane ",
            family_name="Doe",
            phone="+49 151 12345678",
            locale="en_us",
        )
    )
    assert profile == UserProfile(
        email="jane@example.com",
        given_name="Jane",
        family_name="Doe",
        display_name="Jane Doe",
        phone="+4915112345678",
        locale="en-US",
    )
    kept = normalize_profile(UserProfile(email="j@example.com", display_name=" JD "))
    assert kept.display_name == "JD"
    assert check_profile(profile) == []


def test_check_profile_reports_every_bad_field() -> None:
    profile = UserProfile(
        email="bad",
        given_name="x" * (MAX_NAME_LENGTH + 1),
        family_name="Doe\nEvil: header",
        display_name="y" * (MAX_DISPLAY_NAME_LENGTH + 1),
        phone="12345",
        locale="english",
    )
    fields = [v.field for v in check_profile(profile)]
    assert fields == [
        "user.email",
        "user.given_name",
        "user.family_name",
        "user.display_name",
        "user.phone",
        "user.locale",
    ]


def test_check_profile_limits_to_the_update_mask() -> None:
    profile = UserProfile(email="bad", phone="12345", locale="en-US")
    assert [v.field for v in check_profile(profile, fields=["phone", "locale"])] == ["user.phone"]
    assert check_profile(profile, fields=["locale", "unknown_field"]) == []
    assert [v.field for v in check_profile(profile, prefix="patch", fields=["email"])] == [
        "patch.email"
    ]


def test_names_at_the_length_limit_pass() -> None:
    profile = UserProfile(
        email="a@example.com",
        given_name="x" * MAX_NAME_LENGTH,
        family_name="Ñandú-Øster",
        display_name="z" * MAX_DISPLAY_NAME_LENGTH,
    )
    assert check_profile(profile) == []
