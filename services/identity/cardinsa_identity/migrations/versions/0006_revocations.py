"""Revocations: what ends access tokens before they expire.

One row per revoked session (or API key: its tokens carry the key's id as
their session) at the instant ``not_before``, or per subject whose tokens
issued before ``not_before`` stop. A row matters for as long as a token it
covers can live (``not_before`` + access-token lifetime + clock skew); readers
derive that from their settings and ignore older rows, and identity deletes
them. Rows are written in the transaction of
the change that ends the access (lock, logout, role removal ...), in a strict
order: writers take a transaction-level advisory lock before they draw the next
``seq``, so rows commit in ``seq`` order and a reader that has seen ``seq`` N has
seen every row below it (the cursor of the watch never skips a row that commits
late). A statement trigger notifies ``cardinsa_revocations`` on commit, which
identity's watch listens to. Platform-wide, not tenant data: no row-level
security (ids only, no company).

Revision ID: identity_0006
Revises: identity_0005
Create Date: 2026-12-06 22:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "identity_0006"
down_revision: str | None = "identity_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "identity"
APP_ROLE = "cardinsa_app"
PLATFORM_ROLE = "cardinsa_platform"


def upgrade() -> None:
    op.create_table(
        "revocations",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("not_before", sa.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "create_time",
            sa.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("kind IN ('session', 'subject')", name="ck_revocations_kind"),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_revocations")),
        schema=SCHEMA,
    )
    op.create_index(
        op.f("ix_revocations_not_before"),
        "revocations",
        ["not_before"],
        unique=False,
        schema=SCHEMA,
    )
    op.execute(f"GRANT SELECT, INSERT, DELETE ON {SCHEMA}.revocations TO {APP_ROLE}")
    op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {SCHEMA} TO {APP_ROLE}")
    # Cross-tenant code paths may run as a role of their own (the platform
    # role, where one exists): they revoke sessions too.
    op.execute(
        "DO $grant$ BEGIN "  # noqa: S608 - constants of this migration
        f"IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{PLATFORM_ROLE}') THEN "
        f"GRANT SELECT, INSERT, DELETE ON {SCHEMA}.revocations TO {PLATFORM_ROLE}; "
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {SCHEMA} TO {PLATFORM_ROLE}; "
        "END IF; END $grant$"
    )
    op.execute(
        f"CREATE FUNCTION {SCHEMA}.notify_revocations() RETURNS trigger "
        "LANGUAGE plpgsql SET search_path = pg_catalog AS $body$ "
        "BEGIN PERFORM pg_notify('cardinsa_revocations', ''); RETURN NULL; END $body$"
    )
    op.execute(
        f"CREATE TRIGGER notify_revocations AFTER INSERT ON {SCHEMA}.revocations "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {SCHEMA}.notify_revocations()"
    )


def downgrade() -> None:
    op.execute(f"DROP TRIGGER IF EXISTS notify_revocations ON {SCHEMA}.revocations")
    op.execute(f"DROP FUNCTION IF EXISTS {SCHEMA}.notify_revocations()")
    op.drop_index(op.f("ix_revocations_not_before"), table_name="revocations", schema=SCHEMA)
    op.drop_table("revocations", schema=SCHEMA)
