"""Access-token claims and signing; opaque refresh and reset tokens."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from cardinsa_foundation.auth import JwksCache, TokenVerifier
from cardinsa_foundation.context import PrincipalKind
from cardinsa_foundation.errors import Unauthenticated
from cardinsa_identity.domain.signing_keys import SigningKeyPair, generate_signing_key
from cardinsa_identity.domain.tokens import (
    NewOpaqueToken,
    OpaqueTokenKind,
    build_access_claims,
    hash_opaque_token,
    is_well_formed_opaque_token,
    new_opaque_token,
    opaque_token_matches,
    sign_access_token,
)

ISSUER = "https://identity.cardinsa.test"
AUDIENCE = "cardinsa"


@pytest.fixture(scope="module")
def key() -> SigningKeyPair:
    return generate_signing_key()


def user_claims(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "subject": "3b2f6c1e-0000-4000-8000-000000000001",
        "kind": PrincipalKind.USER,
        "company_id": "c0ffee00-0000-4000-8000-000000000002",
        "session_id": "5e5510de-0000-4000-8000-000000000003",
        "roles": ["underwriter", "agent", "agent"],
        "permissions": ["policies.bind", "claims.get", "policies.bind"],
        "ttl": timedelta(minutes=5),
    }
    args.update(overrides)
    return build_access_claims(**args)


def test_claims_carry_what_the_verifier_requires() -> None:
    now = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
    claims = user_claims(now=now)
    assert claims["iss"] == ISSUER and claims["aud"] == AUDIENCE
    assert claims["typ"] == "access" and claims["kind"] == "user"
    assert claims["cid"] == "c0ffee00-0000-4000-8000-000000000002"
    assert claims["sid"] == "5e5510de-0000-4000-8000-000000000003"
    assert claims["iat"] == int(now.timestamp()) and claims["exp"] == claims["iat"] + 300
    assert isinstance(claims["iat"], int) and isinstance(claims["exp"], int)
    assert uuid.UUID(claims["jti"]).version == 4
    assert claims["roles"] == ["agent", "underwriter"]  # sorted, deduplicated
    assert claims["perms"] == ["claims.get", "policies.bind"]
    assert "act" not in claims


def test_each_token_gets_its_own_jti() -> None:
    assert user_claims()["jti"] != user_claims()["jti"]


def test_service_account_claims_leave_out_what_it_does_not_have() -> None:
    claims = user_claims(
        kind=PrincipalKind.SERVICE_ACCOUNT,
        session_id=None,
        company_id=None,
        on_behalf_of="3b2f6c1e-0000-4000-8000-000000000009",
    )
    assert claims["kind"] == "service_account"
    assert "sid" not in claims and "cid" not in claims
    assert claims["act"] == "3b2f6c1e-0000-4000-8000-000000000009"


@pytest.mark.parametrize(
    "overrides",
    [
        {"ttl": timedelta(0)},
        {"ttl": timedelta(seconds=-1)},
        {"issuer": ""},
        {"audience": ""},
        {"subject": ""},
    ],
)
def test_bad_claim_inputs_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        user_claims(**overrides)


def test_signed_token_verifies_with_the_public_jwk(key: SigningKeyPair) -> None:
    claims = user_claims()
    token = sign_access_token(claims, key)

    header = jwt.get_unverified_header(token)
    assert header == {"alg": "EdDSA", "kid": key.kid, "typ": "at+jwt"}

    public = jwt.PyJWK(key.public_jwk(), algorithm="EdDSA")
    decoded = jwt.decode(token, public.key, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER)
    assert decoded == claims


def test_token_does_not_verify_with_another_key(key: SigningKeyPair) -> None:
    token = sign_access_token(user_claims(), key)
    other = jwt.PyJWK(generate_signing_key().public_jwk(), algorithm="EdDSA")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, other.key, algorithms=["EdDSA"], audience=AUDIENCE)


def test_only_access_claims_are_signed(key: SigningKeyPair) -> None:
    for typ in ("refresh", "reset", None):
        claims = user_claims()
        if typ is None:
            del claims["typ"]
        else:
            claims["typ"] = typ
        with pytest.raises(ValueError, match="access"):
            sign_access_token(claims, key)


async def test_foundation_verifier_accepts_our_tokens(key: SigningKeyPair) -> None:
    async def fetch() -> Mapping[str, Any]:
        return {"keys": [key.public_jwk()]}

    verifier = TokenVerifier(JwksCache(fetch), issuer=ISSUER, audience=AUDIENCE)
    claims = user_claims(on_behalf_of="someone")
    principal = await verifier.verify(sign_access_token(claims, key))

    assert principal.subject == claims["sub"]
    assert principal.kind is PrincipalKind.USER
    assert principal.company_id == claims["cid"]
    assert principal.session_id == claims["sid"]
    assert principal.token_id == claims["jti"]
    assert principal.on_behalf_of == "someone"
    assert principal.permissions == frozenset({"claims.get", "policies.bind"})
    assert principal.roles == frozenset({"agent", "underwriter"})


async def test_foundation_verifier_refuses_an_expired_token(key: SigningKeyPair) -> None:
    async def fetch() -> Mapping[str, Any]:
        return {"keys": [key.public_jwk()]}

    verifier = TokenVerifier(JwksCache(fetch), issuer=ISSUER, audience=AUDIENCE, leeway_s=0)
    old = datetime.now(UTC) - timedelta(hours=1)
    token = sign_access_token(user_claims(now=old), key)
    with pytest.raises(Unauthenticated):
        await verifier.verify(token)


# ------------------------------------------------------------------ opaque tokens


@pytest.mark.parametrize(
    ("kind", "prefix"),
    [(OpaqueTokenKind.REFRESH, "cdr_"), (OpaqueTokenKind.PASSWORD_RESET, "cdp_")],
)
def test_opaque_token_shape_and_hash(kind: OpaqueTokenKind, prefix: str) -> None:
    issued = new_opaque_token(kind)
    assert isinstance(issued, NewOpaqueToken)
    token, token_hash = issued
    assert token.startswith(prefix)
    secret = token[len(prefix) :]
    # 43 url-safe base64 characters = 258 bits of encoding for 256 random bits.
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret)
    assert token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token_hash == hash_opaque_token(token)
    assert token not in token_hash
    assert is_well_formed_opaque_token(token, kind)


def test_opaque_tokens_are_unique() -> None:
    tokens = {new_opaque_token(OpaqueTokenKind.REFRESH).token for _ in range(2000)}
    assert len(tokens) == 2000


def test_a_reset_token_is_not_a_well_formed_refresh_token() -> None:
    reset = new_opaque_token(OpaqueTokenKind.PASSWORD_RESET).token
    refresh = new_opaque_token(OpaqueTokenKind.REFRESH).token
    assert not is_well_formed_opaque_token(reset, OpaqueTokenKind.REFRESH)
    assert not is_well_formed_opaque_token(refresh, OpaqueTokenKind.PASSWORD_RESET)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "cdr_",
        "cdr_short",
        "cdr_" + "a" * 42,
        "cdr_" + "a" * 44,
        "cdr_" + "a" * 42 + "=",
        "cdr_" + "a" * 43 + "\n",
        "CDR_" + "a" * 43,
        "cdx_" + "a" * 43,
        "cdr-" + "a" * 43,
        "eyJhbGciOiJFZERTQSJ9.e30.sig",
        "cdr_" + "a" * 10_000,
    ],
)
def test_malformed_opaque_tokens(token: str) -> None:
    assert not is_well_formed_opaque_token(token, OpaqueTokenKind.REFRESH)


def test_opaque_token_matches_in_constant_time_helper() -> None:
    token, token_hash = new_opaque_token(OpaqueTokenKind.REFRESH)
    assert opaque_token_matches(token, token_hash)
    assert opaque_token_matches(token, token_hash.upper())
    assert not opaque_token_matches(token + "x", token_hash)
    assert not opaque_token_matches(token, "0" * 64)
    assert not opaque_token_matches(token, "")
    assert not opaque_token_matches(token, "ünicode")
