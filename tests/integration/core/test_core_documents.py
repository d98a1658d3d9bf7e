"""Documents against a real core server: the schedule of a bound policy and the
decision letter of a claim, stored once per facts and locale and reissued byte
for byte; changed facts make a new document; another company's resources are
NOT_FOUND; a role without the permission is refused."""

from __future__ import annotations

import asyncio
import hashlib
import io
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import asyncpg
import grpc
import pypdf
import pytest
import pytest_asyncio
from core_harness import TODAY, CoreHarness, Tenant, amount, gdate, mask, money, pydate
from sqlalchemy import select
from support.grpc_errors import error_info

from cardinsa.core.v1 import claim_service_pb2 as cb
from cardinsa.core.v1 import core_service_pb2 as xb
from cardinsa.core.v1 import document_service_pb2 as db
from cardinsa.core.v1 import events_pb2, resources_pb2
from cardinsa.core.v1 import policy_service_pb2 as pb
from cardinsa_core.domain.documents import InvoiceFacts, format_date, format_money
from cardinsa_core.repository.models import DocumentRow
from cardinsa_foundation.context import Principal, PrincipalKind, principal_var
from cardinsa_foundation.db import platform_role_url, to_libpq_url


@dataclass
class World:
    tenant: Tenant
    policy: resources_pb2.Policy
    product: resources_pb2.Product


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def world(core: CoreHarness) -> World:
    tenant = await core.tenant()
    product = await tenant.product(deductible="250", limit="10000")
    policy = await tenant.in_force(await tenant.holder(dependents=1), product)
    return World(tenant, policy, product)


def text_of(pdf: bytes) -> str:
    pages = pypdf.PdfReader(io.BytesIO(pdf)).pages
    return " ".join(" ".join(page.extract_text().split()) for page in pages)


async def schedule(tenant: Tenant, policy_id: str, locale: str = "", role: str = "underwriter"):  # type: ignore[no-untyped-def]
    return await tenant.harness.documents.GetPolicySchedule(
        db.GetPolicyScheduleRequest(policy_id=policy_id, locale=locale),
        metadata=await tenant.md(role),
    )


async def stored(tenant: Tenant, subject: str) -> list[DocumentRow]:
    company = uuid.UUID(tenant.company_id)
    async with tenant.harness.app.ctx.db.unit_of_work(company_id=company) as session:
        rows = await session.scalars(
            select(DocumentRow)
            .where(DocumentRow.company_id == company, DocumentRow.subject == subject)
            .order_by(DocumentRow.create_time, DocumentRow.id)
        )
        return list(rows)


async def document_events(url: str, company_id: str) -> list[asyncpg.Record]:
    """The company's document events in the outbox, read as the platform role."""
    connection = await asyncpg.connect(to_libpq_url(platform_role_url(url)))
    try:
        return list(
            await connection.fetch(
                "SELECT type, subject, data_schema, data FROM core.outbox_events "
                "WHERE company_id = $1 AND type LIKE 'cardinsa.core.document.%' ORDER BY sequence",
                uuid.UUID(company_id),
            )
        )
    finally:
        await connection.close()


async def document_audits(tenant: Tenant) -> int:
    page = await tenant.harness.core.ListAuditEvents(
        xb.ListAuditEventsRequest(page_size=100, filter='action = "document.create"'),
        metadata=await tenant.md(),
    )
    return len(page.audit_events)


async def test_schedule_is_stored_once_and_reissued_byte_for_byte(
    world: World, core_database: str
) -> None:
    tenant, policy = world.tenant, world.policy
    subject = f"policies/{policy.id}"
    first = await schedule(tenant, policy.id, "de")
    assert first.content_type == "application/pdf"
    assert first.data.startswith(b"%PDF-")
    text = text_of(first.data)
    breakdown = policy.premium_breakdown
    expected = [
        "Versicherungsschein",
        policy.policy_number,
        "Outpatient care (OUTPATIENT)",
        "10.000,00 USD",  # the limit
        "je Versicherungsjahr",
        "250,00 USD",  # the deductible
        "20 %",
        f"Nettobeitrag {format_money(amount(breakdown.net_premium), 'USD', 'de')}",
        f"Gesamtbeitrag {format_money(amount(breakdown.total), 'USD', 'de')}",
        f"{format_date(pydate(policy.effective_date), 'de')} bis "
        f"{format_date(pydate(policy.expiry_date), 'de')}",
        "monatlich",
        "Amira Haddad",
        "Child0 Haddad",
    ]
    for part in expected:
        assert part in text, part

    rows = await stored(tenant, subject)
    assert len(rows) == 1
    row = rows[0]
    assert (row.kind, row.locale) == ("POLICY_SCHEDULE", "de")
    assert row.content == first.data
    assert row.content_sha256 == hashlib.sha256(first.data).hexdigest()
    assert len(row.facts_sha256) == 64
    assert await document_audits(tenant) == 1
    # Issued: one event in the same transaction, describing the document (not its bytes).
    events = await document_events(core_database, tenant.company_id)
    assert [(e["type"], e["subject"]) for e in events] == [
        ("cardinsa.core.document.issue.v1", f"documents/{row.id}")
    ]
    assert events[0]["data_schema"] == "cardinsa.core.v1.DocumentEvent"
    issued = events_pb2.DocumentEvent.FromString(events[0]["data"]).document
    assert (issued.id, issued.subject, issued.locale) == (str(row.id), subject, "de")
    assert issued.kind == resources_pb2.Document.POLICY_SCHEDULE
    assert (issued.content_sha256, issued.size_bytes) == (row.content_sha256, len(first.data))
    assert issued.content_type == "application/pdf"

    again = await schedule(tenant, policy.id, "de", role="agent")
    assert again.data == first.data
    assert len(await stored(tenant, subject)) == 1
    assert await document_audits(tenant) == 1
    assert len(await document_events(core_database, tenant.company_id)) == 1

    # Another locale is another document of the same facts.
    english = await schedule(tenant, policy.id, "en-GB")
    assert english.data != first.data
    assert "Policy schedule" in text_of(english.data)
    # An unsupported locale renders (and finds) the English one.
    assert (await schedule(tenant, policy.id, "fr")).data == english.data
    rows = await stored(tenant, subject)
    assert [(r.locale, r.facts_sha256) for r in rows] == [
        ("de", row.facts_sha256),
        ("en", row.facts_sha256),
    ]


async def test_an_endorsement_makes_a_new_schedule_and_keeps_the_old(world: World) -> None:
    tenant = world.tenant
    policy = await tenant.in_force(await tenant.holder(dependents=1), world.product)
    before = await schedule(tenant, policy.id, "en")
    endorsed = await tenant.harness.policies.EndorsePolicy(
        pb.EndorsePolicyRequest(
            policy_id=policy.id,
            etag=policy.etag,
            effective_date=gdate(TODAY - timedelta(days=5)),
            description="sum insured raised",
            policy=resources_pb2.Policy(sum_insured=money("150000")),
            update_mask=mask("sum_insured"),
        ),
        metadata=await tenant.md("underwriter"),
    )
    after = await schedule(tenant, policy.id, "en")
    assert after.data != before.data
    text = text_of(after.data)
    assert "USD 150,000.00" in text and "endorsement" in text
    assert f"Version {endorsed.version}" in text
    rows = await stored(tenant, f"policies/{policy.id}")
    assert [r.content for r in rows] == [before.data, after.data]
    assert rows[0].facts_sha256 != rows[1].facts_sha256
    # The new facts are issued once too.
    assert (await schedule(tenant, policy.id, "en")).data == after.data

    # A scheduled cancellation: the schedule says from when the cover ends.
    later = TODAY + timedelta(days=20)
    await tenant.harness.policies.CancelPolicy(
        pb.CancelPolicyRequest(
            policy_id=policy.id,
            reason=resources_pb2.Policy.MEMBER_REQUEST,
            effective_date=gdate(later),
            scheduled=True,
        ),
        metadata=await tenant.md("underwriter"),
    )
    cancelled = text_of((await schedule(tenant, policy.id, "en")).data)
    assert f"Cover terminated with effect from {format_date(later, 'en')}" in cancelled
    assert len(await stored(tenant, f"policies/{policy.id}")) == 3


async def test_a_policy_never_bound_has_no_schedule(world: World) -> None:
    tenant = world.tenant
    quoted = await tenant.quoted(await tenant.holder(dependents=0), world.product)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await schedule(tenant, quoted.id)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(caught.value).reason == "POLICY_NOT_BOUND"
    assert await stored(tenant, f"policies/{quoted.id}") == []


async def test_decision_letters_of_an_approval_and_a_denial(world: World) -> None:
    tenant = world.tenant
    claims, md = tenant.harness.claims, await tenant.md("claims-adjuster")
    claim = await tenant.claim_under_review(world.policy, claimed="800")
    request = db.GetClaimDecisionLetterRequest(claim_id=claim.id, locale="en")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tenant.harness.documents.GetClaimDecisionLetter(request, metadata=md)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(caught.value).reason == "CLAIM_NOT_DECIDED"

    # 800 claimed: 250 deductible, 20 % co-insurance of the rest (110), 440 payable.
    approved = await claims.ApproveClaim(
        cb.ApproveClaimRequest(claim_id=claim.id, approved_amount=money("440")), metadata=md
    )
    assert amount(approved.benefit.payable) == Decimal(440)
    letter = await tenant.harness.documents.GetClaimDecisionLetter(request, metadata=md)
    assert letter.content_type == "application/pdf"
    text = text_of(letter.data)
    for part in [
        "Claim decision",
        approved.claim_number,
        world.policy.policy_number,
        "partially approved",
        "Amount claimed USD 800.00",
        "Deductible -USD 250.00",
        "Co-insurance -USD 110.00",
        "Payable USD 440.00",
        "Amount approved USD 440.00",
    ]:
        assert part in text, part
    again = await tenant.harness.documents.GetClaimDecisionLetter(request, metadata=md)
    assert again.data == letter.data
    assert len(await stored(tenant, f"claims/{claim.id}")) == 1

    denied_claim = await tenant.claim_under_review(world.policy, claimed="300")
    await claims.DenyClaim(
        cb.DenyClaimRequest(claim_id=denied_claim.id, reason="Behandlung vor Beginn"),
        metadata=md,
    )
    denial = await tenant.harness.documents.GetClaimDecisionLetter(
        db.GetClaimDecisionLetterRequest(claim_id=denied_claim.id, locale="de"), metadata=md
    )
    text = text_of(denial.data)
    assert "Leistungsentscheidung" in text and "abgelehnt" in text
    assert "Begründung Behandlung vor Beginn" in text


async def test_another_companys_policy_and_claim_are_not_found(
    world: World, core: CoreHarness
) -> None:
    other = await core.tenant()
    md = await other.md()
    claim = await world.tenant.claim(world.policy)
    for call in (
        core.documents.GetPolicySchedule(
            db.GetPolicyScheduleRequest(policy_id=world.policy.id), metadata=md
        ),
        core.documents.GetClaimDecisionLetter(
            db.GetClaimDecisionLetterRequest(claim_id=claim.id), metadata=md
        ),
        core.documents.GetPolicySchedule(
            db.GetPolicyScheduleRequest(policy_id=str(uuid.uuid4())), metadata=md
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_role_without_the_permission_is_refused(world: World) -> None:
    tenant = world.tenant
    for role in ("viewer", "claims-adjuster"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await schedule(tenant, world.policy.id, role=role)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED, role
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tenant.harness.documents.GetClaimDecisionLetter(
            db.GetClaimDecisionLetterRequest(claim_id=str(uuid.uuid4())),
            metadata=await tenant.md("underwriter"),
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_malformed_locale_is_invalid(world: World) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await schedule(world.tenant, world.policy.id, "not a locale!")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_concurrent_first_requests_store_one_document(
    world: World, core_database: str
) -> None:
    tenant = world.tenant
    policy = await tenant.in_force(await tenant.holder(dependents=0), world.product)
    events_before = len(await document_events(core_database, tenant.company_id))
    replies = await asyncio.gather(*(schedule(tenant, policy.id, "de") for _ in range(6)))
    assert len({reply.data for reply in replies}) == 1
    rows = await stored(tenant, f"policies/{policy.id}")
    assert len(rows) == 1 and rows[0].content == replies[0].data
    events = await document_events(core_database, tenant.company_id)
    assert [e["subject"] for e in events[events_before:]] == [f"documents/{rows[0].id}"]


async def test_an_invoice_is_issued_the_same_way(world: World, core: CoreHarness) -> None:
    """No RPC serves invoices yet: billing issues them through the same use case
    inside its own unit of work, from plain facts."""
    tenant = world.tenant
    company = uuid.UUID(tenant.company_id)
    facts = InvoiceFacts(
        company_name="",
        invoice_number="INV-00000001",
        issue_date=TODAY,
        due_date=TODAY + timedelta(days=14),
        policy_number=world.policy.policy_number,
        payer_name="Amira Haddad",
        payer_address=(),
        currency="USD",
        amount=Decimal("41.67"),
    )
    token = principal_var.set(
        Principal(
            subject=str(uuid.uuid4()),
            kind=PrincipalKind.SERVICE_ACCOUNT,
            company_id=tenant.company_id,
            permissions=frozenset(),
        )
    )
    try:
        documents, ctx = core.app.documents, core.app.ctx
        issued = []
        for _ in range(2):
            async with ctx.db.unit_of_work(company_id=company) as session:
                issued.append(
                    await documents.issue(
                        session,
                        company,
                        facts,
                        subject="invoices/INV-00000001",
                        tenant=await ctx.facts(company),
                        requested_locale="de",
                    )
                )
    finally:
        principal_var.reset(token)
    assert [i.created for i in issued] == [True, False]
    assert issued[0].content == issued[1].content
    assert issued[1].row.kind == "INVOICE" and issued[1].row.locale == "de"
    text = text_of(issued[1].content)
    assert "Rechnungsnummer INV-00000001" in text and "Fälliger Betrag 41,67 USD" in text
