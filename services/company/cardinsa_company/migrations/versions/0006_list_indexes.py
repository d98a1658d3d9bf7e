"""Indexes for the filters and orderings of the company service's Lists.

Every filter field of ListAuditEvents and ListDepartments, every ``order_by``
field of ListDepartments and ListUnits (within a department), and every filter
and ``order_by`` field of a platform admin's ListCompanies (over every company:
no ``company_id`` to lead with) are served by an index
(tests/integration/company/test_company_list_plans.py EXPLAINs each of them
over filled tables and fails on a sequential scan). Also the index on
``webhook_subscriptions.company_id`` its model declares, missing until now.

Revision ID: company_0006
Revises: company_0005
Create Date: 2026-12-07 16:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "company_0006"
down_revision: str | None = "company_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "company"

#: (table, columns) of every index this revision adds.
INDEXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("companies", ("state", "create_time", "id")),
    ("companies", ("display_name", "id")),
    ("companies", ("country", "id")),
    ("companies", ("update_time", "id")),
    ("companies", ("legal_name",)),
    ("companies", ("default_currency",)),
    # uq_companies_country_registration_number leads with country and is partial
    # (registration_number <> ''): a generic plan of a prepared statement cannot use it.
    ("companies", ("registration_number",)),
    ("departments", ("company_id", "display_name", "id")),
    ("departments", ("company_id", "code", "id")),
    ("departments", ("company_id", "create_time", "id")),
    ("departments", ("company_id", "update_time", "id")),
    ("units", ("company_id", "department_id", "display_name", "id")),
    # Declared by the model (TenantResourceMixin) but never made by company_0005.
    ("webhook_subscriptions", ("company_id",)),
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
