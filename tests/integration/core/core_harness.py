"""Client-side helpers for tests against a running core server.

A :class:`Tenant` is a brand-new company with its own admin (created through
identity's bootstrap), so every test module gets a company whose counters,
bands and data no other test touches.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import grpc
from google.protobuf import field_mask_pb2
from google.type import date_pb2, money_pb2
from support.identity_harness import PASSWORD, Account, IdentityHarness, unique_email

from cardinsa.core.v1 import (
    billing_service_pb2_grpc,
    claim_service_pb2,
    claim_service_pb2_grpc,
    core_service_pb2_grpc,
    document_service_pb2_grpc,
    policy_service_pb2,
    policy_service_pb2_grpc,
    policyholder_service_pb2,
    policyholder_service_pb2_grpc,
    product_service_pb2,
    product_service_pb2_grpc,
    resources_pb2,
)
from cardinsa_core.main import CoreApp
from cardinsa_identity.application.bootstrap import ensure_user_with_role

P = resources_pb2.Policy
C = resources_pb2.Claim


def money(amount: str | int | Decimal, currency: str = "USD") -> money_pb2.Money:
    value = Decimal(amount)
    units = int(value)
    nanos = int((value - units) * 1_000_000_000)
    return money_pb2.Money(currency_code=currency, units=units, nanos=nanos)


def amount(value: money_pb2.Money) -> Decimal:
    return Decimal(value.units) + Decimal(value.nanos) / Decimal(1_000_000_000)


def gdate(day: date) -> date_pb2.Date:
    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


def pydate(value: date_pb2.Date) -> date:
    return date(value.year, value.month, value.day)


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


def new_request_id() -> str:
    return str(uuid.uuid4())


TODAY = date.today()


@dataclass
class Tenant:
    """A fresh company: its admin and users by role, with their tokens."""

    harness: CoreHarness
    company_id: str
    admin: Account
    tokens: dict[str, str] = field(default_factory=dict)

    async def token(self, role: str = "company-admin") -> str:
        if role not in self.tokens:
            if role == "company-admin":
                account = self.admin
            else:
                account = await self.harness.identity.create_user(self.admin, roles=[role])
            self.tokens[role] = await self.harness.identity.token(account)
        return self.tokens[role]

    async def md(self, role: str = "company-admin") -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {await self.token(role)}")]

    # ------------------------------------------------------------- builders

    async def product(
        self,
        *,
        code: str | None = None,
        base_premium: str = "500",
        limit: str = "10000",
        waiting_days: int = 0,
        currency: str = "USD",
        activate: bool = True,
        limit_period: int = resources_pb2.Coverage.PER_YEAR,
        deductible: str = "0",
        coinsurance_basis_points: int | None = 2000,
        rating_rules: resources_pb2.RatingRules | None = None,
        min_entry_age: int = 0,
        max_entry_age: int = 0,
    ) -> resources_pb2.Product:
        """An OUTPATIENT coverage: by default PER_YEAR, limit 10 000, no deductible,
        20 % co-insurance (``coinsurance_basis_points`` None: no co-insurance), no
        entry ages; no rating rules unless ``rating_rules`` is given."""
        md = await self.md()
        coverage = resources_pb2.Coverage(
            code="OUTPATIENT",
            name="Outpatient care",
            limit=money(limit, currency),
            limit_period=limit_period,
            deductible=money(deductible, currency),
            waiting_period_days=waiting_days,
            min_entry_age=min_entry_age,
            max_entry_age=max_entry_age,
        )
        if coinsurance_basis_points is not None:
            coverage.coinsurance_basis_points = coinsurance_basis_points
        product = await self.harness.products.CreateProduct(
            product_service_pb2.CreateProductRequest(
                product=resources_pb2.Product(
                    code=code or f"P-{uuid.uuid4().hex[:8].upper()}",
                    line_of_business=resources_pb2.Product.MEDICAL,
                    name="Health Basic",
                    currency_code=currency,
                    base_premium=money(base_premium, currency),
                    term_months=12,
                    coverages=[coverage],
                    rating_rules=rating_rules,
                )
            ),
            metadata=md,
        )
        if activate:
            product = await self.harness.products.ActivateProduct(
                product_service_pb2.ActivateProductRequest(product_id=product.id), metadata=md
            )
        return product

    async def holder(
        self, *, dependents: int = 1, national_id: str = ""
    ) -> resources_pb2.Policyholder:
        return await self.harness.policyholders.CreatePolicyholder(
            policyholder_service_pb2.CreatePolicyholderRequest(
                policyholder=resources_pb2.Policyholder(
                    kind=resources_pb2.Policyholder.PERSON,
                    given_name="Amira",
                    family_name=f"Haddad{uuid.uuid4().hex[:6]}",
                    date_of_birth=gdate(date(1990, 2, 3)),
                    national_id=national_id or f"784{uuid.uuid4().int % 10**12:012d}",
                    email=unique_email("holder"),
                    dependents=[
                        resources_pb2.Dependent(
                            relation=resources_pb2.Dependent.CHILD,
                            given_name=f"Child{i}",
                            family_name="Haddad",
                            national_id=f"CH{uuid.uuid4().int % 10**10:010d}",
                        )
                        for i in range(dependents)
                    ],
                )
            ),
            metadata=await self.md(),
        )

    async def draft(
        self,
        holder: resources_pb2.Policyholder,
        product: resources_pb2.Product,
        *,
        effective: date | None = None,
        expiry: date | None = None,
        with_dependents: bool = True,
    ) -> resources_pb2.Policy:
        effective = effective or TODAY - timedelta(days=30)
        members = [resources_pb2.InsuredMember(policyholder=True)]
        if with_dependents:
            members += [resources_pb2.InsuredMember(dependent_id=d.id) for d in holder.dependents]
        policy = resources_pb2.Policy(
            policyholder_id=holder.id,
            product_id=product.id,
            effective_date=gdate(effective),
            sum_insured=money("100000", product.currency_code),
            payment_frequency=P.MONTHLY,
            insured_members=members,
        )
        if expiry is not None:
            policy.expiry_date.CopyFrom(gdate(expiry))
        return await self.harness.policies.CreatePolicy(
            policy_service_pb2.CreatePolicyRequest(policy=policy), metadata=await self.md()
        )

    async def quoted(self, holder: Any, product: Any, **kwargs: Any) -> resources_pb2.Policy:
        draft = await self.draft(holder, product, **kwargs)
        return await self.harness.policies.QuotePolicy(
            policy_service_pb2.QuotePolicyRequest(policy_id=draft.id, etag=draft.etag),
            metadata=await self.md(),
        )

    async def underwritten(self, policy: resources_pb2.Policy) -> resources_pb2.Policy:
        """The quote with every open underwriting issue approved by the company admin
        (a backdated start, a referral ...); as it is then (a decision changes its etag)."""
        md = await self.md()
        page = await self.harness.policies.ListUnderwritingIssues(
            policy_service_pb2.ListUnderwritingIssuesRequest(policy_id=policy.id, page_size=100),
            metadata=md,
        )
        opened = [
            i for i in page.underwriting_issues if i.state == resources_pb2.UnderwritingIssue.OPEN
        ]
        if not opened:
            return policy
        for issue in opened:
            await self.harness.policies.ApproveUnderwritingIssue(
                policy_service_pb2.ApproveUnderwritingIssueRequest(
                    policy_id=policy.id, issue_id=issue.id, note="approved by the test harness"
                ),
                metadata=md,
            )
        return await self.harness.policies.GetPolicy(
            policy_service_pb2.GetPolicyRequest(policy_id=policy.id), metadata=md
        )

    async def in_force(
        self, holder: Any = None, product: Any = None, **kwargs: Any
    ) -> resources_pb2.Policy:
        holder = holder or await self.holder()
        product = product or await self.product()
        quoted = await self.underwritten(await self.quoted(holder, product, **kwargs))
        return await self.harness.policies.BindPolicy(
            policy_service_pb2.BindPolicyRequest(policy_id=quoted.id, etag=quoted.etag),
            metadata=await self.md(),
        )

    async def claim(
        self, policy: resources_pb2.Policy, *, claimed: str = "800", incident: date | None = None
    ) -> resources_pb2.Claim:
        return await self.harness.claims.CreateClaim(
            claim_service_pb2.CreateClaimRequest(
                claim=resources_pb2.Claim(
                    policy_id=policy.id,
                    claimant=resources_pb2.InsuredMember(policyholder=True),
                    claim_type=C.MEDICAL,
                    description="broken arm",
                    coverage_code="OUTPATIENT",
                    incident_date=gdate(incident or TODAY - timedelta(days=2)),
                    claimed_amount=money(claimed, policy.currency_code),
                )
            ),
            metadata=await self.md(),
        )

    async def claim_under_review(self, policy: Any, **kwargs: Any) -> resources_pb2.Claim:
        claims, md = self.harness.claims, await self.md()
        claim = await self.claim(policy, **kwargs)
        claim = await claims.SubmitClaim(
            claim_service_pb2.SubmitClaimRequest(claim_id=claim.id), metadata=md
        )
        return await claims.ReviewClaim(
            claim_service_pb2.ReviewClaimRequest(claim_id=claim.id), metadata=md
        )


@dataclass
class CoreHarness:
    app: CoreApp
    channel: grpc.aio.Channel
    identity: IdentityHarness
    policyholders: Any = field(init=False)
    products: Any = field(init=False)
    policies: Any = field(init=False)
    claims: Any = field(init=False)
    core: Any = field(init=False)
    billing: Any = field(init=False)
    documents: Any = field(init=False)

    def __post_init__(self) -> None:
        self.policyholders = policyholder_service_pb2_grpc.PolicyholderServiceStub(self.channel)
        self.products = product_service_pb2_grpc.ProductServiceStub(self.channel)
        self.policies = policy_service_pb2_grpc.PolicyServiceStub(self.channel)
        self.claims = claim_service_pb2_grpc.ClaimServiceStub(self.channel)
        self.core = core_service_pb2_grpc.CoreServiceStub(self.channel)
        self.billing = billing_service_pb2_grpc.BillingServiceStub(self.channel)
        self.documents = document_service_pb2_grpc.DocumentServiceStub(self.channel)

    @property
    def address(self) -> str:
        return self.app.server.address

    async def tenant(self) -> Tenant:
        """A new company with its own company-admin."""
        result = await ensure_user_with_role(
            self.identity.app.ctx,
            email=unique_email("core-admin"),
            password=PASSWORD,
            company_id=uuid.uuid4(),
            role_name="company-admin",
        )
        admin = Account(result.email, PASSWORD, str(result.company_id), str(result.user_id))
        return Tenant(self, admin.company_id, admin)


__all__ = ["claim_service_pb2", "mask", "new_request_id", "policy_service_pb2"]


@contextmanager
def clock_at(core: CoreHarness, moment: datetime) -> Iterator[None]:
    """Core's clock stands at ``moment`` (UTC) inside the block, then runs again."""
    ctx = core.app.ctx
    before = ctx.clock
    ctx.clock = lambda: moment
    try:
        yield
    finally:
        ctx.clock = before
