"""Test-side token minting: a real Ed25519 key and a JWKS, and any token we like.

Tests mint tokens themselves (not through identity) so they can also mint the
hostile ones: wrong type, wrong issuer, expired, unknown key, ``alg: none``.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ISSUER = "cardinsa-identity"
AUDIENCE = "cardinsa"


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class TokenMinter:
    kid: str = field(default_factory=lambda: f"test-{uuid.uuid4().hex[:8]}")
    private_key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    def jwk(self) -> dict[str, str]:
        raw = self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": _b64url(raw),
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.jwk()]}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": str(uuid.uuid4()),
            "iat": now,
            "exp": now + 300,
            "jti": str(uuid.uuid4()),
            "typ": "access",
            "kind": "user",
            "cid": str(uuid.uuid4()),
            "sid": str(uuid.uuid4()),
            "roles": [],
            "perms": [],
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, headers: dict[str, Any] | None = None, **claim_overrides: Any) -> str:
        return jwt.encode(
            self.claims(**claim_overrides),
            self.private_key,
            algorithm="EdDSA",
            headers={"kid": self.kid, "typ": "at+jwt", **(headers or {})},
        )


def unsigned_token(claims: dict[str, Any], kid: str) -> str:
    """An ``alg: none`` token, the oldest trick in the book."""
    header = _b64url(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
    payload = _b64url(json.dumps(claims).encode())
    return f"{header}.{payload}."
