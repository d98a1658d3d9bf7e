"""Row-level security the application role cannot turn off; read functions
with a pinned search_path.

The policies of core_0001 let any transaction that set ``cardinsa.cross_tenant``
to ``on`` see every tenant, and the application role could set it itself.
Cross-tenant access is now the platform role (``cardinsa_platform``, created
here when missing): each tenant table gets a ``tenant_isolation`` policy that
reads only the transaction's tenant and a ``platform_access`` policy for the
platform role alone (cardinsa_foundation.db.tenant_isolation_ddl). The platform
role gets the same grants as the application role; neither may write the
migration history or change an append-only table
(cardinsa_foundation.migrations.grant_app_role_ddl).

``core.read_policy`` (core_0002) is replaced by the same function with
``SET search_path = pg_catalog, core, pg_temp`` that no longer sets the retired
switch (same signature, so running pods keep calling it).

Downgrade restores the core_0001 policies and the core_0002 function (the role
and its CONNECT stay: a role is cluster-wide).

Revision ID: core_0003
Revises: core_0002
Create Date: 2026-12-06 22:30:00
"""

from collections.abc import Sequence

from alembic import op

from cardinsa_foundation.db import (
    CROSS_TENANT_SETTING,
    DEFAULT_PLATFORM_ROLE,
    TENANT_SETTING,
    tenant_isolation_ddl,
    tenant_read_function_ddl,
)
from cardinsa_foundation.migrations import grant_app_role_ddl, platform_role_ddl

revision: str = "core_0003"
down_revision: str | None = "core_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "core"
APP_ROLE = "cardinsa_app"
TENANT_TABLES = (
    "policyholders",
    "dependents",
    "products",
    "product_versions",
    "coverages",
    "policies",
    "policy_versions",
    "policy_status_changes",
    "claims",
    "claim_log_entries",
    "approval_bands",
    "number_counters",
    "idempotency_keys",
    "audit_events",
)


def upgrade() -> None:
    for statement in platform_role_ddl():
        op.execute(statement)
    for statement in grant_app_role_ddl(SCHEMA, APP_ROLE):
        op.execute(statement)
    for table in TENANT_TABLES:
        for statement in tenant_isolation_ddl(SCHEMA, table):
            op.execute(statement)
    for statement in tenant_read_function_ddl(
        SCHEMA,
        "read_policy",
        table="policies",
        params=(("p_id", "uuid"),),
        where="company_id = CAST(nullif(p_company_id, '') AS uuid) AND id = p_id",
    ):
        op.execute(statement)


_CROSS = f"current_setting('{CROSS_TENANT_SETTING}', true) = 'on'"
_TENANT = f"CAST(nullif(current_setting('{TENANT_SETTING}', true), '') AS uuid)"


def downgrade() -> None:
    condition = f"{_CROSS} OR company_id = {_TENANT}"
    for table in TENANT_TABLES:
        op.execute(f"DROP POLICY IF EXISTS platform_access ON {SCHEMA}.{table}")
        op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {SCHEMA}.{table}")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {SCHEMA}.{table} "
            f"USING ({condition}) WITH CHECK ({condition})"
        )
    op.execute(  # core_0002's function as it was; constants only
        f"CREATE OR REPLACE FUNCTION {SCHEMA}.read_policy("  # noqa: S608
        "p_company_id text, p_cross_tenant text, p_id uuid) "
        f"RETURNS SETOF {SCHEMA}.policies LANGUAGE plpgsql VOLATILE SECURITY INVOKER "
        "AS $body$ BEGIN "
        f"PERFORM pg_catalog.set_config('{TENANT_SETTING}', p_company_id, true), "
        f"pg_catalog.set_config('{CROSS_TENANT_SETTING}', p_cross_tenant, true); "
        f"RETURN QUERY SELECT * FROM {SCHEMA}.policies "
        "WHERE company_id = CAST(nullif(p_company_id, '') AS uuid) AND id = p_id; "
        "END $body$"
    )
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {SCHEMA} FROM {DEFAULT_PLATFORM_ROLE}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {SCHEMA} FROM {DEFAULT_PLATFORM_ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA {SCHEMA} FROM {DEFAULT_PLATFORM_ROLE}")
