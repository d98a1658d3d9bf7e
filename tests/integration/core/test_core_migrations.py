"""The core migration on an empty database: up, down, up again; what the
services' role may do in the schema afterwards."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import pytest_asyncio
from sqlalchemy import make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from cardinsa_core.cli import MIGRATIONS
from cardinsa_core.repository.models import Base
from cardinsa_foundation.db import DEFAULT_APP_ROLE, app_role_url
from cardinsa_foundation.migrations import downgrade, upgrade

SCHEMA = "core"
TABLES = {t.name for t in Base.metadata.sorted_tables} | {"alembic_version"}


def engine_for(url: str) -> AsyncEngine:
    return create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")


@pytest_asyncio.fixture
async def fresh_database(postgres_admin_url: str) -> AsyncIterator[str]:
    name = f"cardinsa_test_{uuid.uuid4().hex[:12]}"
    admin = engine_for(postgres_admin_url)
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(postgres_admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def scalars(url: str, sql: str) -> set[object]:
    engine = engine_for(url)
    try:
        async with engine.connect() as connection:
            return set((await connection.execute(text(sql), {"s": SCHEMA})).scalars())
    finally:
        await engine.dispose()


async def test_up_down_up(fresh_database: str) -> None:
    await upgrade(MIGRATIONS, fresh_database, SCHEMA)
    found = "SELECT tablename FROM pg_tables WHERE schemaname = :s"
    assert await scalars(fresh_database, found) == TABLES
    await downgrade(MIGRATIONS, fresh_database, SCHEMA, "base")
    assert await scalars(fresh_database, found) == {"alembic_version"}
    assert not await scalars(
        fresh_database,
        "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = :s",
    )
    await upgrade(MIGRATIONS, fresh_database, SCHEMA)
    await upgrade(MIGRATIONS, fresh_database, SCHEMA)
    assert await scalars(fresh_database, found) == TABLES


async def test_the_services_role_owns_nothing_and_logs_are_append_only(
    fresh_database: str,
) -> None:
    await upgrade(MIGRATIONS, fresh_database, SCHEMA)
    owners = await scalars(fresh_database, "SELECT tableowner FROM pg_tables WHERE schemaname = :s")
    assert DEFAULT_APP_ROLE not in owners
    unprotected = await scalars(
        fresh_database,
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = :s AND c.relkind = 'r' AND c.relname <> 'alembic_version' "
        "AND NOT (c.relrowsecurity AND c.relforcerowsecurity)",
    )
    assert unprotected == set()
    app = create_async_engine(app_role_url(fresh_database), poolclass=NullPool)
    company = str(uuid.uuid4())
    try:
        for statement in (
            "UPDATE core.audit_events SET action = 'x'",
            "DELETE FROM core.claim_log_entries",
            "UPDATE core.policy_versions SET description = 'x'",
            "DELETE FROM core.policy_status_changes",
            "UPDATE core.alembic_version SET version_num = 'x'",
            "DROP TABLE core.policies",
        ):
            with pytest.raises(DBAPIError):
                async with app.begin() as connection:
                    await connection.execute(
                        text("SELECT set_config('cardinsa.company_id', :c, true)"), {"c": company}
                    )
                    await connection.execute(text(statement))
    finally:
        await app.dispose()


_PRE_MONEY_ROWS = """
INSERT INTO core.policyholders (id, company_id, kind, given_name, family_name, gender,
    legal_name, registration_number, national_id, email, phone, address_line1, address_line2,
    address_city, address_region, address_postal_code, address_country_code, display_name,
    version)
VALUES (:holder, :c, 'PERSON', 'A', 'B', '', '', '', '', '', '', '', '', '', '', '', '', 'A B', 1);
INSERT INTO core.products (id, company_id, code, line_of_business, state, current_version, name,
    currency, version)
VALUES (:product, :c, 'P1', 'MEDICAL', 'ACTIVE', 1, 'P', 'EUR', 1);
INSERT INTO core.product_versions (id, company_id, product_id, version, name, description,
    currency, base_premium, term_months)
VALUES (:pv, :c, :product, 1, 'P', '', 'EUR', 100, 24);
INSERT INTO core.coverages (id, company_id, product_version_id, position, code, name,
    limit_amount, limit_period, deductible, waiting_period_days)
VALUES (gen_random_uuid(), :c, :pv, 0, 'YEARLY', 'Y', 5000, 'PER_YEAR', 0, 0),
       (gen_random_uuid(), :c, :pv, 1, 'ONCE', 'O', 5000, 'PER_CLAIM', 0, 0);
INSERT INTO core.policies (id, company_id, policyholder_id, product_id, product_version, state,
    effective_date, expiry_date, currency, sum_insured, payment_frequency, insures_holder,
    insured_dependent_ids, current_version, termination_note, version)
VALUES (:policy, :c, :holder, :product, 1, 'IN_FORCE', DATE '2024-03-01', DATE '2026-02-28',
    'EUR', 100000, 'ANNUAL', true, '{}', 1, '', 1);
INSERT INTO core.claims (id, company_id, policy_id, policy_version, claim_type, description,
    coverage_code, incident_date, report_date, currency, claimed_amount, approved_amount,
    paid_amount, payment_reference, deny_reason, state, version)
VALUES
    (gen_random_uuid(), :c, :policy, 1, 'MEDICAL', 'x', 'YEARLY', DATE '2024-05-01',
     DATE '2024-05-02', 'EUR', 900, 700, 700, '', '', 'PAID', 1),
    (gen_random_uuid(), :c, :policy, 1, 'MEDICAL', 'x', 'YEARLY', DATE '2025-03-01',
     DATE '2025-03-02', 'EUR', 900, 400, NULL, '', '', 'APPROVED', 1),
    (gen_random_uuid(), :c, :policy, 1, 'MEDICAL', 'x', 'YEARLY', DATE '2025-02-28',
     DATE '2025-03-02', 'EUR', 900, 100, 100, '', '', 'CLOSED', 1),
    (gen_random_uuid(), :c, :policy, 1, 'MEDICAL', 'x', 'ONCE', DATE '2025-02-28',
     DATE '2025-03-02', 'EUR', 900, 250, NULL, '', '', 'APPROVED', 1),
    (gen_random_uuid(), :c, :policy, 1, 'MEDICAL', 'x', 'YEARLY', DATE '2025-02-28',
     DATE '2025-03-02', 'EUR', 900, NULL, NULL, '', '', 'UNDER_REVIEW', 1);
"""


async def test_approvals_made_before_the_accumulators_are_counted_into_them(
    fresh_database: str,
) -> None:
    """core_0005 backfills the accumulators and the open reserves from the claims
    approved before it, so nothing approved earlier can be approved twice."""
    await upgrade(MIGRATIONS, fresh_database, SCHEMA, revision="core_0004")
    ids = {k: str(uuid.uuid4()) for k in ("c", "holder", "product", "pv", "policy")}
    engine = engine_for(fresh_database)
    try:
        async with engine.connect() as connection:
            for statement in filter(str.strip, _PRE_MONEY_ROWS.split(";")):
                await connection.execute(text(statement), ids)
        await upgrade(MIGRATIONS, fresh_database, SCHEMA)
        async with engine.connect() as connection:
            rows = await connection.execute(
                text(
                    "SELECT coverage_code, member_id, period_start, period_end, limit_used, "
                    "deductible_used FROM core.claim_accumulators ORDER BY coverage_code, "
                    "period_start"
                )
            )
            found = [(r[0], str(r[1]), str(r[2]), str(r[3]), r[4], r[5]) for r in rows]
            reserves = await connection.execute(
                text("SELECT state, indemnity_reserve FROM core.claims ORDER BY state")
            )
            by_state = sorted((s, r) for s, r in reserves)
    finally:
        await engine.dispose()
    holder, policy = ids["holder"], ids["policy"]
    assert found == [
        ("*SUM_INSURED", policy, "2024-03-01", "2026-02-28", 1450, 0),
        # Policy years from 1 March: the incidents of 28 Feb 2025 and 1 May 2024 share one.
        ("YEARLY", holder, "2024-03-01", "2025-02-28", 800, 0),
        ("YEARLY", holder, "2025-03-01", "2026-02-28", 400, 0),
    ]
    assert by_state == [
        ("APPROVED", 250),
        ("APPROVED", 400),
        ("CLOSED", 0),
        ("PAID", 0),
        ("UNDER_REVIEW", 0),
    ]


async def test_the_migration_keeps_bands_and_downgrades_to_one_per_company(
    fresh_database: str,
) -> None:
    await upgrade(MIGRATIONS, fresh_database, "core", revision="core_0006-1")
    one, two = uuid.uuid4(), uuid.uuid4()
    engine = create_async_engine(fresh_database, poolclass=NullPool)

    async def execute(sql: str, company: uuid.UUID, **values: object) -> list[tuple[object, ...]]:
        async with engine.begin() as connection:
            await connection.execute(
                text("SELECT set_config('cardinsa.company_id', :c, true)"), {"c": str(company)}
            )
            result = await connection.execute(text(sql), values)
            return [tuple(row) for row in result] if result.returns_rows else []

    insert = (
        "INSERT INTO core.approval_bands (company_id, currency, band_1_limit, band_2_limit, "
        "version, update_time) VALUES (:c, :cur, :a, :b, 1, now() + make_interval(secs => :s))"
    )
    try:
        # Before: one row per company; it keeps its currency across the upgrade.
        await execute(insert, one, c=one, cur="AED", a=10, b=20, s=0)
        await upgrade(MIGRATIONS, fresh_database, "core", revision="core_0006")
        found = (
            "SELECT currency, band_1_limit FROM core.approval_bands "
            "WHERE company_id = :c ORDER BY currency"
        )
        assert await execute(found, one, c=one) == [("AED", Decimal("10.0000"))]
        await execute(insert, one, c=one, cur="USD", a=30, b=40, s=60)
        await execute(insert, one, c=one, cur="EUR", a=50, b=60, s=30)
        await execute(insert, two, c=two, cur="EUR", a=70, b=80, s=0)
        assert len(await execute(found, one, c=one)) == 3
        await execute(
            "INSERT INTO core.claim_settings (company_id, require_segregation_of_duties, "
            "version) VALUES (:c, true, 1)",
            one,
            c=one,
        )
        await downgrade(MIGRATIONS, fresh_database, "core", "core_0005")
        # Each company keeps its most recently updated bands.
        assert await execute(found, one, c=one) == [("USD", Decimal("30.0000"))]
        assert await execute(found, two, c=two) == [("EUR", Decimal("70.0000"))]
        tables = await execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'core' "
            "AND tablename = 'claim_settings'",
            one,
        )
        assert tables == []
        forced = await execute(
            "SELECT relforcerowsecurity FROM pg_class WHERE oid = 'core.approval_bands'::regclass",
            one,
        )
        assert forced == [(True,)]
        await upgrade(MIGRATIONS, fresh_database, "core")
        assert await execute(found, one, c=one) == [("USD", Decimal("30.0000"))]
    finally:
        await engine.dispose()
