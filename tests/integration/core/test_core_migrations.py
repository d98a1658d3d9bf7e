"""The core migration on an empty database: up, down, up again; what the
services' role may do in the schema afterwards."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

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
