"""Read functions for Database.read: GetPolicy in one round trip.

``core.read_policy`` sets the tenant transaction-locally and returns the policy
with the caller's rights (row-level security applies): see
cardinsa_foundation.db.tenant_read_function_ddl.

Revision ID: core_0002
Revises: core_0001
Create Date: 2026-11-26 08:10:00
"""

from collections.abc import Sequence

from alembic import op

from cardinsa_foundation.db import tenant_read_function_ddl

revision: str = "core_0002"
down_revision: str | None = "core_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "core"


def upgrade() -> None:
    for statement in tenant_read_function_ddl(
        SCHEMA,
        "read_policy",
        table="policies",
        params=(("p_id", "uuid"),),
        where="company_id = CAST(nullif(p_company_id, '') AS uuid) AND id = p_id",
    ):
        op.execute(statement)


def downgrade() -> None:
    op.execute(f"DROP FUNCTION IF EXISTS {SCHEMA}.read_policy(text, text, uuid)")
