"""The count of a policy's open underwriting issues.

``policies.open_underwriting_issues``: how many issues of the last quote are
still OPEN (``Policy.open_underwriting_issues``), kept with every quote and
every decision, so reading a policy needs no second query. Existing policies
are counted from their issues.

Revision ID: core_0008
Revises: core_0007
Create Date: 2026-12-07 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "core_0008"
down_revision: str | None = "core_0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "core"

_BACKFILL = """
UPDATE core.policies p SET open_underwriting_issues = counted.open
FROM (
    SELECT company_id, policy_id, count(*) AS open
    FROM core.underwriting_issues
    WHERE state = 'OPEN'
    GROUP BY company_id, policy_id
) counted
WHERE p.company_id = counted.company_id AND p.id = counted.policy_id
"""


def upgrade() -> None:
    op.add_column(
        "policies",
        sa.Column(
            "open_underwriting_issues",
            sa.Integer(),
            server_default=sa.text("0"),
            nullable=False,
        ),
        schema=SCHEMA,
    )
    op.execute(_BACKFILL)


def downgrade() -> None:
    op.drop_column("policies", "open_underwriting_issues", schema=SCHEMA)
