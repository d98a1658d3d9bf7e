"""Identity schema: users, sessions, roles, service accounts, keys, audit.

Also grants the services' role its rights, puts every tenant table under
row-level security and makes the audit log append-only.

Revision ID: identity_0001
Revises:
Create Date: 2026-11-26 04:58:07.172194
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from cardinsa_foundation.audit import append_only_ddl
from cardinsa_foundation.db import CROSS_TENANT_SETTING, TENANT_SETTING, tenant_isolation_ddl
from cardinsa_foundation.migrations import grant_app_role_ddl

revision: str = "identity_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
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
        schema="identity",
    )
    op.create_index(
        op.f("ix_audit_events_company_id_create_time"),
        "audit_events",
        ["company_id", "create_time"],
        unique=False,
        schema="identity",
    )
    op.create_index(
        op.f("ix_audit_events_entity_type_entity_id_create_time"),
        "audit_events",
        ["entity_type", "entity_id", "create_time"],
        unique=False,
        schema="identity",
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
        schema="identity",
    )
    op.create_table(
        "login_throttles",
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("locked_until", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("lock_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_login_throttles")),
        schema="identity",
    )
    op.create_table(
        "refresh_tokens",
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("session_id", sa.UUID(), nullable=False),
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.Column(
            "create_time",
            sa.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("use_time", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_refresh_tokens")),
        schema="identity",
    )
    op.create_index(
        op.f("ix_refresh_tokens_session_id"),
        "refresh_tokens",
        ["session_id"],
        unique=False,
        schema="identity",
    )
    op.create_table(
        "roles",
        sa.Column("company_id", sa.UUID(), nullable=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("permissions", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("built_in", sa.Boolean(), nullable=False),
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
        sa.PrimaryKeyConstraint("id", name=op.f("pk_roles")),
        schema="identity",
    )
    op.create_index(
        "uq_roles_company_id_name",
        "roles",
        [
            sa.literal_column("coalesce(company_id, '00000000-0000-0000-0000-000000000000'::uuid)"),
            "name",
        ],
        unique=True,
        schema="identity",
        postgresql_where=sa.text("delete_time IS NULL"),
    )
    op.create_table(
        "service_accounts",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
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
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_accounts")),
        sa.UniqueConstraint("company_id", "id", name=op.f("uq_service_accounts_company_id_id")),
        schema="identity",
    )
    op.create_index(
        op.f("ix_service_accounts_company_id"),
        "service_accounts",
        ["company_id"],
        unique=False,
        schema="identity",
    )
    op.create_index(
        "uq_service_accounts_company_id_name",
        "service_accounts",
        ["company_id", "name"],
        unique=True,
        schema="identity",
        postgresql_where=sa.text("delete_time IS NULL"),
    )
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.Text(), nullable=False),
        sa.Column("algorithm", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("public_jwk", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("private_key_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column(
            "create_time",
            sa.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("activate_time", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("retire_time", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_signing_keys")),
        schema="identity",
    )
    op.create_table(
        "users",
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("given_name", sa.Text(), nullable=False),
        sa.Column("family_name", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("phone", sa.Text(), nullable=False),
        sa.Column("locale", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("password_change_time", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("last_login_time", sa.TIMESTAMP(timezone=True), nullable=True),
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
        sa.Column(
            "metadata",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("company_id", "id", name=op.f("uq_users_company_id_id")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
        schema="identity",
    )
    op.create_index(
        op.f("ix_users_company_id"), "users", ["company_id"], unique=False, schema="identity"
    )
    op.create_index(
        op.f("ix_users_company_id_create_time_id"),
        "users",
        ["company_id", "create_time", "id"],
        unique=False,
        schema="identity",
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.Column("service_account_id", sa.UUID(), nullable=False),
        sa.Column("prefix", sa.Text(), nullable=False),
        sa.Column("secret_hash", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("permissions", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("expire_time", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("last_use_time", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("revoke_time", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.Column(
            "create_time",
            sa.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("created_by", sa.UUID(), nullable=True),
        sa.ForeignKeyConstraint(
            ["company_id", "service_account_id"],
            ["identity.service_accounts.company_id", "identity.service_accounts.id"],
            name=op.f("fk_api_keys_company_id_service_account_id_service_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
        schema="identity",
    )
    op.create_table(
        "password_resets",
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column(
            "create_time",
            sa.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expire_time", sa.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("use_time", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["company_id", "user_id"],
            ["identity.users.company_id", "identity.users.id"],
            name=op.f("fk_password_resets_company_id_user_id_users"),
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_password_resets")),
        schema="identity",
    )
    op.create_index(
        op.f("ix_password_resets_user_id"),
        "password_resets",
        ["user_id"],
        unique=False,
        schema="identity",
    )
    op.create_table(
        "role_bindings",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("role_id", sa.UUID(), nullable=False),
        sa.Column(
            "create_time",
            sa.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("created_by", sa.UUID(), nullable=True),
        sa.ForeignKeyConstraint(
            ["company_id", "user_id"],
            ["identity.users.company_id", "identity.users.id"],
            name=op.f("fk_role_bindings_company_id_user_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["role_id"], ["identity.roles.id"], name=op.f("fk_role_bindings_role_id_roles")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_role_bindings")),
        sa.UniqueConstraint(
            "company_id",
            "user_id",
            "role_id",
            name=op.f("uq_role_bindings_company_id_user_id_role_id"),
        ),
        schema="identity",
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column(
            "create_time",
            sa.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("last_use_time", sa.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("idle_expire_time", sa.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("expire_time", sa.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("revoke_time", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("revoke_reason", sa.Text(), nullable=True),
        sa.Column("client_address", sa.Text(), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["company_id", "user_id"],
            ["identity.users.company_id", "identity.users.id"],
            name=op.f("fk_sessions_company_id_user_id_users"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
        schema="identity",
    )
    op.create_index(
        op.f("ix_sessions_user_id_create_time"),
        "sessions",
        ["user_id", "create_time"],
        unique=False,
        schema="identity",
    )
    _secure()


SCHEMA = "identity"
APP_ROLE = "cardinsa_app"
TENANT_TABLES = (
    "users",
    "sessions",
    "refresh_tokens",
    "role_bindings",
    "service_accounts",
    "api_keys",
    "password_resets",
    "idempotency_keys",
)
_CROSS = f"current_setting('{CROSS_TENANT_SETTING}', true) = 'on'"
_TENANT = f"CAST(nullif(current_setting('{TENANT_SETTING}', true), '') AS uuid)"


def _secure() -> None:
    for statement in grant_app_role_ddl(SCHEMA, APP_ROLE):
        op.execute(statement)
    for table in TENANT_TABLES:
        for statement in tenant_isolation_ddl(SCHEMA, table):
            op.execute(statement)
    # Built-in roles (no company) are visible to every tenant but writable by none.
    op.execute(f"ALTER TABLE {SCHEMA}.roles ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {SCHEMA}.roles FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON {SCHEMA}.roles "
        f"USING ({_CROSS} OR company_id IS NULL OR company_id = {_TENANT}) "
        f"WITH CHECK ({_CROSS} OR company_id = {_TENANT})"
    )
    # Audit: a tenant reads its own events; platform events (no company) only
    # on the explicit cross-tenant path. Append-only for everyone.
    op.execute(f"ALTER TABLE {SCHEMA}.audit_events ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {SCHEMA}.audit_events FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON {SCHEMA}.audit_events "
        f"USING ({_CROSS} OR company_id = {_TENANT}) "
        f"WITH CHECK ({_CROSS} OR company_id = {_TENANT} OR company_id IS NULL)"
    )
    op.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON {SCHEMA}.audit_events FROM {APP_ROLE}")
    for statement in append_only_ddl(SCHEMA, "audit_events"):
        op.execute(statement)


def downgrade() -> None:
    op.drop_index(op.f("ix_sessions_user_id_create_time"), table_name="sessions", schema="identity")
    op.drop_table("sessions", schema="identity")
    op.drop_table("role_bindings", schema="identity")
    op.drop_index(
        op.f("ix_password_resets_user_id"), table_name="password_resets", schema="identity"
    )
    op.drop_table("password_resets", schema="identity")
    op.drop_table("api_keys", schema="identity")
    op.drop_index(op.f("ix_users_company_id_create_time_id"), table_name="users", schema="identity")
    op.drop_index(op.f("ix_users_company_id"), table_name="users", schema="identity")
    op.drop_table("users", schema="identity")
    op.drop_table("signing_keys", schema="identity")
    op.drop_index(
        "uq_service_accounts_company_id_name",
        table_name="service_accounts",
        schema="identity",
        postgresql_where=sa.text("delete_time IS NULL"),
    )
    op.drop_index(
        op.f("ix_service_accounts_company_id"), table_name="service_accounts", schema="identity"
    )
    op.drop_table("service_accounts", schema="identity")
    op.drop_index(
        "uq_roles_company_id_name",
        table_name="roles",
        schema="identity",
        postgresql_where=sa.text("delete_time IS NULL"),
    )
    op.drop_table("roles", schema="identity")
    op.drop_index(
        op.f("ix_refresh_tokens_session_id"), table_name="refresh_tokens", schema="identity"
    )
    op.drop_table("refresh_tokens", schema="identity")
    op.drop_table("login_throttles", schema="identity")
    op.drop_table("idempotency_keys", schema="identity")
    op.drop_index(
        op.f("ix_audit_events_entity_type_entity_id_create_time"),
        table_name="audit_events",
        schema="identity",
    )
    op.drop_index(
        op.f("ix_audit_events_company_id_create_time"), table_name="audit_events", schema="identity"
    )
    op.drop_table("audit_events", schema="identity")
    op.execute(f"DROP FUNCTION IF EXISTS {SCHEMA}.cardinsa_refuse_audit_change()")
