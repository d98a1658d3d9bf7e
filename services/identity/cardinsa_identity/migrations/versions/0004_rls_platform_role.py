"""Row-level security the application role cannot turn off.

The policies of identity_0001 let any transaction that set
``cardinsa.cross_tenant`` to ``on`` see every tenant, and the application role
could set it itself. Cross-tenant access is now the platform role
(``cardinsa_platform``, created here when missing): each tenant table gets a
``tenant_isolation`` policy that reads only the transaction's tenant and a
``platform_access`` policy for the platform role alone
(cardinsa_foundation.db.tenant_isolation_ddl). The platform role gets the same
grants as the application role; neither may write the migration history or
change an append-only table (cardinsa_foundation.migrations.grant_app_role_ddl).

Rollout: pods of the previous release still ask for cross-tenant access with the
setting, which now widens nothing, so their logins and platform reads find no
rows until the new pods serve. Downgrade restores the identity_0001 policies
(the role and its CONNECT stay: a role is cluster-wide).

Revision ID: identity_0004
Revises: identity_0003
Create Date: 2026-12-06 22:30:00
"""

from collections.abc import Sequence

from alembic import op

from cardinsa_foundation.db import (
    CROSS_TENANT_SETTING,
    DEFAULT_PLATFORM_ROLE,
    TENANT_SETTING,
    tenant_isolation_ddl,
)
from cardinsa_foundation.migrations import grant_app_role_ddl, platform_role_ddl

revision: str = "identity_0004"
down_revision: str | None = "identity_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "identity"
APP_ROLE = "cardinsa_app"
TENANT_TABLES = (
    "users",
    "sessions",
    "refresh_tokens",
    "role_bindings",
    "service_accounts",
    "api_keys",
    "password_resets",
    "idempotency_keys",
)


def upgrade() -> None:
    for statement in platform_role_ddl():
        op.execute(statement)
    for statement in grant_app_role_ddl(SCHEMA, APP_ROLE):
        op.execute(statement)
    for table in TENANT_TABLES:
        for statement in tenant_isolation_ddl(SCHEMA, table):
            op.execute(statement)
    # Built-in roles (no company) are visible to every tenant but writable by none.
    for statement in tenant_isolation_ddl(SCHEMA, "roles", also_visible="company_id IS NULL"):
        op.execute(statement)
    # Audit: a tenant reads its own events; platform events (no company) only the
    # platform role reads. Any role may append a platform event.
    for statement in tenant_isolation_ddl(
        SCHEMA, "audit_events", also_writable="company_id IS NULL"
    ):
        op.execute(statement)


_CROSS = f"current_setting('{CROSS_TENANT_SETTING}', true) = 'on'"
_TENANT = f"CAST(nullif(current_setting('{TENANT_SETTING}', true), '') AS uuid)"


def downgrade() -> None:
    legacy = {table: (f"{_CROSS} OR company_id = {_TENANT}",) * 2 for table in TENANT_TABLES}
    legacy["roles"] = (
        f"{_CROSS} OR company_id IS NULL OR company_id = {_TENANT}",
        f"{_CROSS} OR company_id = {_TENANT}",
    )
    legacy["audit_events"] = (
        f"{_CROSS} OR company_id = {_TENANT}",
        f"{_CROSS} OR company_id = {_TENANT} OR company_id IS NULL",
    )
    for table, (using, check) in legacy.items():
        op.execute(f"DROP POLICY IF EXISTS platform_access ON {SCHEMA}.{table}")
        op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {SCHEMA}.{table}")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {SCHEMA}.{table} "
            f"USING ({using}) WITH CHECK ({check})"
        )
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {SCHEMA} FROM {DEFAULT_PLATFORM_ROLE}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {SCHEMA} FROM {DEFAULT_PLATFORM_ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA {SCHEMA} FROM {DEFAULT_PLATFORM_ROLE}")
