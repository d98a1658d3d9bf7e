"""Client-side helpers for the company tests: the harness the `company` fixture yields."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from support.identity_harness import Account, IdentityHarness

from cardinsa.company.v1 import (
    company_service_pb2,
    company_service_pb2_grpc,
    organization_service_pb2_grpc,
    resources_pb2,
)
from cardinsa_company.main import CompanyApp

Metadata = list[tuple[str, str]]
# Tokens live 15 minutes; reuse one for at most 10.
_TOKEN_REUSE_S = 600


@dataclass
class CompanyHarness:
    app: CompanyApp
    channel: grpc.aio.Channel
    identity: IdentityHarness
    company_a: resources_pb2.Company = field(init=False)
    company_b: resources_pb2.Company = field(init=False)
    companies: Any = field(init=False)
    org: Any = field(init=False)
    _tokens: dict[str, tuple[str, float]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.companies = company_service_pb2_grpc.CompanyServiceStub(self.channel)
        self.org = organization_service_pb2_grpc.OrganizationServiceStub(self.channel)

    @property
    def platform_admin(self) -> Account:
        return self.identity.platform_admin

    @property
    def admin_a(self) -> Account:
        return self.identity.admin_a

    @property
    def admin_b(self) -> Account:
        return self.identity.admin_b

    async def as_(self, account: Account) -> Metadata:
        """Bearer metadata of ``account`` (a real login at identity, reused a while)."""
        cached = self._tokens.get(account.email)
        if cached is None or time.monotonic() - cached[1] > _TOKEN_REUSE_S:
            cached = (await self.identity.token(account), time.monotonic())
            self._tokens[account.email] = cached
        return self.identity.bearer(cached[0])

    async def create_company(
        self, *, company_id: str = "", request_id: str = "", **fields: Any
    ) -> resources_pb2.Company:
        """A new company created by the platform admin (valid defaults for the
        required fields, overridden by ``fields``)."""
        values: dict[str, Any] = {
            "display_name": f"Company {uuid.uuid4().hex[:8]}",
            "country": "DE",
            "default_currency": "EUR",
            "time_zone": "Europe/Berlin",
        }
        values.update(fields)
        reply: resources_pb2.Company = await self.companies.CreateCompany(
            company_service_pb2.CreateCompanyRequest(
                company=resources_pb2.Company(**values),
                company_id=company_id,
                request_id=request_id,
            ),
            metadata=await self.as_(self.platform_admin),
        )
        return reply


async def failure(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value
