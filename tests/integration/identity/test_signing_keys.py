"""Token signing keys over real gRPC: the JWKS, rotation, encryption at rest, retirement.

These tests rotate the key of the session-wide server. Each one rotates for
itself (so any one runs alone), waits until identity's own verifier knows the
new key before handing the server back, and the retirement tests only retire the
key they rotated away from: every other test keeps logging in and calling as
usual, whatever the order. The test settings publish a new key with no delay
(``signing_key_publish_delay_s=0``), so a rotation signs with the new key at once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select, update
from support.grpc_errors import error_info
from support.identity_harness import Account, IdentityHarness

from cardinsa.identity.v1 import (
    auth_service_pb2,
    identity_service_pb2,
    resources_pb2,
    user_service_pb2,
)
from cardinsa_foundation.context import PrincipalKind
from cardinsa_identity.application.signing_keys import SigningKeyStore
from cardinsa_identity.domain.signing_keys import (
    PrivateKeyCipher,
    SigningKeyDecryptionError,
    SigningKeyPair,
)
from cardinsa_identity.domain.tokens import build_access_claims, sign_access_token
from cardinsa_identity.repository.models import SigningKeyRow

# Identity's own verifier (cardinsa_identity.main.build): JwksCache(ttl_s=5.0,
# min_refetch_interval_s=1.0). A token naming a kid the cache does not know makes
# it refetch, at most once a second; a known kid is trusted until the TTL ends.
VERIFIER_MIN_REFETCH_S = 1.0
VERIFIER_JWKS_TTL_S = 5.0

State = resources_pb2.SigningKey.State


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


async def failure(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def cipher(identity: IdentityHarness) -> PrivateKeyCipher:
    return PrivateKeyCipher(identity.settings.signing_key_encryption_key.get_secret_value())


async def root(identity: IdentityHarness) -> list[tuple[str, str]]:
    return identity.bearer(await identity.token(identity.platform_admin))


async def jwks_kids(identity: IdentityHarness) -> list[str]:
    jwks = await identity.identity.GetJwks(identity_service_pb2.GetJwksRequest())
    return [k.kid for k in jwks.keys]


async def key_states(
    identity: IdentityHarness, metadata: list[tuple[str, str]] | None = None
) -> dict[str, Any]:
    listed = await identity.identity.ListSigningKeys(
        identity_service_pb2.ListSigningKeysRequest(), metadata=metadata or await root(identity)
    )
    return {k.kid: k for k in listed.signing_keys}


async def stored_key(identity: IdentityHarness, kid: str) -> SigningKeyRow:
    async with identity.app.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
        return (await session.scalars(select(SigningKeyRow).where(SigningKeyRow.kid == kid))).one()


async def private_key(identity: IdentityHarness, kid: str) -> SigningKeyPair:
    return cipher(identity).decrypt(kid, (await stored_key(identity, kid)).private_key_encrypted)


def mint(identity: IdentityHarness, key: SigningKeyPair, user: Account) -> str:
    """An access token for `user` (users.get) signed with `key`, as identity would sign it."""
    claims = build_access_claims(
        issuer=identity.settings.jwt_issuer,
        audience=identity.settings.jwt_audience,
        subject=user.user_id,
        kind=PrincipalKind.USER,
        company_id=user.company_id,
        roles=[],
        permissions=["users.get"],
        ttl=timedelta(minutes=5),
    )
    return sign_access_token(claims, key)


def get_self(identity: IdentityHarness, user: Account, token: str) -> Awaitable[Any]:
    return identity.users.GetUser(
        user_service_pb2.GetUserRequest(user_id=user.user_id), metadata=identity.bearer(token)
    )


async def rotate(identity: IdentityHarness) -> tuple[str, str]:
    """Rotate as the platform admin; returns (old kid, new kid) once the new key signs
    and identity's verifier can know it."""
    old = identity.app.ctx.keys.signer.kid
    created = await identity.identity.RotateSigningKey(
        identity_service_pb2.RotateSigningKeyRequest(request_id=str(uuid.uuid4())),
        metadata=await root(identity),
    )
    assert created.kid != old
    assert created.algorithm == "EdDSA"
    await identity.app.ctx.keys.reconcile()
    assert identity.app.ctx.keys.signer.kid == created.kid
    # With no publication delay, give the verifier's unknown-kid refetch its interval.
    await asyncio.sleep(VERIFIER_MIN_REFETCH_S + 0.1)
    return old, created.kid


async def retire(identity: IdentityHarness, kid: str) -> None:
    """Make a RETIRING key's retirement due (as if every token it signed had expired)
    and let the store apply the plan."""
    token_ttl = timedelta(
        seconds=identity.settings.access_token_ttl_s + identity.settings.clock_skew_s
    )
    async with identity.app.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
        result = await session.execute(
            update(SigningKeyRow)
            .where(SigningKeyRow.kid == kid, SigningKeyRow.state == "RETIRING")
            .values(retire_time=datetime.now(UTC) - token_ttl - timedelta(seconds=1))
        )
        assert result.rowcount == 1  # type: ignore[attr-defined]
    await identity.app.ctx.keys.reconcile()


# --------------------------------------------------------------------- tests


async def test_jwks_publishes_the_signing_key_and_verifies_tokens(
    identity: IdentityHarness,
) -> None:
    user = await identity.create_user(identity.admin_a, roles=["viewer"])
    token = (await identity.login(user.email)).access_token
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA"
    assert header["typ"] == "at+jwt"
    assert header["kid"] == identity.app.ctx.keys.signer.kid

    jwks = await identity.identity.GetJwks(identity_service_pb2.GetJwksRequest())  # public
    assert jwks.keys[0].kid == header["kid"]  # the signing key comes first
    for key in jwks.keys:
        assert (key.kty, key.crv, key.alg, key.use) == ("OKP", "Ed25519", "EdDSA", "sig")
        assert key.x and not key.y
    key = next(k for k in jwks.keys if k.kid == header["kid"])
    public = jwt.PyJWK({"kty": key.kty, "crv": key.crv, "x": key.x, "kid": key.kid}, "EdDSA")
    verified = jwt.decode(
        token, public.key, algorithms=["EdDSA"], audience=identity.settings.jwt_audience
    )
    assert verified["sub"] == user.user_id
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"),
            public.key,
            algorithms=["EdDSA"],
            audience=identity.settings.jwt_audience,
        )


async def test_private_keys_are_stored_encrypted(identity: IdentityHarness) -> None:
    async with identity.app.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
        rows = list((await session.scalars(select(SigningKeyRow))).all())
    assert rows
    right = cipher(identity)
    wrong = PrivateKeyCipher("another-secret-that-is-long-enough-0123456789")
    for row in rows:
        blob = bytes(row.private_key_encrypted)
        assert b"-----BEGIN" not in blob and b"PRIVATE KEY" not in blob
        pair = right.decrypt(row.kid, blob)
        raw = pair.private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        der = pair.private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        assert raw not in blob and der not in blob
        assert pair.public_jwk() == row.public_jwk
        assert "d" not in row.public_jwk
        with pytest.raises(SigningKeyDecryptionError):
            wrong.decrypt(row.kid, blob)
        # Bound to its kid, and tamper-evident.
        with pytest.raises(SigningKeyDecryptionError):
            right.decrypt(rows[0].kid if row is not rows[0] else "another-kid", blob)
        tampered = blob[:-1] + bytes([blob[-1] ^ 0x01])
        with pytest.raises(SigningKeyDecryptionError):
            right.decrypt(row.kid, tampered)

    # The decrypted signing key is the real one: the server accepts what it signs.
    user = await identity.create_user(identity.admin_a)
    signer = await private_key(identity, identity.app.ctx.keys.signer.kid)
    fetched = await get_self(identity, user, mint(identity, signer, user))
    assert fetched.id == user.user_id


async def test_company_admin_cannot_rotate_or_list_signing_keys(identity: IdentityHarness) -> None:
    admin = identity.bearer(await identity.token(identity.admin_a))
    signer = identity.app.ctx.keys.signer.kid
    before = await key_states(identity)
    error = await failure(
        identity.identity.RotateSigningKey(
            identity_service_pb2.RotateSigningKeyRequest(), metadata=admin
        )
    )
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    error = await failure(
        identity.identity.ListSigningKeys(
            identity_service_pb2.ListSigningKeysRequest(), metadata=admin
        )
    )
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert identity.app.ctx.keys.signer.kid == signer
    assert set(await key_states(identity)) == set(before)


async def test_rotation_signs_with_the_new_key_and_old_tokens_keep_working(
    identity: IdentityHarness,
) -> None:
    user = await identity.create_user(identity.admin_a, roles=["viewer"])
    before = await identity.login(user.email)

    old, new = await rotate(identity)
    assert kid_of(before.access_token) == old

    kids = await jwks_kids(identity)
    assert kids[0] == new and old in kids
    states = await key_states(identity)
    assert states[new].state == State.ACTIVE and states[new].HasField("activate_time")
    assert states[old].state == State.RETIRING and states[old].HasField("retire_time")
    assert [k for k, s in states.items() if s.state == State.ACTIVE] == [new]

    after = await identity.login(user.email)
    assert kid_of(after.access_token) == new
    assert (await get_self(identity, user, after.access_token)).id == user.user_id
    # The old key still verifies what it signed: it stays published while RETIRING.
    assert (await get_self(identity, user, before.access_token)).id == user.user_id
    refreshed = await identity.auth.RefreshToken(
        auth_service_pb2.RefreshTokenRequest(refresh_token=before.refresh_token)
    )
    assert kid_of(refreshed.access_token) == new

    events = await identity.identity.ListAuditEvents(
        identity_service_pb2.ListAuditEventsRequest(
            filter=f'action = "signing_key.rotate" AND entity_id = "{new}"'
        ),
        metadata=await root(identity),
    )
    assert [e.actor_id for e in events.audit_events] == [identity.platform_admin.user_id]


async def test_a_new_key_is_published_before_it_signs(identity: IdentityHarness) -> None:
    """A worker with a real publication delay: its new key is in the JWKS at once
    but signs only when the delay is over (here: when the session's store, whose
    delay is 0, reconciles)."""
    settings = identity.settings
    patient = SigningKeyStore(
        identity.app.ctx.db,
        cipher(identity),
        publish_delay=timedelta(minutes=10),
        token_ttl=timedelta(seconds=settings.access_token_ttl_s + settings.clock_skew_s),
    )
    await patient.reconcile()
    current = identity.app.ctx.keys.signer.kid
    assert patient.signer.kid == current
    # Logged in beforehand, so that the PUBLISHED state is read right after publishing
    # (the session store's own periodic reconcile would activate the key).
    platform_admin = await root(identity)

    created = await patient.reconcile(publish_new=True)
    assert created is not None
    assert created.state == "PUBLISHED"
    assert patient.signer.kid == current  # not signing yet ...
    assert [k["kid"] for k in patient.jwks()["keys"]][:2] == [current, created.kid]  # ... published
    states = await key_states(identity, platform_admin)
    assert states[created.kid].state == State.PUBLISHED
    assert not states[created.kid].HasField("activate_time")
    assert states[current].state == State.ACTIVE

    # Due now for the session's store: it signs, and the previous key retires.
    await identity.app.ctx.keys.reconcile()
    assert identity.app.ctx.keys.signer.kid == created.kid
    await asyncio.sleep(VERIFIER_MIN_REFETCH_S + 0.1)
    states = await key_states(identity)  # as the platform admin, with a token of the new key
    assert states[created.kid].state == State.ACTIVE
    assert states[current].state == State.RETIRING
    user = await identity.create_user(identity.admin_a, roles=["viewer"])
    token = await identity.token(user)
    assert kid_of(token) == created.kid
    assert (await get_self(identity, user, token)).id == user.user_id


class RotatedTwice(AssertionError):
    """Raised by the final check of the test below (it failed there while the
    handler ignored request_id)."""


async def test_rotate_signing_key_is_idempotent_by_request_id(identity: IdentityHarness) -> None:
    metadata = await root(identity)
    before = set(await key_states(identity, metadata))
    request = identity_service_pb2.RotateSigningKeyRequest(request_id=str(uuid.uuid4()))
    first = await identity.identity.RotateSigningKey(request, metadata=metadata)
    retried = await identity.identity.RotateSigningKey(request, metadata=metadata)
    # Whatever happened, hand the server back with its verifier knowing the signer.
    await identity.app.ctx.keys.reconcile()
    await asyncio.sleep(VERIFIER_MIN_REFETCH_S + 0.1)
    created = set(await key_states(identity)) - before
    assert first.kid in created

    if retried.kid != first.kid or created != {first.kid}:
        raise RotatedTwice(f"one request id, two rotations: {sorted(created)}")


class RetiredKeyTokenAccepted(AssertionError):
    """Raised by the final check of the test below (it failed there while cached
    tokens skipped the key check)."""


async def test_a_token_verified_before_its_key_retired_is_refused_after(
    identity: IdentityHarness,
) -> None:
    user = await identity.create_user(identity.admin_a)
    old, _new = await rotate(identity)
    token = mint(identity, await private_key(identity, old), user)
    assert (await get_self(identity, user, token)).id == user.user_id  # verified, cached

    await retire(identity, old)
    assert old not in await jwks_kids(identity)
    await asyncio.sleep(VERIFIER_JWKS_TTL_S + 0.2)
    # Nothing else has been verified since: the cached token is the first call.
    try:
        await get_self(identity, user, token)
    except grpc.aio.AioRpcError as error:
        assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    else:
        raise RetiredKeyTokenAccepted(
            f"a token signed by the retired key {old} was accepted "
            f"{VERIFIER_JWKS_TTL_S + 0.2:.1f} s after the retirement"
        )


async def test_a_token_signed_by_a_retired_key_is_refused(identity: IdentityHarness) -> None:
    """Keep this test last in the file: it leaves the newest key signing, checked at the end."""
    user = await identity.create_user(identity.admin_a, roles=["viewer"])
    issued_before = (await identity.login(user.email)).access_token
    old, new = await rotate(identity)
    assert kid_of(issued_before) == old
    old_key = await private_key(identity, old)
    used_before = mint(identity, old_key, user)
    assert (await get_self(identity, user, used_before)).id == user.user_id  # a valid token

    await retire(identity, old)
    states = await key_states(identity)
    assert states[old].state == State.RETIRED
    assert states[new].state == State.ACTIVE
    kids = await jwks_kids(identity)
    assert old not in kids and kids[0] == new

    # Once identity's verifier has refetched the JWKS, the retired key verifies nothing.
    await asyncio.sleep(VERIFIER_JWKS_TTL_S + 0.2)
    error = await failure(get_self(identity, user, mint(identity, old_key, user)))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert error_info(error).reason == "UNKNOWN_SIGNING_KEY"
    for token in (used_before, issued_before):
        error = await failure(get_self(identity, user, token))
        assert error.code() is grpc.StatusCode.UNAUTHENTICATED

    # A working signing key is left behind for everyone else.
    assert identity.app.ctx.keys.signer.kid == new
    token = await identity.token(user)
    assert kid_of(token) == new
    assert (await get_self(identity, user, token)).id == user.user_id
    admin = await identity.token(identity.admin_a)
    assert kid_of(admin) == new
