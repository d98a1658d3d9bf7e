"""The database backstop: row-level security on every company table, as the
services' role, whatever the application's queries forget."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from company_harness import CompanyHarness
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from cardinsa.company.v1 import organization_service_pb2, resources_pb2
from cardinsa_foundation.db import (
    CROSS_TENANT_SETTING,
    TENANT_SETTING,
    app_role_url,
    platform_role_url,
)

TENANT_TABLES = ("companies", "departments", "units", "idempotency_keys", "audit_events")


@pytest_asyncio.fixture(scope="module")
async def app_engine(company_database: str) -> AsyncIterator[AsyncEngine]:
    """A connection as `cardinsa_app`, with no unit of work around it."""
    engine = create_async_engine(app_role_url(company_database), poolclass=NullPool)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _visible(
    engine: AsyncEngine, sql: str, *, tenant: str = "", cross: bool = False
) -> list[str]:
    async with engine.begin() as connection:
        await connection.execute(
            text("SELECT set_config(:t, :c, true), set_config(:x, :v, true)"),
            {
                "t": TENANT_SETTING,
                "c": tenant,
                "x": CROSS_TENANT_SETTING,
                "v": "on" if cross else "off",
            },
        )
        return [str(row[0]) for row in await connection.execute(text(sql))]


async def test_unfiltered_queries_see_only_the_transactions_tenant(
    company: CompanyHarness, app_engine: AsyncEngine, company_database: str
) -> None:
    a, b = company.company_a.id, company.company_b.id
    for admin, company_id in ((company.admin_a, a), (company.admin_b, b)):
        await company.org.CreateDepartment(
            organization_service_pb2.CreateDepartmentRequest(
                company_id=company_id,
                department=resources_pb2.Department(display_name=f"RLS {uuid.uuid4().hex[:6]}"),
                request_id=str(uuid.uuid4()),
            ),
            metadata=await company.as_(admin),
        )
    # No WHERE clause at all: the policy alone decides.
    assert await _visible(app_engine, "SELECT id FROM company.companies", tenant=a) == [a]
    for table in ("departments", "idempotency_keys", "audit_events"):
        sql = f"SELECT company_id FROM company.{table}"  # noqa: S608 - fixed table names
        seen = set(await _visible(app_engine, sql, tenant=a))
        assert seen == {a}, table
    # No tenant set: nothing at all (fails closed).
    for table in TENANT_TABLES:
        sql = f"SELECT 1 FROM company.{table}"  # noqa: S608 - fixed table names
        assert await _visible(app_engine, sql) == [], table
    # The retired switch widens nothing for the services' role.
    for tenant in ("", a):
        sql = "SELECT id FROM company.companies"
        seen = set(await _visible(app_engine, sql, tenant=tenant, cross=True))
        assert seen <= {a}
    # The explicit cross-tenant path, the platform role, sees both.
    platform = create_async_engine(platform_role_url(company_database), poolclass=NullPool)
    try:
        everyone = set(await _visible(platform, "SELECT id FROM company.companies"))
    finally:
        await platform.dispose()
    assert {a, b} <= everyone


async def test_writes_into_another_tenant_are_refused(
    company: CompanyHarness, app_engine: AsyncEngine
) -> None:
    a, b = company.company_a.id, company.company_b.id
    with pytest.raises(DBAPIError) as caught:
        async with app_engine.begin() as connection:
            await connection.execute(
                text("SELECT set_config(:t, :c, true)"), {"t": TENANT_SETTING, "c": a}
            )
            await connection.execute(
                text(
                    "INSERT INTO company.departments (id, company_id, display_name, code, "
                    "description, version) VALUES (gen_random_uuid(), :b, 'Smuggled', '', '', 1)"
                ),
                {"b": b},
            )
    assert "row-level security" in str(caught.value)
    async with app_engine.begin() as connection:
        await connection.execute(
            text("SELECT set_config(:t, :c, true)"), {"t": TENANT_SETTING, "c": a}
        )
        changed = await connection.execute(
            text("UPDATE company.companies SET display_name = 'Hijacked' WHERE id = :b"), {"b": b}
        )
        assert changed.rowcount == 0


async def test_the_app_role_owns_nothing_and_the_audit_log_is_append_only(
    company: CompanyHarness, app_engine: AsyncEngine
) -> None:
    async with app_engine.begin() as connection:
        owned = await connection.execute(
            text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'company' AND pg_get_userbyid(c.relowner) = current_user"
            )
        )
        assert owned.all() == []
        forced = await connection.execute(
            text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'company' AND c.relkind = 'r' "
                "AND c.relname NOT IN ('alembic_version', 'event_cursors') "
                "AND NOT (c.relrowsecurity AND c.relforcerowsecurity)"
            )
        )
        # event_cursors: the dispatcher's progress per source service, no tenant's data.
        assert forced.all() == [], "every company table is under forced row-level security"
    with pytest.raises(DBAPIError):
        async with app_engine.begin() as connection:
            await connection.execute(
                text("SELECT set_config(:x, 'on', true)"), {"x": CROSS_TENANT_SETTING}
            )
            await connection.execute(text("DELETE FROM company.audit_events"))
