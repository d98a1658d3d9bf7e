"""A fingerprint of the request beside each request id.

A replay of a request id whose arguments differ from the first call's is
refused (REQUEST_ID_REUSED) instead of answered with the first call's
resource. Keys written before this column existed keep NULL and are not
compared. The table-level grants of the application roles cover the new column.

Revision ID: identity_0007
Revises: identity_0006
Create Date: 2026-12-07 01:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "identity_0007"
down_revision: str | None = "identity_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("idempotency_keys", sa.Column("request_hash", sa.Text()), schema="identity")


def downgrade() -> None:
    op.drop_column("idempotency_keys", "request_hash", schema="identity")
