"""Tables of the core schema.

Every table is tenant-owned: it carries ``company_id``, sits under row-level
security, and tables reference each other through ``(company_id, id)`` pairs
so a row can never point into another tenant (and the schema can later be
distributed by company). Money is NUMERIC(19, 4) next to an ISO 4217 currency
column, never a float. Logs (policy versions, policy status changes, claim log
entries) are append-only like the audit table.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    TIMESTAMP,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, validates

from cardinsa_core.repository.personal_data import EncryptedText, national_id_hash
from cardinsa_foundation.audit import AuditLogMixin
from cardinsa_foundation.idempotency import IdempotencyMixin
from cardinsa_foundation.models import (
    TYPE_ANNOTATION_MAP,
    TenantResourceMixin,
    TimestampMixin,
    VersionedMixin,
    make_metadata,
)
from cardinsa_foundation.outbox import OutboxMixin

SCHEMA = "core"
MONEY = Numeric(19, 4)


class Base(DeclarativeBase):
    metadata = make_metadata(SCHEMA)
    type_annotation_map = TYPE_ANNOTATION_MAP


def _uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(PG_UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)


def _company() -> Mapped[uuid.UUID]:
    return mapped_column(PG_UUID(as_uuid=True), nullable=False)


def _created() -> Mapped[datetime]:
    return mapped_column(TIMESTAMP(timezone=True), nullable=False, server_default=func.now())


def _encrypted(table: str, column: str) -> Mapped[str]:
    """A personal-data column: ``<column>_encrypted`` (bytea) holds the envelope."""
    return mapped_column(
        f"{column}_encrypted",
        EncryptedText(f"{SCHEMA}.{table}.{column}"),
        nullable=True,
        default="",
    )


# ------------------------------------------------------------------ parties


class PolicyholderRow(TenantResourceMixin, Base):
    __tablename__ = "policyholders"

    kind: Mapped[str] = mapped_column(Text, nullable=False)
    given_name: Mapped[str] = mapped_column(Text, nullable=False, default="")
    family_name: Mapped[str] = mapped_column(Text, nullable=False, default="")
    date_of_birth: Mapped[date | None] = mapped_column(Date)
    gender: Mapped[str] = mapped_column(Text, nullable=False, default="GENDER_UNSPECIFIED")
    legal_name: Mapped[str] = mapped_column(Text, nullable=False, default="")
    registration_number: Mapped[str] = mapped_column(Text, nullable=False, default="")
    # Personal data stored only encrypted (repository.personal_data): the
    # attribute is the plain value, the column an envelope blob (NULL: empty).
    national_id: Mapped[str] = _encrypted("policyholders", "national_id")
    national_id_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    email: Mapped[str] = mapped_column(Text, nullable=False, default="")
    phone: Mapped[str] = mapped_column(Text, nullable=False, default="")
    address_line1: Mapped[str] = _encrypted("policyholders", "address_line1")
    address_line2: Mapped[str] = _encrypted("policyholders", "address_line2")
    address_city: Mapped[str] = _encrypted("policyholders", "address_city")
    address_region: Mapped[str] = _encrypted("policyholders", "address_region")
    address_postal_code: Mapped[str] = _encrypted("policyholders", "address_postal_code")
    address_country_code: Mapped[str] = mapped_column(Text, nullable=False, default="")
    display_name: Mapped[str] = mapped_column(Text, nullable=False, default="")

    __table_args__ = (
        UniqueConstraint("company_id", "id"),
        Index(None, "company_id", "create_time", "id"),
        Index(None, "company_id", "display_name", "id"),
        Index(None, "company_id", "national_id_hash"),
        # Lists: every filter and order_by field (migration core_0013).
        Index(None, "company_id", "email", "id"),
        Index(None, "company_id", "kind", "create_time", "id"),
        Index(None, "company_id", "family_name", "id"),
        Index(None, "company_id", "given_name"),
        Index(None, "company_id", "legal_name"),
        Index(None, "company_id", "phone"),
        Index(None, "company_id", "date_of_birth"),
    )

    @validates("national_id")
    def _hash_national_id(self, _key: str, value: str) -> str:
        self.national_id_hash = national_id_hash(value or "")
        return value


class DependentRow(Base):
    """A dependent of one policyholder; removed ones stay (policies may name them)."""

    __tablename__ = "dependents"

    id: Mapped[uuid.UUID] = _uuid_pk()
    company_id: Mapped[uuid.UUID] = _company()
    policyholder_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    relation: Mapped[str] = mapped_column(Text, nullable=False)
    given_name: Mapped[str] = mapped_column(Text, nullable=False)
    family_name: Mapped[str] = mapped_column(Text, nullable=False)
    date_of_birth: Mapped[date | None] = mapped_column(Date)
    gender: Mapped[str] = mapped_column(Text, nullable=False, default="GENDER_UNSPECIFIED")
    national_id: Mapped[str] = _encrypted("dependents", "national_id")
    national_id_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    create_time: Mapped[datetime] = _created()
    remove_time: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))

    __table_args__ = (
        UniqueConstraint("company_id", "id"),
        ForeignKeyConstraint(
            ["company_id", "policyholder_id"], ["policyholders.company_id", "policyholders.id"]
        ),
        Index(None, "company_id", "policyholder_id"),
        Index(None, "company_id", "national_id_hash"),
    )
    __mapper_args__ = {"eager_defaults": True}

    @validates("national_id")
    def _hash_national_id(self, _key: str, value: str) -> str:
        self.national_id_hash = national_id_hash(value or "")
        return value


# ------------------------------------------------------------------ products


class ProductRow(TenantResourceMixin, Base):
    """A product and a copy of its current version's headline terms (for lists)."""

    __tablename__ = "products"

    code: Mapped[str] = mapped_column(Text, nullable=False)
    line_of_business: Mapped[str] = mapped_column(Text, nullable=False)
    state: Mapped[str] = mapped_column(Text, nullable=False)
    current_version: Mapped[int] = mapped_column(Integer, nullable=False)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    currency: Mapped[str] = mapped_column(Text, nullable=False)

    __table_args__ = (
        UniqueConstraint("company_id", "id"),
        Index(
            "uq_products_company_id_code",
            "company_id",
            "code",
            unique=True,
            postgresql_where=text("delete_time IS NULL"),
        ),
        Index(None, "company_id", "create_time", "id"),
        # ListProducts: every filter and order_by field (migration core_0013).
        Index(None, "company_id", "state", "create_time", "id"),
        Index(None, "company_id", "line_of_business", "create_time", "id"),
        Index(None, "company_id", "name", "id"),
        Index(None, "company_id", "currency"),
    )


class ProductVersionRow(Base):
    """The terms of one version of a product (changed in place only while DRAFT)."""

    __tablename__ = "product_versions"

    id: Mapped[uuid.UUID] = _uuid_pk()
    company_id: Mapped[uuid.UUID] = _company()
    product_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    currency: Mapped[str] = mapped_column(Text, nullable=False)
    base_premium: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    term_months: Mapped[int] = mapped_column(Integer, nullable=False)
    #: Rating and underwriting rules (domain.rating.RatingRules as JSON; {}: none).
    rating_rules: Mapped[dict[str, object]] = mapped_column(
        JSONB, nullable=False, default=dict, server_default=text("'{}'::jsonb")
    )
    #: Days an instalment may stay unpaid after its due date before the policy lapses.
    grace_period_days: Mapped[int] = mapped_column(
        Integer, nullable=False, default=30, server_default=text("30")
    )
    create_time: Mapped[datetime] = _created()
    created_by: Mapped[uuid.UUID | None] = mapped_column(PG_UUID(as_uuid=True))

    __table_args__ = (
        UniqueConstraint("company_id", "id"),
        UniqueConstraint("company_id", "product_id", "version"),
        CheckConstraint("grace_period_days BETWEEN 0 AND 365", name="grace_period_days_range"),
        ForeignKeyConstraint(["company_id", "product_id"], ["products.company_id", "products.id"]),
    )
    __mapper_args__ = {"eager_defaults": True}


class CoverageRow(Base):
    __tablename__ = "coverages"

    id: Mapped[uuid.UUID] = _uuid_pk()
    company_id: Mapped[uuid.UUID] = _company()
    product_version_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    code: Mapped[str] = mapped_column(Text, nullable=False)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    limit_amount: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    limit_period: Mapped[str] = mapped_column(Text, nullable=False)
    deductible: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    copay: Mapped[Decimal | None] = mapped_column(MONEY)
    coinsurance_percent: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))
    waiting_period_days: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    min_entry_age: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default=text("0")
    )
    max_entry_age: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default=text("0")
    )

    __table_args__ = (
        UniqueConstraint("company_id", "product_version_id", "code"),
        ForeignKeyConstraint(
            ["company_id", "product_version_id"],
            ["product_versions.company_id", "product_versions.id"],
            ondelete="CASCADE",
        ),
    )


# ------------------------------------------------------------------ policies


class PolicyRow(TenantResourceMixin, Base):
    __tablename__ = "policies"

    policy_number: Mapped[str | None] = mapped_column(Text)
    policyholder_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    product_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    product_version: Mapped[int] = mapped_column(Integer, nullable=False)
    state: Mapped[str] = mapped_column(Text, nullable=False)
    effective_date: Mapped[date] = mapped_column(Date, nullable=False)
    expiry_date: Mapped[date] = mapped_column(Date, nullable=False)
    currency: Mapped[str] = mapped_column(Text, nullable=False)
    premium: Mapped[Decimal | None] = mapped_column(MONEY)
    sum_insured: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    payment_frequency: Mapped[str] = mapped_column(Text, nullable=False)
    insures_holder: Mapped[bool] = mapped_column(Boolean, nullable=False)
    insured_dependent_ids: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(PG_UUID(as_uuid=True)), nullable=False, default=list
    )
    current_version: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    version_effective_date: Mapped[date | None] = mapped_column(Date)
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    cancel_effective_date: Mapped[date | None] = mapped_column(Date)
    lapse_date: Mapped[date | None] = mapped_column(Date)
    termination_note: Mapped[str] = mapped_column(Text, nullable=False, default="")
    previous_policy_id: Mapped[uuid.UUID | None] = mapped_column(PG_UUID(as_uuid=True))
    successor_policy_id: Mapped[uuid.UUID | None] = mapped_column(PG_UUID(as_uuid=True))
    bind_time: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))
    activate_time: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))
    #: How ``premium`` was worked out (domain.rating.Rating as JSON).
    premium_breakdown: Mapped[dict[str, object] | None] = mapped_column(JSONB)
    #: The sum of the premium transactions (None before bind).
    written_premium: Mapped[Decimal | None] = mapped_column(MONEY)
    do_not_renew: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=text("false")
    )
    #: Company-local date the last cancellation was processed.
    cancel_processed_date: Mapped[date | None] = mapped_column(Date)
    #: Per insured member (``holder`` or a dependent id), the first day of cover
    #: without a break through the policies this one renews (waiting periods).
    cover_since: Mapped[dict[str, str]] = mapped_column(
        JSONB, nullable=False, default=dict, server_default=text("'{}'::jsonb")
    )
    #: Underwriting issues of the last quote still OPEN (kept by
    #: application.underwriting with every quote and decision).
    open_underwriting_issues: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default=text("0")
    )
    #: Cover is paid up to this day (domain.billing.paid_to_date; None: nothing).
    paid_to_date: Mapped[date | None] = mapped_column(Date)

    __table_args__ = (
        UniqueConstraint("company_id", "id"),
        UniqueConstraint("company_id", "policy_number"),
        ForeignKeyConstraint(
            ["company_id", "policyholder_id"], ["policyholders.company_id", "policyholders.id"]
        ),
        ForeignKeyConstraint(
            ["company_id", "product_id", "product_version"],
            [
                "product_versions.company_id",
                "product_versions.product_id",
                "product_versions.version",
            ],
            # The conventional name would be longer than PostgreSQL's 63 characters.
            name="fk_policies_product_version_product_versions",
        ),
        Index(None, "company_id", "create_time", "id"),
        Index(None, "company_id", "policyholder_id"),
        # ListPolicies: every filter and order_by field (migration core_0013).
        Index(None, "company_id", "state", "create_time", "id"),
        Index(None, "company_id", "payment_frequency", "create_time", "id"),
        Index(None, "company_id", "product_id"),
        Index(None, "company_id", "effective_date", "id"),
        Index(None, "company_id", "expiry_date", "id"),
    )


class PremiumTransactionRow(Base):
    """One priced change of a policy's premium (append-only)."""

    __tablename__ = "premium_transactions"

    id: Mapped[uuid.UUID] = _uuid_pk()
    company_id: Mapped[uuid.UUID] = _company()
    policy_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    sequence: Mapped[int] = mapped_column(Integer, nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    effective_date: Mapped[date] = mapped_column(Date, nullable=False)
    end_date: Mapped[date] = mapped_column(Date, nullable=False)
    currency: Mapped[str] = mapped_column(Text, nullable=False)
    premium: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    tax: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    fee: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    amount: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    written_premium: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    policy_version: Mapped[int] = mapped_column(Integer, nullable=False)
    refund_method: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_by: Mapped[str | None] = mapped_column(Text)
    create_time: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True), nullable=False, server_default=func.clock_timestamp()
    )

    __table_args__ = (
        UniqueConstraint("company_id", "policy_id", "sequence"),
        ForeignKeyConstraint(["company_id", "policy_id"], ["policies.company_id", "policies.id"]),
        CheckConstraint("amount = premium + tax + fee", name="premium_transaction_parts"),
    )
    __mapper_args__ = {"eager_defaults": True}


class UnderwritingIssueRow(Base):
    """A finding of the underwriting rules on a quote, and its decision."""

    __tablename__ = "underwriting_issues"

    id: Mapped[uuid.UUID] = _uuid_pk()
    company_id: Mapped[uuid.UUID] = _company()
    policy_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    code: Mapped[str] = mapped_column(Text, nullable=False)
    #: What the rule found (same code and key on a re-quote: the same issue).
    key: Mapped[str] = mapped_column(Text, nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False)
    state: Mapped[str] = mapped_column(Text, nullable=False)
    decided_by: Mapped[str | None] = mapped_column(Text)
    decide_time: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))
    decision_note: Mapped[str] = mapped_column(Text, nullable=False, default="")
    #: Request id of the decision (a replay answers with the issue as it is).
    request_id: Mapped[str | None] = mapped_column(Text)
    create_time: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True), nullable=False, server_default=func.clock_timestamp()
    )

    __table_args__ = (
        UniqueConstraint("company_id", "policy_id", "code", "key"),
        ForeignKeyConstraint(["company_id", "policy_id"], ["policies.company_id", "policies.id"]),
        # ListUnderwritingIssues: a policy's issues, oldest first (migration core_0013).
        Index(None, "company_id", "policy_id", "create_time"),
    )
    __mapper_args__ = {"eager_defaults": True}


class PolicyVersionRow(Base):
    """One immutable version of a bound policy (append-only)."""

    __tablename__ = "policy_versions"

    id: Mapped[uuid.UUID] = _uuid_pk()
    company_id: Mapped[uuid.UUID] = _company()
    policy_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    effective_date: Mapped[date] = mapped_column(Date, nullable=False)
    currency: Mapped[str] = mapped_column(Text, nullable=False)
    premium: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    sum_insured: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    insures_holder: Mapped[bool] = mapped_column(Boolean, nullable=False)
    insured_dependent_ids: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(PG_UUID(as_uuid=True)), nullable=False, default=list
    )
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    changed_fields: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, default=list)
    create_time: Mapped[datetime] = _created()
    created_by: Mapped[uuid.UUID | None] = mapped_column(PG_UUID(as_uuid=True))

    __table_args__ = (
        UniqueConstraint("company_id", "policy_id", "version"),
        ForeignKeyConstraint(["company_id", "policy_id"], ["policies.company_id", "policies.id"]),
    )
    __mapper_args__ = {"eager_defaults": True}


class PolicyStatusChangeRow(Base):
    """The status log of a policy (append-only)."""

    __tablename__ = "policy_status_changes"

    id: Mapped[uuid.UUID] = _uuid_pk()
    company_id: Mapped[uuid.UUID] = _company()
    policy_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    from_state: Mapped[str | None] = mapped_column(Text)
    to_state: Mapped[str] = mapped_column(Text, nullable=False)
    transition: Mapped[str] = mapped_column(Text, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    effective_date: Mapped[date | None] = mapped_column(Date)
    actor_id: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(Text)
    create_time: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True), nullable=False, server_default=func.clock_timestamp()
    )

    __table_args__ = (
        ForeignKeyConstraint(["company_id", "policy_id"], ["policies.company_id", "policies.id"]),
        Index(None, "company_id", "policy_id", "create_time"),
    )
    __mapper_args__ = {"eager_defaults": True}


# ------------------------------------------------------------------ claims


class ClaimRow(TenantResourceMixin, Base):
    __tablename__ = "claims"

    claim_number: Mapped[str | None] = mapped_column(Text)
    policy_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    policy_version: Mapped[int] = mapped_column(Integer, nullable=False)
    claimant_dependent_id: Mapped[uuid.UUID | None] = mapped_column(PG_UUID(as_uuid=True))
    claim_type: Mapped[str] = mapped_column(Text, nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False)
    coverage_code: Mapped[str] = mapped_column(Text, nullable=False)
    incident_date: Mapped[date] = mapped_column(Date, nullable=False)
    report_date: Mapped[date] = mapped_column(Date, nullable=False)
    currency: Mapped[str] = mapped_column(Text, nullable=False)
    claimed_amount: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    approved_amount: Mapped[Decimal | None] = mapped_column(MONEY)
    paid_amount: Mapped[Decimal | None] = mapped_column(MONEY)
    payment_reference: Mapped[str] = mapped_column(Text, nullable=False, default="")
    deny_reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    state: Mapped[str] = mapped_column(Text, nullable=False)
    assigned_adjuster_id: Mapped[uuid.UUID | None] = mapped_column(PG_UUID(as_uuid=True))
    approved_by: Mapped[uuid.UUID | None] = mapped_column(PG_UUID(as_uuid=True))
    withdraw_reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    # The money of the claim (see domain.claims): reserves, expenses, recoveries.
    indemnity_reserve: Mapped[Decimal] = mapped_column(MONEY, nullable=False, default=0)
    expense_reserve: Mapped[Decimal] = mapped_column(MONEY, nullable=False, default=0)
    expense_paid: Mapped[Decimal] = mapped_column(MONEY, nullable=False, default=0)
    recovered_amount: Mapped[Decimal] = mapped_column(MONEY, nullable=False, default=0)
    # The benefit breakdown (domain.adjudication.Benefit); NULL until assessed.
    benefit_claimed: Mapped[Decimal | None] = mapped_column(MONEY)
    benefit_deductible: Mapped[Decimal | None] = mapped_column(MONEY)
    benefit_copay: Mapped[Decimal | None] = mapped_column(MONEY)
    benefit_coinsurance: Mapped[Decimal | None] = mapped_column(MONEY)
    benefit_limit_cut: Mapped[Decimal | None] = mapped_column(MONEY)
    benefit_payable: Mapped[Decimal | None] = mapped_column(MONEY)

    __table_args__ = (
        UniqueConstraint("company_id", "id"),
        UniqueConstraint("company_id", "claim_number"),
        CheckConstraint("indemnity_reserve >= 0", name="indemnity_reserve_not_negative"),
        CheckConstraint("expense_reserve >= 0", name="expense_reserve_not_negative"),
        CheckConstraint(
            "approved_amount IS NULL OR paid_amount IS NULL OR paid_amount <= approved_amount",
            name="paid_within_approved",
        ),
        ForeignKeyConstraint(["company_id", "policy_id"], ["policies.company_id", "policies.id"]),
        Index(None, "company_id", "create_time", "id"),
        Index(None, "company_id", "policy_id"),
        # ListClaims: every filter and order_by field (migration core_0013).
        Index(None, "company_id", "state", "create_time", "id"),
        Index(None, "company_id", "claim_type", "create_time", "id"),
        Index(None, "company_id", "coverage_code"),
        Index(None, "company_id", "incident_date", "id"),
        Index(None, "company_id", "report_date"),
    )


class ClaimLogEntryRow(Base):
    """The action log of a claim (append-only)."""

    __tablename__ = "claim_log_entries"

    id: Mapped[uuid.UUID] = _uuid_pk()
    company_id: Mapped[uuid.UUID] = _company()
    claim_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    action: Mapped[str] = mapped_column(Text, nullable=False)
    from_state: Mapped[str | None] = mapped_column(Text)
    to_state: Mapped[str] = mapped_column(Text, nullable=False)
    amount: Mapped[Decimal | None] = mapped_column(MONEY)
    currency: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str] = mapped_column(Text, nullable=False, default="")
    payment_reference: Mapped[str] = mapped_column(Text, nullable=False, default="")
    actor_id: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(Text)
    create_time: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True), nullable=False, server_default=func.clock_timestamp()
    )

    __table_args__ = (
        ForeignKeyConstraint(["company_id", "claim_id"], ["claims.company_id", "claims.id"]),
        Index(None, "company_id", "claim_id", "create_time"),
    )
    __mapper_args__ = {"eager_defaults": True}


class ClaimAccumulatorRow(Base):
    """Deductible and limit consumed per insured member, coverage and period
    (domain.adjudication.Period); changed only under ``FOR UPDATE``."""

    __tablename__ = "claim_accumulators"

    id: Mapped[uuid.UUID] = _uuid_pk()
    company_id: Mapped[uuid.UUID] = _company()
    member_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    coverage_code: Mapped[str] = mapped_column(Text, nullable=False)
    scope_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    period_start: Mapped[date] = mapped_column(Date, nullable=False)
    period_end: Mapped[date] = mapped_column(Date, nullable=False)
    currency: Mapped[str] = mapped_column(Text, nullable=False)
    deductible_used: Mapped[Decimal] = mapped_column(MONEY, nullable=False, default=0)
    limit_used: Mapped[Decimal] = mapped_column(MONEY, nullable=False, default=0)
    update_time: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()
    )

    __table_args__ = (
        UniqueConstraint(
            "company_id",
            "scope_id",
            "member_id",
            "coverage_code",
            "period_start",
            name="uq_claim_accumulators_key",
        ),
        CheckConstraint("deductible_used >= 0", name="deductible_used_not_negative"),
        CheckConstraint("limit_used >= 0", name="limit_used_not_negative"),
    )


class ClaimPaymentRow(TimestampMixin, VersionedMixin, Base):
    """A payment on a claim (domain.claims.Payment)."""

    __tablename__ = "claim_payments"

    id: Mapped[uuid.UUID] = _uuid_pk()
    company_id: Mapped[uuid.UUID] = _company()
    claim_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    cost_type: Mapped[str] = mapped_column(Text, nullable=False)
    payee: Mapped[str] = mapped_column(Text, nullable=False)
    method: Mapped[str] = mapped_column(Text, nullable=False)
    reference: Mapped[str] = mapped_column(Text, nullable=False, default="")
    amount: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    currency: Mapped[str] = mapped_column(Text, nullable=False)
    state: Mapped[str] = mapped_column(Text, nullable=False)
    void_reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_by: Mapped[str | None] = mapped_column(Text)
    #: The request id that created it (a replay answers with this payment).
    request_id: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        ForeignKeyConstraint(["company_id", "claim_id"], ["claims.company_id", "claims.id"]),
        Index(None, "company_id", "claim_id", "create_time"),
        CheckConstraint("amount > 0", name="payment_amount_positive"),
    )


class ClaimRecoveryRow(Base):
    """Money back on a claim (append-only)."""

    __tablename__ = "claim_recoveries"

    id: Mapped[uuid.UUID] = _uuid_pk()
    company_id: Mapped[uuid.UUID] = _company()
    claim_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    amount: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    currency: Mapped[str] = mapped_column(Text, nullable=False)
    reference: Mapped[str] = mapped_column(Text, nullable=False, default="")
    note: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_by: Mapped[str | None] = mapped_column(Text)
    #: The request id that created it (a replay answers with this recovery).
    request_id: Mapped[str | None] = mapped_column(Text)
    create_time: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True), nullable=False, server_default=func.clock_timestamp()
    )

    __table_args__ = (
        ForeignKeyConstraint(["company_id", "claim_id"], ["claims.company_id", "claims.id"]),
        Index(None, "company_id", "claim_id", "create_time"),
        CheckConstraint("amount > 0", name="recovery_amount_positive"),
    )
    __mapper_args__ = {"eager_defaults": True}


class ApprovalBandsRow(TimestampMixin, VersionedMixin, Base):
    """A company's claim-approval bands in one currency (absent: none configured;
    the company's default currency then has the settings' defaults)."""

    __tablename__ = "approval_bands"

    company_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), primary_key=True)
    currency: Mapped[str] = mapped_column(Text, primary_key=True)
    band_1_limit: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    band_2_limit: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    updated_by: Mapped[uuid.UUID | None] = mapped_column(PG_UUID(as_uuid=True))

    @property
    def etag(self) -> str:
        """Per company and currency: one currency's etag never matches another's."""
        return _keyed_etag(f"{self.company_id}:{self.currency}", self.version)


class ClaimSettingsRow(TimestampMixin, VersionedMixin, Base):
    """A company's claim settings (absent: the defaults)."""

    __tablename__ = "claim_settings"

    company_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), primary_key=True)
    require_segregation_of_duties: Mapped[bool] = mapped_column(
        Boolean, nullable=False, server_default=text("false")
    )
    updated_by: Mapped[uuid.UUID | None] = mapped_column(PG_UUID(as_uuid=True))

    @property
    def etag(self) -> str:
        return _keyed_etag(str(self.company_id), self.version)


def _keyed_etag(key: str, version: int | None) -> str:
    """The etag of a row without an ``id``: as VersionedMixin's, over its key."""
    digest = hashlib.sha256(f"{key}:{version or 0}".encode()).digest()[:12]
    return f'"{base64.urlsafe_b64encode(digest).decode()}"'


# ------------------------------------------------------------------ plumbing


class NumberCounterRow(Base):
    """The last policy or claim number handed out in a company (see repository.numbers)."""

    __tablename__ = "number_counters"

    company_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), primary_key=True)
    kind: Mapped[str] = mapped_column(Text, primary_key=True)
    last_value: Mapped[int] = mapped_column(BigInteger, nullable=False)


class IdempotencyRow(IdempotencyMixin, Base):
    """The resource a request id acted on, so a retry does nothing twice (AIP-155)."""

    __tablename__ = "idempotency_keys"


class AuditEventRow(AuditLogMixin, Base):
    __tablename__ = "audit_events"


class CoreOutboxRow(OutboxMixin, Base):
    """Core's events, written with the changes (cardinsa_foundation.outbox)."""

    __tablename__ = "outbox_events"


# ------------------------------------------------------------------ billing


class InvoiceRow(TimestampMixin, VersionedMixin, Base):
    """An instalment, adjustment or credit note of a policy (domain.billing).

    The amount never changes once issued; ``settled`` is what allocations have
    settled of it (negative for a credit note: what it has been applied to)."""

    __tablename__ = "invoices"

    id: Mapped[uuid.UUID] = _uuid_pk()
    company_id: Mapped[uuid.UUID] = _company()
    policy_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    #: 1, 2, ... per policy, in the order issued.
    sequence: Mapped[int] = mapped_column(Integer, nullable=False)
    #: ``<policy number>-<sequence>``, e.g. POL-00000001-03.
    number: Mapped[str] = mapped_column(Text, nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    state: Mapped[str] = mapped_column(Text, nullable=False)
    #: 1, 2, ... for instalments; None for adjustments and credit notes.
    instalment: Mapped[int | None] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(Text, nullable=False)
    amount: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    settled: Mapped[Decimal] = mapped_column(
        MONEY, nullable=False, default=0, server_default=text("0")
    )
    issue_date: Mapped[date] = mapped_column(Date, nullable=False)
    due_date: Mapped[date] = mapped_column(Date, nullable=False)
    period_start: Mapped[date] = mapped_column(Date, nullable=False)
    period_end: Mapped[date] = mapped_column(Date, nullable=False)
    #: The premium transaction it bills.
    transaction_sequence: Mapped[int] = mapped_column(Integer, nullable=False)
    void_reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_by: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("company_id", "id"),
        UniqueConstraint("company_id", "policy_id", "sequence"),
        ForeignKeyConstraint(["company_id", "policy_id"], ["policies.company_id", "policies.id"]),
        ForeignKeyConstraint(
            ["company_id", "policy_id", "transaction_sequence"],
            [
                "premium_transactions.company_id",
                "premium_transactions.policy_id",
                "premium_transactions.sequence",
            ],
            name="fk_invoices_transaction_premium_transactions",
        ),
        CheckConstraint("kind IN ('INSTALMENT', 'ADJUSTMENT', 'CREDIT_NOTE')", name="invoice_kind"),
        CheckConstraint(
            "state IN ('ISSUED', 'PARTIALLY_PAID', 'PAID', 'OVERDUE', 'VOID')",
            name="invoice_state",
        ),
        CheckConstraint(
            "(kind = 'CREDIT_NOTE' AND amount < 0) OR (kind <> 'CREDIT_NOTE' AND amount >= 0)",
            name="invoice_sign",
        ),
        CheckConstraint(
            "(amount >= 0 AND settled BETWEEN 0 AND amount) "
            "OR (amount < 0 AND settled BETWEEN amount AND 0)",
            name="invoice_settled_within_amount",
        ),
        CheckConstraint("period_start <= period_end", name="invoice_period"),
        Index(None, "company_id", "policy_id", "due_date"),
        Index(
            "ix_invoices_open_due_date",
            "due_date",
            postgresql_where=text("state IN ('ISSUED', 'PARTIALLY_PAID', 'OVERDUE')"),
        ),
    )


class PaymentRow(TimestampMixin, VersionedMixin, Base):
    """Money received for a policy; ``allocated`` of it settles invoices, the
    rest is the policy's credit."""

    __tablename__ = "payments"

    id: Mapped[uuid.UUID] = _uuid_pk()
    company_id: Mapped[uuid.UUID] = _company()
    policy_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    currency: Mapped[str] = mapped_column(Text, nullable=False)
    amount: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    allocated: Mapped[Decimal] = mapped_column(
        MONEY, nullable=False, default=0, server_default=text("0")
    )
    received_date: Mapped[date] = mapped_column(Date, nullable=False)
    #: The payer's or bank's reference.
    reference: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_by: Mapped[str | None] = mapped_column(Text)
    #: The request id that recorded it (a replay answers with this payment).
    request_id: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("company_id", "id"),
        ForeignKeyConstraint(["company_id", "policy_id"], ["policies.company_id", "policies.id"]),
        CheckConstraint("amount > 0", name="billing_payment_amount_positive"),
        CheckConstraint("allocated BETWEEN 0 AND amount", name="payment_allocated_within_amount"),
        Index(None, "company_id", "policy_id", "create_time"),
    )


class PaymentAllocationRow(Base):
    """Which payment (or credit note) settled how much of which invoice (append-only)."""

    __tablename__ = "payment_allocations"

    id: Mapped[uuid.UUID] = _uuid_pk()
    company_id: Mapped[uuid.UUID] = _company()
    policy_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    invoice_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    #: The source: a payment or a credit note, exactly one.
    payment_id: Mapped[uuid.UUID | None] = mapped_column(PG_UUID(as_uuid=True))
    credit_note_id: Mapped[uuid.UUID | None] = mapped_column(PG_UUID(as_uuid=True))
    currency: Mapped[str] = mapped_column(Text, nullable=False)
    amount: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    create_time: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True), nullable=False, server_default=func.clock_timestamp()
    )

    __table_args__ = (
        ForeignKeyConstraint(["company_id", "policy_id"], ["policies.company_id", "policies.id"]),
        ForeignKeyConstraint(["company_id", "invoice_id"], ["invoices.company_id", "invoices.id"]),
        ForeignKeyConstraint(["company_id", "payment_id"], ["payments.company_id", "payments.id"]),
        ForeignKeyConstraint(
            ["company_id", "credit_note_id"],
            ["invoices.company_id", "invoices.id"],
            name="fk_payment_allocations_credit_note_invoices",
        ),
        CheckConstraint("amount > 0", name="allocation_amount_positive"),
        CheckConstraint(
            "(payment_id IS NULL) <> (credit_note_id IS NULL)", name="allocation_one_source"
        ),
        Index(None, "company_id", "invoice_id"),
        Index(None, "company_id", "payment_id"),
    )
    __mapper_args__ = {"eager_defaults": True}


#: Tables whose rows are only ever inserted.
APPEND_ONLY_TABLES = (
    "policy_versions",
    "policy_status_changes",
    "claim_log_entries",
    "payment_allocations",
)

__all__ = [
    "APPEND_ONLY_TABLES",
    "MONEY",
    "SCHEMA",
    "ApprovalBandsRow",
    "AuditEventRow",
    "Base",
    "ClaimLogEntryRow",
    "ClaimRow",
    "ClaimSettingsRow",
    "CoverageRow",
    "DependentRow",
    "IdempotencyRow",
    "NumberCounterRow",
    "PolicyRow",
    "PolicyStatusChangeRow",
    "PolicyVersionRow",
    "PolicyholderRow",
    "ProductRow",
    "ProductVersionRow",
]


# ------------------------------------------------------------------ documents


class DocumentRow(Base):
    """A rendered document (PDF) core issued, stored by content hash (append-only):
    the same facts in the same locale find this row and serve the same bytes."""

    __tablename__ = "documents"

    id: Mapped[uuid.UUID] = _uuid_pk()
    company_id: Mapped[uuid.UUID] = _company()
    #: POLICY_SCHEDULE, INVOICE or CLAIM_DECISION.
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    #: The resource it is about, e.g. ``policies/<id>``.
    subject: Mapped[str] = mapped_column(Text, nullable=False)
    locale: Mapped[str] = mapped_column(Text, nullable=False)
    #: SHA-256 (hex) of the facts the document shows, in a canonical form.
    facts_sha256: Mapped[str] = mapped_column(Text, nullable=False)
    #: SHA-256 (hex) of ``content``.
    content_sha256: Mapped[str] = mapped_column(Text, nullable=False)
    content: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_by: Mapped[str | None] = mapped_column(Text)
    create_time: Mapped[datetime] = _created()

    __table_args__ = (
        UniqueConstraint("company_id", "id"),
        UniqueConstraint("company_id", "kind", "subject", "locale", "facts_sha256"),
        CheckConstraint("kind IN ('POLICY_SCHEDULE', 'INVOICE', 'CLAIM_DECISION')", name="kind"),
        Index(None, "company_id", "subject", "create_time"),
    )
    __mapper_args__ = {"eager_defaults": True}
