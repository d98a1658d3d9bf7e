"""Claim money: benefit breakdown, reserves, payments, recoveries, accumulators.

- ``claims`` gains the benefit breakdown (``benefit_*``, NULL until assessed),
  the reserves, expense and recovery totals, ``approved_by`` and
  ``withdraw_reason``; a check keeps what is paid within what is approved.
  Claims approved before this migration get their open indemnity reserve
  (approved - paid) so they can be paid and closed as before.
- ``claim_accumulators``: deductible and limit consumed per insured member,
  coverage and period (one row per key, changed under ``FOR UPDATE``), never
  negative. Approvals made before this migration are counted into them:
  their approved amount (and no deductible, which was never applied) against
  the sum-insured accumulator of their policy and the limit accumulator of
  their coverage's period.
- ``claim_payments`` (payments as resources) and ``claim_recoveries``
  (append-only).

Every table is a tenant table under row-level security; the schema's grants
and policies are set by ``secure_schema`` with the schema's whole lists.

Revision ID: core_0005
Revises: core_0004
Create Date: 2026-12-07 04:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cardinsa_foundation.migrations import secure_schema

revision: str = "core_0005"
down_revision: str | None = "core_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "core"
MONEY = sa.Numeric(precision=19, scale=4)
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
_NEW_CLAIM_COLUMNS = (
    ("approved_by", sa.UUID(), True, None),
    ("withdraw_reason", sa.Text(), False, "''"),
    ("indemnity_reserve", MONEY, False, "0"),
    ("expense_reserve", MONEY, False, "0"),
    ("expense_paid", MONEY, False, "0"),
    ("recovered_amount", MONEY, False, "0"),
    ("benefit_claimed", MONEY, True, None),
    ("benefit_deductible", MONEY, True, None),
    ("benefit_copay", MONEY, True, None),
    ("benefit_coinsurance", MONEY, True, None),
    ("benefit_limit_cut", MONEY, True, None),
    ("benefit_payable", MONEY, True, None),
)
_CLAIM_CHECKS = (
    ("indemnity_reserve_not_negative", "indemnity_reserve >= 0"),
    ("expense_reserve_not_negative", "expense_reserve >= 0"),
    (
        "paid_within_approved",
        "approved_amount IS NULL OR paid_amount IS NULL OR paid_amount <= approved_amount",
    ),
)

# Approvals made before the accumulators existed, counted into them: the sum
# insured of the policy term, and the coverage's limit period (a PER_YEAR
# period starts on the policy's effective date plus whole years).
_BACKFILL = """
WITH approved AS (
    SELECT c.company_id, c.policy_id, c.claimant_dependent_id, c.coverage_code,
           c.incident_date, c.currency, c.approved_amount AS amount,
           p.policyholder_id, p.product_id, p.effective_date, p.expiry_date,
           cv.limit_period
    FROM core.claims c
    JOIN core.policies p ON p.company_id = c.company_id AND p.id = c.policy_id
    LEFT JOIN core.product_versions pv
        ON pv.company_id = p.company_id AND pv.product_id = p.product_id
        AND pv.version = p.product_version
    LEFT JOIN core.coverages cv
        ON cv.company_id = pv.company_id AND cv.product_version_id = pv.id
        AND cv.code = c.coverage_code
    WHERE c.state IN ('APPROVED', 'PAID', 'CLOSED') AND c.approved_amount > 0
), keyed AS (
    SELECT company_id, policy_id AS member_id, '*SUM_INSURED' AS coverage_code,
           policy_id AS scope_id, effective_date AS period_start,
           expiry_date AS period_end, currency, amount
    FROM approved
    UNION ALL
    SELECT company_id, coalesce(claimant_dependent_id, policyholder_id), coverage_code,
           CASE WHEN limit_period = 'LIFETIME' THEN product_id ELSE policy_id END,
           CASE limit_period
               WHEN 'LIFETIME' THEN DATE '0001-01-01'
               WHEN 'PER_TERM' THEN effective_date
               ELSE (effective_date + make_interval(
                   years => extract(year FROM age(incident_date, effective_date))::int))::date
           END,
           CASE limit_period
               WHEN 'LIFETIME' THEN DATE '9999-12-31'
               WHEN 'PER_TERM' THEN expiry_date
               ELSE least(expiry_date, (effective_date + make_interval(
                   years => extract(year FROM age(incident_date, effective_date))::int + 1)
               )::date - 1)
           END,
           currency, amount
    FROM approved
    WHERE limit_period IN ('PER_YEAR', 'PER_TERM', 'LIFETIME')
)
INSERT INTO core.claim_accumulators
    (id, company_id, member_id, coverage_code, scope_id, period_start, period_end,
     currency, deductible_used, limit_used)
SELECT gen_random_uuid(), company_id, member_id, coverage_code, scope_id, period_start,
       max(period_end), min(currency), 0, sum(amount)
FROM keyed
GROUP BY company_id, scope_id, member_id, coverage_code, period_start
"""


def upgrade() -> None:
    for name, type_, nullable, default in _NEW_CLAIM_COLUMNS:
        op.add_column(
            "claims",
            sa.Column(
                name,
                type_,
                nullable=nullable,
                server_default=sa.text(default) if default is not None else None,
            ),
            schema=SCHEMA,
        )
    op.execute(
        "UPDATE core.claims SET indemnity_reserve = approved_amount - coalesce(paid_amount, 0) "
        "WHERE state IN ('APPROVED', 'PAID') AND approved_amount IS NOT NULL"
    )
    for name, condition in _CLAIM_CHECKS:
        op.create_check_constraint(op.f(f"ck_claims_{name}"), "claims", condition, schema=SCHEMA)

    op.create_table(
        "claim_accumulators",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.Column("member_id", sa.UUID(), nullable=False),
        sa.Column("coverage_code", sa.Text(), nullable=False),
        sa.Column("scope_id", sa.UUID(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("deductible_used", MONEY, nullable=False),
        sa.Column("limit_used", MONEY, nullable=False),
        sa.Column(
            "update_time",
            sa.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "deductible_used >= 0", name=op.f("ck_claim_accumulators_deductible_used_not_negative")
        ),
        sa.CheckConstraint(
            "limit_used >= 0", name=op.f("ck_claim_accumulators_limit_used_not_negative")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_claim_accumulators")),
        sa.UniqueConstraint(
            "company_id",
            "scope_id",
            "member_id",
            "coverage_code",
            "period_start",
            name=op.f("uq_claim_accumulators_key"),
        ),
        schema=SCHEMA,
    )
    op.create_table(
        "claim_payments",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.Column("claim_id", sa.UUID(), nullable=False),
        sa.Column("cost_type", sa.Text(), nullable=False),
        sa.Column("payee", sa.Text(), nullable=False),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("void_reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=True),
        sa.Column("request_id", sa.Text(), nullable=True),
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
        sa.CheckConstraint("amount > 0", name=op.f("ck_claim_payments_payment_amount_positive")),
        sa.ForeignKeyConstraint(
            ["company_id", "claim_id"],
            ["core.claims.company_id", "core.claims.id"],
            name=op.f("fk_claim_payments_company_id_claims"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_claim_payments")),
        schema=SCHEMA,
    )
    op.create_index(
        op.f("ix_claim_payments_company_id_claim_id_create_time"),
        "claim_payments",
        ["company_id", "claim_id", "create_time"],
        schema=SCHEMA,
    )
    op.create_table(
        "claim_recoveries",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.Column("claim_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=True),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column(
            "create_time",
            sa.TIMESTAMP(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_claim_recoveries_recovery_amount_positive")),
        sa.ForeignKeyConstraint(
            ["company_id", "claim_id"],
            ["core.claims.company_id", "core.claims.id"],
            name=op.f("fk_claim_recoveries_company_id_claims"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_claim_recoveries")),
        schema=SCHEMA,
    )
    op.create_index(
        op.f("ix_claim_recoveries_company_id_claim_id_create_time"),
        "claim_recoveries",
        ["company_id", "claim_id", "create_time"],
        schema=SCHEMA,
    )
    op.execute(_BACKFILL)
    secure_schema(SCHEMA, tenant_tables=TENANT_TABLES, append_only=APPEND_ONLY)


def downgrade() -> None:
    op.drop_table("claim_recoveries", schema=SCHEMA)
    op.drop_table("claim_payments", schema=SCHEMA)
    op.drop_table("claim_accumulators", schema=SCHEMA)
    for name, _ in _CLAIM_CHECKS:
        op.drop_constraint(op.f(f"ck_claims_{name}"), "claims", schema=SCHEMA, type_="check")
    for name, *_ in reversed(_NEW_CLAIM_COLUMNS):
        op.drop_column("claims", name, schema=SCHEMA)
