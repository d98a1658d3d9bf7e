"""Attack suite: forged and misused tokens, against every target's authenticated probe.

Each forgery starts from the attacker admin's real access-token claims and
changes one thing; the tokens "signed with the real key" are signed with
identity's own active key (the strongest forger: only the changed claim can
make them fail). Every test first sends the probe with a genuine token and
checks it succeeds, so a refusal is known to come from the token alone.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hostile_attacks import AttackLog
from hostile_harness import TARGET_SPECS, ServiceTarget, Tenant, Tenants
from support.identity_harness import IdentityHarness
from support.request_fuzz import CallResult, call_rpc
from support.tokens import TokenMinter, unsigned_token

from cardinsa.identity.v1 import auth_service_pb2
from cardinsa_identity.domain.tokens import ACCESS_TOKEN_HEADER_TYPE

TARGETS = [spec.name for spec in TARGET_SPECS]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(token: str, **changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    claims["jti"] = str(uuid.uuid4())  # a fresh token, never one the verifier cached
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _sign_real(identity: IdentityHarness, claims: dict[str, Any], **headers: Any) -> str:
    key = identity.app.ctx.keys.signer
    return jwt.encode(
        claims,
        key.private_key,
        algorithm=key.algorithm,
        headers={"kid": key.kid, "typ": ACCESS_TOKEN_HEADER_TYPE, **headers},
    )


def _hs256(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    """HS256 by hand: PyJWT refuses public-key-looking HMAC secrets, attackers do not."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = _b64(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


async def _probe(target: ServiceTarget, tenant: Tenant, token: str | None) -> CallResult:
    service, method, request = target.probe(tenant)
    metadata = [("authorization", f"Bearer {token}")] if token is not None else []
    return await call_rpc(
        target.channel, service, method, request, metadata=metadata, deadline_s=20
    )


def _tried(target: ServiceTarget, tenant: Tenant) -> str:
    service, method, _ = target.probe(tenant)
    return f"{target.name} {service.name}/{method.name}"


async def _attack(
    attacks: AttackLog,
    name: str,
    target: ServiceTarget,
    tenant: Tenant,
    forged: list[str],
    *,
    genuine: str | None = None,
) -> None:
    with attacks.attempt(name, _tried(target, tenant)):
        control = await _probe(target, tenant, genuine or tenant.token)
        assert control.code is grpc.StatusCode.OK, f"the genuine token was refused: {control}"
        for token in forged:
            answer = await _probe(target, tenant, token)
            assert answer.code is grpc.StatusCode.UNAUTHENTICATED, (
                f"{name}: {answer.code.name} {answer.details!r} for {token[:80]}…"
            )


@pytest.fixture(params=TARGETS)
def target(
    request: pytest.FixtureRequest, hostile_targets: dict[str, ServiceTarget]
) -> ServiceTarget:
    return hostile_targets[request.param]


async def test_attack_resigned_genuine_claims_are_accepted_control(
    target: ServiceTarget, tenants: Tenants, identity: IdentityHarness
) -> None:
    """The forger's baseline: the unchanged claims signed with the real key pass.
    (Otherwise every refusal below could come from the re-signing, not the change.)"""
    tenant = tenants.attacker
    token = _sign_real(identity, _claims(tenant.token))
    answer = await _probe(target, tenant, token)
    assert answer.code is grpc.StatusCode.OK, answer


async def test_attack_alg_none_token_refused(
    target: ServiceTarget, tenants: Tenants, identity: IdentityHarness, attacks: AttackLog
) -> None:
    tenant = tenants.attacker
    kid = identity.app.ctx.keys.signer.kid
    claims = _claims(tenant.token)
    forged = [unsigned_token(claims, kid)]
    for alg in ("None", "NONE", "nOnE"):
        header = _b64(json.dumps({"alg": alg, "typ": "JWT", "kid": kid}).encode())
        forged.append(f"{header}.{_b64(json.dumps(claims).encode())}.")
    # alg none carrying a genuine signature: still none.
    genuine = _sign_real(identity, claims)
    header = _b64(json.dumps({"alg": "none", "kid": kid}).encode())
    forged.append(f"{header}.{genuine.split('.')[1]}.{genuine.split('.')[2]}")
    await _attack(attacks, "alg: none token", target, tenant, forged)


async def test_attack_hs256_signed_with_the_public_key_refused(
    target: ServiceTarget, tenants: Tenants, identity: IdentityHarness, attacks: AttackLog
) -> None:
    """Algorithm confusion: HS256 with the published key as the HMAC secret, in every
    form an attacker can get it (JWKS raw bytes, the JWK ``x`` text, PEM, DER)."""
    tenant = tenants.attacker
    signer = identity.app.ctx.keys.signer
    public = signer.private_key.public_key()
    jwk = next(k for k in identity.app.ctx.keys.jwks()["keys"] if k["kid"] == signer.kid)
    raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
    assert raw == public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    claims = _claims(tenant.token)
    secrets = [
        raw,
        jwk["x"].encode(),
        public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
        public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo),
        json.dumps(jwk).encode(),
    ]
    forged = [_hs256(claims, secret, signer.kid) for secret in secrets]
    await _attack(
        attacks, "HS256 signed with the public key (raw, JWK x, PEM, DER)", target, tenant, forged
    )


async def test_attack_token_from_another_issuer_refused(
    target: ServiceTarget, tenants: Tenants, identity: IdentityHarness, attacks: AttackLog
) -> None:
    tenant = tenants.attacker
    forged = [
        _sign_real(identity, _claims(tenant.token, iss=issuer))
        for issuer in ("https://evil.example", identity.settings.jwt_issuer + " ", "")
    ]
    forged.append(
        _sign_real(identity, {k: v for k, v in _claims(tenant.token).items() if k != "iss"})
    )
    # Another issuer with its own key, publishing it under our kid name.
    stranger = TokenMinter(kid=identity.app.ctx.keys.signer.kid)
    forged.append(stranger.token(**_claims(tenant.token)))
    await _attack(attacks, "token from another issuer / foreign key", target, tenant, forged)


async def test_attack_token_for_another_audience_refused(
    target: ServiceTarget, tenants: Tenants, identity: IdentityHarness, attacks: AttackLog
) -> None:
    tenant = tenants.attacker
    forged = [
        _sign_real(identity, _claims(tenant.token, aud=audience))
        for audience in ("another-api", ["another-api"], identity.settings.jwt_audience.upper())
    ]
    forged.append(
        _sign_real(identity, {k: v for k, v in _claims(tenant.token).items() if k != "aud"})
    )
    await _attack(attacks, "token for another audience", target, tenant, forged)


async def test_attack_expired_token_refused(
    target: ServiceTarget, tenants: Tenants, identity: IdentityHarness, attacks: AttackLog
) -> None:
    tenant = tenants.attacker
    now = int(time.time())
    leeway = identity.settings.clock_skew_s
    forged = [
        _sign_real(identity, _claims(tenant.token, iat=now - 7200, exp=now - 3600)),
        _sign_real(identity, _claims(tenant.token, iat=now - 600, exp=now - leeway - 5)),
        _sign_real(identity, _claims(tenant.token, exp=None)),
        _sign_real(identity, _claims(tenant.token, exp="never")),
    ]
    await _attack(attacks, "expired token (and none/garbage exp)", target, tenant, forged)


async def test_attack_not_yet_valid_token_refused(
    target: ServiceTarget, tenants: Tenants, identity: IdentityHarness, attacks: AttackLog
) -> None:
    tenant = tenants.attacker
    now = int(time.time())
    forged = [
        _sign_real(identity, _claims(tenant.token, nbf=now + 3600)),
        _sign_real(identity, _claims(tenant.token, iat=now + 3600, nbf=now + 3600, exp=now + 7200)),
    ]
    await _attack(attacks, "not-yet-valid token (nbf)", target, tenant, forged)


async def test_attack_refresh_token_as_access_token_refused(
    target: ServiceTarget, tenants: Tenants, identity: IdentityHarness, attacks: AttackLog
) -> None:
    tenant = tenants.attacker
    pair = await identity.login(tenant.admin.email, tenant.admin.password)
    forged = [
        pair.refresh_token,
        _sign_real(identity, _claims(tenant.token, typ="refresh")),
        _sign_real(identity, _claims(tenant.token, typ=None)),
    ]
    await _attack(
        attacks, "refresh token as access token", target, tenant, forged, genuine=pair.access_token
    )


async def test_attack_reset_token_as_access_token_refused(
    target: ServiceTarget, tenants: Tenants, identity: IdentityHarness, attacks: AttackLog
) -> None:
    tenant = tenants.attacker
    await identity.auth.RequestPasswordReset(
        auth_service_pb2.RequestPasswordResetRequest(email=tenant.user.email)
    )
    await identity.app.auth.wait_for_background()
    reset = identity.notifier.messages_for(tenant.user.email)[-1]["token"]
    assert reset.startswith("cdp_")
    forged = [reset, _sign_real(identity, _claims(tenant.token, typ="reset"))]
    await _attack(attacks, "password-reset token as access token", target, tenant, forged)


async def test_attack_api_key_as_access_token_refused(
    target: ServiceTarget, tenants: Tenants, identity: IdentityHarness, attacks: AttackLog
) -> None:
    tenant = tenants.attacker
    assert tenant.api_key_secret
    forged = [
        tenant.api_key_secret,
        _sign_real(identity, _claims(tenant.token, typ="api_key")),
        _sign_real(identity, _claims(tenant.token, typ="service")),
    ]
    await _attack(attacks, "API key as access token", target, tenant, forged)


async def test_attack_tampered_claims_with_the_original_signature_refused(
    target: ServiceTarget, tenants: Tenants, attacks: AttackLog
) -> None:
    """Switch the tenant (cid) or grant platform permissions, keep the signature."""
    tenant = tenants.attacker
    header, payload, signature = tenant.token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = []
    for change in (
        {"cid": tenants.victim.company_id},
        {"perms": [*claims.get("perms", []), "companies.create", "signing_keys.rotate"]},
        {"sub": tenants.victim.admin.user_id},
        {"exp": claims["exp"] + 86_400},
    ):
        forged.append(f"{header}.{_b64(json.dumps({**claims, **change}).encode())}.{signature}")
    forged.append(f"{header}.{payload}.{signature[:-4]}AAAA")
    forged.append(f"{header}.{payload}.")
    await _attack(
        attacks,
        "tampered claims (tenant, permissions) under the original signature",
        target,
        tenant,
        forged,
    )


async def test_attack_hostile_token_headers_and_shapes_refused(
    target: ServiceTarget, tenants: Tenants, identity: IdentityHarness, attacks: AttackLog
) -> None:
    """kid with paths, SQL and junk; jku/x5u/jwk pointing elsewhere; not-a-JWT."""
    tenant = tenants.attacker
    claims = _claims(tenant.token)
    stranger = TokenMinter()
    forged = [
        stranger.token(headers={"kid": kid}, **claims)
        for kid in ("../../../../dev/null", "' OR '1'='1", "x" * 2000, "", "\u202e")
    ]
    forged.append(stranger.token(headers={"jku": "https://evil.example/jwks.json"}, **claims))
    forged.append(stranger.token(headers={"jwk": stranger.jwk()}, **claims))
    forged += ["", "Bearer", "a.b.c", "a.b", "....", "e30.e30.e30", "x" * 4000]
    await _attack(
        attacks, "hostile kid/jku/jwk headers and malformed tokens", target, tenant, forged
    )
