"""JwksCache through an identity outage: the last keys are kept, but not forever.

A fake fetch (answers, or raises like an unreachable identity) and a fake clock
drive the cache; the verifier in front of it is the real one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from support.tokens import AUDIENCE, ISSUER, TokenMinter

from cardinsa_foundation.auth import JwksCache, TokenVerifier
from cardinsa_foundation.errors import Unavailable

TTL_S = 300.0
MAX_STALE_S = 3600.0
REFETCH_S = 5.0


class FakeIdentity:
    """The JWKS source: up (serves ``jwks``) or down (raises), counting fetches."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        self.jwks = jwks
        self.up = True
        self.fetches = 0

    async def fetch(self) -> Mapping[str, Any]:
        self.fetches += 1
        if not self.up:
            raise ConnectionError("identity unreachable")
        return self.jwks


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def minter() -> TokenMinter:
    return TokenMinter()


def make(minter: TokenMinter) -> tuple[FakeIdentity, Clock, TokenVerifier]:
    identity = FakeIdentity(minter.jwks())
    clock = Clock()
    cache = JwksCache(
        identity.fetch,
        ttl_s=TTL_S,
        min_refetch_interval_s=REFETCH_S,
        max_stale_s=MAX_STALE_S,
        clock=clock,
    )
    return identity, clock, TokenVerifier(cache, issuer=ISSUER, audience=AUDIENCE)


async def test_keys_are_kept_through_an_outage_shorter_than_the_maximum_staleness(
    minter: TokenMinter,
) -> None:
    identity, clock, verifier = make(minter)
    token = minter.token()
    await verifier.verify(token)
    identity.up = False
    # Past the TTL the refetch fails, and the keys are still used ...
    for step in (TTL_S + 1, 1800.0, MAX_STALE_S - 1):
        clock.now = 1000.0 + step
        await verifier.verify(token)
        await verifier.verify(minter.token())  # a new token too, not only the cached one
    assert identity.fetches > 1


@pytest.mark.parametrize("cached", [True, False], ids=["verified-before", "new-token"])
async def test_keys_stop_being_trusted_after_the_maximum_staleness(
    minter: TokenMinter, cached: bool
) -> None:
    identity, clock, verifier = make(minter)
    token = minter.token()
    await verifier.verify(token)
    identity.up = False
    clock.now = 1000.0 + MAX_STALE_S + REFETCH_S
    with pytest.raises(Unavailable) as caught:
        await verifier.verify(token if cached else minter.token())
    assert caught.value.reason == "JWKS_STALE"
    assert "could not be refreshed for over 3600 s" in caught.value.message
    # Every later call too, not only the first, and a refetch is tried meanwhile.
    before = identity.fetches
    for _ in range(3):
        clock.now += REFETCH_S
        with pytest.raises(Unavailable):
            await verifier.verify(token)
    assert identity.fetches > before

    # Identity answers again: the keys it now publishes are trusted again.
    identity.up = True
    clock.now += REFETCH_S
    principal = await verifier.verify(token)
    assert principal.subject


async def test_a_key_retired_during_the_outage_is_not_trusted_past_the_bound(
    minter: TokenMinter,
) -> None:
    """The case the bound is for: the key was retired (say, leaked) while this
    verifier could not hear it; a token signed with it is refused after the bound."""
    identity, clock, verifier = make(minter)
    await verifier.verify(minter.token())
    identity.up = False
    identity.jwks = {"keys": []}  # retired at identity, unseen here
    clock.now = 1000.0 + MAX_STALE_S / 2
    await verifier.verify(minter.token())  # still trusted: within the bound
    clock.now = 1000.0 + MAX_STALE_S + REFETCH_S
    with pytest.raises(Unavailable):
        await verifier.verify(minter.token())


async def test_the_staleness_is_counted_from_the_last_successful_fetch(
    minter: TokenMinter,
) -> None:
    identity, clock, verifier = make(minter)
    token = minter.token()
    await verifier.verify(token)
    # Down for most of the bound, up once, down again: the bound starts over.
    identity.up = False
    clock.now = 1000.0 + MAX_STALE_S - 10
    await verifier.verify(token)
    identity.up = True
    clock.now += TTL_S
    await verifier.verify(token)
    identity.up = False
    clock.now += MAX_STALE_S - 2 * TTL_S
    await verifier.verify(token)
