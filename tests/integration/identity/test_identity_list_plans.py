"""Every List of identity is served by an index: no Seq Scan on a tenant's big table.

As tests/integration/core/test_core_list_plans.py (the method is described
there and in tests/support/list_plans.py): a new company gets one real row of
every listed table through the API (users, a custom role, role bindings, a
service account and API key, login sessions, audit events), the tables are
filled from them to thousands of rows in the company and in others, and every
List is called through the running server with each filter and ``order_by``
field its repository declares (``USER_FILTER``, ``USER_ORDER``,
``AUDIT_LOG.filter``) and with its default order, page 2 included; the SELECTs
it sent are EXPLAINed as the service role with the tenant set.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from support.identity_harness import PASSWORD, Account, IdentityHarness, unique_email
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

from cardinsa.identity.v1 import (
    access_service_pb2,
    auth_service_pb2,
    event_service_pb2,
    identity_service_pb2,
    resources_pb2,
    user_service_pb2,
)
from cardinsa_foundation.db import (
    DEFAULT_APP_ROLE,
    DEFAULT_PLATFORM_ROLE,
    app_role_url,
    platform_role_url,
)
from cardinsa_foundation.filtering import FilterSpec
from cardinsa_identity.application.bootstrap import ensure_user_with_role
from cardinsa_identity.repository.audit_events import AUDIT_LOG
from cardinsa_identity.repository.models import Base
from cardinsa_identity.repository.users import USER_FILTER, USER_ORDER

SCHEMA = "identity"
PAGE_SIZE = 10
TABLES = (
    "users",
    "roles",
    "role_bindings",
    "sessions",
    "service_accounts",
    "api_keys",
    "audit_events",
)
CHILDREN = {"sessions": "user_id", "api_keys": "service_account_id", "role_bindings": "user_id"}
#: A company has a few custom roles (ListRoles adds the built-in ones), the platform many.
FILL = Fill(SCHEMA, TABLES, CHILDREN, sizes={"roles": (40, 4000)})
ALLOWED_SEQ_SCANS: dict[str, str] = {}

SEARCHABLE: dict[str, tuple[FilterSpec, list[str]]] = {
    "ListUsers": (USER_FILTER, list(USER_ORDER)),
    "ListAuditEvents": (AUDIT_LOG.filter, []),
}
#: Lists without a filter: the request fields naming their parent (if any).
PLAIN_LISTS: dict[str, tuple[str, ...]] = {
    "ListRoles": (),
    "ListRoleBindings": (),
    "ListServiceAccounts": (),
    "ListSessions": ("user_id",),
    "ListApiKeys": ("service_account_id",),
}
#: Lists that read no tenant table, with the reason.
NOT_TENANT_LISTS = {
    "ListPermissions": "the permission catalogue is in the code, not in a table",
    "ListSigningKeys": "the platform's few signing keys (one per rotation), not a tenant's",
}
MODULES = (
    access_service_pb2,
    auth_service_pb2,
    event_service_pb2,
    identity_service_pb2,
    user_service_pb2,
)


@dataclass
class Filled:
    checker: PlanChecker
    #: The same calls as the platform admin (ListAuditEvents over every company).
    platform: PlanChecker
    parents: dict[str, str]


async def _templates(identity: IdentityHarness, admin: Account) -> dict[str, str]:
    """A row of every listed table in the admin's company."""
    md = identity.bearer(await identity.token(admin))
    user = await identity.create_user(admin, roles=["agent"])
    await identity.login(user.email)  # a session of the user
    await identity.access.CreateRole(
        access_service_pb2.CreateRoleRequest(
            role=resources_pb2.Role(name="claims-reader", permissions=["users.get"])
        ),
        metadata=md,
    )
    account = await identity.access.CreateServiceAccount(
        access_service_pb2.CreateServiceAccountRequest(
            service_account=resources_pb2.ServiceAccount(name="ledger-sync")
        ),
        metadata=md,
    )
    await identity.access.CreateApiKey(
        access_service_pb2.CreateApiKeyRequest(
            service_account_id=account.id,
            api_key=resources_pb2.ApiKey(display_name="nightly", permissions=["users.get"]),
        ),
        metadata=md,
    )
    return {"user_id": user.user_id, "service_account_id": account.id}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def filled(identity: IdentityHarness, identity_database: str) -> AsyncIterator[Filled]:
    created = await ensure_user_with_role(
        identity.app.ctx,
        email=unique_email("plans-admin"),
        password=PASSWORD,
        company_id=uuid.uuid4(),
        role_name="company-admin",
    )
    admin = Account(created.email, PASSWORD, str(created.company_id), str(created.user_id))
    parents = await _templates(identity, admin)
    made = await fill_tables(identity_database, FILL, admin.company_id, parents)
    capture = SqlCapture()
    explain_engine = create_async_engine(app_role_url(identity_database), poolclass=NullPool)
    platform_engine = create_async_engine(platform_role_url(identity_database), poolclass=NullPool)

    def checker(metadata: Any) -> PlanChecker:
        return PlanChecker(
            channel=identity.channel,
            capture=capture,
            explain_engines={
                DEFAULT_APP_ROLE: explain_engine,
                DEFAULT_PLATFORM_ROLE: platform_engine,
            },
            company_id=admin.company_id,
            metadata=metadata,
            big_tables=frozenset(f"{SCHEMA}.{t}" for t in TABLES),
            allowed=ALLOWED_SEQ_SCANS,
        )

    try:
        yield Filled(
            checker(identity.bearer(await identity.token(admin))),
            checker(identity.bearer(await identity.token(identity.platform_admin))),
            parents,
        )
    finally:
        capture.close()
        await explain_engine.dispose()
        await platform_engine.dispose()
        await empty_tables(identity_database, made)


def _method(name: str) -> Any:
    (method,) = [m for m in list_methods(*MODULES) if m.name == name]
    return method


def test_every_list_rpc_is_checked() -> None:
    """A List RPC added to identity must be added here (and get its index)."""
    names = {m.name for m in list_methods(*MODULES)}
    assert names == set(SEARCHABLE) | set(PLAIN_LISTS) | set(NOT_TENANT_LISTS)


def _searchable_calls(name: str) -> list[ListCall]:
    spec, order = SEARCHABLE[name]
    method = _method(name)
    base: dict[str, Any] = {"page_size": PAGE_SIZE}
    calls = [ListCall(method, base)]
    if "show_deleted" in method.input_type.fields_by_name:
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


async def test_platform_admins_audit_log_uses_indexes(filled: Filled) -> None:
    """A platform admin's ListAuditEvents: every company's events (no company_id)."""
    problems: list[str] = []
    for call in _searchable_calls("ListAuditEvents"):
        problems += await filled.platform.problems(call)
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)


@pytest.mark.parametrize("name", sorted(PLAIN_LISTS))
async def test_plain_lists_use_indexes(filled: Filled, name: str) -> None:
    method = _method(name)
    fields: dict[str, Any] = {p: filled.parents[p] for p in PLAIN_LISTS[name]}
    calls = [ListCall(method, {**fields, "page_size": PAGE_SIZE})]
    for flag in ("show_deleted", "show_revoked"):
        if flag in method.input_type.fields_by_name:
            calls.append(ListCall(method, {**fields, "page_size": PAGE_SIZE, flag: True}))
    if name == "ListRoleBindings":  # narrowed to one user
        calls.append(ListCall(method, {"user_id": filled.parents["user_id"], "page_size": 1}))
    problems: list[str] = []
    for call in calls:
        problems += await filled.checker.problems(call)
    assert not problems, "\n".join(problems)


async def test_the_models_declare_the_migrated_indexes(identity_database: str) -> None:
    engine = create_async_engine(identity_database, poolclass=NullPool)
    try:
        assert not await missing_indexes(engine, Base.metadata, SCHEMA)
    finally:
        await engine.dispose()
