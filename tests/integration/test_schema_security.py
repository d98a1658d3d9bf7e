"""Every service's schema, as its two roles see it after the migrations.

For each service found under ``services/`` (so a new one is checked without
being listed here) and for both roles the services connect as -- the
application role and the platform role: neither may write
``<schema>.alembic_version``, turn row-level security off on a tenant table or
drop its policies, or change a row of an append-only table (the audit log
included); every table but the declared platform-wide ones is under forced
row-level security; the roles hold their row rights and nothing more. And
``secure_schema`` run again over a migrated schema changes nothing.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import asyncpg
import pytest
import pytest_asyncio

from cardinsa_foundation.db import (
    DEFAULT_APP_ROLE,
    DEFAULT_PLATFORM_ROLE,
    app_role_url,
    platform_role_url,
    to_libpq_url,
)
from cardinsa_foundation.migrations import secure_schema_ddl, upgrade

PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: Service name -> its migrations; the schema is named after the service.
SERVICES = {
    env.parents[2].name: env.parent
    for env in sorted(PROJECT_ROOT.glob("services/*/cardinsa_*/migrations/env.py"))
}
ROLES = (DEFAULT_APP_ROLE, DEFAULT_PLATFORM_ROLE)
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
#: Tables without row-level security (no tenant), per service; every other table has it.
PLATFORM_WIDE = {
    "identity": {"login_throttles", "signing_keys", "revocations"},
    "company": {"event_cursors"},
}
#: Append-only tables per service (``audit_events`` for one not listed).
APPEND_ONLY = {
    "core": {
        "audit_events",
        "policy_versions",
        "policy_status_changes",
        "premium_transactions",
        "claim_log_entries",
        "claim_recoveries",
        "outbox_events",
        "documents",
        "payment_allocations",
    },
    "identity": {"audit_events", "outbox_events"},
    "company": {"audit_events", "outbox_events", "webhook_delivery_attempts"},
}
#: Tables whose rows the services add and delete but never change, per service.
NO_UPDATE = {"identity": {"revocations"}}


def secured_by(schema: str) -> Path | None:
    """The service's latest migration that calls ``secure_schema`` (its lists
    describe the schema at head), if any."""
    calls = [
        path
        for path in sorted((SERVICES[schema] / "versions").glob("*.py"))
        if "secure_schema(" in path.read_text()
    ]
    return calls[-1] if calls else None


SECURED = {schema: path for schema in sorted(SERVICES) if (path := secured_by(schema))}


def test_the_three_services_are_found() -> None:
    assert {"identity", "company", "core"} <= set(SERVICES)
    assert {"identity", "company"} <= set(SECURED)


@pytest_asyncio.fixture(scope="module")
async def migrated(test_database_url: str) -> str:
    """The session database with every service's schema at head."""
    for schema, migrations in SERVICES.items():
        await upgrade(migrations, test_database_url, schema)
    return test_database_url


async def connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(to_libpq_url(url))


@pytest_asyncio.fixture
async def admin(migrated: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await connect(migrated)
    try:
        yield connection
    finally:
        await connection.close()


async def tables_of(admin: asyncpg.Connection, schema: str) -> set[str]:
    rows = await admin.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')",
        schema,
    )
    return {row["relname"] for row in rows}


async def append_only_tables(admin: asyncpg.Connection, schema: str) -> set[str]:
    rows = await admin.fetch(
        "SELECT c.relname FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND g.tgname = c.relname || '_append_only'",
        schema,
    )
    return {row["relname"] for row in rows}


async def tenant_tables_of(admin: asyncpg.Connection, schema: str) -> set[str]:
    return await tables_of(admin, schema) - {"alembic_version"} - PLATFORM_WIDE.get(schema, set())


@pytest.mark.parametrize("schema", sorted(SERVICES))
async def test_tenant_tables_are_under_forced_row_level_security(
    admin: asyncpg.Connection, schema: str
) -> None:
    tenant = await tenant_tables_of(admin, schema)
    assert tenant, schema
    rows = await admin.fetch(
        "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, "
        "array(SELECT p.polname::text FROM pg_policy p WHERE p.polrelid = c.oid "
        "ORDER BY 1) AS policies "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relname = ANY($2::text[])",
        schema,
        sorted(tenant),
    )
    found = {
        row["relname"]: (row["relrowsecurity"], row["relforcerowsecurity"], row["policies"])
        for row in rows
    }
    assert found == dict.fromkeys(tenant, (True, True, ["platform_access", "tenant_isolation"]))
    assert await append_only_tables(admin, schema) == APPEND_ONLY.get(schema, {"audit_events"})


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("schema", sorted(SERVICES))
async def test_the_roles_hold_their_row_rights_and_nothing_more(
    admin: asyncpg.Connection, schema: str, role: str
) -> None:
    owners = await admin.fetch(
        "SELECT DISTINCT pg_get_userbyid(c.relowner) AS owner FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1",
        schema,
    )
    assert role not in {row["owner"] for row in owners}
    assert await admin.fetchval("SELECT has_schema_privilege($1, $2, 'USAGE')", role, schema)
    assert not await admin.fetchval("SELECT has_schema_privilege($1, $2, 'CREATE')", role, schema)
    append_only = await append_only_tables(admin, schema)
    rights: dict[str, set[str]] = {}
    for table in await tables_of(admin, schema):
        rights[table] = {
            privilege
            for privilege in TABLE_PRIVILEGES
            if await admin.fetchval(
                "SELECT has_table_privilege($1, $2, $3)", role, f"{schema}.{table}", privilege
            )
        }
    expected = {
        table: (
            {"SELECT"}
            if table == "alembic_version"
            else {"SELECT", "INSERT"}
            if table in append_only
            else {"SELECT", "INSERT", "UPDATE", "DELETE"}
        )
        for table in rights
    }
    for table in NO_UPDATE.get(schema, set()):
        expected[table].discard("UPDATE")
    assert rights == expected


@pytest_asyncio.fixture(params=ROLES)
async def as_role(
    request: pytest.FixtureRequest, migrated: str
) -> AsyncIterator[asyncpg.Connection]:
    """A connection as one of the services' roles."""
    url = (
        app_role_url(migrated) if request.param == DEFAULT_APP_ROLE else platform_role_url(migrated)
    )
    connection = await connect(url)
    try:
        assert await connection.fetchval("SELECT current_user") == request.param
        yield connection
    finally:
        await connection.close()


async def refused(connection: asyncpg.Connection, statement: str) -> str:
    """Run ``statement`` in a transaction rolled back at the end; the server's refusal."""
    transaction = connection.transaction()
    await transaction.start()
    try:
        await connection.execute(statement)
    except asyncpg.PostgresError as error:
        return f"{error.sqlstate} {error}"
    finally:
        await transaction.rollback()
    return "accepted"


@pytest.mark.parametrize("schema", sorted(SERVICES))
async def test_the_roles_cannot_write_history_lift_row_security_or_change_logs(
    admin: asyncpg.Connection, as_role: asyncpg.Connection, schema: str
) -> None:
    history = f'"{schema}".alembic_version'
    statements = [
        f"INSERT INTO {history} VALUES ('sneaky')",  # noqa: S608
        f"UPDATE {history} SET version_num = 'sneaky'",  # noqa: S608
        f"DELETE FROM {history}",  # noqa: S608
        f"TRUNCATE {history}",
    ]
    for table in sorted(await tenant_tables_of(admin, schema)):
        qualified = f'"{schema}"."{table}"'
        statements += [
            f"ALTER TABLE {qualified} DISABLE ROW LEVEL SECURITY",
            f"ALTER TABLE {qualified} NO FORCE ROW LEVEL SECURITY",
            f"DROP POLICY tenant_isolation ON {qualified}",
            f"DROP POLICY platform_access ON {qualified}",
        ]
    append_only = await append_only_tables(admin, schema)
    assert "audit_events" in append_only
    for table in sorted(append_only):
        qualified = f'"{schema}"."{table}"'
        column = await admin.fetchval(
            "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum = 1",
            qualified,
        )
        statements += [
            f'UPDATE {qualified} SET "{column}" = "{column}"',  # noqa: S608
            f"DELETE FROM {qualified}",  # noqa: S608
            f"TRUNCATE {qualified}",
        ]
    # Refused for want of the right (not by the append-only trigger, which would
    # only fire on a row the role sees): "permission denied" / "must be owner".
    outcomes = {statement: await refused(as_role, statement) for statement in statements}
    accepted = {
        statement: outcome
        for statement, outcome in outcomes.items()
        if not (
            outcome.startswith("42501 ")
            and ("permission denied" in outcome or "must be owner" in outcome)
        )
    }
    assert accepted == {}


def load_migration(schema: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_secured_{schema}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SNAPSHOT_SQL = (
    # Rights on the schema, its tables and sequences, per grantee.
    "SELECT 'schema', n.nspname::text, a.grantee::regrole::text, a.privilege_type "
    "FROM pg_namespace n, aclexplode(n.nspacl) a WHERE n.nspname = $1 "
    "UNION ALL SELECT 'relation', c.relname::text, a.grantee::regrole::text, a.privilege_type "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a "
    "WHERE n.nspname = $1 "
    # Row-level security and policies.
    "UNION ALL SELECT 'rls', c.relname::text, c.relrowsecurity::text, "
    "c.relforcerowsecurity::text FROM pg_class c JOIN pg_namespace n "
    "ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r' "
    "UNION ALL SELECT 'policy', tablename::text, policyname::text, "
    "concat_ws(' | ', roles::text, cmd, qual, with_check) FROM pg_policies "
    "WHERE schemaname = $1 "
    # Triggers (the append-only ones among them).
    "UNION ALL SELECT 'trigger', c.relname::text, g.tgname::text, g.tgtype::text "
    "FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid "
    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND NOT g.tgisinternal"
)


async def snapshot(admin: asyncpg.Connection, schema: str) -> set[tuple[str, ...]]:
    return {tuple(row) for row in await admin.fetch(SNAPSHOT_SQL, schema)}


@pytest.mark.parametrize("schema", sorted(SECURED))
async def test_secure_schema_again_changes_nothing(admin: asyncpg.Connection, schema: str) -> None:
    migration = load_migration(schema, SECURED[schema])
    before = await snapshot(admin, schema)
    assert any(kind == "policy" for kind, *_ in before)
    ddl = secure_schema_ddl(
        schema,
        tenant_tables=migration.TENANT_TABLES,
        append_only=migration.APPEND_ONLY,
        no_update=getattr(migration, "NO_UPDATE", ()),
    )
    async with admin.transaction():
        for statement in ddl:
            await admin.execute(statement)
    assert await snapshot(admin, schema) == before
