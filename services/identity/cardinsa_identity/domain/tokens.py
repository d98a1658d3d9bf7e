"""Access tokens (signed JWTs) and opaque tokens (refresh, password reset,
invitation, e-mail change).

Access tokens carry exactly the claims `cardinsa_foundation.auth` verifies
(docs/architecture.md, "Security model"): ``typ`` is always
``access`` and the JOSE header says ``at+jwt`` (RFC 9068), so nothing else that
identity hands out can pass for one.

Refresh and reset tokens are opaque random strings, not JWTs: they are only ever
checked by identity, against its database, where they are stored as SHA-256
hashes. A kind prefix (``cdr_``, ``cdp_``, ``cdi_``, ``cde_``) tells them apart at a glance and lets
secret scanners find leaked ones; it also makes a reset token fail as a refresh
token before any lookup. A fast hash is right here: the tokens carry 256 bits of
randomness, so there is nothing to brute-force, and an unsalted hash is what lets
the database find the row by it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final, NamedTuple

import jwt

from cardinsa_foundation.auth import ACCESS_TOKEN_TYPE, ALLOWED_ALGORITHMS
from cardinsa_foundation.context import PrincipalKind
from cardinsa_identity.domain.signing_keys import SigningKeyPair

__all__ = [
    "ACCESS_TOKEN_HEADER_TYPE",
    "OPAQUE_TOKEN_BYTES",
    "NewOpaqueToken",
    "OpaqueTokenKind",
    "build_access_claims",
    "hash_opaque_token",
    "is_well_formed_opaque_token",
    "new_opaque_token",
    "opaque_token_matches",
    "sign_access_token",
]

#: JOSE header ``typ`` of access tokens (RFC 9068, "JWT Profile for OAuth 2.0
#: Access Tokens").
ACCESS_TOKEN_HEADER_TYPE: Final = "at+jwt"  # noqa: S105 - a media type, not a secret

#: Random bytes per opaque token: 256 bits.
OPAQUE_TOKEN_BYTES: Final = 32


def build_access_claims(
    *,
    issuer: str,
    audience: str,
    subject: str,
    kind: PrincipalKind,
    company_id: str | None,
    roles: Iterable[str],
    permissions: Iterable[str],
    ttl: timedelta,
    session_id: str | None = None,
    on_behalf_of: str | None = None,
    now: datetime | None = None,
    amr: Iterable[str] = (),
    mfa_permissions: Iterable[str] = (),
) -> dict[str, Any]:
    """The claims of a new access token.

    ``cid`` (company), ``sid`` (session; users only) and ``act`` (on whose behalf a
    service acts) are left out when there is none, rather than sent empty. Roles
    and permissions are sorted so equal grants give equal tokens.
    """
    if ttl <= timedelta(0):
        raise ValueError("an access token needs a positive lifetime")
    if not issuer or not audience or not subject:
        raise ValueError("issuer, audience and subject are required")
    issued = int((now or datetime.now(UTC)).timestamp())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "iat": issued,
        "exp": issued + int(ttl.total_seconds()),
        "jti": str(uuid.uuid4()),
        "typ": ACCESS_TOKEN_TYPE,
        "kind": PrincipalKind(kind).value,
        "roles": sorted(set(roles)),
        "perms": sorted(set(permissions)),
    }
    if company_id:
        claims["cid"] = company_id
    if session_id:
        claims["sid"] = session_id
    if on_behalf_of:
        claims["act"] = on_behalf_of
    if amr := sorted(set(amr)):
        # RFC 8176 values: ``pwd``, ``otp``.
        claims["amr"] = amr
    if held := sorted(set(mfa_permissions)):
        claims["mfa_perms"] = held
    return claims


def sign_access_token(claims: dict[str, Any], key: SigningKeyPair) -> str:
    """The compact JWS of `claims`, signed with `key`, header ``kid`` and
    ``typ: at+jwt``. Refuses claims that are not an access token's."""
    if claims.get("typ") != ACCESS_TOKEN_TYPE:
        raise ValueError("only access-token claims are signed (typ must be 'access')")
    if key.algorithm not in ALLOWED_ALGORITHMS:
        raise ValueError("the signing key's algorithm is not one verifiers accept")
    return jwt.encode(
        claims,
        key.private_key,
        algorithm=key.algorithm,
        headers={"kid": key.kid, "typ": ACCESS_TOKEN_HEADER_TYPE},
    )


# ------------------------------------------------------------------ opaque tokens


class OpaqueTokenKind(StrEnum):
    """The prefix of each kind of opaque token."""

    REFRESH = "cdr"
    PASSWORD_RESET = "cdp"  # noqa: S105 - a prefix, not a secret
    INVITATION = "cdi"
    EMAIL_CHANGE = "cde"
    LOGIN_CHALLENGE = "cdc"


class NewOpaqueToken(NamedTuple):
    """A token to hand out once, and the hash to store."""

    token: str
    token_hash: str


# token_urlsafe(32) yields 43 characters of the URL-safe base64 alphabet.
_SECRET_CHARS: Final = 43
_OPAQUE = re.compile(rf"^(cdr|cdp|cdi|cde|cdc)_[A-Za-z0-9_-]{{{_SECRET_CHARS}}}$")


def hash_opaque_token(token: str) -> str:
    """The stored form of an opaque token: SHA-256 of the whole token, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_opaque_token(kind: OpaqueTokenKind) -> NewOpaqueToken:
    """A fresh ``<prefix>_<43 url-safe chars>`` token (256 random bits) and its hash."""
    token = f"{OpaqueTokenKind(kind).value}_{secrets.token_urlsafe(OPAQUE_TOKEN_BYTES)}"
    return NewOpaqueToken(token, hash_opaque_token(token))


def is_well_formed_opaque_token(token: str, kind: OpaqueTokenKind) -> bool:
    """Whether `token` has the exact shape of a token of `kind`; checked before any
    database lookup, so a malformed or wrong-kind token costs nothing."""
    match = _OPAQUE.fullmatch(token) if len(token) < 64 else None
    return match is not None and match.group(1) == OpaqueTokenKind(kind).value


def opaque_token_matches(token: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented token with a stored hash."""
    return hmac.compare_digest(
        hash_opaque_token(token).encode("ascii"), stored_hash.lower().encode("utf-8")
    )
