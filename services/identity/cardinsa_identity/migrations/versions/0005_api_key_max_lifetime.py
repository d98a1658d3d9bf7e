"""API keys get a maximum lifetime: keys issued without an expiry get one.

New keys always carry an expiry (at most ``CARDINSA_API_KEY_MAX_LIFETIME_S``, one
year by default; see AccessUseCases.create_api_key). Keys issued before had none
and would work forever; they now expire one year after their creation -- but not
sooner than 30 days after this migration, so an upgrade does not cut off an
integration whose key is already older than a year without warning. Operators
list such keys (``ListApiKeys``) and rotate them within that grace period
(docs/runbook.md, "API keys").

The downgrade keeps the expiries: it cannot tell a set one from a given one.

Revision ID: identity_0005
Revises: identity_0004
"""

from collections.abc import Sequence

from alembic import op

revision: str = "identity_0005"
down_revision: str | None = "identity_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # 365 days: the setting's default (a migration cannot read a process's settings);
    # 30 days: the grace period for keys already older than that.
    # api_keys is under row-level security (FORCE binds the owner too): this data
    # migration must see every tenant's keys, so it lifts FORCE for its own
    # transaction and puts it back before the transaction ends.
    op.execute("ALTER TABLE identity.api_keys NO FORCE ROW LEVEL SECURITY")
    op.execute(
        "UPDATE identity.api_keys "
        "SET expire_time = GREATEST(create_time + interval '365 days', now() + interval '30 days') "
        "WHERE expire_time IS NULL"
    )
    op.execute("ALTER TABLE identity.api_keys FORCE ROW LEVEL SECURITY")


def downgrade() -> None:
    pass
