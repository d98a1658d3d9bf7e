"""The company schema's security, by the one foundation helper.

What company_0001 and company_0002 set up by hand -- the grants of the
application and platform roles, row-level security with FORCE on every tenant
table (``companies`` keyed on its own ``id``), the append-only audit log, no
write by either role on ``company.alembic_version`` -- applied again by
``cardinsa_foundation.migrations.secure_schema``, so every service's schema is
secured by the same code and the next migration that adds a table ends with
the same call. Also takes back what neither role was meant to have (TRUNCATE,
REFERENCES, TRIGGER, sequence UPDATE, CREATE in the schema) should anyone have
granted it.

Idempotent. Downgrade changes nothing: the state is the one company_0003 had,
written by one helper instead of two migrations.

Revision ID: company_0004
Revises: company_0003
Create Date: 2026-12-07 01:00:00
"""

from collections.abc import Sequence

from cardinsa_foundation.migrations import TenantTable, secure_schema

revision: str = "company_0004"
down_revision: str | None = "company_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "company"
#: Every tenant table; all of company's tables are.
TENANT_TABLES = (
    TenantTable("companies", column="id"),
    "departments",
    "units",
    "idempotency_keys",
    "audit_events",
)

APPEND_ONLY = ("audit_events",)


def upgrade() -> None:
    secure_schema(SCHEMA, tenant_tables=TENANT_TABLES, append_only=APPEND_ONLY)


def downgrade() -> None:
    pass
