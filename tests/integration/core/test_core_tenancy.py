"""The cross-tenant matrix: every core RPC, called by company A with company B's
ids, answers exactly as for ids that do not exist, changes nothing, and lists
never show B's rows. Row-level security holds underneath."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc
import pytest
import pytest_asyncio
from core_harness import TODAY, CoreHarness, P, Tenant, gdate, mask, money
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from support.grpc_errors import error_info

from cardinsa.core.v1 import (
    claim_service_pb2,
    core_service_pb2,
    document_service_pb2,
    policy_service_pb2,
    policyholder_service_pb2,
    product_service_pb2,
)
from cardinsa.core.v1 import claim_service_pb2 as cb
from cardinsa.core.v1 import core_service_pb2 as xb
from cardinsa.core.v1 import document_service_pb2 as db
from cardinsa.core.v1 import policy_service_pb2 as pb
from cardinsa.core.v1 import policyholder_service_pb2 as hb
from cardinsa.core.v1 import product_service_pb2 as rb
from cardinsa.core.v1 import resources_pb2 as res

RANDOM = "00000000-0000-4000-8000-00000000beef"


@dataclass
class World:
    a: Tenant
    b: Tenant
    ids: dict[str, str]


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def world(core: CoreHarness) -> World:
    a, b = await core.tenant(), await core.tenant()
    # Company A has data of its own, so "lists show only A" means something.
    a_holder = await a.holder()
    a_product = await a.product()
    await a.in_force(a_holder, a_product)
    holder = await b.holder()
    product = await b.product()
    policy = await b.in_force(holder, product)
    claim = await b.claim(policy)
    await core.claims.UpdateApprovalBands(
        cb.UpdateApprovalBandsRequest(
            approval_bands=res.ApprovalBands(band_1_limit=money("7"), band_2_limit=money("8"))
        ),
        metadata=await b.md(),
    )
    return World(
        a,
        b,
        {
            "policyholder": holder.id,
            "product": product.id,
            "policy": policy.id,
            "claim": claim.id,
            "a_holder": a_holder.id,
            "a_product": a_product.id,
        },
    )


# (service attribute, method, request factory taking the id to probe)
Probe = tuple[str, str, Callable[[str, dict[str, str]], Any]]
PROBES: list[Probe] = [
    ("policyholders", "GetPolicyholder", lambda i, _: hb.GetPolicyholderRequest(policyholder_id=i)),
    (
        "policyholders",
        "UpdatePolicyholder",
        lambda i, _: hb.UpdatePolicyholderRequest(
            policyholder=res.Policyholder(id=i, email="x@example.com"), update_mask=mask("email")
        ),
    ),
    (
        "policyholders",
        "DeletePolicyholder",
        lambda i, _: hb.DeletePolicyholderRequest(policyholder_id=i),
    ),
    (
        "policyholders",
        "UndeletePolicyholder",
        lambda i, _: hb.UndeletePolicyholderRequest(policyholder_id=i),
    ),
    (
        "policyholders",
        "ExportPersonalData",
        lambda i, _: hb.ExportPersonalDataRequest(policyholder_id=i),
    ),
    (
        "policyholders",
        "ErasePersonalData",
        lambda i, _: hb.ErasePersonalDataRequest(policyholder_id=i),
    ),
    ("products", "GetProduct", lambda i, _: rb.GetProductRequest(product_id=i)),
    (
        "products",
        "UpdateProduct",
        lambda i, _: rb.UpdateProductRequest(
            product=res.Product(id=i, name="x"), update_mask=mask("name")
        ),
    ),
    ("products", "DeleteProduct", lambda i, _: rb.DeleteProductRequest(product_id=i)),
    ("products", "UndeleteProduct", lambda i, _: rb.UndeleteProductRequest(product_id=i)),
    ("products", "ActivateProduct", lambda i, _: rb.ActivateProductRequest(product_id=i)),
    ("products", "RetireProduct", lambda i, _: rb.RetireProductRequest(product_id=i)),
    ("products", "ListProductVersions", lambda i, _: rb.ListProductVersionsRequest(product_id=i)),
    (
        "products",
        "GetProductVersion",
        lambda i, _: rb.GetProductVersionRequest(product_id=i, version=1),
    ),
    ("policies", "GetPolicy", lambda i, _: pb.GetPolicyRequest(policy_id=i)),
    (
        "policies",
        "UpdatePolicy",
        lambda i, _: pb.UpdatePolicyRequest(
            policy=res.Policy(id=i, payment_frequency=P.ANNUAL),
            update_mask=mask("payment_frequency"),
        ),
    ),
    ("policies", "DeletePolicy", lambda i, _: pb.DeletePolicyRequest(policy_id=i)),
    ("policies", "UndeletePolicy", lambda i, _: pb.UndeletePolicyRequest(policy_id=i)),
    ("policies", "QuotePolicy", lambda i, _: pb.QuotePolicyRequest(policy_id=i)),
    ("policies", "BindPolicy", lambda i, _: pb.BindPolicyRequest(policy_id=i)),
    ("policies", "ActivatePolicy", lambda i, _: pb.ActivatePolicyRequest(policy_id=i)),
    (
        "policies",
        "EndorsePolicy",
        lambda i, _: pb.EndorsePolicyRequest(
            policy_id=i,
            effective_date=gdate(TODAY),
            description="x",
            policy=res.Policy(sum_insured=money("5")),
            update_mask=mask("sum_insured"),
        ),
    ),
    ("policies", "RenewPolicy", lambda i, _: pb.RenewPolicyRequest(policy_id=i)),
    ("policies", "CancelPolicy", lambda i, _: pb.CancelPolicyRequest(policy_id=i, reason=P.FRAUD)),
    ("policies", "ReinstatePolicy", lambda i, _: pb.ReinstatePolicyRequest(policy_id=i)),
    ("policies", "LapsePolicy", lambda i, _: pb.LapsePolicyRequest(policy_id=i)),
    ("policies", "ExpirePolicy", lambda i, _: pb.ExpirePolicyRequest(policy_id=i)),
    ("policies", "ListPolicyVersions", lambda i, _: pb.ListPolicyVersionsRequest(policy_id=i)),
    (
        "policies",
        "ListPolicyStatusChanges",
        lambda i, _: pb.ListPolicyStatusChangesRequest(policy_id=i),
    ),
    (
        "policies",
        "ListPremiumTransactions",
        lambda i, _: pb.ListPremiumTransactionsRequest(policy_id=i),
    ),
    (
        "policies",
        "ListUnderwritingIssues",
        lambda i, _: pb.ListUnderwritingIssuesRequest(policy_id=i),
    ),
    (
        "policies",
        "ApproveUnderwritingIssue",
        lambda i, _: pb.ApproveUnderwritingIssueRequest(policy_id=i, issue_id=RANDOM, note="x"),
    ),
    (
        "policies",
        "DeclineUnderwritingIssue",
        lambda i, _: pb.DeclineUnderwritingIssueRequest(policy_id=i, issue_id=RANDOM, note="x"),
    ),
    (
        "policies",
        "CreatePolicy",
        lambda i, ids: pb.CreatePolicyRequest(
            policy=res.Policy(
                policyholder_id=i,
                product_id=ids["a_product"],
                effective_date=gdate(TODAY),
                sum_insured=money("5"),
            )
        ),
    ),
    ("claims", "GetClaim", lambda i, _: cb.GetClaimRequest(claim_id=i)),
    (
        "claims",
        "UpdateClaim",
        lambda i, _: cb.UpdateClaimRequest(
            claim=res.Claim(id=i, description="x"), update_mask=mask("description")
        ),
    ),
    ("claims", "DeleteClaim", lambda i, _: cb.DeleteClaimRequest(claim_id=i)),
    ("claims", "UndeleteClaim", lambda i, _: cb.UndeleteClaimRequest(claim_id=i)),
    ("claims", "SubmitClaim", lambda i, _: cb.SubmitClaimRequest(claim_id=i)),
    ("claims", "ReviewClaim", lambda i, _: cb.ReviewClaimRequest(claim_id=i)),
    (
        "claims",
        "ApproveClaim",
        lambda i, _: cb.ApproveClaimRequest(claim_id=i, approved_amount=money("1")),
    ),
    ("claims", "DenyClaim", lambda i, _: cb.DenyClaimRequest(claim_id=i, reason="x")),
    ("claims", "PayClaim", lambda i, _: cb.PayClaimRequest(claim_id=i, payment_reference="x")),
    ("claims", "CloseClaim", lambda i, _: cb.CloseClaimRequest(claim_id=i)),
    ("claims", "ReopenClaim", lambda i, _: cb.ReopenClaimRequest(claim_id=i, reason="x")),
    ("claims", "ListClaimLogEntries", lambda i, _: cb.ListClaimLogEntriesRequest(claim_id=i)),
    ("claims", "UnapproveClaim", lambda i, _: cb.UnapproveClaimRequest(claim_id=i, reason="x")),
    ("claims", "WithdrawClaim", lambda i, _: cb.WithdrawClaimRequest(claim_id=i, reason="x")),
    (
        "claims",
        "SetClaimReserve",
        lambda i, _: cb.SetClaimReserveRequest(
            claim_id=i, cost_type=res.EXPENSE, amount=money("1")
        ),
    ),
    (
        "claims",
        "CreateClaimPayment",
        lambda i, _: cb.CreateClaimPaymentRequest(
            claim_id=i,
            payment=res.ClaimPayment(
                cost_type=res.EXPENSE,
                payee="x",
                method=res.ClaimPayment.BANK_TRANSFER,
                amount=money("1"),
            ),
        ),
    ),
    ("claims", "GetClaimPayment", lambda i, _: cb.GetClaimPaymentRequest(claim_id=i, payment_id=i)),
    ("claims", "ListClaimPayments", lambda i, _: cb.ListClaimPaymentsRequest(claim_id=i)),
    (
        "claims",
        "IssueClaimPayment",
        lambda i, _: cb.IssueClaimPaymentRequest(claim_id=i, payment_id=i),
    ),
    (
        "claims",
        "ClearClaimPayment",
        lambda i, _: cb.ClearClaimPaymentRequest(claim_id=i, payment_id=i),
    ),
    (
        "claims",
        "VoidClaimPayment",
        lambda i, _: cb.VoidClaimPaymentRequest(claim_id=i, payment_id=i, reason="x"),
    ),
    (
        "claims",
        "CreateClaimRecovery",
        lambda i, _: cb.CreateClaimRecoveryRequest(
            claim_id=i,
            recovery=res.ClaimRecovery(kind=res.ClaimRecovery.SALVAGE, amount=money("1")),
        ),
    ),
    ("claims", "ListClaimRecoveries", lambda i, _: cb.ListClaimRecoveriesRequest(claim_id=i)),
    (
        "documents",
        "GetPolicySchedule",
        lambda i, _: db.GetPolicyScheduleRequest(policy_id=i),
    ),
    (
        "documents",
        "GetClaimDecisionLetter",
        lambda i, _: db.GetClaimDecisionLetterRequest(claim_id=i),
    ),
    (
        "documents",
        "GetInvoiceDocument",
        lambda i, _: db.GetInvoiceDocumentRequest(policy_id=i, invoice_id=i),
    ),
    (
        "claims",
        "CreateClaim",
        lambda i, _: cb.CreateClaimRequest(
            claim=res.Claim(
                policy_id=i,
                claimant=res.InsuredMember(policyholder=True),
                claim_type=res.Claim.MEDICAL,
                description="x",
                coverage_code="OUTPATIENT",
                incident_date=gdate(TODAY - timedelta(days=1)),
                claimed_amount=money("5"),
            )
        ),
    ),
]
TARGET = {
    "policyholders": "policyholder",
    "products": "product",
    "policies": "policy",
    "claims": "claim",
    "documents": "claim",
}
# Methods without an id to probe; each is checked below for what it shows A.
LISTS_AND_SINGLETONS = {
    "CreatePolicyholder",
    "ListPolicyholders",
    "CreateProduct",
    "ListProducts",
    "ListPolicies",
    "ListClaims",
    "GetApprovalBands",
    "ListApprovalBands",
    "UpdateApprovalBands",
    "GetClaimSettings",
    "UpdateClaimSettings",
    "GetServerInfo",
    "ListAuditEvents",
}


def test_the_matrix_covers_every_core_rpc() -> None:
    every = {
        method.name
        for module, name in (
            (policyholder_service_pb2, "PolicyholderService"),
            (product_service_pb2, "ProductService"),
            (policy_service_pb2, "PolicyService"),
            (claim_service_pb2, "ClaimService"),
            (core_service_pb2, "CoreService"),
            (document_service_pb2, "DocumentService"),
        )
        for method in module.DESCRIPTOR.services_by_name[name].methods
    }
    probed = {method for _, method, _ in PROBES}
    assert probed | LISTS_AND_SINGLETONS == every
    assert not probed & LISTS_AND_SINGLETONS


@pytest.mark.parametrize(("service", "method", "build"), PROBES, ids=[p[1] for p in PROBES])
async def test_another_companys_id_is_not_found_like_a_random_one(
    world: World, service: str, method: str, build: Callable[[str, dict[str, str]], Any]
) -> None:
    stub = getattr(world.a.harness, service)
    md = await world.a.md()  # company-admin: every permission of a company
    target = world.ids["policyholder" if method == "CreatePolicy" else TARGET[service]]
    if method in {"CreateClaim", "GetPolicySchedule"}:
        target = world.ids["policy"]

    async def answer(probe_id: str) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await getattr(stub, method)(build(probe_id, world.ids), metadata=md)
        return caught.value

    theirs, missing = await answer(target), await answer(RANDOM)
    assert theirs.code() == missing.code() == grpc.StatusCode.NOT_FOUND
    assert theirs.details() == missing.details()
    info_theirs, info_missing = error_info(theirs), error_info(missing)
    assert info_theirs.reason == info_missing.reason
    assert info_theirs.metadata.keys() == info_missing.metadata.keys()


async def test_b_is_unchanged_and_lists_show_only_a(world: World) -> None:
    h = world.a.harness
    a, b = await world.a.md(), await world.b.md()
    policy = await h.policies.GetPolicy(
        pb.GetPolicyRequest(policy_id=world.ids["policy"]), metadata=b
    )
    assert policy.state == P.IN_FORCE and policy.version == 1
    claim = await h.claims.GetClaim(cb.GetClaimRequest(claim_id=world.ids["claim"]), metadata=b)
    assert claim.state == res.Claim.DRAFT
    holder = await h.policyholders.GetPolicyholder(
        hb.GetPolicyholderRequest(policyholder_id=world.ids["policyholder"]), metadata=b
    )
    assert holder.delete_time.seconds == 0 and holder.email != "x@example.com"
    b_ids = set(world.ids.values()) - {world.ids["a_holder"], world.ids["a_product"]}
    listed = {
        x.id
        for x in (
            *(
                await h.policyholders.ListPolicyholders(
                    hb.ListPolicyholdersRequest(show_deleted=True), metadata=a
                )
            ).policyholders,
            *(
                await h.products.ListProducts(rb.ListProductsRequest(show_deleted=True), metadata=a)
            ).products,
            *(
                await h.policies.ListPolicies(pb.ListPoliciesRequest(show_deleted=True), metadata=a)
            ).policies,
            *(
                await h.claims.ListClaims(cb.ListClaimsRequest(show_deleted=True), metadata=a)
            ).claims,
        )
    }
    assert world.ids["a_holder"] in listed and world.ids["a_product"] in listed
    assert not listed & b_ids
    events = await h.core.ListAuditEvents(xb.ListAuditEventsRequest(page_size=100), metadata=a)
    assert events.audit_events
    assert {e.company_id for e in events.audit_events} == {world.a.company_id}
    assert not {e.entity_id for e in events.audit_events} & b_ids
    bands = await h.claims.GetApprovalBands(cb.GetApprovalBandsRequest(), metadata=a)
    assert not bands.configured
    # Filtering on B's ids finds nothing either.
    found = await h.policies.ListPolicies(
        pb.ListPoliciesRequest(filter=f'policyholder_id = "{world.ids["policyholder"]}"'),
        metadata=a,
    )
    assert not found.policies


async def test_row_level_security_underneath(world: World) -> None:
    db = world.a.harness.app.ctx.db
    a, b = uuid.UUID(world.a.company_id), uuid.UUID(world.b.company_id)
    async with db.unit_of_work(company_id=a) as session:
        tables = (
            await session.execute(
                text(
                    "SELECT c.relname FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = 'core' AND c.relkind = 'r' "
                    "AND c.relname <> 'alembic_version' "
                    "AND NOT (c.relrowsecurity AND c.relforcerowsecurity)"
                )
            )
        ).all()
        assert tables == []
        for table in (
            "policyholders",
            "dependents",
            "products",
            "policies",
            "claims",
            "audit_events",
        ):
            # No WHERE on the company: the policy alone hides B's rows.
            companies = set(
                (
                    await session.execute(text(f"SELECT DISTINCT company_id FROM core.{table}"))  # noqa: S608
                ).scalars()
            )
            assert companies <= {a}, table
    with pytest.raises(DBAPIError):
        async with db.unit_of_work(company_id=a) as session:
            await session.execute(
                text(
                    "INSERT INTO core.policyholders (id, company_id, kind, version) "
                    "VALUES (gen_random_uuid(), :b, 'PERSON', 1)"
                ),
                {"b": b},
            )
    with pytest.raises(DBAPIError):
        async with db.unit_of_work(company_id=a) as session:
            await session.execute(text("UPDATE core.policy_status_changes SET reason = 'x'"))
