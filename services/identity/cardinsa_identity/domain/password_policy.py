"""The password policy, returned as field violations (never raised one by one).

Rules follow NIST SP 800-63B rather than composition rules: a minimum and maximum
length, no password from a list of commonly used ones, nothing derived from the
account's email, and not one character repeated. Lengths are counted in
characters of the NFKC form that is hashed (see `passwords.normalize_password`);
a separate byte limit bounds what a hash function is ever fed.

Descriptions never repeat the password, so they are safe to return to a client
and to log.
"""

from __future__ import annotations

import functools
import unicodedata
from importlib import resources
from typing import Final

from cardinsa_foundation.errors import FieldViolation
from cardinsa_identity.domain.passwords import MAX_PASSWORD_BYTES, normalize_password

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "DEFAULT_MIN_LENGTH",
    "check_password",
    "common_passwords",
    "is_common_password",
]

DEFAULT_MIN_LENGTH: Final = 12
DEFAULT_MAX_LENGTH: Final = 128

# The email's local part is only refused inside a password when it is at least
# this long; shorter ones ("al", "j") occur in too many good passwords by chance.
_MIN_LOCAL_PART = 3

_COMMON_PASSWORDS_FILE: Final = "common_passwords.txt"


@functools.cache
def common_passwords() -> frozenset[str]:
    """The bundled list, case-folded; read from the package once, on first use."""
    text = (
        resources.files("cardinsa_identity.domain")
        .joinpath(_COMMON_PASSWORDS_FILE)
        .read_text(encoding="utf-8")
    )
    return frozenset(
        line.strip().casefold()
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    )


def is_common_password(password: str) -> bool:
    """Whether `password` (in any letter case) is in the bundled list."""
    return normalize_password(password).casefold() in common_passwords()


def check_password(
    password: str,
    *,
    email: str | None,
    field: str = "password",
    min_length: int = DEFAULT_MIN_LENGTH,
    max_length: int = DEFAULT_MAX_LENGTH,
) -> list[FieldViolation]:
    """Every rule `password` breaks, as violations of `field`; empty when it is good.

    `email` is the account's email (the new one when it changes at the same time);
    None when there is none to compare with.
    """
    if min_length < 1 or max_length < min_length:
        raise ValueError("password length limits must satisfy 1 <= min_length <= max_length")

    # Over-long input is answered before any other work: the other rules would
    # scan (and normalise) a string that must be shortened anyway.
    if len(password) > MAX_PASSWORD_BYTES or len(password.encode()) > MAX_PASSWORD_BYTES:
        return [
            FieldViolation(
                field,
                f"must be at most {max_length} characters and {MAX_PASSWORD_BYTES} bytes "
                "(UTF-8) long",
            )
        ]

    normalized = normalize_password(password)
    violations: list[FieldViolation] = []
    length = len(normalized)
    if length < min_length:
        violations.append(FieldViolation(field, f"must be at least {min_length} characters long"))
    elif length > max_length:
        violations.append(FieldViolation(field, f"must be at most {max_length} characters long"))

    folded = normalized.casefold()
    if normalized and len(set(normalized)) == 1:
        violations.append(FieldViolation(field, "must not consist of one repeated character"))
    elif folded in common_passwords():
        violations.append(
            FieldViolation(
                field, "is too common: it appears in a list of frequently used passwords"
            )
        )

    violations.extend(_email_violations(folded, email, field))
    return violations


def _email_violations(folded_password: str, email: str | None, field: str) -> list[FieldViolation]:
    if not email or not email.strip():
        return []
    folded_email = unicodedata.normalize("NFKC", email.strip()).casefold()
    if folded_email in folded_password:
        return [FieldViolation(field, "must not contain the account's email address")]
    local, at, _ = folded_email.rpartition("@")
    if at and len(local) >= _MIN_LOCAL_PART and local in folded_password:
        return [FieldViolation(field, "must not contain the part of the email address before '@'")]
    return []
