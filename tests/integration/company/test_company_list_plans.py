"""Every List of the company service is served by an index: no Seq Scan on a big table.

As tests/integration/core/test_core_list_plans.py (the method is described
there and in tests/support/list_plans.py): a new company gets one real row of
every listed table (a department, a unit, a webhook subscription, deliveries
with attempts as the dispatcher writes them, audit events), the tables are
filled from them to thousands of rows in the company and in others (the
companies table to thousands of companies), and every List is called through
the running server with each filter and ``order_by`` field its repository
declares (``COMPANY_FILTER``, ``DEPARTMENT_FILTER``, ``UNIT_FILTER``,
``DELIVERY_FILTER``, ``AUDIT_LOG.filter`` and the ``*_ORDER`` mappings) and with
its default order, page 2 included; the SELECTs it sent are EXPLAINed as the
role that sent them (the service role with the tenant set, or the platform
role for a platform admin's ListCompanies).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from company_harness import CompanyHarness
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from support.identity_harness import PASSWORD, Account, unique_email
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

from cardinsa.company.v1 import (
    company_service_pb2,
    event_service_pb2,
    organization_service_pb2,
    resources_pb2,
    webhook_service_pb2,
    webhooks_pb2,
)
from cardinsa_company.repository.audit_log import AUDIT_LOG
from cardinsa_company.repository.companies import COMPANY_FILTER, COMPANY_ORDER
from cardinsa_company.repository.models import Base
from cardinsa_company.repository.organization import (
    DEPARTMENT_FILTER,
    DEPARTMENT_ORDER,
    UNIT_FILTER,
    UNIT_ORDER,
)
from cardinsa_company.repository.webhooks import DELIVERY_FILTER
from cardinsa_foundation.db import (
    DEFAULT_APP_ROLE,
    DEFAULT_PLATFORM_ROLE,
    app_role_url,
    platform_role_url,
)
from cardinsa_foundation.filtering import FilterSpec
from cardinsa_identity.application.bootstrap import ensure_user_with_role

SCHEMA = "company"
PAGE_SIZE = 10
TABLES = (
    "companies",
    "departments",
    "units",
    "webhook_subscriptions",
    "webhook_events",
    "webhook_deliveries",
    "webhook_delivery_attempts",
    "audit_events",
)
CHILDREN = {
    "units": "department_id",
    "webhook_deliveries": "subscription_id",
    "webhook_delivery_attempts": "delivery_id",
}
#: A company has a few webhook subscriptions; the platform many.
FILL = Fill(
    SCHEMA,
    TABLES,
    CHILDREN,
    sizes={"webhook_subscriptions": (40, 3000)},
    platform_tables=frozenset({"companies"}),
)
ALLOWED_SEQ_SCANS: dict[str, str] = {}

#: The filter and order_by fields of each List with a filter, from the code; the
#: request fields naming the company and parent.
SEARCHABLE: dict[str, tuple[FilterSpec, list[str], tuple[str, ...]]] = {
    "ListCompanies": (COMPANY_FILTER, list(COMPANY_ORDER), ()),
    "ListAuditEvents": (AUDIT_LOG.filter, [], ()),
    "ListDepartments": (DEPARTMENT_FILTER, list(DEPARTMENT_ORDER), ("company_id",)),
    "ListUnits": (UNIT_FILTER, list(UNIT_ORDER), ("company_id", "department_id")),
    "ListWebhookDeliveries": (
        DELIVERY_FILTER,
        [],
        ("company_id", "webhook_subscription_id"),
    ),
}
PLAIN_LISTS: dict[str, tuple[str, ...]] = {
    "ListWebhookSubscriptions": ("company_id",),
    "ListWebhookDeliveryAttempts": ("company_id", "webhook_subscription_id", "delivery_id"),
}
MODULES = (
    company_service_pb2,
    event_service_pb2,
    organization_service_pb2,
    webhook_service_pb2,
)


@dataclass
class Filled:
    checker: PlanChecker
    #: The same calls as the platform admin (over every company).
    platform: PlanChecker
    #: Request field -> the id it names (the company, the parents of the child lists).
    parents: dict[str, str]


async def _templates(company: CompanyHarness, admin: Account) -> dict[str, str]:
    md = await company.as_(admin)
    department = await company.org.CreateDepartment(
        organization_service_pb2.CreateDepartmentRequest(
            company_id=admin.company_id,
            department=resources_pb2.Department(display_name="Claims", code="CL"),
        ),
        metadata=md,
    )
    await company.org.CreateUnit(
        organization_service_pb2.CreateUnitRequest(
            company_id=admin.company_id,
            department_id=department.id,
            unit=resources_pb2.Unit(display_name="Motor claims", code="MC-1"),
        ),
        metadata=md,
    )
    subscription = await company.webhooks.CreateWebhookSubscription(
        webhook_service_pb2.CreateWebhookSubscriptionRequest(
            company_id=admin.company_id,
            webhook_subscription=webhooks_pb2.WebhookSubscription(
                url="https://1.1.1.1/hooks/cardinsa", event_types=["cardinsa.core.claim.*"]
            ),
        ),
        metadata=md,
    )
    (delivery,) = await company.insert_deliveries(
        admin.company_id, subscription.id, ["DEAD_LETTERED"]
    )
    return {
        "company_id": admin.company_id,
        "department_id": department.id,
        "subscription_id": subscription.id,
        "webhook_subscription_id": subscription.id,
        "delivery_id": delivery,
    }


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def filled(company: CompanyHarness, company_database: str) -> AsyncIterator[Filled]:
    mine = await company.create_company()
    created = await ensure_user_with_role(
        company.identity.app.ctx,
        email=unique_email("plans-admin"),
        password=PASSWORD,
        company_id=uuid.UUID(mine.id),
        role_name="company-admin",
    )
    admin = Account(created.email, PASSWORD, mine.id, str(created.user_id))
    parents = await _templates(company, admin)
    made = await fill_tables(company_database, FILL, mine.id, parents)
    capture = SqlCapture()
    engines = {
        DEFAULT_APP_ROLE: create_async_engine(app_role_url(company_database), poolclass=NullPool),
        DEFAULT_PLATFORM_ROLE: create_async_engine(
            platform_role_url(company_database), poolclass=NullPool
        ),
    }
    big = frozenset(f"{SCHEMA}.{t}" for t in TABLES)

    def checker(metadata: Any) -> PlanChecker:
        return PlanChecker(
            channel=company.channel,
            capture=capture,
            explain_engines=engines,
            company_id=mine.id,
            metadata=metadata,
            big_tables=big,
            allowed=ALLOWED_SEQ_SCANS,
        )

    try:
        yield Filled(
            checker(await company.as_(admin)),
            checker(await company.as_(company.platform_admin)),
            parents,
        )
    finally:
        capture.close()
        for engine in engines.values():
            await engine.dispose()
        await empty_tables(company_database, made)


def _method(name: str) -> Any:
    (method,) = [m for m in list_methods(*MODULES) if m.name == name]
    return method


def test_every_list_rpc_is_checked() -> None:
    """A List RPC added to the company service must be added here (and get its index)."""
    names = {m.name for m in list_methods(*MODULES)}
    assert names == set(SEARCHABLE) | set(PLAIN_LISTS)


def _searchable_calls(name: str, parents: dict[str, str], *, paged: bool = True) -> list[ListCall]:
    spec, order, parent_fields = SEARCHABLE[name]
    method = _method(name)
    takes = set(method.input_type.fields_by_name)
    base: dict[str, Any] = {"page_size": PAGE_SIZE, **{p: parents[p] for p in parent_fields}}
    orders = order_cases(order) if "order_by" in takes else []
    calls = [ListCall(method, base, paged)]
    if "show_deleted" in takes:
        calls.append(ListCall(method, {**base, "show_deleted": True}, paged))
    for condition in filter_cases(spec):
        calls.append(ListCall(method, {**base, "filter": condition}, next_page=False))
        for ordering in orders:
            calls.append(
                ListCall(method, {**base, "filter": condition, "order_by": ordering}, False)
            )
    for ordering in orders:
        calls.append(ListCall(method, {**base, "order_by": ordering}, paged))
    return calls


@pytest.mark.parametrize("name", sorted(SEARCHABLE))
async def test_list_filters_and_orders_use_indexes(filled: Filled, name: str) -> None:
    problems: list[str] = []
    # A company admin lists their own company only: one row, no page 2.
    for call in _searchable_calls(name, filled.parents, paged=name != "ListCompanies"):
        problems += await filled.checker.problems(call)
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)


#: What a platform admin lists across every company (no company_id to lead with).
PLATFORM_LISTS = ("ListCompanies", "ListAuditEvents")


@pytest.mark.parametrize("name", PLATFORM_LISTS)
async def test_platform_admin_lists_use_indexes(filled: Filled, name: str) -> None:
    problems: list[str] = []
    for call in _searchable_calls(name, filled.parents):
        problems += await filled.platform.problems(call)
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)


@pytest.mark.parametrize("name", sorted(PLAIN_LISTS))
async def test_plain_lists_use_indexes(filled: Filled, name: str) -> None:
    method = _method(name)
    fields: dict[str, Any] = {p: filled.parents[p] for p in PLAIN_LISTS[name]}
    calls = [ListCall(method, {**fields, "page_size": PAGE_SIZE})]
    if "show_deleted" in method.input_type.fields_by_name:
        calls.append(ListCall(method, {**fields, "page_size": PAGE_SIZE, "show_deleted": True}))
    problems: list[str] = []
    for call in calls:
        problems += await filled.checker.problems(call)
    assert not problems, "\n".join(problems)


async def test_the_models_declare_the_migrated_indexes(company_database: str) -> None:
    engine = create_async_engine(company_database, poolclass=NullPool)
    try:
        assert not await missing_indexes(engine, Base.metadata, SCHEMA)
    finally:
        await engine.dispose()
