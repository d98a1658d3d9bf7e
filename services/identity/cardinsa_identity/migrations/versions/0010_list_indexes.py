"""Indexes for the filters and orderings of identity's Lists.

Every filter field of ListAuditEvents and ListUsers, every ``order_by`` field
of ListUsers and the default order of ListRoleBindings, ListServiceAccounts and
ListApiKeys are served by an index that leads with ``company_id``
(tests/integration/identity/test_identity_list_plans.py EXPLAINs each of them
over filled tables and fails on a sequential scan).

Revision ID: identity_0010
Revises: identity_0009
Create Date: 2026-12-07 15:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "identity_0010"
down_revision: str | None = "identity_0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "identity"

#: (table, columns) of every index this revision adds.
INDEXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("users", ("company_id", "state", "create_time", "id")),
    # The unique index on email alone walks every company's users in email order.
    ("users", ("company_id", "email", "id")),
    ("users", ("company_id", "display_name", "id")),
    ("users", ("company_id", "family_name", "id")),
    ("users", ("company_id", "given_name")),
    ("users", ("company_id", "last_login_time")),
    ("roles", ("company_id", "name", "id")),
    ("role_bindings", ("company_id", "create_time", "id")),
    ("service_accounts", ("company_id", "create_time", "id")),
    ("api_keys", ("company_id", "service_account_id", "create_time")),
    ("audit_events", ("company_id", "action", "create_time")),
    ("audit_events", ("company_id", "actor_id", "create_time")),
    # A platform admin's ListAuditEvents: every company's events, newest first.
    ("audit_events", ("create_time", "id")),
    # ... filtered by action or actor across companies.
    ("audit_events", ("action", "create_time")),
    ("audit_events", ("actor_id", "create_time")),
)


def _name(table: str, columns: Sequence[str]) -> str:
    return f"ix_{table}_{'_'.join(columns)}"


def upgrade() -> None:
    # IF NOT EXISTS: on a large installation an operator may have built them
    # beforehand with CREATE INDEX CONCURRENTLY, under these names (runbook section 20).
    for table, columns in INDEXES:
        op.create_index(
            _name(table, columns), table, list(columns), schema=SCHEMA, if_not_exists=True
        )


def downgrade() -> None:
    for table, columns in reversed(INDEXES):
        op.drop_index(_name(table, columns), table, schema=SCHEMA)
