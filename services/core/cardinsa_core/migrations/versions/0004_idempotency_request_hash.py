"""A fingerprint of the request beside each request id.

A replay of a request id whose arguments differ from the first call's is
refused (REQUEST_ID_REUSED) instead of answered with the first call's
resource. Keys written before this column existed keep NULL and are not
compared. The table-level grants of the application roles cover the new column.

Revision ID: core_0004
Revises: core_0003
Create Date: 2026-12-07 01:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "core_0004"
down_revision: str | None = "core_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("idempotency_keys", sa.Column("request_hash", sa.Text()), schema="core")


def downgrade() -> None:
    op.drop_column("idempotency_keys", "request_hash", schema="core")
