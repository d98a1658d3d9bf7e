"""Tenant-status cache and service credentials (no network: the fetchers are coroutines)."""

from __future__ import annotations

import asyncio

import pytest

from cardinsa_foundation.context import Principal, PrincipalKind
from cardinsa_foundation.errors import NotFound, PermissionDenied, Unavailable
from cardinsa_foundation.tenancy import ServiceCredentials, TenantStatus, TenantStatusCache


class Directory:
    def __init__(self) -> None:
        self.states: dict[str, str] = {"a": "ACTIVE", "s": "SUSPENDED"}
        self.calls = 0
        self.down = False

    async def fetch(self, company_id: str) -> TenantStatus:
        self.calls += 1
        await asyncio.sleep(0.01)
        if self.down:
            raise ConnectionRefusedError("company service down")
        if company_id not in self.states:
            raise NotFound("no such company")
        return TenantStatus(company_id, self.states[company_id])


async def test_active_passes_and_is_cached() -> None:
    directory = Directory()
    cache = TenantStatusCache(directory.fetch, ttl_s=60)
    for _ in range(5):
        assert (await cache.require_active("a")).state == "ACTIVE"
    assert directory.calls == 1


async def test_suspended_unknown_and_missing_company_are_refused() -> None:
    cache = TenantStatusCache(Directory().fetch)
    for company, state in (("s", "SUSPENDED"), ("zzz", "UNKNOWN")):
        with pytest.raises(PermissionDenied) as caught:
            await cache.require_active(company)
        assert caught.value.reason == "TENANT_NOT_ACTIVE"
        assert caught.value.metadata["state"] == state
    with pytest.raises(PermissionDenied):
        await cache.check_principal(
            Principal(subject="x", kind=PrincipalKind.USER, company_id=None)
        )


async def test_a_suspension_is_seen_after_the_ttl() -> None:
    directory = Directory()
    cache = TenantStatusCache(directory.fetch, ttl_s=0.05)
    await cache.require_active("a")
    directory.states["a"] = "SUSPENDED"
    await asyncio.sleep(0.06)
    with pytest.raises(PermissionDenied):
        await cache.require_active("a")


async def test_concurrent_checks_share_one_fetch() -> None:
    directory = Directory()
    cache = TenantStatusCache(directory.fetch, ttl_s=60)
    await asyncio.gather(*(cache.require_active("a") for _ in range(20)))
    assert directory.calls == 1


async def test_unreachable_company_service_is_unavailable_not_allowed() -> None:
    directory = Directory()
    directory.down = True
    cache = TenantStatusCache(directory.fetch, ttl_s=60)
    results = await asyncio.gather(
        *(cache.require_active("a") for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, Unavailable) for r in results)
    directory.down = False
    assert (await cache.require_active("a")).state == "ACTIVE"  # failures are not cached


async def test_service_credentials_renew_before_expiry() -> None:
    issued: list[float] = []

    async def obtain() -> tuple[str, float]:
        import time

        issued.append(time.time())
        return f"token-{len(issued)}", time.time() + 61

    credentials = ServiceCredentials(obtain, renew_before_s=60)
    first = await credentials.token()
    await asyncio.sleep(1.1)  # now within the renewal window
    second = await credentials.token()
    assert (first, second) == ("token-1", "token-2")
    assert await credentials.metadata() == (("authorization", "Bearer token-2"),)
