"""The outbox's ``xid``: the writing transaction, the readers' horizon.

``core.outbox_events`` gains ``xid`` (``pg_current_xact_id()`` by default)
and indexes for reading by transaction ranges (all tenants, or one company):
see ``cardinsa_foundation.outbox.outbox_xid_ddl``. Rows written before get the
migration's own transaction id, which is final once it commits.

Revision ID: core_0010
Revises: core_0009
Create Date: 2026-12-07 10:00:00
"""

from collections.abc import Sequence

from alembic import op

from cardinsa_foundation.outbox import outbox_xid_ddl

revision: str = "core_0010"
down_revision: str | None = "core_0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in outbox_xid_ddl("core"):
        op.execute(statement)


def downgrade() -> None:
    op.execute("ALTER TABLE core.outbox_events DROP COLUMN xid")
