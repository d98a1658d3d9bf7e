"""Company's outbox, and the webhook tables of the event dispatcher.

- ``outbox_events``: company's own events (``cardinsa_foundation.outbox``).
- ``webhook_subscriptions``: a company's subscriptions (URL, event types, the
  signing secret encrypted, the previous secret while a rotation overlaps).
- ``webhook_events``: each event the dispatcher took from a service's watch
  that some subscription wanted, once, with the exact JSON body it sends.
- ``webhook_deliveries``: one per (subscription, event); ``sequence`` is the
  order the dispatcher took them in (per ordering key, the order the events
  were written), ``lease_owner`` / ``lease_expire_time`` mark one in flight.
- ``webhook_delivery_attempts``: every HTTP attempt, append-only.
- ``event_cursors``: per (sink, source service) the watch cursor the
  dispatcher has durably taken up to; platform-wide (no company).

Revision ID: company_0005
Revises: company_0004
Create Date: 2026-12-07 10:00:00
"""

from collections.abc import Sequence

from alembic import op

from cardinsa_foundation.migrations import TenantTable, secure_schema
from cardinsa_foundation.outbox import outbox_table_ddl

revision: str = "company_0005"
down_revision: str | None = "company_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "company"
#: Every tenant table at this revision (event_cursors is platform-wide).
TENANT_TABLES = (
    TenantTable("companies", column="id"),
    "departments",
    "units",
    "idempotency_keys",
    "audit_events",
    "outbox_events",
    "webhook_subscriptions",
    "webhook_events",
    "webhook_deliveries",
    "webhook_delivery_attempts",
)
APPEND_ONLY = ("audit_events", "outbox_events", "webhook_delivery_attempts")

TABLES = [
    """CREATE TABLE company.webhook_subscriptions (
        id uuid NOT NULL,
        company_id uuid NOT NULL,
        url text NOT NULL,
        event_types text[] NOT NULL,
        description text NOT NULL DEFAULT '',
        state text NOT NULL DEFAULT 'ACTIVE',
        secret_ciphertext bytea NOT NULL,
        secret_hint text NOT NULL,
        previous_secret_ciphertext bytea,
        previous_secret_expire_time timestamptz,
        create_time timestamptz NOT NULL DEFAULT now(),
        update_time timestamptz NOT NULL DEFAULT now(),
        delete_time timestamptz,
        created_by uuid,
        updated_by uuid,
        version integer NOT NULL,
        CONSTRAINT pk_webhook_subscriptions PRIMARY KEY (id),
        CONSTRAINT uq_webhook_subscriptions_company_id_id UNIQUE (company_id, id),
        CONSTRAINT ck_webhook_subscriptions_state CHECK (state IN ('ACTIVE', 'PAUSED')),
        CONSTRAINT ck_webhook_subscriptions_event_types
            CHECK (cardinality(event_types) BETWEEN 1 AND 100)
    )""",
    "CREATE INDEX ix_webhook_subscriptions_company_id_create_time "
    "ON company.webhook_subscriptions (company_id, create_time DESC, id DESC)",
    """CREATE TABLE company.webhook_events (
        id uuid NOT NULL,
        company_id uuid NOT NULL,
        source text NOT NULL,
        type text NOT NULL,
        subject text NOT NULL,
        ordering_key text NOT NULL,
        time timestamptz NOT NULL,
        body bytea NOT NULL,
        create_time timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT pk_webhook_events PRIMARY KEY (id)
    )""",
    "CREATE INDEX ix_webhook_events_company_id ON company.webhook_events (company_id)",
    """CREATE TABLE company.webhook_deliveries (
        id uuid NOT NULL,
        company_id uuid NOT NULL,
        subscription_id uuid NOT NULL,
        event_id uuid NOT NULL REFERENCES company.webhook_events (id),
        event_type text NOT NULL,
        subject text NOT NULL,
        ordering_key text NOT NULL,
        event_time timestamptz NOT NULL,
        sequence bigint GENERATED ALWAYS AS IDENTITY,
        state text NOT NULL DEFAULT 'PENDING',
        attempt_count integer NOT NULL DEFAULT 0,
        total_attempt_count integer NOT NULL DEFAULT 0,
        next_attempt_time timestamptz NOT NULL DEFAULT now(),
        lease_owner text,
        lease_expire_time timestamptz,
        last_status_code integer NOT NULL DEFAULT 0,
        last_error text NOT NULL DEFAULT '',
        create_time timestamptz NOT NULL DEFAULT now(),
        update_time timestamptz NOT NULL DEFAULT now(),
        deliver_time timestamptz,
        dead_letter_time timestamptz,
        CONSTRAINT pk_webhook_deliveries PRIMARY KEY (id),
        CONSTRAINT uq_webhook_deliveries_subscription_id_event_id
            UNIQUE (subscription_id, event_id),
        CONSTRAINT fk_webhook_deliveries_subscription FOREIGN KEY (company_id, subscription_id)
            REFERENCES company.webhook_subscriptions (company_id, id),
        CONSTRAINT ck_webhook_deliveries_state
            CHECK (state IN ('PENDING', 'DELIVERED', 'DEAD_LETTERED'))
    )""",
    # The workers' queue: due pending deliveries, and the per-key order check.
    "CREATE INDEX ix_webhook_deliveries_due ON company.webhook_deliveries "
    "(next_attempt_time, sequence) WHERE state = 'PENDING'",
    "CREATE INDEX ix_webhook_deliveries_pending_key ON company.webhook_deliveries "
    "(subscription_id, ordering_key, sequence) WHERE state = 'PENDING'",
    "CREATE INDEX ix_webhook_deliveries_subscription_create_time ON company.webhook_deliveries "
    "(subscription_id, create_time DESC, id DESC)",
    """CREATE TABLE company.webhook_delivery_attempts (
        id uuid NOT NULL,
        company_id uuid NOT NULL,
        delivery_id uuid NOT NULL REFERENCES company.webhook_deliveries (id),
        number integer NOT NULL,
        start_time timestamptz NOT NULL,
        duration_ms integer NOT NULL,
        status_code integer NOT NULL DEFAULT 0,
        succeeded boolean NOT NULL,
        error text NOT NULL DEFAULT '',
        response_excerpt text NOT NULL DEFAULT '',
        CONSTRAINT pk_webhook_delivery_attempts PRIMARY KEY (id),
        CONSTRAINT uq_webhook_delivery_attempts_delivery_id_number UNIQUE (delivery_id, number)
    )""",
    """CREATE TABLE company.event_cursors (
        sink text NOT NULL,
        source text NOT NULL,
        cursor text NOT NULL,
        update_time timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT pk_event_cursors PRIMARY KEY (sink, source)
    )""",
]


def upgrade() -> None:
    for statement in [*outbox_table_ddl(SCHEMA), *TABLES]:
        op.execute(statement)
    secure_schema(SCHEMA, tenant_tables=TENANT_TABLES, append_only=APPEND_ONLY)


def downgrade() -> None:
    for table in (
        "event_cursors",
        "webhook_delivery_attempts",
        "webhook_deliveries",
        "webhook_events",
        "webhook_subscriptions",
        "outbox_events",
    ):
        op.drop_table(table, schema=SCHEMA)
