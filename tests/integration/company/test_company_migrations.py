"""The company schema's migration: up, down and up again on a database of its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest_asyncio
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from cardinsa_company.cli import MIGRATIONS
from cardinsa_foundation.migrations import downgrade, upgrade

SCHEMA = "company"
TABLES = {
    "alembic_version",
    "audit_events",
    "companies",
    "departments",
    "event_cursors",
    "idempotency_keys",
    "outbox_events",
    "units",
    "webhook_deliveries",
    "webhook_delivery_attempts",
    "webhook_events",
    "webhook_subscriptions",
}


def engine_for(url: str) -> AsyncEngine:
    return create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")


@pytest_asyncio.fixture
async def fresh_database(postgres_admin_url: str) -> AsyncIterator[str]:
    """Superuser URL of a new, empty database, dropped (forcibly) at the end."""
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


async def _query(url: str, sql: str) -> set[str]:
    engine = engine_for(url)
    try:
        async with engine.connect() as connection:
            return {str(row[0]) for row in await connection.execute(text(sql), {"s": SCHEMA})}
    finally:
        await engine.dispose()


async def test_upgrade_downgrade_and_upgrade_again(fresh_database: str) -> None:
    tables = "SELECT tablename FROM pg_tables WHERE schemaname = :s"
    policies = "SELECT tablename FROM pg_policies WHERE schemaname = :s"
    assert await _query(fresh_database, tables) == set()
    await upgrade(MIGRATIONS, fresh_database, SCHEMA)
    assert await _query(fresh_database, tables) == TABLES
    assert await _query(fresh_database, policies) == TABLES - {"alembic_version", "event_cursors"}
    await downgrade(MIGRATIONS, fresh_database, SCHEMA, "base")
    assert await _query(fresh_database, tables) == {"alembic_version"}
    functions = "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
    assert "cardinsa_refuse_audit_change" not in await _query(
        fresh_database, f"{functions} WHERE n.nspname = :s"
    )
    await upgrade(MIGRATIONS, fresh_database, SCHEMA)
    assert await _query(fresh_database, tables) == TABLES
    # Running it again at head changes nothing.
    await upgrade(MIGRATIONS, fresh_database, SCHEMA)
    assert await _query(fresh_database, tables) == TABLES
