"""Rating rules, premium transactions, underwriting issues, the lifecycle's columns.

- ``product_versions.rating_rules`` (JSONB, ``{}``: no rules) and the entry
  ages of ``coverages``.
- ``policies``: the premium breakdown, the written premium, ``do_not_renew``,
  the date a cancellation was processed and ``cover_since`` (per member, the
  first day of unbroken cover, for waiting periods across renewals).
- ``premium_transactions`` (append-only): every priced change of a premium.
  Policies bound before this revision get one NEW transaction for the premium
  they were bound with (cancellations then returned nothing), so the
  transactions of every policy sum to its written premium.
- ``underwriting_issues``: what the underwriting rules found on a quote and
  the decisions on it.

Both new tables are tenant tables like the others (forced row-level security,
``tenant_isolation`` and ``platform_access``), applied by ``secure_schema``
with the schema's whole lists.

Revision ID: core_0007
Revises: core_0006
Create Date: 2026-12-07 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from cardinsa_foundation.migrations import secure_schema

revision: str = "core_0007"
down_revision: str | None = "core_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "core"
MONEY = sa.Numeric(19, 4)
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
)
APPEND_ONLY = (
    "audit_events",
    "policy_versions",
    "policy_status_changes",
    "premium_transactions",
    "claim_log_entries",
    "claim_recoveries",
)

_BACKFILL = """
INSERT INTO core.premium_transactions
    (id, company_id, policy_id, sequence, kind, effective_date, end_date, currency,
     premium, tax, fee, amount, written_premium, policy_version, description, created_by)
SELECT gen_random_uuid(), p.company_id, p.id, 1,
       CASE WHEN p.previous_policy_id IS NULL THEN 'NEW' ELSE 'RENEW' END,
       p.effective_date, p.expiry_date, p.currency, p.premium, 0, 0, p.premium, p.premium, 1,
       'bound before premium transactions were recorded', 'system:migration'
FROM core.policies p
WHERE p.bind_time IS NOT NULL AND p.premium IS NOT NULL
"""


def _jsonb_empty() -> sa.TextClause:
    return sa.text("'{}'::jsonb")


def upgrade() -> None:
    op.add_column(
        "product_versions",
        sa.Column(
            "rating_rules",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=_jsonb_empty(),
            nullable=False,
        ),
        schema=SCHEMA,
    )
    for name in ("min_entry_age", "max_entry_age"):
        op.add_column(
            "coverages",
            sa.Column(name, sa.Integer(), server_default=sa.text("0"), nullable=False),
            schema=SCHEMA,
        )
    op.add_column(
        "policies",
        sa.Column("premium_breakdown", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        schema=SCHEMA,
    )
    op.add_column("policies", sa.Column("written_premium", MONEY, nullable=True), schema=SCHEMA)
    op.add_column(
        "policies",
        sa.Column("do_not_renew", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        schema=SCHEMA,
    )
    op.add_column(
        "policies", sa.Column("cancel_processed_date", sa.Date(), nullable=True), schema=SCHEMA
    )
    op.add_column(
        "policies",
        sa.Column(
            "cover_since",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=_jsonb_empty(),
            nullable=False,
        ),
        schema=SCHEMA,
    )
    op.create_table(
        "premium_transactions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.Column("policy_id", sa.UUID(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("effective_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("premium", MONEY, nullable=False),
        sa.Column("tax", MONEY, nullable=False),
        sa.Column("fee", MONEY, nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("written_premium", MONEY, nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("refund_method", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=True),
        sa.Column(
            "create_time",
            sa.TIMESTAMP(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "amount = premium + tax + fee",
            name=op.f("ck_premium_transactions_premium_transaction_parts"),
        ),
        sa.ForeignKeyConstraint(
            ["company_id", "policy_id"],
            ["core.policies.company_id", "core.policies.id"],
            name=op.f("fk_premium_transactions_company_id_policies"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_premium_transactions")),
        sa.UniqueConstraint(
            "company_id",
            "policy_id",
            "sequence",
            name=op.f("uq_premium_transactions_company_id_policy_id_sequence"),
        ),
        schema=SCHEMA,
    )
    op.create_table(
        "underwriting_issues",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.Column("policy_id", sa.UUID(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.Text(), nullable=True),
        sa.Column("decide_time", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=False),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column(
            "create_time",
            sa.TIMESTAMP(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["company_id", "policy_id"],
            ["core.policies.company_id", "core.policies.id"],
            name=op.f("fk_underwriting_issues_company_id_policies"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_underwriting_issues")),
        sa.UniqueConstraint(
            "company_id",
            "policy_id",
            "code",
            "key",
            name=op.f("uq_underwriting_issues_company_id_policy_id_code_key"),
        ),
        schema=SCHEMA,
    )
    # Backfilled before secure_schema puts the new table under row-level security.
    op.execute(_BACKFILL)
    op.execute(
        "UPDATE core.policies SET written_premium = premium "
        "WHERE bind_time IS NOT NULL AND premium IS NOT NULL"
    )
    secure_schema(SCHEMA, tenant_tables=TENANT_TABLES, append_only=APPEND_ONLY)


def downgrade() -> None:
    op.drop_table("underwriting_issues", schema=SCHEMA)
    op.drop_table("premium_transactions", schema=SCHEMA)
    for name in (
        "cover_since",
        "cancel_processed_date",
        "do_not_renew",
        "written_premium",
        "premium_breakdown",
    ):
        op.drop_column("policies", name, schema=SCHEMA)
    for name in ("max_entry_age", "min_entry_age"):
        op.drop_column("coverages", name, schema=SCHEMA)
    op.drop_column("product_versions", "rating_rules", schema=SCHEMA)
