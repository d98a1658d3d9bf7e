"""Billing: invoices, payments and their allocations; paid-to date and grace period.

- ``invoices``: what a policyholder owes and when (docs/billing.md). The
  instalments of the first premium transaction by the payment frequency, then
  one ``ADJUSTMENT`` (or a negative ``CREDIT_NOTE``) per later transaction;
  ``amount`` never changes once issued, ``settled`` is what allocations have
  settled of it. States ISSUED, PARTIALLY_PAID, PAID, OVERDUE, VOID.
- ``payments``: money received for a policy (a request id replays it);
  ``allocated`` of it settles invoices, the rest is the policy's credit.
- ``payment_allocations``: which payment or credit note settled how much of
  which invoice (append-only).
- ``policies.paid_to_date``: cover is paid up to this day (NULL: nothing yet).
- ``product_versions.grace_period_days`` (default 30): how long an instalment
  may stay unpaid after its due date before the scheduler lapses the policy.

Money is NUMERIC(19, 4) next to an ISO 4217 currency; rows reference each
other through ``(company_id, id)``.

Revision ID: core_0012
Revises: core_0011
Create Date: 2026-12-07 13:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cardinsa_foundation.migrations import secure_schema

revision: str = "core_0012"
down_revision: str | None = "core_0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "core"
MONEY = sa.Numeric(precision=19, scale=4)
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
    "invoices",
    "payments",
    "payment_allocations",
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
    "payment_allocations",
)


def _timestamps() -> list[sa.Column[object]]:
    return [
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
    ]


def upgrade() -> None:
    op.add_column("policies", sa.Column("paid_to_date", sa.Date(), nullable=True), schema=SCHEMA)
    op.add_column(
        "product_versions",
        sa.Column("grace_period_days", sa.Integer(), server_default=sa.text("30"), nullable=False),
        schema=SCHEMA,
    )
    op.create_check_constraint(
        op.f("ck_product_versions_grace_period_days_range"),
        "product_versions",
        "grace_period_days BETWEEN 0 AND 365",
        schema=SCHEMA,
    )
    op.create_table(
        "invoices",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.Column("policy_id", sa.UUID(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("number", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("instalment", sa.Integer(), nullable=True),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("settled", MONEY, server_default=sa.text("0"), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("transaction_sequence", sa.Integer(), nullable=False),
        sa.Column("void_reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
        sa.UniqueConstraint("company_id", "id", name=op.f("uq_invoices_company_id_id")),
        sa.UniqueConstraint(
            "company_id",
            "policy_id",
            "sequence",
            name=op.f("uq_invoices_company_id_policy_id_sequence"),
        ),
        sa.ForeignKeyConstraint(
            ["company_id", "policy_id"],
            ["core.policies.company_id", "core.policies.id"],
            name=op.f("fk_invoices_company_id_policy_id_policies"),
        ),
        sa.ForeignKeyConstraint(
            ["company_id", "policy_id", "transaction_sequence"],
            [
                "core.premium_transactions.company_id",
                "core.premium_transactions.policy_id",
                "core.premium_transactions.sequence",
            ],
            name="fk_invoices_transaction_premium_transactions",
        ),
        sa.CheckConstraint(
            "kind IN ('INSTALMENT', 'ADJUSTMENT', 'CREDIT_NOTE')",
            name=op.f("ck_invoices_invoice_kind"),
        ),
        sa.CheckConstraint(
            "state IN ('ISSUED', 'PARTIALLY_PAID', 'PAID', 'OVERDUE', 'VOID')",
            name=op.f("ck_invoices_invoice_state"),
        ),
        sa.CheckConstraint(
            "(kind = 'CREDIT_NOTE' AND amount < 0) OR (kind <> 'CREDIT_NOTE' AND amount >= 0)",
            name=op.f("ck_invoices_invoice_sign"),
        ),
        sa.CheckConstraint(
            "(amount >= 0 AND settled BETWEEN 0 AND amount) "
            "OR (amount < 0 AND settled BETWEEN amount AND 0)",
            name=op.f("ck_invoices_invoice_settled_within_amount"),
        ),
        sa.CheckConstraint("period_start <= period_end", name=op.f("ck_invoices_invoice_period")),
        schema=SCHEMA,
    )
    op.create_index(
        op.f("ix_invoices_company_id_policy_id_due_date"),
        "invoices",
        ["company_id", "policy_id", "due_date"],
        schema=SCHEMA,
    )
    # The scheduler's scan: open invoices by due date, across companies.
    op.create_index(
        "ix_invoices_open_due_date",
        "invoices",
        ["due_date"],
        schema=SCHEMA,
        postgresql_where=sa.text("state IN ('ISSUED', 'PARTIALLY_PAID', 'OVERDUE')"),
    )
    op.create_table(
        "payments",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.Column("policy_id", sa.UUID(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("allocated", MONEY, server_default=sa.text("0"), nullable=False),
        sa.Column("received_date", sa.Date(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=True),
        sa.Column("request_id", sa.Text(), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint("company_id", "id", name=op.f("uq_payments_company_id_id")),
        sa.ForeignKeyConstraint(
            ["company_id", "policy_id"],
            ["core.policies.company_id", "core.policies.id"],
            name=op.f("fk_payments_company_id_policy_id_policies"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payments_billing_payment_amount_positive")),
        sa.CheckConstraint(
            "allocated BETWEEN 0 AND amount",
            name=op.f("ck_payments_payment_allocated_within_amount"),
        ),
        schema=SCHEMA,
    )
    op.create_index(
        op.f("ix_payments_company_id_policy_id_create_time"),
        "payments",
        ["company_id", "policy_id", "create_time"],
        schema=SCHEMA,
    )
    op.create_table(
        "payment_allocations",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.Column("policy_id", sa.UUID(), nullable=False),
        sa.Column("invoice_id", sa.UUID(), nullable=False),
        sa.Column("payment_id", sa.UUID(), nullable=True),
        sa.Column("credit_note_id", sa.UUID(), nullable=True),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column(
            "create_time",
            sa.TIMESTAMP(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_allocations")),
        sa.ForeignKeyConstraint(
            ["company_id", "policy_id"],
            ["core.policies.company_id", "core.policies.id"],
            name=op.f("fk_payment_allocations_company_id_policy_id_policies"),
        ),
        sa.ForeignKeyConstraint(
            ["company_id", "invoice_id"],
            ["core.invoices.company_id", "core.invoices.id"],
            name=op.f("fk_payment_allocations_company_id_invoice_id_invoices"),
        ),
        sa.ForeignKeyConstraint(
            ["company_id", "payment_id"],
            ["core.payments.company_id", "core.payments.id"],
            name=op.f("fk_payment_allocations_company_id_payment_id_payments"),
        ),
        sa.ForeignKeyConstraint(
            ["company_id", "credit_note_id"],
            ["core.invoices.company_id", "core.invoices.id"],
            name="fk_payment_allocations_credit_note_invoices",
        ),
        sa.CheckConstraint(
            "amount > 0", name=op.f("ck_payment_allocations_allocation_amount_positive")
        ),
        sa.CheckConstraint(
            "(payment_id IS NULL) <> (credit_note_id IS NULL)",
            name=op.f("ck_payment_allocations_allocation_one_source"),
        ),
        schema=SCHEMA,
    )
    op.create_index(
        op.f("ix_payment_allocations_company_id_invoice_id"),
        "payment_allocations",
        ["company_id", "invoice_id"],
        schema=SCHEMA,
    )
    op.create_index(
        op.f("ix_payment_allocations_company_id_payment_id"),
        "payment_allocations",
        ["company_id", "payment_id"],
        schema=SCHEMA,
    )
    secure_schema(SCHEMA, tenant_tables=TENANT_TABLES, append_only=APPEND_ONLY)


def downgrade() -> None:
    op.drop_table("payment_allocations", schema=SCHEMA)
    op.drop_table("payments", schema=SCHEMA)
    op.drop_table("invoices", schema=SCHEMA)
    op.drop_constraint(
        "ck_product_versions_grace_period_days_range", "product_versions", schema=SCHEMA
    )
    op.drop_column("product_versions", "grace_period_days", schema=SCHEMA)
    op.drop_column("policies", "paid_to_date", schema=SCHEMA)
