"""Documents: rendered PDFs, stored by content hash.

``documents`` keeps each document core has issued (a policy schedule, an
invoice, a claim decision letter): its kind, the resource it is about
(``subject``, e.g. ``policies/<id>``), the locale it was rendered in, the
SHA-256 of the facts it shows and of its bytes, and the bytes. A reissue for
the same facts finds the stored row and serves the same bytes; changed facts
make a new row (what was issued before stays, append-only).

Revision ID: core_0011
Revises: core_0010
Create Date: 2026-12-07 13:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cardinsa_foundation.migrations import secure_schema

revision: str = "core_0011"
down_revision: str | None = "core_0010"
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
    "documents",
)
APPEND_ONLY = (
    "audit_events",
    "policy_versions",
    "policy_status_changes",
    "premium_transactions",
    "claim_log_entries",
    "claim_recoveries",
    "outbox_events",
    "documents",
)


def upgrade() -> None:
    op.create_table(
        "documents",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("locale", sa.Text(), nullable=False),
        sa.Column("facts_sha256", sa.Text(), nullable=False),
        sa.Column("content_sha256", sa.Text(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=True),
        sa.Column(
            "create_time",
            sa.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_documents")),
        sa.UniqueConstraint("company_id", "id", name=op.f("uq_documents_company_id_id")),
        sa.UniqueConstraint(
            "company_id",
            "kind",
            "subject",
            "locale",
            "facts_sha256",
            name=op.f("uq_documents_company_id_kind_subject_locale_facts_sha256"),
        ),
        sa.CheckConstraint(
            "kind IN ('POLICY_SCHEDULE', 'INVOICE', 'CLAIM_DECISION')",
            name=op.f("ck_documents_kind"),
        ),
        schema=SCHEMA,
    )
    op.create_index(
        op.f("ix_documents_company_id_subject_create_time"),
        "documents",
        ["company_id", "subject", "create_time"],
        schema=SCHEMA,
    )
    secure_schema(SCHEMA, tenant_tables=TENANT_TABLES, append_only=APPEND_ONLY)


def downgrade() -> None:
    op.drop_table("documents", schema=SCHEMA)
