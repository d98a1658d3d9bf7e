"""Every List of core is served by an index: no Seq Scan on a tenant's big table.

One company gets one real row of every listed table through the API (a product,
a policyholder, a bound policy with its versions, status log, premium
transactions, invoices and a payment, claims with log entries, a payment and a
recovery, the audit events all of that wrote); each table is then filled from
that row to a few thousand rows in the company and in other companies
(:func:`support.list_plans.clone_rows`), and ANALYZEd. Then every List RPC is
called through the running server with every filter field and ``order_by``
field its repository declares (read from ``POLICIES.filter``, ``POLICIES.order``
... -- a field added later is tried without being listed here), and for each
ordering the next page too (the page token's keyset condition). The SELECTs the
call sent are captured on the server's own engine and EXPLAINed with their
parameters as the service role with the tenant set (RLS applies), and in their
generic form (what a prepared statement may run); a ``Seq Scan``
on a filled table, or a plan node that reads more than a few hundred of its
rows only to discard them by a filter no index holds, fails, naming the call
and the statement. Filters on a field tried: ``=`` every value of an enum or
boolean, ``=`` a value no row has for strings, numbers and uuids, ``>=`` / ``<``
beyond every value for dates and times (``:``, ``*`` and negations are not
index-served by design: support.list_plans.UNINDEXED_FORMS). Lists of one
parent (a claim's log, a policy's invoices) run with their default order, on a
parent with many rows among many parents.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from core_harness import CoreHarness, Tenant, money
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from support.list_plans import (
    Fill,
    ListCall,
    PlanChecker,
    SqlCapture,
    empty_tables,
    fill_tables,
    filter_cases,
    list_methods,
    missing_indexes,
    order_cases,
)

from cardinsa.core.v1 import (
    billing_service_pb2,
    claim_service_pb2,
    core_service_pb2,
    document_service_pb2,
    event_service_pb2,
    payment_provider_service_pb2,
    policy_service_pb2,
    policyholder_service_pb2,
    product_service_pb2,
    resources_pb2,
)
from cardinsa_core.application.underwriting import raise_issues
from cardinsa_core.domain.underwriting import Finding
from cardinsa_core.repository.audit import AUDIT_LOG
from cardinsa_core.repository.claims import CLAIMS
from cardinsa_core.repository.models import Base
from cardinsa_core.repository.policies import POLICIES
from cardinsa_core.repository.policyholders import POLICYHOLDERS
from cardinsa_core.repository.products import PRODUCTS
from cardinsa_foundation.db import DEFAULT_APP_ROLE, app_role_url
from cardinsa_foundation.filtering import FilterSpec

SCHEMA = "core"
PAGE_SIZE = 10

#: Tables filled from one real row (in order: parents before children).
TABLES = (
    "policyholders",
    "dependents",
    "products",
    "product_versions",
    "coverages",
    "policies",
    "policy_versions",
    "policy_status_changes",
    "premium_transactions",
    "underwriting_issues",
    "invoices",
    "payments",
    "payment_allocations",
    "claims",
    "claim_log_entries",
    "claim_payments",
    "claim_recoveries",
    "audit_events",
)
#: Child tables also given CHILD_ROWS rows under the parent their List reads.
CHILDREN = {
    "product_versions": "product_id",
    "policy_versions": "policy_id",
    "policy_status_changes": "policy_id",
    "premium_transactions": "policy_id",
    "underwriting_issues": "policy_id",
    "invoices": "policy_id",
    "payments": "policy_id",
    "claim_log_entries": "claim_id",
    "claim_payments": "claim_id",
    "claim_recoveries": "claim_id",
}
FILL = Fill(SCHEMA, TABLES, CHILDREN)
#: Relations a plan may read by Seq Scan, with the reason (none of the filled ones).
ALLOWED_SEQ_SCANS = {
    "core.approval_bands": "at most one row per currency of a company "
    "(ListApprovalBands reads all of them, primary key (company_id, currency))",
}

#: The filter and order_by fields of each List with a filter, from the code.
SEARCHABLE: dict[str, tuple[FilterSpec, list[str]]] = {
    "ListPolicies": (POLICIES.filter, list(POLICIES.order)),
    "ListClaims": (CLAIMS.filter, list(CLAIMS.order)),
    "ListPolicyholders": (POLICYHOLDERS.filter, list(POLICYHOLDERS.order)),
    "ListProducts": (PRODUCTS.filter, list(PRODUCTS.order)),
    "ListAuditEvents": (AUDIT_LOG.filter, []),
}
#: Lists of one parent: the request field naming it, and the template it is.
CHILD_LISTS = {
    "ListPolicyVersions": "policy_id",
    "ListPolicyStatusChanges": "policy_id",
    "ListPremiumTransactions": "policy_id",
    "ListUnderwritingIssues": "policy_id",
    "ListInvoices": "policy_id",
    "ListPayments": "policy_id",
    "ListProductVersions": "product_id",
    "ListClaimLogEntries": "claim_id",
    "ListClaimPayments": "claim_id",
    "ListClaimRecoveries": "claim_id",
}
#: Lists without paging (nothing to page through: one small table).
UNPAGED = {"ListApprovalBands": "one row per configured currency of the company"}

MODULES = (
    policy_service_pb2,
    claim_service_pb2,
    policyholder_service_pb2,
    product_service_pb2,
    billing_service_pb2,
    core_service_pb2,
    document_service_pb2,
    event_service_pb2,
    payment_provider_service_pb2,
)


@dataclass
class Filled:
    tenant: Tenant
    checker: PlanChecker
    parents: dict[str, str]  # policy_id, claim_id, product_id of the children's parent


async def _templates(tenant: Tenant) -> dict[str, str]:
    """One real row of every listed table (and a policy and claim with children)."""
    md = await tenant.md()
    harness = tenant.harness
    product = await tenant.product()
    holder = await tenant.holder()
    policy = await tenant.in_force(holder, product)
    # An issue of the policy's quote, raised the way the quote raises it.
    company = uuid.UUID(tenant.company_id)
    async with harness.app.ctx.db.unit_of_work(company_id=company) as session:
        row = await POLICIES.find(session, company, policy.id, lock=True)
        await raise_issues(session, row, [Finding("MANUAL_UNDERWRITING", "terms:1", "manual")])
    await harness.billing.RecordPayment(
        billing_service_pb2.RecordPaymentRequest(
            policy_id=policy.id,
            payment=resources_pb2.Payment(amount=money("25"), reference="bank 1"),
        ),
        metadata=md,
    )
    claim = await tenant.claim_under_review(policy, claimed="1000")
    await harness.claims.ApproveClaim(
        claim_service_pb2.ApproveClaimRequest(claim_id=claim.id, approved_amount=money("800")),
        metadata=md,
    )
    await harness.claims.CreateClaimPayment(
        claim_service_pb2.CreateClaimPaymentRequest(
            claim_id=claim.id,
            payment=resources_pb2.ClaimPayment(
                cost_type=resources_pb2.INDEMNITY,
                payee="Dr. Weber",
                method=resources_pb2.ClaimPayment.BANK_TRANSFER,
                reference="TRX-A",
                amount=money("300"),
            ),
        ),
        metadata=md,
    )
    await harness.claims.CreateClaimRecovery(
        claim_service_pb2.CreateClaimRecoveryRequest(
            claim_id=claim.id,
            recovery=resources_pb2.ClaimRecovery(
                kind=resources_pb2.ClaimRecovery.SALVAGE, amount=money("150")
            ),
        ),
        metadata=md,
    )
    return {"policy_id": policy.id, "claim_id": claim.id, "product_id": product.id}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def filled(core: CoreHarness, core_database: str) -> AsyncIterator[Filled]:
    tenant = await core.tenant()
    parents = await _templates(tenant)
    made = await fill_tables(core_database, FILL, tenant.company_id, parents)
    capture = SqlCapture()
    explain_engine = create_async_engine(app_role_url(core_database), poolclass=NullPool)
    try:
        yield Filled(
            tenant,
            PlanChecker(
                channel=core.channel,
                capture=capture,
                explain_engines={DEFAULT_APP_ROLE: explain_engine},
                company_id=tenant.company_id,
                metadata=await tenant.md(),
                big_tables=frozenset(f"{SCHEMA}.{t}" for t in TABLES),
                allowed=ALLOWED_SEQ_SCANS,
            ),
            parents,
        )
    finally:
        capture.close()
        await explain_engine.dispose()
        await empty_tables(core_database, made)


def _method(name: str) -> Any:
    (method,) = [m for m in list_methods(*MODULES) if m.name == name]
    return method


def test_every_list_rpc_is_checked() -> None:
    """A List RPC added to a core service must be added here (and get its index)."""
    names = {m.name for m in list_methods(*MODULES)}
    assert names == set(SEARCHABLE) | set(CHILD_LISTS) | set(UNPAGED)


def _searchable_calls(name: str) -> list[ListCall]:
    spec, order = SEARCHABLE[name]
    method = _method(name)
    takes = set(method.input_type.fields_by_name)
    base: dict[str, Any] = {"page_size": PAGE_SIZE}
    calls = [ListCall(method, base)]
    if "show_deleted" in takes:
        calls.append(ListCall(method, {**base, "show_deleted": True}))
    for condition in filter_cases(spec):
        calls.append(ListCall(method, {**base, "filter": condition}, next_page=False))
        for ordering in order_cases(order):
            calls.append(
                ListCall(method, {**base, "filter": condition, "order_by": ordering}, False)
            )
    for ordering in order_cases(order):
        calls.append(ListCall(method, {**base, "order_by": ordering}))
    return calls


@pytest.mark.parametrize("name", sorted(SEARCHABLE))
async def test_list_filters_and_orders_use_indexes(filled: Filled, name: str) -> None:
    problems: list[str] = []
    for call in _searchable_calls(name):
        problems += await filled.checker.problems(call)
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)


@pytest.mark.parametrize("name", sorted(CHILD_LISTS))
async def test_child_lists_use_indexes(filled: Filled, name: str) -> None:
    parent = CHILD_LISTS[name]
    call = ListCall(_method(name), {parent: filled.parents[parent], "page_size": PAGE_SIZE})
    problems = await filled.checker.problems(call)
    assert not problems, "\n".join(problems)


async def test_unpaged_lists_read_only_small_tables(filled: Filled) -> None:
    for name in UNPAGED:
        call = ListCall(_method(name), {}, next_page=False)
        problems = await filled.checker.problems(call)
        assert not problems, "\n".join(problems)


async def test_the_models_declare_the_migrated_indexes(core_database: str) -> None:
    engine = create_async_engine(core_database, poolclass=NullPool)
    try:
        assert not await missing_indexes(engine, Base.metadata, SCHEMA)
    finally:
        await engine.dispose()
