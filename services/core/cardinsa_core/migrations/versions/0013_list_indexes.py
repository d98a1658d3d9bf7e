"""Indexes for the filters and orderings of core's Lists.

Every filter field and ``order_by`` field of ListPolicies, ListClaims,
ListPolicyholders, ListProducts and ListAuditEvents, and the default order of
ListUnderwritingIssues, is served by an index that leads with ``company_id``
(tests/integration/core/test_core_list_plans.py EXPLAINs each of them over a
filled table and fails on a sequential scan):

- an enum filter (``state``, ``claim_type``, ``kind`` ...): ``(company_id,
  field, create_time, id)``: the equality and the default order (newest first)
  in one index range;
- an ``order_by`` field: ``(company_id, field, id)``, the keyset order of a
  page token (the id breaks ties), which also serves its filter;
- any other filter field: ``(company_id, field)``.

``ix_policyholders_company_id_email`` is replaced by ``(company_id, email, id)``,
which serves both its lookups and ``order_by = "email"``.

Revision ID: core_0013
Revises: core_0012
Create Date: 2026-12-07 15:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "core_0013"
down_revision: str | None = "core_0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "core"

#: (table, columns) of every index this revision adds.
INDEXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("policies", ("company_id", "state", "create_time", "id")),
    ("policies", ("company_id", "payment_frequency", "create_time", "id")),
    ("policies", ("company_id", "product_id")),
    ("policies", ("company_id", "effective_date", "id")),
    ("policies", ("company_id", "expiry_date", "id")),
    ("claims", ("company_id", "state", "create_time", "id")),
    ("claims", ("company_id", "claim_type", "create_time", "id")),
    ("claims", ("company_id", "coverage_code")),
    ("claims", ("company_id", "incident_date", "id")),
    ("claims", ("company_id", "report_date")),
    ("policyholders", ("company_id", "kind", "create_time", "id")),
    ("policyholders", ("company_id", "family_name", "id")),
    ("policyholders", ("company_id", "given_name")),
    ("policyholders", ("company_id", "legal_name")),
    ("policyholders", ("company_id", "phone")),
    ("policyholders", ("company_id", "date_of_birth")),
    ("policyholders", ("company_id", "email", "id")),
    ("products", ("company_id", "state", "create_time", "id")),
    ("products", ("company_id", "line_of_business", "create_time", "id")),
    ("products", ("company_id", "name", "id")),
    ("products", ("company_id", "currency")),
    ("underwriting_issues", ("company_id", "policy_id", "create_time")),
    ("audit_events", ("company_id", "action", "create_time")),
    ("audit_events", ("company_id", "actor_id", "create_time")),
)
#: Made redundant by ("policyholders", ("company_id", "email", "id")).
REPLACED: tuple[str, tuple[str, ...]] = ("policyholders", ("company_id", "email"))


def _name(table: str, columns: Sequence[str]) -> str:
    return f"ix_{table}_{'_'.join(columns)}"


def upgrade() -> None:
    # IF NOT EXISTS: on a large installation an operator may have built them
    # beforehand with CREATE INDEX CONCURRENTLY, under these names (runbook section 20).
    for table, columns in INDEXES:
        op.create_index(
            _name(table, columns), table, list(columns), schema=SCHEMA, if_not_exists=True
        )
    op.drop_index(_name(*REPLACED), REPLACED[0], schema=SCHEMA)


def downgrade() -> None:
    op.create_index(_name(*REPLACED), REPLACED[0], list(REPLACED[1]), schema=SCHEMA)
    for table, columns in reversed(INDEXES):
        op.drop_index(_name(table, columns), table, schema=SCHEMA)
