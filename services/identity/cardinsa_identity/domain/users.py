"""Users: the lifecycle state machine and the rules for profile fields.

The lifecycle is a table, so that the one place to read (and test) what may
happen to an account is `TRANSITIONS`. Profile rules return field violations
(paths like ``user.email``) so a request learns everything wrong with it at once.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final

from cardinsa_foundation.errors import FieldViolation
from cardinsa_foundation.fields import is_locale_tag, normalize_locale, normalize_phone
from cardinsa_foundation.lifecycle import Lifecycle

__all__ = [
    "MAX_DISPLAY_NAME_LENGTH",
    "MAX_EMAIL_LENGTH",
    "MAX_NAME_LENGTH",
    "PROFILE_FIELDS",
    "TRANSITIONS",
    "USER_LIFECYCLE",
    "UserAction",
    "UserProfile",
    "UserState",
    "allowed_actions",
    "check_email",
    "check_locale",
    "check_phone",
    "check_profile",
    "default_display_name",
    "normalize_email",
    "normalize_locale",
    "normalize_phone",
    "normalize_profile",
    "revokes_sessions",
    "transition",
]


# ------------------------------------------------------------------ lifecycle


class UserState(StrEnum):
    """Values match `cardinsa.identity.v1.User.State` names."""

    ACTIVE = "ACTIVE"
    LOCKED = "LOCKED"
    DEACTIVATED = "DEACTIVATED"
    #: Invited, the invitation not yet accepted: no usable password, no lifecycle
    #: action applies (AcceptInvitation makes it ACTIVE; DeleteUser withdraws it).
    INVITED = "INVITED"


class UserAction(StrEnum):
    """The custom methods `:lock`, `:unlock`, `:deactivate`, `:reactivate`."""

    LOCK = "lock"
    UNLOCK = "unlock"
    DEACTIVATE = "deactivate"
    REACTIVATE = "reactivate"


#: (current state, action) → new state; every pair not listed is refused
#: (FAILED_PRECONDITION ``INVALID_STATE_TRANSITION`` naming the state and action).
USER_LIFECYCLE: Final = Lifecycle(
    "user",
    UserState,
    UserAction,
    {
        (UserState.ACTIVE, UserAction.LOCK): UserState.LOCKED,
        (UserState.LOCKED, UserAction.UNLOCK): UserState.ACTIVE,
        (UserState.ACTIVE, UserAction.DEACTIVATE): UserState.DEACTIVATED,
        (UserState.LOCKED, UserAction.DEACTIVATE): UserState.DEACTIVATED,
        (UserState.DEACTIVATED, UserAction.REACTIVATE): UserState.ACTIVE,
    },
)
TRANSITIONS: Final = USER_LIFECYCLE.transitions

# Locking or deactivating must end access at once: the user's refresh tokens stop
# working (access tokens run out within their short lifetime).
_REVOKING: Final = frozenset({UserAction.LOCK, UserAction.DEACTIVATE})


def transition(state: UserState, action: UserAction) -> UserState:
    """The state after `action` (:data:`USER_LIFECYCLE`)."""
    return USER_LIFECYCLE.next_state(state, action)


def allowed_actions(state: UserState) -> frozenset[UserAction]:
    """The actions `state` allows."""
    return USER_LIFECYCLE.allowed_actions(state)


def revokes_sessions(action: UserAction) -> bool:
    """Whether `action` must revoke every session of the user."""
    return action in _REVOKING


# ------------------------------------------------------------------ field rules

MAX_EMAIL_LENGTH: Final = 254  # RFC 5321 path limit minus the angle brackets
_MAX_LOCAL_PART: Final = 64
_MAX_DOMAIN: Final = 253
_MAX_LABEL: Final = 63
MAX_NAME_LENGTH: Final = 100
MAX_DISPLAY_NAME_LENGTH: Final = 200
_MAX_PHONE_INPUT: Final = 32

# Unquoted RFC 5322 local part (dot-atom): quoted local parts and comments are
# legal but only ever used to smuggle odd input, so they are refused.
_LOCAL_ATOM = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
_TLD = re.compile(r"^(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})$")
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")


def normalize_email(raw: str) -> str:
    """The stored and compared form: trimmed, NFC, lower case, the domain in IDNA
    (punycode) form. Never fails; `check_email` says whether the result is valid.

    Lower-casing the local part is what makes emails unique regardless of case;
    no real mail system distinguishes addresses by case.
    """
    email = unicodedata.normalize("NFC", raw.strip()).lower()
    local, at, domain = email.rpartition("@")
    if not at or not domain or domain.isascii():
        return email
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return email
    return f"{local}@{ascii_domain}"


def check_email(email: str, *, field: str = "user.email") -> list[FieldViolation]:
    """Violations of an email in `normalize_email` form (empty list when valid)."""
    if not email:
        return [FieldViolation(field, "is required")]
    if len(email) > MAX_EMAIL_LENGTH:
        return [FieldViolation(field, f"must be at most {MAX_EMAIL_LENGTH} characters long")]
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain:
        return [FieldViolation(field, "must be an email address such as name@example.com")]
    if len(local) > _MAX_LOCAL_PART:
        return [
            FieldViolation(
                field, f"the part before '@' must be at most {_MAX_LOCAL_PART} characters long"
            )
        ]
    if not _LOCAL_ATOM.fullmatch(local):
        return [
            FieldViolation(
                field,
                "the part before '@' may contain only letters a-z, digits, dots (not "
                "first, last or doubled) and !#$%&'*+/=?^_`{|}~-",
            )
        ]
    labels = domain.split(".")
    if (
        len(domain) > _MAX_DOMAIN
        or len(labels) < 2
        or not all(len(label) <= _MAX_LABEL and _LABEL.fullmatch(label) for label in labels)
        or not _TLD.fullmatch(labels[-1])
    ):
        return [
            FieldViolation(field, "the part after '@' must be a domain name such as example.com")
        ]
    return []


def check_phone(phone: str, *, field: str = "user.phone") -> list[FieldViolation]:
    """Violations of a phone in `normalize_phone` form; empty is allowed (optional)."""
    if not phone:
        return []
    if len(phone) > _MAX_PHONE_INPUT or not _E164.fullmatch(phone):
        return [
            FieldViolation(
                field,
                "must be in E.164 form: '+', the country code and the number, at most "
                "15 digits (for example +4915112345678)",
            )
        ]
    return []


def check_locale(locale: str, *, field: str = "user.locale") -> list[FieldViolation]:
    """Violations of a BCP 47 language tag (language, optional script, region and
    variants); empty is allowed (the company's default applies)."""
    if not locale:
        return []
    if not is_locale_tag(locale):
        return [
            FieldViolation(
                field,
                "must be a BCP 47 language tag such as en, en-US, pt-BR or zh-Hant-TW",
            )
        ]
    return []


def default_display_name(given_name: str, family_name: str, email: str) -> str:
    """ "given family" when either is set; otherwise the part of the email before '@'
    so that a user is never shown as an empty name."""
    name = " ".join(part for part in (given_name.strip(), family_name.strip()) if part)
    if name:
        return name[:MAX_DISPLAY_NAME_LENGTH]
    return email.rpartition("@")[0] or email


def _clean_text(value: str) -> str:
    return unicodedata.normalize("NFC", value.strip())


def _check_text(value: str, field: str, max_length: int) -> list[FieldViolation]:
    if len(value) > max_length:
        return [FieldViolation(field, f"must be at most {max_length} characters long")]
    # Control characters (Cc) and line/paragraph separators break logs, CSV
    # exports and e-mail headers; no name needs them.
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in value):
        return [FieldViolation(field, "must not contain control characters or line breaks")]
    return []


@dataclass(frozen=True, slots=True)
class UserProfile:
    """The fields of a user that a client sets (create, or update with a mask)."""

    email: str
    given_name: str = ""
    family_name: str = ""
    display_name: str = ""
    phone: str = ""
    locale: str = ""


#: The profile fields an update mask may name.
PROFILE_FIELDS: Final = frozenset(
    {"email", "given_name", "family_name", "display_name", "phone", "locale"}
)


def normalize_profile(profile: UserProfile) -> UserProfile:
    """Every field in its stored form; an empty display name gets its default."""
    email = normalize_email(profile.email)
    given = _clean_text(profile.given_name)
    family = _clean_text(profile.family_name)
    display = _clean_text(profile.display_name) or default_display_name(given, family, email)
    return replace(
        profile,
        email=email,
        given_name=given,
        family_name=family,
        display_name=display,
        phone=normalize_phone(profile.phone),
        locale=normalize_locale(profile.locale),
    )


def check_profile(
    profile: UserProfile,
    *,
    prefix: str = "user",
    fields: Collection[str] | None = None,
) -> list[FieldViolation]:
    """Violations of a normalised profile; `fields` limits the check to the fields of
    an update mask (None: all, as on create)."""
    wanted = PROFILE_FIELDS if fields is None else frozenset(fields) & PROFILE_FIELDS
    violations: list[FieldViolation] = []
    if "email" in wanted:
        violations += check_email(profile.email, field=f"{prefix}.email")
    if "given_name" in wanted:
        violations += _check_text(profile.given_name, f"{prefix}.given_name", MAX_NAME_LENGTH)
    if "family_name" in wanted:
        violations += _check_text(profile.family_name, f"{prefix}.family_name", MAX_NAME_LENGTH)
    if "display_name" in wanted:
        violations += _check_text(
            profile.display_name, f"{prefix}.display_name", MAX_DISPLAY_NAME_LENGTH
        )
    if "phone" in wanted:
        violations += check_phone(profile.phone, field=f"{prefix}.phone")
    if "locale" in wanted:
        violations += check_locale(profile.locale, field=f"{prefix}.locale")
    return violations
