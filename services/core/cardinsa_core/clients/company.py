"""The company service's ``GetCompanyStatus``, as a fetcher for the tenant cache.

Authenticated as core's service account (a token from identity, renewed before
it expires), with a deadline per attempt and a few retries with backoff on
UNAVAILABLE / DEADLINE_EXCEEDED: the call is an idempotent read. An unknown
company is NOT_FOUND (the cache then treats it like an inactive one).
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from cardinsa.company.v1 import company_service_pb2, company_service_pb2_grpc, resources_pb2
from cardinsa_foundation.errors import NotFound
from cardinsa_foundation.tenancy import ACTIVE, ServiceCredentials, StatusFetcher, TenantStatus

_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


def company_status_fetcher(
    channel: Any,
    credentials: ServiceCredentials,
    *,
    timeout_s: float = 2.0,
    attempts: int = 3,
    backoff_s: float = 0.1,
) -> StatusFetcher:
    stub = company_service_pb2_grpc.CompanyServiceStub(channel)  # type: ignore[no-untyped-call]

    async def fetch(company_id: str) -> TenantStatus:
        for attempt in range(attempts):
            try:
                reply = await stub.GetCompanyStatus(
                    company_service_pb2.GetCompanyStatusRequest(company_id=company_id),
                    metadata=await credentials.metadata(),
                    timeout=timeout_s,
                )
                break
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.NOT_FOUND:
                    raise NotFound("no such company", reason="COMPANY_NOT_FOUND") from None
                if error.code() not in _RETRYABLE or attempt == attempts - 1:
                    raise
                await asyncio.sleep(backoff_s * 2**attempt)
        state = resources_pb2.Company.State.Name(reply.state)
        if not reply.active and state == ACTIVE:
            state = "DELETED"  # soft-deleted: ACTIVE in name only
        return TenantStatus(
            company_id=reply.company_id or company_id,
            state=state,
            default_currency=reply.default_currency,
            time_zone=reply.time_zone,
            locale=reply.locale,
        )

    return fetch
