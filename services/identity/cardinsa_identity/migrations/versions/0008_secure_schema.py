"""The identity schema's security, by the one foundation helper.

What identity_0001, identity_0004 and identity_0006 set up by hand -- the
grants of the application and platform roles, row-level security with FORCE
on every tenant table, the append-only audit log, no write by either role on
``identity.alembic_version`` -- applied again by
``cardinsa_foundation.migrations.secure_schema``, so every service's schema is
secured by the same code and the next migration that adds a table ends with
the same call. Also takes back what neither role was meant to have (TRUNCATE,
REFERENCES, TRIGGER, sequence UPDATE, CREATE in the schema) should anyone have
granted it. ``revocations`` stays without UPDATE (rows are added and pruned,
never changed).

Idempotent. Downgrade changes nothing: the state is the one identity_0007 had,
written by one helper instead of three migrations.

Revision ID: identity_0008
Revises: identity_0007
Create Date: 2026-12-07 01:00:00
"""

from collections.abc import Sequence

from cardinsa_foundation.migrations import TenantTable, secure_schema

revision: str = "identity_0008"
down_revision: str | None = "identity_0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "identity"
#: Every tenant table (login_throttles, signing_keys and revocations are platform-wide).
TENANT_TABLES = (
    "users",
    "sessions",
    "refresh_tokens",
    "role_bindings",
    "service_accounts",
    "api_keys",
    "password_resets",
    "idempotency_keys",
    # Built-in roles (no company) are visible to every tenant but writable by none.
    TenantTable("roles", also_visible="company_id IS NULL"),
    # A tenant reads its own events; platform events (no company) only the
    # platform role reads. Any role may append a platform event.
    TenantTable("audit_events", also_writable="company_id IS NULL"),
)

APPEND_ONLY = ("audit_events",)
#: Rows added and pruned, never changed.
NO_UPDATE = ("revocations",)


def upgrade() -> None:
    secure_schema(SCHEMA, tenant_tables=TENANT_TABLES, append_only=APPEND_ONLY, no_update=NO_UPDATE)


def downgrade() -> None:
    pass
