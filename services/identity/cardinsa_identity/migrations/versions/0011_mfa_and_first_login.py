"""A second factor (TOTP) and the forced password change at first login.

- ``users.must_change_password``: the password was set by an administrator
  (CreateUser); login asks for a new one first (challenge NEW_PASSWORD_REQUIRED).
- ``sessions.amr``: how the session's login authenticated (``pwd``, ``otp``);
  a refresh keeps it.
- ``user_mfa``: a user's TOTP secret (encrypted at rest with the signing-key
  cipher, bound to the user id), when it was confirmed and the last time-step
  a code was accepted for (a code is accepted once).
- ``mfa_recovery_codes``: single-use recovery codes, stored as SHA-256 only.
- ``login_challenges``: the opaque challenge tokens a login hands out instead
  of tokens, stored as SHA-256 only, short-lived and single-use.
- ``mfa_policies``: per company, the roles whose permissions need a login
  with a second factor.

Every new table is a tenant table (row-level security, FORCE).

Revision ID: identity_0011
Revises: identity_0010
Create Date: 2026-12-07 21:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cardinsa_foundation.migrations import TenantTable, secure_schema

revision: str = "identity_0011"
down_revision: str | None = "identity_0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "identity"
#: Every tenant table at this revision (secure_schema takes the whole list).
TENANT_TABLES = (
    "users",
    "sessions",
    "refresh_tokens",
    "role_bindings",
    "service_accounts",
    "api_keys",
    "password_resets",
    "idempotency_keys",
    "user_mfa",
    "mfa_recovery_codes",
    "login_challenges",
    "mfa_policies",
    TenantTable("roles", also_visible="company_id IS NULL"),
    TenantTable("audit_events", also_writable="company_id IS NULL"),
    TenantTable("outbox_events", also_writable="company_id IS NULL"),
)
APPEND_ONLY = ("audit_events", "outbox_events")
NO_UPDATE = ("revocations",)


def _now() -> sa.Column[object]:
    return sa.Column(
        "create_time", sa.TIMESTAMP(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def _user_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["company_id", "user_id"],
        ["identity.users.company_id", "identity.users.id"],
        name=op.f(f"fk_{table}_company_id_user_id_users"),
    )


def upgrade() -> None:
    op.add_column(
        "users",
        sa.Column("must_change_password", sa.Boolean(), server_default=sa.false(), nullable=False),
        schema=SCHEMA,
    )
    op.add_column(
        "sessions",
        sa.Column(
            "amr",
            sa.ARRAY(sa.Text()),
            server_default=sa.text("'{pwd}'::text[]"),
            nullable=False,
        ),
        schema=SCHEMA,
    )
    op.create_table(
        "user_mfa",
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.Column("secret_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("confirm_time", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("last_used_step", sa.BigInteger(), nullable=True),
        _now(),
        _user_fk("user_mfa"),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_mfa")),
        schema=SCHEMA,
    )
    op.create_table(
        "mfa_recovery_codes",
        sa.Column("code_hash", sa.Text(), nullable=False),
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        _now(),
        sa.Column("use_time", sa.TIMESTAMP(timezone=True), nullable=True),
        _user_fk("mfa_recovery_codes"),
        sa.PrimaryKeyConstraint("user_id", "code_hash", name=op.f("pk_mfa_recovery_codes")),
        schema=SCHEMA,
    )
    op.create_table(
        "login_challenges",
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("password_fingerprint", sa.Text(), nullable=False),
        sa.Column("email_key", sa.Text(), nullable=False),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        _now(),
        sa.Column("expire_time", sa.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("use_time", sa.TIMESTAMP(timezone=True), nullable=True),
        _user_fk("login_challenges"),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_login_challenges")),
        schema=SCHEMA,
    )
    op.create_index(
        op.f("ix_login_challenges_user_id"), "login_challenges", ["user_id"], schema=SCHEMA
    )
    op.create_table(
        "mfa_policies",
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.Column(
            "required_roles",
            sa.ARRAY(sa.Text()),
            server_default=sa.text("'{}'::text[]"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            sa.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("updated_by", sa.UUID(), nullable=True),
        sa.PrimaryKeyConstraint("company_id", name=op.f("pk_mfa_policies")),
        schema=SCHEMA,
    )
    secure_schema(SCHEMA, tenant_tables=TENANT_TABLES, append_only=APPEND_ONLY, no_update=NO_UPDATE)


def downgrade() -> None:
    op.drop_table("mfa_policies", schema=SCHEMA)
    op.drop_table("login_challenges", schema=SCHEMA)
    op.drop_table("mfa_recovery_codes", schema=SCHEMA)
    op.drop_table("user_mfa", schema=SCHEMA)
    op.drop_column("sessions", "amr", schema=SCHEMA)
    op.drop_column("users", "must_change_password", schema=SCHEMA)
