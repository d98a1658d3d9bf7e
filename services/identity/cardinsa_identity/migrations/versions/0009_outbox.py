"""Identity's transactional outbox: ``outbox_events``.

One row per change of a user that matters outside identity, written in the
change's own transaction (``cardinsa_foundation.outbox``); read by
``EventService.WatchEvents``. A tenant table (a platform event, without a
company, is readable by the platform role only) and append-only.

Revision ID: identity_0009
Revises: identity_0008
Create Date: 2026-12-07 10:00:00
"""

from collections.abc import Sequence

from alembic import op

from cardinsa_foundation.migrations import TenantTable, secure_schema
from cardinsa_foundation.outbox import outbox_table_ddl

revision: str = "identity_0009"
down_revision: str | None = "identity_0008"
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
    TenantTable("roles", also_visible="company_id IS NULL"),
    TenantTable("audit_events", also_writable="company_id IS NULL"),
    TenantTable("outbox_events", also_writable="company_id IS NULL"),
)
APPEND_ONLY = ("audit_events", "outbox_events")
NO_UPDATE = ("revocations",)


def upgrade() -> None:
    for statement in outbox_table_ddl(SCHEMA):
        op.execute(statement)
    secure_schema(SCHEMA, tenant_tables=TENANT_TABLES, append_only=APPEND_ONLY, no_update=NO_UPDATE)


def downgrade() -> None:
    op.drop_table("outbox_events", schema=SCHEMA)
