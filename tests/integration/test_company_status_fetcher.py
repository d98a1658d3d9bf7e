"""The foundation's tenant-status fetcher (identity's and core's), against a real
grpc.aio server playing the company service's GetCompanyStatus.

- UNAVAILABLE and DEADLINE_EXCEEDED are retried (the call is an idempotent
  read), up to ``attempts``, then the last error is raised;
- NOT_FOUND is the answer "no such company" (NotFound, asked once); any other
  error (PERMISSION_DENIED) is raised at once, never retried;
- every attempt carries the service account's token; a soft-deleted company,
  ACTIVE in name only, reads as DELETED and may not act;
- the feature flags (read-only) and the two limits come through; a company
  service that predates the limits (zeros) gives no backdating and the default
  renewal offer period.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from types import MappingProxyType
from typing import Any

import grpc
import pytest

from cardinsa.company.v1 import company_service_pb2_grpc, resources_pb2
from cardinsa_foundation.errors import NotFound, PermissionDenied, Unavailable
from cardinsa_foundation.tenancy import (
    ServiceCredentials,
    StatusFetcher,
    TenantStatusCache,
    company_status_fetcher,
)

pytestmark = pytest.mark.integration

TOKEN = "service-token"


class FakeCompany(company_service_pb2_grpc.CompanyServiceServicer):
    """Fails with ``failures`` (one code per call, in order), then answers."""

    def __init__(self) -> None:
        self.failures: list[grpc.StatusCode] = []
        self.calls: list[str] = []
        self.deleted = False
        self.limits = (7, 45)

    async def GetCompanyStatus(self, request: Any, context: Any) -> resources_pb2.CompanyStatus:
        metadata = dict(context.invocation_metadata())
        self.calls.append(metadata.get("authorization", ""))
        if self.failures:
            await context.abort(self.failures.pop(0), "scripted failure")
        if request.company_id == "missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such company")
        return resources_pb2.CompanyStatus(
            company_id=request.company_id,
            state=resources_pb2.Company.ACTIVE,
            active=not self.deleted,
            default_currency="EUR",
            time_zone="Europe/Berlin",
            locale="de",
            feature_flags={"flat_rating": True, "beta_ui": False},
            max_backdate_days=self.limits[0],
            renewal_offer_days=self.limits[1],
        )


@pytest.fixture
async def company() -> AsyncIterator[tuple[FakeCompany, StatusFetcher]]:
    fake = FakeCompany()
    server = grpc.aio.server()
    company_service_pb2_grpc.add_CompanyServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")

    async def obtain() -> tuple[str, float]:
        return TOKEN, 4_000_000_000.0

    try:
        yield (
            fake,
            company_status_fetcher(
                channel, ServiceCredentials(obtain), timeout_s=2.0, backoff_s=0.01
            ),
        )
    finally:
        await channel.close()
        await server.stop(None)


async def test_unavailable_is_retried_then_the_answer_is_returned(
    company: tuple[FakeCompany, StatusFetcher],
) -> None:
    fake, fetch = company
    fake.failures = [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED]
    company_id = str(uuid.uuid4())
    status = await fetch(company_id)
    assert len(fake.calls) == 3
    assert fake.calls == [f"Bearer {TOKEN}"] * 3
    assert (status.company_id, status.state, status.may_act) == (company_id, "ACTIVE", True)
    assert (status.default_currency, status.time_zone, status.locale) == (
        "EUR",
        "Europe/Berlin",
        "de",
    )


async def test_unavailable_on_every_attempt_is_raised_after_the_last(
    company: tuple[FakeCompany, StatusFetcher],
) -> None:
    fake, fetch = company
    fake.failures = [grpc.StatusCode.UNAVAILABLE] * 5
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await fetch(str(uuid.uuid4()))
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert len(fake.calls) == 3  # attempts=3
    # The cache turns it into UNAVAILABLE for the caller, not a pass.
    fake.failures = [grpc.StatusCode.UNAVAILABLE] * 3
    with pytest.raises(Unavailable):
        await TenantStatusCache(fetch).require_active(str(uuid.uuid4()))


async def test_not_found_and_refusals_are_answers_not_retried(
    company: tuple[FakeCompany, StatusFetcher],
) -> None:
    fake, fetch = company
    with pytest.raises(NotFound):
        await fetch("missing")
    assert len(fake.calls) == 1
    fake.failures = [grpc.StatusCode.PERMISSION_DENIED]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await fetch(str(uuid.uuid4()))
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert len(fake.calls) == 2


async def test_a_soft_deleted_company_reads_as_deleted_and_may_not_act(
    company: tuple[FakeCompany, StatusFetcher],
) -> None:
    fake, fetch = company
    fake.deleted = True
    status = await fetch(str(uuid.uuid4()))
    assert (status.state, status.may_act) == ("DELETED", False)
    with pytest.raises(PermissionDenied) as refused:
        await TenantStatusCache(fetch).require_active(status.company_id)
    assert refused.value.reason == "TENANT_NOT_ACTIVE"
    assert refused.value.metadata["state"] == "DELETED"


async def test_flags_and_limits_come_through_read_only_and_are_cached(
    company: tuple[FakeCompany, StatusFetcher],
) -> None:
    fake, fetch = company
    company_id = str(uuid.uuid4())
    cache = TenantStatusCache(fetch, ttl_s=3600)
    status = await cache.require_active(company_id)
    assert dict(status.feature_flags) == {"flat_rating": True, "beta_ui": False}
    assert isinstance(status.feature_flags, MappingProxyType)
    with pytest.raises(TypeError):
        status.feature_flags["flat_rating"] = False  # type: ignore[index]
    assert (status.max_backdate_days, status.renewal_offer_days) == (7, 45)
    # The cache answers the next caller with the same status, unasked.
    fake.limits = (1, 2)
    assert await cache.require_active(company_id) is status
    assert len(fake.calls) == 1
    # A company service without the fields sends zeros.
    fake.limits = (0, 0)
    old = await fetch(company_id)
    assert (old.max_backdate_days, old.renewal_offer_days) == (0, 30)
