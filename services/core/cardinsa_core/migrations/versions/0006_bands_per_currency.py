"""Approval bands per currency; claim settings.

``approval_bands`` was one row per company (primary key ``company_id``); it is
now one row per company and currency (primary key ``(company_id, currency)``),
so a company selling in several currencies can approve claims in each. Existing
rows keep their currency.

``claim_settings`` is new: one row per company (absent: the defaults), with
``require_segregation_of_duties``. A tenant table like the others: forced
row-level security with the ``tenant_isolation`` and ``platform_access``
policies, the services' row rights and nothing more -- applied by
``cardinsa_foundation.migrations.secure_schema`` with the schema's whole lists
(as core_0005 does).

Downgrade drops ``claim_settings`` and keeps, per company, only its most
recently updated bands (the old key allows one row). Grants stay (as
company_0004's downgrade leaves them).

Revision ID: core_0006
Revises: core_0005
Create Date: 2026-12-07 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cardinsa_foundation.migrations import secure_schema

revision: str = "core_0006"
down_revision: str | None = "core_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "core"
#: Every tenant table of core at this revision (secure_schema takes the whole list).
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
    "claim_accumulators",
    "claim_payments",
    "claim_recoveries",
    "approval_bands",
    "claim_settings",
    "number_counters",
    "idempotency_keys",
    "audit_events",
)
APPEND_ONLY = (
    "audit_events",
    "policy_versions",
    "policy_status_changes",
    "claim_log_entries",
    "claim_recoveries",
)


def upgrade() -> None:
    op.drop_constraint("pk_approval_bands", "approval_bands", type_="primary", schema=SCHEMA)
    op.create_primary_key(
        "pk_approval_bands", "approval_bands", ["company_id", "currency"], schema=SCHEMA
    )
    op.create_table(
        "claim_settings",
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.Column(
            "require_segregation_of_duties",
            sa.Boolean(),
            server_default=sa.text("false"),
            nullable=False,
        ),
        sa.Column("updated_by", sa.UUID(), nullable=True),
        sa.Column(
            "create_time",
            sa.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            sa.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("company_id", name=op.f("pk_claim_settings")),
        schema=SCHEMA,
    )
    secure_schema(SCHEMA, tenant_tables=TENANT_TABLES, append_only=APPEND_ONLY)


def downgrade() -> None:
    op.drop_table("claim_settings", schema=SCHEMA)
    table = f"{SCHEMA}.approval_bands"
    # A data change over every tenant: lift FORCE for this transaction only.
    op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
    op.execute(
        f"DELETE FROM {table} b USING {table} newer "  # noqa: S608 - constants only
        "WHERE newer.company_id = b.company_id AND newer.currency <> b.currency "
        "AND (newer.update_time, newer.currency) > (b.update_time, b.currency)"
    )
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.drop_constraint("pk_approval_bands", "approval_bands", type_="primary", schema=SCHEMA)
    op.create_primary_key("pk_approval_bands", "approval_bands", ["company_id"], schema=SCHEMA)
