"""The SQL of ``secure_schema``: what it grants, to whom, and what it takes back.

(What the roles then may do on a real server: tests/integration/test_schema_security.py.)
"""

from __future__ import annotations

import re

import pytest

from cardinsa_foundation.audit import append_only_ddl
from cardinsa_foundation.db import tenant_isolation_ddl
from cardinsa_foundation.migrations import (
    TenantTable,
    grant_app_role_ddl,
    platform_role_ddl,
    secure_schema,
    secure_schema_ddl,
)

DDL = secure_schema_ddl(
    "svc",
    tenant_tables=("claims", TenantTable("firms", column="id", also_visible="id IS NULL")),
    append_only=("audit_events", "claim_log"),
    no_update=("tokens",),
    app_role="app",
    platform_role="plat",
)


def test_it_is_the_foundations_pieces_in_order() -> None:
    expected = [
        *platform_role_ddl("plat"),
        *append_only_ddl("svc", "audit_events"),
        *append_only_ddl("svc", "claim_log"),
        *grant_app_role_ddl("svc", "app", "plat"),
    ]
    assert DDL[: len(expected)] == expected
    tail = [
        *tenant_isolation_ddl("svc", "claims", platform_role="plat"),
        *tenant_isolation_ddl(
            "svc", "firms", column="id", also_visible="id IS NULL", platform_role="plat"
        ),
    ]
    assert DDL[-len(tail) :] == tail


def test_grants_go_to_the_two_roles_only_and_nothing_more() -> None:
    grants = [s for s in DDL if s.startswith("GRANT ")]
    assert grants == [
        'GRANT USAGE ON SCHEMA "svc" TO "app", "plat"',
        'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "svc" TO "app", "plat"',
        'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA "svc" TO "app", "plat"',
    ]
    revokes = [s for s in DDL if s.startswith("REVOKE ")]
    assert revokes == [
        'REVOKE UPDATE ON "svc"."tokens" FROM "app", "plat"',
        'REVOKE TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA "svc" FROM "app", "plat"',
        'REVOKE UPDATE ON ALL SEQUENCES IN SCHEMA "svc" FROM "app", "plat"',
        'REVOKE CREATE ON SCHEMA "svc" FROM "app", "plat"',
    ]


def test_the_migration_history_and_append_only_tables_lose_every_write() -> None:
    (narrow,) = [s for s in DDL if s.startswith("DO $narrow$")]
    assert "c.relname = 'alembic_version'" in narrow
    assert "'INSERT, '" in narrow and "'UPDATE, DELETE, TRUNCATE ON '" in narrow
    assert "c.relname || '_append_only'" in narrow
    assert 'FROM "app", "plat"\'' in narrow
    # The append-only triggers exist before the grants look for them.
    first_trigger = next(i for i, s in enumerate(DDL) if "claim_log_append_only" in s)
    assert first_trigger < DDL.index(narrow)


def test_every_tenant_table_is_forced_under_both_policies() -> None:
    for table in ('"svc"."claims"', '"svc"."firms"'):
        assert f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY" in DDL
        assert f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY" in DDL
        assert any(s.startswith(f"CREATE POLICY tenant_isolation ON {table} ") for s in DDL)
        assert any(
            s.startswith(f'CREATE POLICY platform_access ON {table} TO "plat" ') for s in DDL
        )
    (firms,) = [s for s in DDL if s.startswith('CREATE POLICY tenant_isolation ON "svc"."firms"')]
    assert '"id" = CAST' in firms and "OR id IS NULL" in firms


def test_defaults_the_audit_log_and_the_services_roles() -> None:
    ddl = secure_schema_ddl("svc", tenant_tables=["claims"])
    assert any('"audit_events_append_only"' in s for s in ddl)
    assert 'GRANT USAGE ON SCHEMA "svc" TO "cardinsa_app", "cardinsa_platform"' in ddl


def test_safe_for_alembic_and_refuses_odd_names() -> None:
    assert not any("%" in s or re.search(r"(?<!:):[a-z_]", s) for s in DDL)
    for bad in (
        {"schema": 'x"; DROP'},
        {"append_only": ["a b"]},
        {"no_update": ["x;"]},
        {"tenant_tables": ["Users"]},
        {"app_role": "app--"},
    ):
        arguments = {"schema": "svc", "tenant_tables": ["claims"], **bad}
        with pytest.raises(ValueError, match="identifier"):
            secure_schema_ddl(**arguments)  # type: ignore[arg-type]


def test_secure_schema_runs_each_statement_in_the_migration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from alembic import op

    ran: list[str] = []
    monkeypatch.setattr(op, "execute", ran.append, raising=False)
    secure_schema("svc", tenant_tables=["claims"], no_update=["tokens"])
    assert ran == secure_schema_ddl("svc", tenant_tables=["claims"], no_update=["tokens"])
    assert secure_schema.__doc__ == secure_schema_ddl.__doc__
