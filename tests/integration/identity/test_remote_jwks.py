"""Another service verifies identity's tokens with the JWKS fetched over gRPC."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from support.identity_harness import IdentityHarness
from support.tokens import TokenMinter

from cardinsa_foundation.auth import JwksCache, TokenVerifier, identity_jwks_fetcher
from cardinsa_foundation.db import app_role_url
from cardinsa_foundation.errors import Unauthenticated, Unavailable
from cardinsa_identity.main import IdentityApp, build


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


async def test_keys_kept_through_an_identity_outage_stop_being_trusted_after_the_bound(
    identity: IdentityHarness, identity_database: str
) -> None:
    """A verifier keeps the keys of an identity server that went away, up to its
    maximum staleness; then every token fails UNAVAILABLE (JWKS_STALE) until an
    identity server answers again."""
    user = await identity.create_user(identity.admin_a, roles=["viewer"])
    token = (await identity.login(user.email)).access_token
    max_stale_s = 3.0

    # An identity server of its own (over the same database, so the same keys)
    # that the test can stop and start again on the same port.
    def start() -> IdentityApp:
        return build(
            # No drain on stop: the bound below is counted from the last good fetch.
            identity.settings.model_copy(update={"drain_delay_s": 0.0}),
            app_role_url(identity_database),
            port=port,
            metrics_port=0,
            notifier=identity.notifier,
        )

    port = 0
    app = start()
    await app.start()
    port = int(app.server.address.rsplit(":", 1)[1])
    try:
        async with grpc.aio.insecure_channel(app.server.address) as channel:
            cache = JwksCache(
                identity_jwks_fetcher(channel, timeout_s=0.5),
                ttl_s=0.2,
                min_refetch_interval_s=0.1,
                max_stale_s=max_stale_s,
            )
            verifier = TokenVerifier(
                cache,
                issuer=identity.settings.jwt_issuer,
                audience=identity.settings.jwt_audience,
            )
            stopped_at = asyncio.get_running_loop().time()
            await verifier.verify(token)
            await app.stop()

            # Past the TTL, identity down: the keys are still used.
            await asyncio.sleep(0.5)
            assert (await verifier.verify(token)).subject == user.user_id

            # Past the maximum staleness: no longer.
            await asyncio.sleep(
                max_stale_s + 0.5 - (asyncio.get_running_loop().time() - stopped_at)
            )
            with pytest.raises(Unavailable) as caught:
                await verifier.verify(token)
            assert caught.value.reason == "JWKS_STALE"

            # Identity back (same address): trusted again after the next refetch.
            app = start()
            await app.start()
            for _ in range(100):
                try:
                    principal = await verifier.verify(token)
                    break
                except Unavailable:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("the verifier never trusted identity's keys again")
            assert principal.subject == user.user_id
    finally:
        await app.stop()
