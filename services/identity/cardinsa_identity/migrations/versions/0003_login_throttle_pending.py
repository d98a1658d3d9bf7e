"""Login throttling: attempts being checked are counted apart from failures.

``login_throttles.pending`` counts the attempts reserved on an account key and
not yet decided, so a success consumes nothing and concurrent correct logins
wait a moment instead of being refused; failures alone lock.

Revision ID: identity_0003
Revises: identity_0001
Create Date: 2026-12-06 22:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "identity_0003"
down_revision: str | None = "identity_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "login_throttles",
        sa.Column("pending", sa.Integer(), server_default=sa.text("0"), nullable=False),
        schema="identity",
    )


def downgrade() -> None:
    op.drop_column("login_throttles", "pending", schema="identity")
