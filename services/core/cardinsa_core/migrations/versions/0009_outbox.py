"""Core's transactional outbox: ``outbox_events``.

One row per change of a policy or a claim, written in the change's own
transaction (cardinsa_foundation.outbox): CloudEvents attributes, the company,
an ordering key and the payload (a protobuf message of ``protos/``). A tenant
table like the others (forced row-level security, ``tenant_isolation`` and
``platform_access``) and append-only for the services: what happened is never
rewritten; delivery keeps its own state elsewhere.

Revision ID: core_0009
Revises: core_0008
Create Date: 2026-12-07 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cardinsa_foundation.migrations import secure_schema

revision: str = "core_0009"
down_revision: str | None = "core_0008"
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
    "premium_transactions",
    "underwriting_issues",
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
    "outbox_events",
)
APPEND_ONLY = (
    "audit_events",
    "policy_versions",
    "policy_status_changes",
    "premium_transactions",
    "claim_log_entries",
    "claim_recoveries",
    "outbox_events",
)


def upgrade() -> None:
    op.create_table(
        "outbox_events",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("company_id", sa.UUID(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("ordering_key", sa.Text(), nullable=False),
        sa.Column("time", sa.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("data_schema", sa.Text(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column(
            "create_time",
            sa.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_events")),
        schema=SCHEMA,
    )
    op.create_index(
        op.f("ix_outbox_events_sequence"), "outbox_events", ["sequence"], unique=True, schema=SCHEMA
    )
    op.create_index(
        op.f("ix_outbox_events_company_id_sequence"),
        "outbox_events",
        ["company_id", "sequence"],
        schema=SCHEMA,
    )
    secure_schema(SCHEMA, tenant_tables=TENANT_TABLES, append_only=APPEND_ONLY)


def downgrade() -> None:
    op.drop_table("outbox_events", schema=SCHEMA)
