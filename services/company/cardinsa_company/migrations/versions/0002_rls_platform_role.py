"""Row-level security the application role cannot turn off.

The policies of company_0001 let any transaction that set
``cardinsa.cross_tenant`` to ``on`` see every tenant, and the application role
could set it itself. Cross-tenant access is now the platform role
(``cardinsa_platform``, created here when missing): each tenant table gets a
``tenant_isolation`` policy that reads only the transaction's tenant and a
``platform_access`` policy for the platform role alone
(cardinsa_foundation.db.tenant_isolation_ddl). The platform role gets the same
grants as the application role; neither may write the migration history or
change an append-only table (cardinsa_foundation.migrations.grant_app_role_ddl).

Rollout: pods of the previous release still ask for cross-tenant access with the
setting, which now widens nothing, until the new pods serve. Downgrade restores
the company_0001 policies (the role and its CONNECT stay: a role is cluster-wide).

Revision ID: company_0002
Revises: company_0001
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

revision: str = "company_0002"
down_revision: str | None = "company_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "company"
APP_ROLE = "cardinsa_app"
#: Tenant tables and the column their policy compares with the transaction's tenant.
TENANT_TABLES = (
    ("companies", "id"),
    ("departments", "company_id"),
    ("units", "company_id"),
    ("idempotency_keys", "company_id"),
    ("audit_events", "company_id"),
)


def upgrade() -> None:
    for statement in platform_role_ddl():
        op.execute(statement)
    for statement in grant_app_role_ddl(SCHEMA, APP_ROLE):
        op.execute(statement)
    for table, column in TENANT_TABLES:
        for statement in tenant_isolation_ddl(SCHEMA, table, column=column):
            op.execute(statement)


_CROSS = f"current_setting('{CROSS_TENANT_SETTING}', true) = 'on'"
_TENANT = f"CAST(nullif(current_setting('{TENANT_SETTING}', true), '') AS uuid)"


def downgrade() -> None:
    for table, column in TENANT_TABLES:
        condition = f"{_CROSS} OR {column} = {_TENANT}"
        op.execute(f"DROP POLICY IF EXISTS platform_access ON {SCHEMA}.{table}")
        op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {SCHEMA}.{table}")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {SCHEMA}.{table} "
            f"USING ({condition}) WITH CHECK ({condition})"
        )
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {SCHEMA} FROM {DEFAULT_PLATFORM_ROLE}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {SCHEMA} FROM {DEFAULT_PLATFORM_ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA {SCHEMA} FROM {DEFAULT_PLATFORM_ROLE}")
