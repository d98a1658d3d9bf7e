"""GetCompanyStatus: the tenant status other services ask for, about any company."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
import pytest_asyncio
from company_harness import CompanyHarness, failure
from support.grpc_errors import error_info
from support.tokens import TokenMinter

from cardinsa.company.v1 import company_service_pb2, company_service_pb2_grpc, resources_pb2
from cardinsa_company.main import build
from cardinsa_company.settings import CompanyServiceSettings
from cardinsa_foundation.auth import JwksCache, TokenVerifier
from cardinsa_foundation.db import app_role_url

pb = company_service_pb2


async def test_platform_admin_reads_the_status_of_any_company(company: CompanyHarness) -> None:
    admin = await company.as_(company.platform_admin)
    for target in (company.company_a, company.company_b):
        status = await company.companies.GetCompanyStatus(
            pb.GetCompanyStatusRequest(company_id=target.id), metadata=admin
        )
        assert status.company_id == target.id
        assert status.default_currency == target.default_currency
        assert status.time_zone == target.time_zone
        assert status.locale == target.locale
        assert status.country == target.country
        # The name documents are issued in: the legal name, else the display name.
        assert status.legal_name == (target.legal_name or target.display_name)


async def test_a_company_admin_may_not_read_status_even_of_its_own_company(
    company: CompanyHarness,
) -> None:
    as_a = await company.as_(company.admin_a)
    for target in (company.company_a.id, company.company_b.id):
        error = await failure(
            company.companies.GetCompanyStatus(
                pb.GetCompanyStatusRequest(company_id=target), metadata=as_a
            )
        )
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        info = error_info(error)
        assert (info.reason, info.metadata["permission"]) == (
            "PERMISSION_MISSING",
            "companies.get_status",
        )


async def test_unknown_company_is_not_found(company: CompanyHarness) -> None:
    admin = await company.as_(company.platform_admin)
    for unknown in (str(uuid.uuid4()), "garbage"):
        error = await failure(
            company.companies.GetCompanyStatus(
                pb.GetCompanyStatusRequest(company_id=unknown), metadata=admin
            )
        )
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert error_info(error).reason == "COMPANY_NOT_FOUND"


# ----------------------------------------------- a platform service account


@pytest_asyncio.fixture(scope="module")
async def service_token_server(
    company: CompanyHarness, company_database: str, company_settings: CompanyServiceSettings
) -> AsyncIterator[tuple[Any, TokenMinter]]:
    """A second server on the same database whose verifier trusts a test signer,
    so the test can hold a token with exactly `companies.get_status`, as a platform
    service account (identity, core) would."""
    minter = TokenMinter()

    async def jwks() -> Mapping[str, Any]:
        return minter.jwks()

    verifier = TokenVerifier(
        JwksCache(jwks),
        issuer=company_settings.jwt_issuer,
        audience=company_settings.jwt_audience,
    )
    app = build(
        company_settings,
        app_role_url(company_database),
        port=0,
        metrics_port=0,
        verifier=verifier,
    )
    await app.start()
    channel = grpc.aio.insecure_channel(app.server.address)
    try:
        yield company_service_pb2_grpc.CompanyServiceStub(channel), minter
    finally:
        await channel.close()
        await app.stop()


async def test_a_service_account_with_the_permission_reads_any_company_and_nothing_more(
    company: CompanyHarness, service_token_server: tuple[Any, TokenMinter]
) -> None:
    stub, minter = service_token_server
    token = minter.token(
        kind="service_account",
        cid=None,  # a platform service account (as identity's own): no tenant to check
        perms=["companies.get_status"],
        roles=[],
    )
    metadata = [("authorization", f"Bearer {token}")]
    for target in (company.company_a, company.company_b):
        status = await stub.GetCompanyStatus(
            pb.GetCompanyStatusRequest(company_id=target.id), metadata=metadata
        )
        assert status.company_id == target.id
        assert status.state in (resources_pb2.Company.ACTIVE, resources_pb2.Company.SUSPENDED)
    error = await failure(
        stub.GetCompany(pb.GetCompanyRequest(company_id=company.company_a.id), metadata=metadata)
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
