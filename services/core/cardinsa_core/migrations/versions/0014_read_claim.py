"""Read function for Database.read: GetClaim in one round trip.

``core.read_claim`` sets the tenant transaction-locally and returns the claim
with the caller's rights (row-level security applies), as ``core.read_policy``
does for GetPolicy: see cardinsa_foundation.db.tenant_read_function_ddl.

Revision ID: core_0014
Revises: core_0013
Create Date: 2026-12-07 16:25:00
"""

from collections.abc import Sequence

from alembic import op

from cardinsa_foundation.db import tenant_read_function_ddl

revision: str = "core_0014"
down_revision: str | None = "core_0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "core"


def upgrade() -> None:
    for statement in tenant_read_function_ddl(
        SCHEMA,
        "read_claim",
        table="claims",
        params=(("p_id", "uuid"),),
        where="company_id = CAST(nullif(p_company_id, '') AS uuid) AND id = p_id",
    ):
        op.execute(statement)


def downgrade() -> None:
    op.execute(f"DROP FUNCTION IF EXISTS {SCHEMA}.read_claim(text, text, uuid)")
