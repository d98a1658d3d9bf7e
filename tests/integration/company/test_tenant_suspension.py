"""Suspending a company locks its users out everywhere within the documented bound.

The bound is ``tenant_status_ttl_s`` (the tenant-status cache of each service)
plus the length of calls already running. Here it is set to 1 s, and the test
checks the lock-out within twice that.

Setup: a second identity server on the same database (so its tokens verify at
the company service, which reads the same JWKS) whose tenant checks ask the
company service over gRPC, as a platform service account it signs for itself.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from company_harness import CompanyHarness
from support.grpc_errors import error_info
from support.identity_harness import PASSWORD, Account, IdentityHarness, unique_email

from cardinsa.company.v1 import company_service_pb2 as pb
from cardinsa.identity.v1 import (
    auth_service_pb2,
    auth_service_pb2_grpc,
    user_service_pb2,
    user_service_pb2_grpc,
)
from cardinsa_foundation.db import app_role_url
from cardinsa_identity.application.bootstrap import ensure_user_with_role
from cardinsa_identity.main import IdentityApp, build

BOUND_S = 1.0


@pytest_asyncio.fixture
async def checked_identity(
    identity: IdentityHarness, identity_database: str, company: CompanyHarness
) -> AsyncIterator[IdentityApp]:
    settings = identity.settings.model_copy(
        update={"company_address": company.app.server.address, "tenant_status_ttl_s": BOUND_S}
    )
    app = build(settings, app_role_url(identity_database), port=0, metrics_port=0)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def _eventually_refused(call: object, deadline_s: float) -> grpc.aio.AioRpcError:
    """Repeat ``call()`` until it is refused; fail if it still works after the deadline."""
    started = time.monotonic()
    while True:
        try:
            await call()  # type: ignore[operator]
        except grpc.aio.AioRpcError as error:
            return error
        if time.monotonic() - started > deadline_s:
            pytest.fail(f"still allowed {deadline_s:.1f} s after the suspension")
        await asyncio.sleep(0.1)


async def test_suspended_company_is_locked_out_within_the_bound(
    company: CompanyHarness, checked_identity: IdentityApp
) -> None:
    platform = await company.as_(company.platform_admin)
    created = await company.create_company(display_name=f"Soon Suspended {uuid.uuid4().hex[:6]}")
    admin_row = await ensure_user_with_role(
        checked_identity.ctx,
        email=unique_email("suspended-admin"),
        password=PASSWORD,
        company_id=uuid.UUID(created.id),
        role_name="company-admin",
    )
    admin = Account(admin_row.email, PASSWORD, created.id, str(admin_row.user_id))

    async with grpc.aio.insecure_channel(checked_identity.server.address) as channel:
        auth = auth_service_pb2_grpc.AuthServiceStub(channel)
        users = user_service_pb2_grpc.UserServiceStub(channel)
        pair = await auth.Login(auth_service_pb2.LoginRequest(email=admin.email, password=PASSWORD))
        bearer = [("authorization", f"Bearer {pair.access_token}")]
        # Everything works while the company is active.
        await users.GetUser(user_service_pb2.GetUserRequest(user_id=admin.user_id), metadata=bearer)
        await company.companies.GetCompany(
            pb.GetCompanyRequest(company_id=created.id), metadata=bearer
        )

        await company.companies.SuspendCompany(
            pb.SuspendCompanyRequest(
                company_id=created.id, reason="unpaid invoices", etag=created.etag
            ),
            metadata=platform,
        )
        deadline = 2 * BOUND_S

        # The existing access token stops working at identity and at company ...
        for refused in (
            await _eventually_refused(
                lambda: users.GetUser(
                    user_service_pb2.GetUserRequest(user_id=admin.user_id), metadata=bearer
                ),
                deadline,
            ),
            await _eventually_refused(
                lambda: company.companies.GetCompany(
                    pb.GetCompanyRequest(company_id=created.id), metadata=bearer
                ),
                deadline,
            ),
        ):
            assert refused.code() is grpc.StatusCode.PERMISSION_DENIED
            assert error_info(refused).reason == "TENANT_NOT_ACTIVE"
        # ... and no new tokens are issued: login and refresh are refused.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await auth.Login(auth_service_pb2.LoginRequest(email=admin.email, password=PASSWORD))
        assert error_info(caught.value).reason == "TENANT_NOT_ACTIVE"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await auth.RefreshToken(
                auth_service_pb2.RefreshTokenRequest(refresh_token=pair.refresh_token)
            )
        assert caught.value.code() in (
            grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.UNAUTHENTICATED,
        )

        # Reactivation lets them back in, within the same bound.
        suspended = await company.companies.GetCompany(
            pb.GetCompanyRequest(company_id=created.id), metadata=platform
        )
        await company.companies.ReactivateCompany(
            pb.ReactivateCompanyRequest(company_id=created.id, etag=suspended.etag),
            metadata=platform,
        )
        await asyncio.sleep(BOUND_S + 0.2)
        fresh = await auth.Login(
            auth_service_pb2.LoginRequest(email=admin.email, password=PASSWORD)
        )
        assert fresh.access_token
