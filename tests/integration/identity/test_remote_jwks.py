"""Another service verifies identity's tokens with the JWKS fetched over gRPC."""

from __future__ import annotations

import grpc
import pytest
from support.identity_harness import IdentityHarness
from support.tokens import TokenMinter

from cardinsa_foundation.auth import JwksCache, TokenVerifier, identity_jwks_fetcher
from cardinsa_foundation.errors import Unauthenticated, Unavailable


async def test_a_remote_verifier_accepts_identity_tokens_and_refuses_others(
    identity: IdentityHarness,
) -> None:
    user = await identity.create_user(identity.admin_a, roles=["viewer"])
    pair = await identity.login(user.email)
    async with grpc.aio.insecure_channel(identity.app.server.address) as channel:
        verifier = TokenVerifier(
            JwksCache(identity_jwks_fetcher(channel)),
            issuer=identity.settings.jwt_issuer,
            audience=identity.settings.jwt_audience,
        )
        principal = await verifier.verify(pair.access_token)
        assert principal.subject == user.user_id
        assert principal.company_id == user.company_id
        assert "users.get" in principal.permissions
        forged = TokenMinter().token(
            iss=identity.settings.jwt_issuer, aud=identity.settings.jwt_audience
        )
        with pytest.raises(Unauthenticated):
            await verifier.verify(forged)


async def test_identity_unreachable_means_unavailable_not_a_crash() -> None:
    async with grpc.aio.insecure_channel("127.0.0.1:1") as channel:
        verifier = TokenVerifier(
            JwksCache(identity_jwks_fetcher(channel, timeout_s=0.5)), issuer="x", audience="y"
        )
        with pytest.raises(Unavailable) as caught:
            await verifier.verify(TokenMinter().token())
        assert caught.value.reason == "JWKS_UNAVAILABLE"
