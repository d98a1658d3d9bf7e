"""Core asking the company service whether a tenant may act, in which currency,
time zone, with which feature flags and limits: the gRPC tenant directory
against a stand-in company server that speaks the generated
`cardinsa.company.v1.CompanyService` contract, and against the real company
service (its status carries what the company's settings say).

Core authenticates as a service account (an API key exchanged with the real
identity server); the stand-in verifies that token like any Cardinsa service.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import grpc
import pypdf
import pytest
import pytest_asyncio
from core_harness import TODAY, CoreHarness, Tenant, amount, money
from google.protobuf import field_mask_pb2
from support.grpc_errors import error_info

from cardinsa.company.v1 import company_service_pb2, company_service_pb2_grpc, resources_pb2
from cardinsa.core.v1 import document_service_pb2, product_service_pb2_grpc
from cardinsa.core.v1 import policy_service_pb2 as pb
from cardinsa.core.v1 import product_service_pb2 as rb
from cardinsa.core.v1 import resources_pb2 as res
from cardinsa.identity.v1 import access_service_pb2
from cardinsa.identity.v1 import resources_pb2 as identity_resources
from cardinsa_company.application.bootstrap import ensure_company
from cardinsa_company.cli import MIGRATIONS as COMPANY_MIGRATIONS
from cardinsa_company.domain.companies import CompanyProfile
from cardinsa_company.main import build as build_company
from cardinsa_company.settings import CompanyServiceSettings
from cardinsa_core.application.context import utc_now
from cardinsa_core.application.tenants import TenantFacts
from cardinsa_core.main import CoreApp, build
from cardinsa_core.settings import CoreSettings
from cardinsa_foundation.auth import JwksCache, TokenVerifier, identity_jwks_fetcher
from cardinsa_foundation.context import Principal, PrincipalKind
from cardinsa_foundation.db import app_role_url
from cardinsa_foundation.errors import PermissionDenied
from cardinsa_foundation.migrations import upgrade

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
            drain_delay_s=0.0,  # no drain on stop: nothing routes to it by health
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


# ------------------------------------------------------------------ the real company service


class Clock:
    """The core app's clock: the real time unless a test sets ``now``."""

    def __init__(self) -> None:
        self.now: datetime | None = None

    def __call__(self) -> datetime:
        return self.now or utc_now()


@dataclass
class RealCompany:
    core: CoreApp
    clock: Clock
    companies: Any
    admin_md: list[tuple[str, str]]
    channel: grpc.aio.Channel

    async def create(self, tenant: Tenant, **fields: Any) -> resources_pb2.Company:
        reply: resources_pb2.Company = await self.companies.CreateCompany(
            company_service_pb2.CreateCompanyRequest(
                company=resources_pb2.Company(display_name=f"Co {uuid.uuid4().hex[:6]}", **fields),
                company_id=tenant.company_id,
            ),
            metadata=self.admin_md,
        )
        return reply


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def real(core: CoreHarness, core_database: str) -> AsyncIterator[RealCompany]:
    """The company service and a core wired to it, whose settings fallback
    says something else (so an answer from the fallback would show)."""
    identity = core.identity
    await upgrade(COMPANY_MIGRATIONS, core_database, "company")
    company_app = build_company(
        CompanyServiceSettings(
            _env_file=None,
            environment="test",
            identity_address=identity.app.server.address,
            service_api_key=await identity.service_key("company-facts", "revocations.watch"),
            db_pool_size=3,
            drain_delay_s=0.0,  # no drain on stop: nothing routes to it by health
        ),
        app_role_url(core_database),
        port=0,
        metrics_port=0,
    )
    await company_app.start()
    # The platform's own company (core's service account belongs to it) is
    # registered, as the operator's bootstrap does.
    await ensure_company(
        company_app.ctx,
        company_id=uuid.UUID(identity.platform_admin.company_id),
        profile=CompanyProfile(
            display_name="Platform", country="DE", default_currency="EUR", time_zone="UTC"
        ),
    )
    clock = Clock()
    core_app = build(
        CoreSettings(
            _env_file=None,
            environment="test",
            identity_address=identity.app.server.address,
            company_address=company_app.server.address,
            # A platform service account, as `create-service-key` issues for core.
            service_api_key=await identity.service_key(
                "core-facts", "companies.get_status", "revocations.watch"
            ),
            tenant_status_ttl_s=0,
            db_pool_size=3,
            default_time_zone="Pacific/Kiritimati",
            tenant_feature_flags={},
            max_backdate_days=999,
            renewal_offer_days=99,
            drain_delay_s=0.0,  # no drain on stop: nothing routes to it by health
        ),
        app_role_url(core_database),
        port=0,
        metrics_port=0,
        clock=clock,
    )
    await core_app.start()
    channel = grpc.aio.insecure_channel(company_app.server.address)
    try:
        yield RealCompany(
            core=core_app,
            clock=clock,
            companies=company_service_pb2_grpc.CompanyServiceStub(channel),
            admin_md=identity.bearer(await identity.token(identity.platform_admin)),
            channel=channel,
        )
    finally:
        await channel.close()
        await core_app.stop()
        await company_app.stop()


async def test_facts_come_from_the_company_service(real: RealCompany, core: CoreHarness) -> None:
    assert real.core.ctx.tenants.source == "company-service"
    riyadh, bogota = await core.tenant(), await core.tenant()
    created = await real.create(
        riyadh,
        country="SA",
        default_currency="SAR",
        time_zone="Asia/Riyadh",
        settings=resources_pb2.CompanySettings(max_backdate_days=0, renewal_offer_days=60),
        feature_flags={"flat_rating": False},
    )
    await real.create(bogota, country="CO", default_currency="COP", time_zone="America/Bogota")
    facts = await real.core.ctx.facts(uuid.UUID(riyadh.company_id))
    assert facts == TenantFacts(
        time_zone="Asia/Riyadh",
        feature_flags={"flat_rating": False},
        max_backdate_days=0,
        renewal_offer_days=60,
        locale="en",
        country="SA",
        legal_name=created.display_name,
    )
    # Unset settings: the company service's defaults, not core's fallback settings.
    bogota_facts = await real.core.ctx.facts(uuid.UUID(bogota.company_id))
    assert bogota_facts == TenantFacts(
        time_zone="America/Bogota",
        feature_flags={},
        max_backdate_days=30,
        renewal_offer_days=30,
        locale="en",
        country="CO",
        legal_name=bogota_facts.legal_name,
    )
    assert bogota_facts.legal_name.startswith("Co ")
    # A change in the company service reaches core (its status cache lives 0 s here).
    await real.companies.UpdateCompany(
        company_service_pb2.UpdateCompanyRequest(
            company=resources_pb2.Company(
                id=created.id,
                feature_flags={"flat_rating": False},
                settings=resources_pb2.CompanySettings(max_backdate_days=3),
            ),
            update_mask=field_mask_pb2.FieldMask(
                paths=["feature_flags", "settings.max_backdate_days"]
            ),
        ),
        metadata=real.admin_md,
    )
    changed = await real.core.ctx.facts(uuid.UUID(riyadh.company_id))
    assert dict(changed.feature_flags) == {"flat_rating": False}
    assert (changed.max_backdate_days, changed.renewal_offer_days) == (3, 60)


async def test_company_today_is_in_the_companys_time_zone(
    real: RealCompany, core: CoreHarness
) -> None:
    riyadh, bogota = await core.tenant(), await core.tenant()
    await real.create(riyadh, country="SA", default_currency="SAR", time_zone="Asia/Riyadh")
    await real.create(bogota, country="CO", default_currency="COP", time_zone="America/Bogota")
    ctx = real.core.ctx
    try:
        real.clock.now = datetime(2027, 3, 1, 21, 30, tzinfo=UTC)
        assert ctx.today() == date(2027, 3, 1)
        assert await ctx.company_today(uuid.UUID(riyadh.company_id)) == date(2027, 3, 2)
        assert await ctx.company_today(uuid.UUID(bogota.company_id)) == date(2027, 3, 1)
        real.clock.now = datetime(2027, 3, 2, 3, 30, tzinfo=UTC)
        assert ctx.today() == date(2027, 3, 2)
        assert await ctx.company_today(uuid.UUID(riyadh.company_id)) == date(2027, 3, 2)
        assert await ctx.company_today(uuid.UUID(bogota.company_id)) == date(2027, 3, 1)
    finally:
        real.clock.now = None


async def test_a_company_unknown_to_the_company_service_has_no_facts(
    real: RealCompany, core: CoreHarness
) -> None:
    stranger = await core.tenant()
    with pytest.raises(PermissionDenied) as refused:
        await real.core.ctx.facts(uuid.UUID(stranger.company_id))
    assert refused.value.reason == "TENANT_NOT_ACTIVE"


async def test_the_flat_rating_flag_of_the_company_service_chooses_the_strategy(
    real: RealCompany, core: CoreHarness
) -> None:
    """Two companies quote the same product: the one whose flags in the company
    service say ``flat_rating`` is priced flat, the other one standard."""
    channel = grpc.aio.insecure_channel(real.core.server.address)
    try:
        harness = CoreHarness(app=real.core, channel=channel, identity=core.identity)
        prices = {}
        for flags in ({"flat_rating": True}, {}):
            made = await core.tenant()
            tenant = Tenant(harness, made.company_id, made.admin)
            await real.create(
                tenant,
                country="DE",
                default_currency="EUR",
                time_zone="Europe/Berlin",
                feature_flags=flags,
            )
            product = await tenant.product(
                currency="EUR",
                rating_rules=res.RatingRules(
                    term_basis=res.RatingRules.PRODUCT_TERM,
                    sum_insured_rate_basis_points=10,
                    tax_basis_points=1000,
                    policy_fee=money("10", "EUR"),
                ),
            )
            quoted = await tenant.quoted(
                await tenant.holder(dependents=0), product, effective=TODAY
            )
            breakdown = quoted.premium_breakdown
            prices[breakdown.strategy] = [
                (line.code, amount(line.amount)) for line in breakdown.lines
            ]
    finally:
        await channel.close()
    # Flat: the base premium per member, tax and fee; standard adds the sum-insured loading.
    assert prices == {
        "flat": [("MEMBER", 500), ("TAX", 50), ("FEE", 10)],
        "standard": [("MEMBER", 500), ("SUM_INSURED", 100), ("TAX", 60), ("FEE", 10)],
    }


async def test_policies_move_on_the_companys_date_around_midnight(
    real: RealCompany, core: CoreHarness
) -> None:
    """At 21:30 UTC on 1 March it is already 2 March in Riyadh (UTC+3) and still
    1 March in Bogota (UTC-5): a policy starting on 2 March and bound then is in
    force at once in Riyadh and waits in Bogota, until Bogota's midnight has
    passed; a cancellation without a date takes each company's today."""
    channel = grpc.aio.insecure_channel(real.core.server.address)
    harness = CoreHarness(app=real.core, channel=channel, identity=core.identity)
    start = date(2027, 3, 2)
    bound: dict[str, res.Policy] = {}
    tenants: dict[str, Tenant] = {}
    try:
        for zone in ("Asia/Riyadh", "America/Bogota"):
            made = await core.tenant()
            tenant = Tenant(harness, made.company_id, made.admin)
            await real.create(tenant, country="DE", default_currency="USD", time_zone=zone)
            holder, product = await tenant.holder(dependents=0), await tenant.product()
            real.clock.now = datetime(2027, 3, 1, 21, 30, tzinfo=UTC)
            bound[zone] = await tenant.in_force(holder, product, effective=start)
            tenants[zone] = tenant
        assert bound["Asia/Riyadh"].state == res.Policy.IN_FORCE
        assert bound["America/Bogota"].state == res.Policy.BOUND
        policies = harness.policies
        bogota = tenants["America/Bogota"]
        md = await bogota.md()
        # 04:59 UTC is 23:59 on 1 March in Bogota: not yet.
        real.clock.now = datetime(2027, 3, 2, 4, 59, tzinfo=UTC)
        with pytest.raises(grpc.aio.AioRpcError) as early:
            await policies.ActivatePolicy(
                pb.ActivatePolicyRequest(policy_id=bound["America/Bogota"].id), metadata=md
            )
        assert error_info(early.value).reason == "NOT_YET_EFFECTIVE"
        real.clock.now = datetime(2027, 3, 2, 5, 1, tzinfo=UTC)
        active = await policies.ActivatePolicy(
            pb.ActivatePolicyRequest(policy_id=bound["America/Bogota"].id), metadata=md
        )
        assert active.state == res.Policy.IN_FORCE
        # 22:00 UTC on 5 March: 6 March in Riyadh, 5 March in Bogota.
        real.clock.now = datetime(2027, 3, 5, 22, 0, tzinfo=UTC)
        for zone, today in (
            ("Asia/Riyadh", date(2027, 3, 6)),
            ("America/Bogota", date(2027, 3, 5)),
        ):
            cancelled = await policies.CancelPolicy(
                pb.CancelPolicyRequest(policy_id=bound[zone].id, reason=res.Policy.MEMBER_REQUEST),
                metadata=await tenants[zone].md(),
            )
            assert (
                cancelled.cancel_effective_date.year,
                cancelled.cancel_effective_date.month,
                cancelled.cancel_effective_date.day,
            ) == (today.year, today.month, today.day)
            assert cancelled.cancel_processed_date == cancelled.cancel_effective_date
    finally:
        real.clock.now = None
        await channel.close()


async def test_documents_speak_the_companys_language_in_its_name(
    real: RealCompany, core: CoreHarness
) -> None:
    """A schedule without a locale: German for a company whose locale is German,
    German for one registered in Austria whose locale core has no documents in,
    English for an English-speaking one; each shows the company's legal name."""
    channel = grpc.aio.insecure_channel(real.core.server.address)
    titles = {}
    try:
        harness = CoreHarness(app=real.core, channel=channel, identity=core.identity)
        for key, fields in {
            "de": {"country": "DE", "locale": "de-DE", "legal_name": "Nordlicht Versicherung AG"},
            "at": {"country": "AT", "locale": "pt-BR", "legal_name": "Alpen Versicherung GmbH"},
            "en": {"country": "US", "locale": "en-US", "legal_name": "Liberty Mutual Test Co"},
        }.items():
            made = await core.tenant()
            tenant = Tenant(harness, made.company_id, made.admin)
            await real.create(tenant, default_currency="EUR", time_zone="Europe/Berlin", **fields)
            policy = await tenant.in_force(
                await tenant.holder(dependents=0), await tenant.product(currency="EUR")
            )
            reply = await harness.documents.GetPolicySchedule(
                document_service_pb2.GetPolicyScheduleRequest(policy_id=policy.id),
                metadata=await tenant.md(),
            )
            pages = pypdf.PdfReader(io.BytesIO(reply.data)).pages
            text = " ".join(" ".join(page.extract_text().split()) for page in pages)
            assert fields["legal_name"] in text, key
            titles[key] = "Versicherungsschein" in text, "Policy schedule" in text
    finally:
        await channel.close()
    assert titles == {"de": (True, False), "at": (True, False), "en": (False, True)}
