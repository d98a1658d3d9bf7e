"""Core schema: policyholders, dependents, products and versions, policies with
versions and status log, claims with action log, approval bands, number
counters, request ids, audit.

Also grants the services' role its rights, puts every table under row-level
security and makes the audit table and the three logs append-only.

Revision ID: core_0001
Revises:
Create Date: 2026-11-26 05:23:34.981860
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from cardinsa_foundation.audit import append_only_ddl
from cardinsa_foundation.db import CROSS_TENANT_SETTING, TENANT_SETTING, tenant_isolation_ddl
from cardinsa_foundation.migrations import grant_app_role_ddl

revision: str = "core_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "approval_bands",
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("band_1_limit", sa.Numeric(precision=19, scale=4), nullable=False),
        sa.Column("band_2_limit", sa.Numeric(precision=19, scale=4), nullable=False),
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
        sa.PrimaryKeyConstraint("company_id", name=op.f("pk_approval_bands")),
        schema="core",
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column(
            "create_time",
            sa.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("company_id", sa.UUID(), nullable=True),
        sa.Column("actor_id", sa.Text(), nullable=True),
        sa.Column("on_behalf_of_id", sa.Text(), nullable=True),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("entity_type", sa.Text(), nullable=False),
        sa.Column("entity_id", sa.Text(), nullable=True),
        sa.Column(
            "changed_fields",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'::text[]"),
            nullable=False,
        ),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column(
            "detail",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
        schema="core",
    )
    op.create_index(
        op.f("ix_audit_events_company_id_create_time"),
        "audit_events",
        ["company_id", "create_time"],
        unique=False,
        schema="core",
    )
    op.create_index(
        op.f("ix_audit_events_entity_type_entity_id_create_time"),
        "audit_events",
        ["entity_type", "entity_id", "create_time"],
        unique=False,
        schema="core",
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("resource_id", sa.Text(), nullable=False),
        sa.Column(
            "create_time",
            sa.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint(
            "company_id", "method", "request_id", name=op.f("pk_idempotency_keys")
        ),
        schema="core",
    )
    op.create_table(
        "number_counters",
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("last_value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("company_id", "kind", name=op.f("pk_number_counters")),
        schema="core",
    )
    op.create_table(
        "policyholders",
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("given_name", sa.Text(), nullable=False),
        sa.Column("family_name", sa.Text(), nullable=False),
        sa.Column("date_of_birth", sa.Date(), nullable=True),
        sa.Column("gender", sa.Text(), nullable=False),
        sa.Column("legal_name", sa.Text(), nullable=False),
        sa.Column("registration_number", sa.Text(), nullable=False),
        sa.Column("national_id", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("phone", sa.Text(), nullable=False),
        sa.Column("address_line1", sa.Text(), nullable=False),
        sa.Column("address_line2", sa.Text(), nullable=False),
        sa.Column("address_city", sa.Text(), nullable=False),
        sa.Column("address_region", sa.Text(), nullable=False),
        sa.Column("address_postal_code", sa.Text(), nullable=False),
        sa.Column("address_country_code", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
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
        sa.Column("created_by", sa.UUID(), nullable=True),
        sa.Column("updated_by", sa.UUID(), nullable=True),
        sa.Column("delete_time", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policyholders")),
        sa.UniqueConstraint("company_id", "id", name=op.f("uq_policyholders_company_id_id")),
        schema="core",
    )
    op.create_index(
        op.f("ix_policyholders_company_id"),
        "policyholders",
        ["company_id"],
        unique=False,
        schema="core",
    )
    op.create_index(
        op.f("ix_policyholders_company_id_create_time_id"),
        "policyholders",
        ["company_id", "create_time", "id"],
        unique=False,
        schema="core",
    )
    op.create_index(
        op.f("ix_policyholders_company_id_display_name_id"),
        "policyholders",
        ["company_id", "display_name", "id"],
        unique=False,
        schema="core",
    )
    op.create_index(
        op.f("ix_policyholders_company_id_email"),
        "policyholders",
        ["company_id", "email"],
        unique=False,
        schema="core",
    )
    op.create_index(
        op.f("ix_policyholders_company_id_national_id"),
        "policyholders",
        ["company_id", "national_id"],
        unique=False,
        schema="core",
    )
    op.create_table(
        "products",
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("line_of_business", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
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
        sa.Column("created_by", sa.UUID(), nullable=True),
        sa.Column("updated_by", sa.UUID(), nullable=True),
        sa.Column("delete_time", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
        sa.UniqueConstraint("company_id", "id", name=op.f("uq_products_company_id_id")),
        schema="core",
    )
    op.create_index(
        op.f("ix_products_company_id"), "products", ["company_id"], unique=False, schema="core"
    )
    op.create_index(
        op.f("ix_products_company_id_create_time_id"),
        "products",
        ["company_id", "create_time", "id"],
        unique=False,
        schema="core",
    )
    op.create_index(
        "uq_products_company_id_code",
        "products",
        ["company_id", "code"],
        unique=True,
        schema="core",
        postgresql_where=sa.text("delete_time IS NULL"),
    )
    op.create_table(
        "dependents",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.Column("policyholder_id", sa.UUID(), nullable=False),
        sa.Column("relation", sa.Text(), nullable=False),
        sa.Column("given_name", sa.Text(), nullable=False),
        sa.Column("family_name", sa.Text(), nullable=False),
        sa.Column("date_of_birth", sa.Date(), nullable=True),
        sa.Column("gender", sa.Text(), nullable=False),
        sa.Column("national_id", sa.Text(), nullable=False),
        sa.Column(
            "create_time",
            sa.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("remove_time", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["company_id", "policyholder_id"],
            ["core.policyholders.company_id", "core.policyholders.id"],
            name=op.f("fk_dependents_company_id_policyholder_id_policyholders"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dependents")),
        sa.UniqueConstraint("company_id", "id", name=op.f("uq_dependents_company_id_id")),
        schema="core",
    )
    op.create_index(
        op.f("ix_dependents_company_id_policyholder_id"),
        "dependents",
        ["company_id", "policyholder_id"],
        unique=False,
        schema="core",
    )
    op.create_table(
        "product_versions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.Column("product_id", sa.UUID(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("base_premium", sa.Numeric(precision=19, scale=4), nullable=False),
        sa.Column("term_months", sa.Integer(), nullable=False),
        sa.Column(
            "create_time",
            sa.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("created_by", sa.UUID(), nullable=True),
        sa.ForeignKeyConstraint(
            ["company_id", "product_id"],
            ["core.products.company_id", "core.products.id"],
            name=op.f("fk_product_versions_company_id_product_id_products"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_product_versions")),
        sa.UniqueConstraint("company_id", "id", name=op.f("uq_product_versions_company_id_id")),
        sa.UniqueConstraint(
            "company_id",
            "product_id",
            "version",
            name=op.f("uq_product_versions_company_id_product_id_version"),
        ),
        schema="core",
    )
    op.create_table(
        "coverages",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.Column("product_version_id", sa.UUID(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("limit_amount", sa.Numeric(precision=19, scale=4), nullable=False),
        sa.Column("limit_period", sa.Text(), nullable=False),
        sa.Column("deductible", sa.Numeric(precision=19, scale=4), nullable=False),
        sa.Column("copay", sa.Numeric(precision=19, scale=4), nullable=True),
        sa.Column("coinsurance_percent", sa.Numeric(precision=5, scale=2), nullable=True),
        sa.Column("waiting_period_days", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["company_id", "product_version_id"],
            ["core.product_versions.company_id", "core.product_versions.id"],
            name=op.f("fk_coverages_company_id_product_version_id_product_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coverages")),
        sa.UniqueConstraint(
            "company_id",
            "product_version_id",
            "code",
            name=op.f("uq_coverages_company_id_product_version_id_code"),
        ),
        schema="core",
    )
    op.create_table(
        "policies",
        sa.Column("policy_number", sa.Text(), nullable=True),
        sa.Column("policyholder_id", sa.UUID(), nullable=False),
        sa.Column("product_id", sa.UUID(), nullable=False),
        sa.Column("product_version", sa.Integer(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("effective_date", sa.Date(), nullable=False),
        sa.Column("expiry_date", sa.Date(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("premium", sa.Numeric(precision=19, scale=4), nullable=True),
        sa.Column("sum_insured", sa.Numeric(precision=19, scale=4), nullable=False),
        sa.Column("payment_frequency", sa.Text(), nullable=False),
        sa.Column("insures_holder", sa.Boolean(), nullable=False),
        sa.Column("insured_dependent_ids", postgresql.ARRAY(sa.UUID()), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("version_effective_date", sa.Date(), nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.Column("cancel_effective_date", sa.Date(), nullable=True),
        sa.Column("lapse_date", sa.Date(), nullable=True),
        sa.Column("termination_note", sa.Text(), nullable=False),
        sa.Column("previous_policy_id", sa.UUID(), nullable=True),
        sa.Column("successor_policy_id", sa.UUID(), nullable=True),
        sa.Column("bind_time", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("activate_time", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
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
        sa.Column("created_by", sa.UUID(), nullable=True),
        sa.Column("updated_by", sa.UUID(), nullable=True),
        sa.Column("delete_time", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(
            ["company_id", "policyholder_id"],
            ["core.policyholders.company_id", "core.policyholders.id"],
            name=op.f("fk_policies_company_id_policyholder_id_policyholders"),
        ),
        sa.ForeignKeyConstraint(
            ["company_id", "product_id", "product_version"],
            [
                "core.product_versions.company_id",
                "core.product_versions.product_id",
                "core.product_versions.version",
            ],
            name="fk_policies_product_version_product_versions",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policies")),
        sa.UniqueConstraint("company_id", "id", name=op.f("uq_policies_company_id_id")),
        sa.UniqueConstraint(
            "company_id", "policy_number", name=op.f("uq_policies_company_id_policy_number")
        ),
        schema="core",
    )
    op.create_index(
        op.f("ix_policies_company_id"), "policies", ["company_id"], unique=False, schema="core"
    )
    op.create_index(
        op.f("ix_policies_company_id_create_time_id"),
        "policies",
        ["company_id", "create_time", "id"],
        unique=False,
        schema="core",
    )
    op.create_index(
        op.f("ix_policies_company_id_policyholder_id"),
        "policies",
        ["company_id", "policyholder_id"],
        unique=False,
        schema="core",
    )
    op.create_table(
        "claims",
        sa.Column("claim_number", sa.Text(), nullable=True),
        sa.Column("policy_id", sa.UUID(), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("claimant_dependent_id", sa.UUID(), nullable=True),
        sa.Column("claim_type", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("coverage_code", sa.Text(), nullable=False),
        sa.Column("incident_date", sa.Date(), nullable=False),
        sa.Column("report_date", sa.Date(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("claimed_amount", sa.Numeric(precision=19, scale=4), nullable=False),
        sa.Column("approved_amount", sa.Numeric(precision=19, scale=4), nullable=True),
        sa.Column("paid_amount", sa.Numeric(precision=19, scale=4), nullable=True),
        sa.Column("payment_reference", sa.Text(), nullable=False),
        sa.Column("deny_reason", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("assigned_adjuster_id", sa.UUID(), nullable=True),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
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
        sa.Column("created_by", sa.UUID(), nullable=True),
        sa.Column("updated_by", sa.UUID(), nullable=True),
        sa.Column("delete_time", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(
            ["company_id", "policy_id"],
            ["core.policies.company_id", "core.policies.id"],
            name=op.f("fk_claims_company_id_policy_id_policies"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_claims")),
        sa.UniqueConstraint(
            "company_id", "claim_number", name=op.f("uq_claims_company_id_claim_number")
        ),
        sa.UniqueConstraint("company_id", "id", name=op.f("uq_claims_company_id_id")),
        schema="core",
    )
    op.create_index(
        op.f("ix_claims_company_id"), "claims", ["company_id"], unique=False, schema="core"
    )
    op.create_index(
        op.f("ix_claims_company_id_create_time_id"),
        "claims",
        ["company_id", "create_time", "id"],
        unique=False,
        schema="core",
    )
    op.create_index(
        op.f("ix_claims_company_id_policy_id"),
        "claims",
        ["company_id", "policy_id"],
        unique=False,
        schema="core",
    )
    op.create_table(
        "policy_status_changes",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.Column("policy_id", sa.UUID(), nullable=False),
        sa.Column("from_state", sa.Text(), nullable=True),
        sa.Column("to_state", sa.Text(), nullable=False),
        sa.Column("transition", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("effective_date", sa.Date(), nullable=True),
        sa.Column("actor_id", sa.Text(), nullable=True),
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
            name=op.f("fk_policy_status_changes_company_id_policy_id_policies"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_status_changes")),
        schema="core",
    )
    op.create_index(
        op.f("ix_policy_status_changes_company_id_policy_id_create_time"),
        "policy_status_changes",
        ["company_id", "policy_id", "create_time"],
        unique=False,
        schema="core",
    )
    op.create_table(
        "policy_versions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.Column("policy_id", sa.UUID(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("effective_date", sa.Date(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("premium", sa.Numeric(precision=19, scale=4), nullable=False),
        sa.Column("sum_insured", sa.Numeric(precision=19, scale=4), nullable=False),
        sa.Column("insures_holder", sa.Boolean(), nullable=False),
        sa.Column("insured_dependent_ids", postgresql.ARRAY(sa.UUID()), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("changed_fields", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column(
            "create_time",
            sa.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("created_by", sa.UUID(), nullable=True),
        sa.ForeignKeyConstraint(
            ["company_id", "policy_id"],
            ["core.policies.company_id", "core.policies.id"],
            name=op.f("fk_policy_versions_company_id_policy_id_policies"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_versions")),
        sa.UniqueConstraint(
            "company_id",
            "policy_id",
            "version",
            name=op.f("uq_policy_versions_company_id_policy_id_version"),
        ),
        schema="core",
    )
    op.create_table(
        "claim_log_entries",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.Column("claim_id", sa.UUID(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("from_state", sa.Text(), nullable=True),
        sa.Column("to_state", sa.Text(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=19, scale=4), nullable=True),
        sa.Column("currency", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("payment_reference", sa.Text(), nullable=False),
        sa.Column("actor_id", sa.Text(), nullable=True),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column(
            "create_time",
            sa.TIMESTAMP(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["company_id", "claim_id"],
            ["core.claims.company_id", "core.claims.id"],
            name=op.f("fk_claim_log_entries_company_id_claim_id_claims"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_claim_log_entries")),
        schema="core",
    )
    op.create_index(
        op.f("ix_claim_log_entries_company_id_claim_id_create_time"),
        "claim_log_entries",
        ["company_id", "claim_id", "create_time"],
        unique=False,
        schema="core",
    )
    _secure()


SCHEMA = "core"
APP_ROLE = "cardinsa_app"
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
    "approval_bands",
    "number_counters",
    "idempotency_keys",
)
APPEND_ONLY = ("policy_versions", "policy_status_changes", "claim_log_entries")
_CROSS = f"current_setting('{CROSS_TENANT_SETTING}', true) = 'on'"
_TENANT = f"CAST(nullif(current_setting('{TENANT_SETTING}', true), '') AS uuid)"


def _secure() -> None:
    for statement in grant_app_role_ddl(SCHEMA, APP_ROLE):
        op.execute(statement)
    # The migration history is the owner's alone.
    op.execute(
        f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {SCHEMA}.alembic_version FROM {APP_ROLE}"
    )
    for table in TENANT_TABLES:
        for statement in tenant_isolation_ddl(SCHEMA, table):
            op.execute(statement)
    # Logs: rows are only ever added, by the services and by the owner alike.
    for table in APPEND_ONLY:
        op.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON {SCHEMA}.{table} FROM {APP_ROLE}")
        for statement in append_only_ddl(SCHEMA, table):
            op.execute(statement)
    # Audit: a tenant reads and writes its own events only; append-only for everyone.
    op.execute(f"ALTER TABLE {SCHEMA}.audit_events ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {SCHEMA}.audit_events FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON {SCHEMA}.audit_events "
        f"USING ({_CROSS} OR company_id = {_TENANT}) "
        f"WITH CHECK ({_CROSS} OR company_id = {_TENANT})"
    )
    op.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON {SCHEMA}.audit_events FROM {APP_ROLE}")
    for statement in append_only_ddl(SCHEMA, "audit_events"):
        op.execute(statement)


def downgrade() -> None:
    op.drop_index(
        op.f("ix_claim_log_entries_company_id_claim_id_create_time"),
        table_name="claim_log_entries",
        schema="core",
    )
    op.drop_table("claim_log_entries", schema="core")
    op.drop_table("policy_versions", schema="core")
    op.drop_index(
        op.f("ix_policy_status_changes_company_id_policy_id_create_time"),
        table_name="policy_status_changes",
        schema="core",
    )
    op.drop_table("policy_status_changes", schema="core")
    op.drop_index(op.f("ix_claims_company_id_policy_id"), table_name="claims", schema="core")
    op.drop_index(op.f("ix_claims_company_id_create_time_id"), table_name="claims", schema="core")
    op.drop_index(op.f("ix_claims_company_id"), table_name="claims", schema="core")
    op.drop_table("claims", schema="core")
    op.drop_index(
        op.f("ix_policies_company_id_policyholder_id"), table_name="policies", schema="core"
    )
    op.drop_index(
        op.f("ix_policies_company_id_create_time_id"), table_name="policies", schema="core"
    )
    op.drop_index(op.f("ix_policies_company_id"), table_name="policies", schema="core")
    op.drop_table("policies", schema="core")
    op.drop_table("coverages", schema="core")
    op.drop_table("product_versions", schema="core")
    op.drop_index(
        op.f("ix_dependents_company_id_policyholder_id"), table_name="dependents", schema="core"
    )
    op.drop_table("dependents", schema="core")
    op.drop_index(
        "uq_products_company_id_code",
        table_name="products",
        schema="core",
        postgresql_where=sa.text("delete_time IS NULL"),
    )
    op.drop_index(
        op.f("ix_products_company_id_create_time_id"), table_name="products", schema="core"
    )
    op.drop_index(op.f("ix_products_company_id"), table_name="products", schema="core")
    op.drop_table("products", schema="core")
    op.drop_index(
        op.f("ix_policyholders_company_id_national_id"), table_name="policyholders", schema="core"
    )
    op.drop_index(
        op.f("ix_policyholders_company_id_email"), table_name="policyholders", schema="core"
    )
    op.drop_index(
        op.f("ix_policyholders_company_id_display_name_id"),
        table_name="policyholders",
        schema="core",
    )
    op.drop_index(
        op.f("ix_policyholders_company_id_create_time_id"),
        table_name="policyholders",
        schema="core",
    )
    op.drop_index(op.f("ix_policyholders_company_id"), table_name="policyholders", schema="core")
    op.drop_table("policyholders", schema="core")
    op.drop_table("number_counters", schema="core")
    op.drop_table("idempotency_keys", schema="core")
    op.drop_index(
        op.f("ix_audit_events_entity_type_entity_id_create_time"),
        table_name="audit_events",
        schema="core",
    )
    op.drop_index(
        op.f("ix_audit_events_company_id_create_time"), table_name="audit_events", schema="core"
    )
    op.drop_table("audit_events", schema="core")
    op.drop_table("approval_bands", schema="core")
    op.execute(f"DROP FUNCTION IF EXISTS {SCHEMA}.cardinsa_refuse_audit_change()")
