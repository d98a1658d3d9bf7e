"""Tables of the company schema.

``companies`` is keyed by the tenant's own id: its row-level security policy
reads ``id``, every other tenant table's reads ``company_id``. Departments and
units reference each other through ``(company_id, id)`` pairs, so a row can
never point into another tenant, and the tables can later be distributed by
company.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    TIMESTAMP,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    LargeBinary,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from cardinsa_foundation.audit import AuditLogMixin
from cardinsa_foundation.idempotency import IdempotencyMixin
from cardinsa_foundation.models import (
    TYPE_ANNOTATION_MAP,
    ResourceMixin,
    TenantResourceMixin,
    make_metadata,
)
from cardinsa_foundation.outbox import OutboxMixin

SCHEMA = "company"
_NO_PARENT = "'00000000-0000-0000-0000-000000000000'::uuid"


class Base(DeclarativeBase):
    metadata = make_metadata(SCHEMA)
    type_annotation_map = TYPE_ANNOTATION_MAP


class CompanyRow(ResourceMixin, Base):
    """A tenant. ``contact``, ``settings`` and ``feature_flags`` are JSON documents
    validated by the domain (cardinsa_company.domain.companies) before every write."""

    __tablename__ = "companies"

    display_name: Mapped[str] = mapped_column(Text, nullable=False)
    legal_name: Mapped[str] = mapped_column(Text, nullable=False, default="")
    registration_number: Mapped[str] = mapped_column(Text, nullable=False, default="")
    tax_id: Mapped[str] = mapped_column(Text, nullable=False, default="")
    licence_number: Mapped[str] = mapped_column(Text, nullable=False, default="")
    licence_expiry_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    country: Mapped[str] = mapped_column(Text, nullable=False)
    default_currency: Mapped[str] = mapped_column(Text, nullable=False)
    time_zone: Mapped[str] = mapped_column(Text, nullable=False)
    locale: Mapped[str] = mapped_column(Text, nullable=False)
    contact: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, default=dict, server_default=text("'{}'::jsonb")
    )
    settings: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, default=dict, server_default=text("'{}'::jsonb")
    )
    feature_flags: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, default=dict, server_default=text("'{}'::jsonb")
    )
    state: Mapped[str] = mapped_column(Text, nullable=False, default="ACTIVE")
    state_reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    state_change_time: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True), nullable=False, server_default=func.now()
    )

    __table_args__ = (
        CheckConstraint("state IN ('ACTIVE', 'SUSPENDED', 'CLOSED')", name="state"),
        # A registration number names one live company per country.
        Index(
            "uq_companies_country_registration_number",
            "country",
            "registration_number",
            unique=True,
            postgresql_where=text("registration_number <> '' AND delete_time IS NULL"),
        ),
        Index(None, "create_time", "id"),
        # ListCompanies (platform admins: every company): every filter and
        # order_by field (migration company_0006).
        Index(None, "state", "create_time", "id"),
        Index(None, "display_name", "id"),
        Index(None, "country", "id"),
        Index(None, "update_time", "id"),
        Index(None, "legal_name"),
        Index(None, "default_currency"),
        # The unique one above is partial: no use to a prepared (generic) plan.
        Index(None, "registration_number"),
    )


class DepartmentRow(TenantResourceMixin, Base):
    __tablename__ = "departments"

    parent_department_id: Mapped[uuid.UUID | None] = mapped_column(
        PG_UUID(as_uuid=True), nullable=True
    )
    display_name: Mapped[str] = mapped_column(Text, nullable=False)
    code: Mapped[str] = mapped_column(Text, nullable=False, default="")
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")

    __table_args__ = (
        UniqueConstraint("company_id", "id"),
        ForeignKeyConstraint(["company_id"], ["companies.id"]),
        ForeignKeyConstraint(
            ["company_id", "parent_department_id"],
            ["departments.company_id", "departments.id"],
        ),
        # Names are unique, ignoring case, among the live children of one parent.
        Index(
            "uq_departments_company_id_parent_display_name",
            "company_id",
            text(f"coalesce(parent_department_id, {_NO_PARENT})"),
            text("lower(display_name)"),
            unique=True,
            postgresql_where=text("delete_time IS NULL"),
        ),
        Index(None, "company_id", "parent_department_id"),
        # ListDepartments: every order_by field, which serve the filters too
        # (migration company_0006).
        Index(None, "company_id", "display_name", "id"),
        Index(None, "company_id", "code", "id"),
        Index(None, "company_id", "create_time", "id"),
        Index(None, "company_id", "update_time", "id"),
    )


class UnitRow(TenantResourceMixin, Base):
    __tablename__ = "units"

    department_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    display_name: Mapped[str] = mapped_column(Text, nullable=False)
    code: Mapped[str] = mapped_column(Text, nullable=False, default="")
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")

    __table_args__ = (
        UniqueConstraint("company_id", "id"),
        ForeignKeyConstraint(
            ["company_id", "department_id"], ["departments.company_id", "departments.id"]
        ),
        Index(
            "uq_units_company_id_department_id_display_name",
            "company_id",
            "department_id",
            text("lower(display_name)"),
            unique=True,
            postgresql_where=text("delete_time IS NULL"),
        ),
        # ListUnits: a department's units by name (migration company_0006).
        Index(None, "company_id", "department_id", "display_name", "id"),
    )


class IdempotencyRow(IdempotencyMixin, Base):
    """The first answer to a request id, so a retry gets it again (AIP-155).

    ``company_id`` is the company the call acted in (row-level security reads
    it); platform-scoped calls (CreateCompany) use the nil UUID, which only the
    cross-tenant path sees.
    """

    __tablename__ = "idempotency_keys"


class AuditEventRow(AuditLogMixin, Base):
    __tablename__ = "audit_events"
    #: Platform admins list every company's events (index: migration company_0006).
    audit_across_companies = True


__all__ = [
    "SCHEMA",
    "AuditEventRow",
    "Base",
    "CompanyRow",
    "DepartmentRow",
    "IdempotencyRow",
    "UnitRow",
]


class CompanyOutboxRow(OutboxMixin, Base):
    """Company's events, written with the changes (cardinsa_foundation.outbox)."""

    __tablename__ = "outbox_events"


class WebhookSubscriptionRow(TenantResourceMixin, Base):
    """A company's subscription to events (company_0005). The secret is stored
    encrypted (cardinsa_company.domain.webhooks.SecretCipher), never in clear."""

    __tablename__ = "webhook_subscriptions"

    url: Mapped[str] = mapped_column(Text, nullable=False)
    event_types: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    state: Mapped[str] = mapped_column(Text, nullable=False, default="ACTIVE")
    secret_ciphertext: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    secret_hint: Mapped[str] = mapped_column(Text, nullable=False)
    previous_secret_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    previous_secret_expire_time: Mapped[datetime | None] = mapped_column(
        TIMESTAMP(timezone=True), nullable=True
    )


class WebhookEventRow(Base):
    """An event some subscription wanted, once, with the JSON body sent for it."""

    __tablename__ = "webhook_events"

    id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), primary_key=True)
    company_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    source: Mapped[str] = mapped_column(Text, nullable=False)
    type: Mapped[str] = mapped_column(Text, nullable=False)
    subject: Mapped[str] = mapped_column(Text, nullable=False)
    ordering_key: Mapped[str] = mapped_column(Text, nullable=False)
    time: Mapped[datetime] = mapped_column(TIMESTAMP(timezone=True), nullable=False)
    body: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    create_time: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True), nullable=False, server_default=func.now()
    )


class WebhookDeliveryRow(Base):
    """One event for one subscription; the dispatcher's work queue."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), primary_key=True)
    company_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    subscription_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    event_id: Mapped[uuid.UUID] = mapped_column(
        PG_UUID(as_uuid=True), ForeignKey("webhook_events.id"), nullable=False
    )
    event_type: Mapped[str] = mapped_column(Text, nullable=False)
    subject: Mapped[str] = mapped_column(Text, nullable=False)
    ordering_key: Mapped[str] = mapped_column(Text, nullable=False)
    event_time: Mapped[datetime] = mapped_column(TIMESTAMP(timezone=True), nullable=False)
    sequence: Mapped[int] = mapped_column(BigInteger, Identity(always=True), nullable=False)
    state: Mapped[str] = mapped_column(Text, nullable=False, default="PENDING")
    attempt_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    total_attempt_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_time: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True), nullable=False, server_default=func.now()
    )
    lease_owner: Mapped[str | None] = mapped_column(Text, nullable=True)
    lease_expire_time: Mapped[datetime | None] = mapped_column(
        TIMESTAMP(timezone=True), nullable=True
    )
    last_status_code: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_error: Mapped[str] = mapped_column(Text, nullable=False, default="")
    create_time: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True), nullable=False, server_default=func.now()
    )
    update_time: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True), nullable=False, server_default=func.now()
    )
    deliver_time: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True), nullable=True)
    dead_letter_time: Mapped[datetime | None] = mapped_column(
        TIMESTAMP(timezone=True), nullable=True
    )


class WebhookDeliveryAttemptRow(Base):
    """One HTTP attempt of a delivery (append-only)."""

    __tablename__ = "webhook_delivery_attempts"

    id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), primary_key=True)
    company_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    delivery_id: Mapped[uuid.UUID] = mapped_column(
        PG_UUID(as_uuid=True), ForeignKey("webhook_deliveries.id"), nullable=False
    )
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    start_time: Mapped[datetime] = mapped_column(TIMESTAMP(timezone=True), nullable=False)
    duration_ms: Mapped[int] = mapped_column(Integer, nullable=False)
    status_code: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    succeeded: Mapped[bool] = mapped_column(Boolean, nullable=False)
    error: Mapped[str] = mapped_column(Text, nullable=False, default="")
    response_excerpt: Mapped[str] = mapped_column(Text, nullable=False, default="")


class EventCursorRow(Base):
    """How far the dispatcher has durably taken a source service's events, per sink."""

    __tablename__ = "event_cursors"

    sink: Mapped[str] = mapped_column(Text, primary_key=True)
    source: Mapped[str] = mapped_column(Text, primary_key=True)
    cursor: Mapped[str] = mapped_column(Text, nullable=False)
    update_time: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True), nullable=False, server_default=func.now()
    )
