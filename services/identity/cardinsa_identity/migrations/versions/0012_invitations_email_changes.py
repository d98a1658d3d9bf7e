"""Invitations and verified e-mail changes: ``invitations`` and ``email_changes``.

An invitation token (UserService.InviteUser) and an e-mail-change token
(MeService.ChangeMyEmail, UserService.UpdateUser of ``email``) are stored as
their SHA-256 only, single-use (``use_time``) and expiring, like
``password_resets``. Both are tenant tables. A user's state may now also be
``INVITED`` (``users.state`` is text; nothing to change there).

Revision ID: identity_0012
Revises: identity_0011
Create Date: 2026-12-07 21:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cardinsa_foundation.migrations import TenantTable, secure_schema

revision: str = "identity_0012"
down_revision: str | None = "identity_0011"
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
    "invitations",
    "email_changes",
    TenantTable("roles", also_visible="company_id IS NULL"),
    TenantTable("audit_events", also_writable="company_id IS NULL"),
    TenantTable("outbox_events", also_writable="company_id IS NULL"),
)
APPEND_ONLY = ("audit_events", "outbox_events")
NO_UPDATE = ("revocations",)


def _token_table(name: str, *extra: sa.Column) -> None:  # type: ignore[type-arg]
    op.create_table(
        name,
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        *extra,
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
            name=op.f(f"fk_{name}_company_id_user_id_users"),
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f(f"pk_{name}")),
        schema=SCHEMA,
    )
    op.create_index(op.f(f"ix_{name}_user_id"), name, ["user_id"], unique=False, schema=SCHEMA)


def upgrade() -> None:
    _token_table("invitations")
    _token_table("email_changes", sa.Column("new_email", sa.Text(), nullable=False))
    secure_schema(SCHEMA, tenant_tables=TENANT_TABLES, append_only=APPEND_ONLY, no_update=NO_UPDATE)


def downgrade() -> None:
    for name in ("email_changes", "invitations"):
        op.drop_index(op.f(f"ix_{name}_user_id"), table_name=name, schema=SCHEMA)
        op.drop_table(name, schema=SCHEMA)
