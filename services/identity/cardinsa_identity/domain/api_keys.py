"""API keys of service accounts: ``cdk_<prefix>_<secret>``.

The prefix is a public lookup id (safe to show, log and index); the secret is
256 random bits and is stored only as its SHA-256. A fast, unsalted hash is the
right tool for a high-entropy secret: there is no dictionary to try and 2^256
guesses to make, so argon2's deliberate slowness would only cost CPU on every
key exchange. The ``cdk_`` marker lets secret scanners recognise leaked keys.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Final, NamedTuple

__all__ = [
    "API_KEY_MARKER",
    "PREFIX_LENGTH",
    "NewApiKey",
    "ParsedApiKey",
    "hash_api_key_secret",
    "new_api_key",
    "parse_api_key",
    "verify_api_key_secret",
]

API_KEY_MARKER: Final = "cdk"
#: Length of the lookup prefix we issue (parse accepts 8 to 12).
PREFIX_LENGTH: Final = 10
_SECRET_BYTES: Final = 32
_SECRET_CHARS: Final = 43  # token_urlsafe(32)
# Lower-case letters and digits: no '_' (the separator) and nothing that a
# case-insensitive lookup or a human reading it aloud could confuse.
_PREFIX_ALPHABET: Final = "abcdefghijklmnopqrstuvwxyz0123456789"
_API_KEY = re.compile(rf"^{API_KEY_MARKER}_([a-z0-9]{{8,12}})_([A-Za-z0-9_-]{{{_SECRET_CHARS}}})$")
_MAX_KEY_LENGTH: Final = len(API_KEY_MARKER) + 2 + 12 + _SECRET_CHARS


class NewApiKey(NamedTuple):
    """A new key: `full_key` is shown once; `prefix` and `secret_hash` are stored."""

    full_key: str
    prefix: str
    secret_hash: str


class ParsedApiKey(NamedTuple):
    prefix: str
    secret: str


def hash_api_key_secret(secret: str) -> str:
    """The stored form of a key's secret: SHA-256, hex."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_api_key() -> NewApiKey:
    """A fresh key with a random 10-character prefix and a 256-bit secret."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    return NewApiKey(f"{API_KEY_MARKER}_{prefix}_{secret}", prefix, hash_api_key_secret(secret))


def parse_api_key(full_key: str) -> ParsedApiKey | None:
    """Split a presented key into prefix and secret; None unless it has exactly the
    shape we issue (checked before any lookup, and bounded in length first)."""
    if len(full_key) > _MAX_KEY_LENGTH:
        return None
    match = _API_KEY.fullmatch(full_key)
    if match is None:
        return None
    return ParsedApiKey(match.group(1), match.group(2))


def verify_api_key_secret(secret: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented secret with the stored hash."""
    return hmac.compare_digest(
        hash_api_key_secret(secret).encode("ascii"), stored_hash.lower().encode("utf-8")
    )
