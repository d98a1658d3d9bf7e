"""Attack suite: the application role tries to turn row-level security off.

An SQL injection (or a compromised service) runs statements on a connection of
the application role (``cardinsa_app``) inside company X's transaction, or
poisons a pooled connection before the next one begins. Whatever it sets --
the retired ``cardinsa.cross_tenant`` switch, ``row_security``, a role, a policy,
the tenant set and reset -- every tenant table of identity, company and core
shows it at most the rows of the one company that its tenant setting names:
never every tenant at once, never X's and V's together. Cross-tenant access is
the platform role's, and the application role can neither become it nor grant
it to itself, nor write the migration history.

Residual risk (documented in docs/runbook.md): the tenant setting is an ordinary
placeholder every role may set, so injected SQL can name another company as its
tenant; what it then sees is that one company, as that company would.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
from hostile_attacks import AttackLog
from hostile_harness import ServiceTarget, Tenants

from cardinsa_foundation.db import (
    DEFAULT_PLATFORM_ROLE,
    TENANT_SETTING,
    app_role_url,
    to_libpq_url,
)

SCHEMAS = ("identity", "company", "core")
#: Tables whose tenant column is not ``company_id``.
TENANT_COLUMN = {("company", "companies"): "id"}


@pytest_asyncio.fixture(scope="module")
async def tenant_tables(
    identity_database: str,
    company_target: ServiceTarget,
    core_target: ServiceTarget,
    tenants: Tenants,
) -> list[tuple[str, str]]:
    """Every table under a tenant policy, as the database lists them (so a
    table added later is attacked too); the victim has rows in each schema."""
    connection = await asyncpg.connect(to_libpq_url(identity_database))
    try:
        rows = await connection.fetch(
            "SELECT schemaname, tablename FROM pg_policies WHERE policyname = 'tenant_isolation' "
            "AND schemaname = ANY($1::text[]) ORDER BY 1, 2",
            list(SCHEMAS),
        )
        tables = [(row["schemaname"], row["tablename"]) for row in rows]
        assert {schema for schema, _ in tables} == set(SCHEMAS)
        victim = uuid.UUID(tenants.victim.company_id)
        for schema, table in (
            ("identity", "users"),
            ("company", "companies"),
            ("core", "policyholders"),
        ):
            column = TENANT_COLUMN.get((schema, table), "company_id")
            seen = await connection.fetchval(
                f'SELECT count(*) FROM "{schema}"."{table}" WHERE "{column}" = $1',  # noqa: S608
                victim,
            )
            assert seen > 0, f"the victim has no row in {schema}.{table}: the test proves nothing"
        return tables
    finally:
        await connection.close()


@pytest_asyncio.fixture
async def app_connection(identity_database: str) -> AsyncIterator[asyncpg.Connection]:
    """A fresh connection as the services' role (nothing carried over)."""
    connection = await asyncpg.connect(to_libpq_url(app_role_url(identity_database)))
    try:
        yield connection
    finally:
        await connection.close()


async def visible_companies(
    connection: asyncpg.Connection, tables: list[tuple[str, str]]
) -> dict[str, set[str]]:
    """The distinct tenants each table shows this connection now (rows without a
    company, like the built-in roles, are left out)."""
    seen: dict[str, set[str]] = {}
    for schema, table in tables:
        column = TENANT_COLUMN.get((schema, table), "company_id")
        values = await connection.fetch(
            f'SELECT DISTINCT "{column}" AS c FROM "{schema}"."{table}"'  # noqa: S608
            f' WHERE "{column}" IS NOT NULL'
        )
        seen[f"{schema}.{table}"] = {str(row["c"]) for row in values}
    return seen


async def set_tenant(connection: asyncpg.Connection, company_id: str) -> None:
    await connection.execute(f"SELECT set_config('{TENANT_SETTING}', $1, true)", company_id)


#: What injected SQL may run: (name, statements). {victim} / {attacker} are the ids.
ATTEMPTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cross_tenant on (transaction)", ("SELECT set_config('cardinsa.cross_tenant', 'on', true)",)),
    ("cross_tenant on (session)", ("SELECT set_config('cardinsa.cross_tenant', 'on', false)",)),
    ("SET cardinsa.cross_tenant", ("SET cardinsa.cross_tenant = on",)),
    ("SET row_security off", ("SET row_security = off",)),
    ("SET ROLE platform", (f"SET ROLE {DEFAULT_PLATFORM_ROLE}",)),
    ("SET ROLE owner", ("SET ROLE postgres",)),
    ("SET SESSION AUTHORIZATION", (f"SET SESSION AUTHORIZATION {DEFAULT_PLATFORM_ROLE}",)),
    ("grant itself the platform role", (f"GRANT {DEFAULT_PLATFORM_ROLE} TO cardinsa_app",)),
    ("disable RLS", ("ALTER TABLE core.policyholders DISABLE ROW LEVEL SECURITY",)),
    ("no force RLS", ("ALTER TABLE identity.users NO FORCE ROW LEVEL SECURITY",)),
    ("drop the policy", ("DROP POLICY tenant_isolation ON company.companies",)),
    ("add an open policy", ("CREATE POLICY sneaky ON core.policyholders USING (true)",)),
    (
        "victim set, then reset",
        (
            "SELECT set_config('cardinsa.company_id', '{victim}', true)",
            "SELECT set_config('cardinsa.company_id', '{attacker}', true)",
        ),
    ),
    (
        "victim set at session level, attacker in the transaction",
        ("SELECT set_config('cardinsa.company_id', '{victim}', false)",),
    ),
    # The residual risk: one other company, never more than one (docs/runbook.md).
    (
        "tenant switched to another company (sees that one only)",
        ("SELECT set_config('cardinsa.company_id', '{victim}', true)",),
    ),
    ("empty tenant", ("SELECT set_config('cardinsa.company_id', '', true)",)),
    ("RESET ALL", ("RESET ALL",)),
    ("pg_temp first on the path", ("SET search_path = pg_temp, core, company, identity",)),
    (
        "read function with the switch",
        ("SELECT * FROM core.read_policy('{attacker}', 'on', gen_random_uuid())",),
    ),
)


@pytest.mark.parametrize("name", [name for name, _ in ATTEMPTS])
async def test_attack_application_role_turns_off_row_level_security(
    name: str,
    app_connection: asyncpg.Connection,
    tenant_tables: list[tuple[str, str]],
    tenants: Tenants,
    attacks: AttackLog,
) -> None:
    attacker, victim = tenants.attacker.company_id, tenants.victim.company_id
    statements = dict(ATTEMPTS)[name]
    sql = [s.replace("{victim}", victim).replace("{attacker}", attacker) for s in statements]
    with attacks.attempt("application role turns off row-level security", name):
        for inside in (False, True):  # a poisoned pooled connection, then injected SQL
            refused: list[str] = []
            transaction = app_connection.transaction()
            if inside:
                await transaction.start()
                await set_tenant(app_connection, attacker)
            for statement in sql:
                try:
                    await app_connection.execute(statement)
                except asyncpg.PostgresError as error:
                    refused.append(error.sqlstate)
                    break
            if refused:
                # Refused by the server: only as "no privilege" / "not owner" /
                # "not a member", or (inside) the aborted transaction.
                assert refused[0] in ("42501", "42P01", "22023", "0A000"), (statement, refused)
                if inside:
                    await transaction.rollback()
                continue
            if not inside:
                await transaction.start()
                await set_tenant(app_connection, attacker)
            try:
                tenant = await app_connection.fetchval(
                    f"SELECT current_setting('{TENANT_SETTING}', true)"
                )
                seen = await visible_companies(app_connection, tenant_tables)
            except asyncpg.PostgresError as error:
                # row_security = off: the server refuses a query RLS would filter.
                assert error.sqlstate == "42501", (name, error)
                await transaction.rollback()
                continue
            await transaction.rollback()
            for table, companies in seen.items():
                assert companies <= ({tenant} if tenant else set()), (name, table, companies)
                assert victim not in companies or tenant == victim, (name, table)
                assert attacker not in companies or tenant == attacker, (name, table)


async def test_attack_application_role_writes_the_migration_history(
    app_connection: asyncpg.Connection, tenant_tables: list[tuple[str, str]], attacks: AttackLog
) -> None:
    attack = "application role writes the migration history"
    with attacks.attempt(attack, "identity, company, core"):
        for schema in SCHEMAS:
            for statement in (
                f"INSERT INTO {schema}.alembic_version VALUES ('sneaky')",  # noqa: S608
                f"UPDATE {schema}.alembic_version SET version_num = 'sneaky'",  # noqa: S608
                f"DELETE FROM {schema}.alembic_version",  # noqa: S608
                f"TRUNCATE {schema}.alembic_version",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await app_connection.execute(statement)
        member = await app_connection.fetchval(
            "SELECT pg_has_role(current_user, $1, 'MEMBER')", DEFAULT_PLATFORM_ROLE
        )
        assert member is False


async def test_no_policy_reads_a_switch_and_only_the_platform_role_sees_all(
    identity_database: str, tenant_tables: list[tuple[str, str]]
) -> None:
    connection = await asyncpg.connect(to_libpq_url(identity_database))
    try:
        policies = await connection.fetch(
            "SELECT schemaname, tablename, policyname, roles, qual, with_check FROM pg_policies "
            "WHERE schemaname = ANY($1::text[])",
            list(SCHEMAS),
        )
        functions = await connection.fetch(
            "SELECT p.proname, p.prosrc, p.proconfig FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = ANY($1::text[]) AND p.proname LIKE 'read\\_%'",
            list(SCHEMAS),
        )
    finally:
        await connection.close()
    for policy in policies:
        text = f"{policy['qual']} {policy['with_check']}"
        assert "cross_tenant" not in text, dict(policy)
        if policy["policyname"] == "platform_access":
            assert list(policy["roles"]) == [DEFAULT_PLATFORM_ROLE], dict(policy)
        else:
            assert TENANT_SETTING in text, dict(policy)
    with_platform = {
        (p["schemaname"], p["tablename"]) for p in policies if p["policyname"] == "platform_access"
    }
    assert with_platform == set(tenant_tables)
    assert functions, "core's read functions"
    for function in functions:
        assert "cross_tenant" not in function["prosrc"], function["proname"]
        assert any(c.startswith("search_path=pg_catalog,") for c in function["proconfig"] or [])
