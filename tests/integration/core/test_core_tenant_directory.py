"""Core asking the company service whether a tenant may act, and in which
currency: the gRPC tenant directory against a stand-in company server that
speaks the generated `cardinsa.company.v1.CompanyService` contract.

Core authenticates as a service account (an API key exchanged with the real
identity server); the stand-in verifies that token like any Cardinsa service.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import pytest_asyncio
from core_harness import CoreHarness, Tenant
from support.grpc_errors import error_info

from cardinsa.company.v1 import company_service_pb2, company_service_pb2_grpc, resources_pb2
from cardinsa.core.v1 import product_service_pb2 as rb
from cardinsa.core.v1 import product_service_pb2_grpc
from cardinsa.core.v1 import resources_pb2 as res
from cardinsa.identity.v1 import access_service_pb2
from cardinsa.identity.v1 import resources_pb2 as identity_resources
from cardinsa_core.main import CoreApp, build
from cardinsa_core.settings import CoreSettings
from cardinsa_foundation.auth import JwksCache, TokenVerifier, identity_jwks_fetcher
from cardinsa_foundation.context import Principal, PrincipalKind
from cardinsa_foundation.db import app_role_url

COMPANY = resources_pb2.Company


@dataclass
class StandInCompanyService(company_service_pb2_grpc.CompanyServiceServicer):
    verifier: TokenVerifier
    statuses: dict[str, tuple[int, str]] = field(default_factory=dict)
    callers: list[Principal] = field(default_factory=list)

    async def GetCompanyStatus(
        self, request: company_service_pb2.GetCompanyStatusRequest, context: Any
    ) -> resources_pb2.CompanyStatus:
        metadata = dict(context.invocation_metadata())
        token = metadata.get("authorization", "").removeprefix("Bearer ")
        principal = await self.verifier.verify(token)
        self.callers.append(principal)
        if request.company_id not in self.statuses:
            await context.abort(grpc.StatusCode.NOT_FOUND, "company not found")
        state, currency = self.statuses[request.company_id]
        return resources_pb2.CompanyStatus(
            company_id=request.company_id,
            state=state,
            active=state == COMPANY.ACTIVE,
            default_currency=currency,
        )


@dataclass
class Wired:
    app: CoreApp
    company: StandInCompanyService
    channel: grpc.aio.Channel


async def service_api_key(core: CoreHarness) -> str:
    """A platform service account for core with the permissions it needs (tenant
    status from company, token revocations from identity)."""
    identity = core.identity
    md = identity.bearer(await identity.token(identity.platform_admin))
    account = await identity.access.CreateServiceAccount(
        access_service_pb2.CreateServiceAccountRequest(
            service_account=identity_resources.ServiceAccount(name=f"core-{uuid.uuid4().hex[:6]}")
        ),
        metadata=md,
    )
    key = await identity.access.CreateApiKey(
        access_service_pb2.CreateApiKeyRequest(
            service_account_id=account.id,
            api_key=identity_resources.ApiKey(
                display_name="core tenant checks",
                permissions=["companies.get_status", "revocations.watch"],
            ),
        ),
        metadata=md,
    )
    return str(key.secret)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def wired(core: CoreHarness, core_database: str) -> AsyncIterator[Wired]:
    identity = core.identity
    async with grpc.aio.insecure_channel(identity.app.server.address) as identity_channel:
        company = StandInCompanyService(
            TokenVerifier(
                JwksCache(identity_jwks_fetcher(identity_channel)),
                issuer=identity.settings.jwt_issuer,
                audience=identity.settings.jwt_audience,
            )
        )
        server = grpc.aio.server()
        company_service_pb2_grpc.add_CompanyServiceServicer_to_server(company, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        settings = CoreSettings(
            _env_file=None,
            environment="test",
            identity_address=identity.app.server.address,
            company_address=f"127.0.0.1:{port}",
            service_api_key=await service_api_key(core),
            tenant_status_ttl_s=0,
            db_pool_size=5,
        )
        app = build(settings, app_role_url(core_database), port=0, metrics_port=0)
        await app.start()
        channel = grpc.aio.insecure_channel(app.server.address)
        try:
            yield Wired(app, company, channel)
        finally:
            await channel.close()
            await app.stop()
            await server.stop(0)


async def create_product(wired: Wired, tenant: Tenant) -> res.Product:
    stub = product_service_pb2_grpc.ProductServiceStub(wired.channel)
    return await stub.CreateProduct(
        rb.CreateProductRequest(
            product=res.Product(
                code=f"T-{uuid.uuid4().hex[:6].upper()}",
                line_of_business=res.Product.TRAVEL,
                name="Travel",
                base_premium={"units": 40},
                term_months=1,
            )
        ),
        metadata=await tenant.md(),
    )


async def test_an_active_tenant_acts_in_its_company_currency(
    wired: Wired, core: CoreHarness
) -> None:
    tenant = await core.tenant()
    wired.company.statuses[tenant.company_id] = (COMPANY.ACTIVE, "EUR")
    product = await create_product(wired, tenant)
    assert product.currency_code == "EUR" and product.base_premium.currency_code == "EUR"
    caller = wired.company.callers[-1]
    assert caller.kind is PrincipalKind.SERVICE_ACCOUNT
    assert caller.permissions == frozenset({"companies.get_status", "revocations.watch"})


@pytest.mark.parametrize("state", [COMPANY.SUSPENDED, COMPANY.CLOSED, None])
async def test_a_suspended_closed_or_unknown_tenant_is_refused(
    wired: Wired, core: CoreHarness, state: int | None
) -> None:
    tenant = await core.tenant()
    if state is not None:
        wired.company.statuses[tenant.company_id] = (state, "EUR")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create_product(wired, tenant)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(caught.value).reason == "TENANT_NOT_ACTIVE"
