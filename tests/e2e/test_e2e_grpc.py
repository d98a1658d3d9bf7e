"""The journey's main steps as native gRPC (generated stubs, grpc.aio), twice:
through the gateway's one port, and straight to each service's own port.

Through the gateway Envoy verifies the token and routes by gRPC service to
identity, company or core; directly, each service verifies the token itself
(JWKS from identity) and core asks company about the tenant. Both must give
the same answers, errors included (status and google.rpc details).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import grpc
import pytest
from google.type import date_pb2, money_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.grpc_errors import error_info

from cardinsa.company.v1 import company_service_pb2, company_service_pb2_grpc
from cardinsa.core.v1 import (
    claim_service_pb2,
    claim_service_pb2_grpc,
    core_service_pb2,
    core_service_pb2_grpc,
    policy_service_pb2,
    policy_service_pb2_grpc,
    policyholder_service_pb2,
    policyholder_service_pb2_grpc,
    product_service_pb2,
    product_service_pb2_grpc,
    resources_pb2,
)
from cardinsa.identity.v1 import (
    access_service_pb2,
    access_service_pb2_grpc,
    auth_service_pb2,
    auth_service_pb2_grpc,
    identity_service_pb2,
    identity_service_pb2_grpc,
    user_service_pb2,
    user_service_pb2_grpc,
)
from cardinsa.identity.v1 import resources_pb2 as identity_resources
from e2e.suite_harness import ADMIN_EMAIL, PASSWORD, SuiteProcess, unique_email

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

C = resources_pb2.Claim
P = resources_pb2.Policy


def money(units: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code="EUR", units=units)


def gdate(day: date) -> date_pb2.Date:
    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


@dataclass
class Stubs:
    auth: Any
    users: Any
    access: Any
    identity: Any
    companies: Any
    policyholders: Any
    products: Any
    policies: Any
    claims: Any
    core: Any


@asynccontextmanager
async def stubs(suite: SuiteProcess, route: str) -> AsyncIterator[Stubs]:
    """Stubs over the gateway (one channel) or over each service's own port."""
    if route == "gateway":
        addresses = dict.fromkeys(("identity", "company", "core"), suite.gateway)
    else:
        addresses = {name: suite.service_address(name) for name in ("identity", "company", "core")}
    channels = {name: grpc.aio.insecure_channel(address) for name, address in addresses.items()}
    try:
        i, co, c = channels["identity"], channels["company"], channels["core"]
        yield Stubs(
            auth=auth_service_pb2_grpc.AuthServiceStub(i),
            users=user_service_pb2_grpc.UserServiceStub(i),
            access=access_service_pb2_grpc.AccessServiceStub(i),
            identity=identity_service_pb2_grpc.IdentityServiceStub(i),
            companies=company_service_pb2_grpc.CompanyServiceStub(co),
            policyholders=policyholder_service_pb2_grpc.PolicyholderServiceStub(c),
            products=product_service_pb2_grpc.ProductServiceStub(c),
            policies=policy_service_pb2_grpc.PolicyServiceStub(c),
            claims=claim_service_pb2_grpc.ClaimServiceStub(c),
            core=core_service_pb2_grpc.CoreServiceStub(c),
        )
    finally:
        for channel in channels.values():
            await channel.close()


async def login(s: Stubs, email: str) -> list[tuple[str, str]]:
    tokens = await s.auth.Login(
        auth_service_pb2.LoginRequest(email=email, password=PASSWORD), timeout=20
    )
    assert tokens.token_type == "Bearer" and tokens.access_token
    return bearer(tokens.access_token)


async def user_with_role(s: Stubs, admin: list[tuple[str, str]], role: str) -> Any:
    user = await s.users.CreateUser(
        user_service_pb2.CreateUserRequest(
            user=identity_resources.User(email=unique_email(f"grpc-{role}")),
            password=PASSWORD,
            request_id=str(uuid.uuid4()),
            password_permanent=True,
        ),
        metadata=admin,
    )
    roles = await s.access.ListRoles(
        access_service_pb2.ListRolesRequest(page_size=100), metadata=admin
    )
    role_id = next(r.id for r in roles.roles if r.name == role)
    await s.access.CreateRoleBinding(
        access_service_pb2.CreateRoleBindingRequest(
            role_binding=identity_resources.RoleBinding(user_id=user.id, role_id=role_id)
        ),
        metadata=admin,
    )
    return user


@pytest.mark.parametrize("route", ["gateway", "direct"])
async def test_grpc_journey(suite: SuiteProcess, route: str) -> None:
    async with asyncio.timeout(90), stubs(suite, route) as s:
        # --- operator view: health of the service behind the address ----------------
        if route == "direct":
            async with grpc.aio.insecure_channel(suite.service_address("core")) as channel:
                health = health_pb2_grpc.HealthStub(channel)
                reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        else:
            async with grpc.aio.insecure_channel(suite.gateway) as channel:
                health = health_pb2_grpc.HealthStub(channel)
                reply = await health.Check(
                    health_pb2.HealthCheckRequest(service=""),
                    metadata=[("x-cardinsa-upstream", "core")],
                    timeout=5,
                )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

        # --- identity: log in, users with roles -------------------------------------
        admin = await login(s, ADMIN_EMAIL)
        underwriter = await user_with_role(s, admin, "underwriter")
        adjuster = await user_with_role(s, admin, "claims-adjuster")
        uw, adj = await login(s, underwriter.email), await login(s, adjuster.email)

        # --- company: the caller's own company ---------------------------------------
        company = await s.companies.GetCompany(
            company_service_pb2.GetCompanyRequest(company_id=suite.demo_company_id),
            metadata=admin,
        )
        assert company.display_name == "Demo Insurance"

        # --- core: policyholder, product, policy -------------------------------------
        holder = await s.policyholders.CreatePolicyholder(
            policyholder_service_pb2.CreatePolicyholderRequest(
                policyholder=resources_pb2.Policyholder(
                    kind=resources_pb2.Policyholder.PERSON,
                    given_name="Omar",
                    family_name=f"Rahman{uuid.uuid4().hex[:6]}",
                    date_of_birth=gdate(date(1985, 7, 9)),
                    national_id=f"784{uuid.uuid4().int % 10**12:012d}",
                    email=unique_email("grpc-holder"),
                )
            ),
            metadata=uw,
        )
        draft_product = resources_pb2.Product(
            code=f"G-{uuid.uuid4().hex[:8].upper()}",
            line_of_business=resources_pb2.Product.MEDICAL,
            name="Health Basic",
            currency_code="EUR",
            base_premium=money(500),
            term_months=12,
            coverages=[
                resources_pb2.Coverage(
                    code="OUTPATIENT",
                    name="Outpatient care",
                    limit=money(10000),
                    limit_period=resources_pb2.Coverage.PER_YEAR,
                    deductible=money(0),
                    coinsurance_basis_points=2000,
                )
            ],
        )
        # The underwriter may not create products: PERMISSION_DENIED with details,
        # through Envoy exactly as from the service.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await s.products.CreateProduct(
                product_service_pb2.CreateProductRequest(product=draft_product), metadata=uw
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info(refused.value).reason == "PERMISSION_MISSING"
        product = await s.products.CreateProduct(
            product_service_pb2.CreateProductRequest(product=draft_product), metadata=admin
        )
        product = await s.products.ActivateProduct(
            product_service_pb2.ActivateProductRequest(product_id=product.id, etag=product.etag),
            metadata=admin,
        )
        assert product.state == resources_pb2.Product.ACTIVE
        policy = await s.policies.CreatePolicy(
            policy_service_pb2.CreatePolicyRequest(
                policy=resources_pb2.Policy(
                    policyholder_id=holder.id,
                    product_id=product.id,
                    effective_date=gdate(date.today() - timedelta(days=20)),
                    sum_insured=money(100000),
                    payment_frequency=P.MONTHLY,
                    insured_members=[resources_pb2.InsuredMember(policyholder=True)],
                )
            ),
            metadata=uw,
        )
        policy = await s.policies.QuotePolicy(
            policy_service_pb2.QuotePolicyRequest(policy_id=policy.id, etag=policy.etag),
            metadata=uw,
        )
        assert policy.state == P.QUOTED
        policy = await s.policies.BindPolicy(
            policy_service_pb2.BindPolicyRequest(policy_id=policy.id, etag=policy.etag),
            metadata=uw,
        )
        assert policy.state == P.IN_FORCE and policy.policy_number

        # --- core: the claim from first notice to closure ----------------------------
        claim = await s.claims.CreateClaim(
            claim_service_pb2.CreateClaimRequest(
                claim=resources_pb2.Claim(
                    policy_id=policy.id,
                    claimant=resources_pb2.InsuredMember(policyholder=True),
                    claim_type=C.MEDICAL,
                    description="sprained ankle",
                    coverage_code="OUTPATIENT",
                    incident_date=gdate(date.today() - timedelta(days=3)),
                    claimed_amount=money(600),
                )
            ),
            metadata=adj,
        )
        cid = claim.id
        claim = await s.claims.SubmitClaim(
            claim_service_pb2.SubmitClaimRequest(claim_id=cid, etag=claim.etag), metadata=adj
        )
        assert claim.state == C.SUBMITTED and claim.claim_number
        claim = await s.claims.ReviewClaim(
            claim_service_pb2.ReviewClaimRequest(claim_id=cid), metadata=adj
        )
        assert claim.state == C.UNDER_REVIEW and claim.assigned_adjuster_id == adjuster.id
        # 20 % co-insurance: of 600 claimed, 480 is payable; more is refused.
        assert (claim.benefit.coinsurance.units, claim.benefit.payable.units) == (120, 480)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await s.claims.ApproveClaim(
                claim_service_pb2.ApproveClaimRequest(claim_id=cid, approved_amount=money(600)),
                metadata=adj,
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(refused.value).reason == "EXCEEDS_PAYABLE"
        assert Decimal(error_info(refused.value).metadata["payable_amount"]) == 480
        claim = await s.claims.ApproveClaim(
            claim_service_pb2.ApproveClaimRequest(claim_id=cid, approved_amount=money(480)),
            metadata=adj,
        )
        assert claim.state == C.APPROVED and claim.benefit.final
        claim = await s.claims.PayClaim(
            claim_service_pb2.PayClaimRequest(claim_id=cid, payment_reference=f"G-{route}"),
            metadata=adj,
        )
        assert claim.state == C.PAID and claim.paid_amount.units == 480
        claim = await s.claims.CloseClaim(
            claim_service_pb2.CloseClaimRequest(claim_id=cid), metadata=adj
        )
        assert claim.state == C.CLOSED

        # --- audit trails --------------------------------------------------------------
        core_events = await s.core.ListAuditEvents(
            core_service_pb2.ListAuditEventsRequest(page_size=100, filter=f'entity_id = "{cid}"'),
            metadata=admin,
        )
        assert [(e.action, e.actor_id) for e in reversed(core_events.audit_events)] == [
            (f"claim.{verb}", adjuster.id)
            for verb in ("create", "submit", "review", "approve", "pay", "close")
        ]
        policy_events = await s.core.ListAuditEvents(
            core_service_pb2.ListAuditEventsRequest(
                page_size=100, filter=f'entity_id = "{policy.id}"'
            ),
            metadata=admin,
        )
        assert {(e.action, e.actor_id) for e in policy_events.audit_events} == {
            (f"policy.{verb}", underwriter.id) for verb in ("create", "quote", "bind")
        }
        identity_events = await s.identity.ListAuditEvents(
            identity_service_pb2.ListAuditEventsRequest(
                page_size=100, filter=f'entity_id = "{adjuster.id}"'
            ),
            metadata=admin,
        )
        actions = {(e.action, e.actor_id) for e in identity_events.audit_events}
        assert ("login.succeeded", adjuster.id) in actions
        assert any(action == "user.create" for action, _ in actions), actions
