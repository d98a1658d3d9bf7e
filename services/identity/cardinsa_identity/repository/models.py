"""Tables of the identity schema.

Tenant-owned tables carry ``company_id`` and reference each other through
``(company_id, id)`` pairs, so a row can never point into another tenant and
the tables can later be distributed by company. Secrets are stored only as
hashes (refresh, reset and API-key secrets) or encrypted (signing keys).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    TIMESTAMP,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    LargeBinary,
    Text,
    UniqueConstraint,
    false,
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
    MetadataMixin,
    ResourceMixin,
    TenantResourceMixin,
    make_metadata,
)
from cardinsa_foundation.outbox import OutboxMixin

SCHEMA = "identity"


class Base(DeclarativeBase):
    metadata = make_metadata(SCHEMA)
    type_annotation_map = TYPE_ANNOTATION_MAP


class UserRow(TenantResourceMixin, MetadataMixin, Base):
    __tablename__ = "users"

    email: Mapped[str] = mapped_column(Text, nullable=False)
    given_name: Mapped[str] = mapped_column(Text, nullable=False, default="")
    family_name: Mapped[str] = mapped_column(Text, nullable=False, default="")
    display_name: Mapped[str] = mapped_column(Text, nullable=False, default="")
    phone: Mapped[str] = mapped_column(Text, nullable=False, default="")
    locale: Mapped[str] = mapped_column(Text, nullable=False, default="")
    state: Mapped[str] = mapped_column(Text, nullable=False, default="ACTIVE")
    password_hash: Mapped[str] = mapped_column(Text, nullable=False)
    password_change_time: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))
    last_login_time: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))
    # Set by an administrator's CreateUser: login asks for a new password first.
    must_change_password: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )

    __table_args__ = (
        # Email is the login name: unique on the platform, whatever the case.
        # (Emails are stored normalised to lower case.)
        UniqueConstraint("email"),
        UniqueConstraint("company_id", "id"),
        Index(None, "company_id", "create_time", "id"),
        # ListUsers: every filter and order_by field (migration identity_0010).
        Index(None, "company_id", "state", "create_time", "id"),
        Index(None, "company_id", "email", "id"),
        Index(None, "company_id", "display_name", "id"),
        Index(None, "company_id", "family_name", "id"),
        Index(None, "company_id", "given_name"),
        Index(None, "company_id", "last_login_time"),
    )


class SessionRow(Base):
    """A login session = one refresh-token family."""

    __tablename__ = "sessions"

    id: Mapped[uuid.UUID] = mapped_column(
        PG_UUID(as_uuid=True), primary_key=True, default=uuid.uuid4
    )
    company_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    user_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    create_time: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True), nullable=False, server_default=func.now()
    )
    last_use_time: Mapped[datetime] = mapped_column(TIMESTAMP(timezone=True), nullable=False)
    idle_expire_time: Mapped[datetime] = mapped_column(TIMESTAMP(timezone=True), nullable=False)
    expire_time: Mapped[datetime] = mapped_column(TIMESTAMP(timezone=True), nullable=False)
    revoke_time: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))
    revoke_reason: Mapped[str | None] = mapped_column(Text)
    client_address: Mapped[str | None] = mapped_column(Text)
    user_agent: Mapped[str | None] = mapped_column(Text)
    # How the login authenticated (``pwd``, ``otp``): refreshed tokens keep it.
    amr: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, default=lambda: ["pwd"], server_default=text("'{pwd}'::text[]")
    )

    __table_args__ = (
        ForeignKeyConstraint(["company_id", "user_id"], ["users.company_id", "users.id"]),
        Index(None, "user_id", "create_time"),
    )
    __mapper_args__ = {"eager_defaults": True}


class RefreshTokenRow(Base):
    """One refresh token of a family. Only its SHA-256 is stored."""

    __tablename__ = "refresh_tokens"

    token_hash: Mapped[str] = mapped_column(Text, primary_key=True)
    session_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    company_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    create_time: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True), nullable=False, server_default=func.now()
    )
    # Set when the token was exchanged; presenting it again is reuse.
    use_time: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))

    __table_args__ = (Index(None, "session_id"),)
    __mapper_args__ = {"eager_defaults": True}


class RoleRow(ResourceMixin, Base):
    __tablename__ = "roles"

    # NULL for the built-in roles, which every company sees.
    company_id: Mapped[uuid.UUID | None] = mapped_column(PG_UUID(as_uuid=True), nullable=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    permissions: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, default=list)
    built_in: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)

    __table_args__ = (
        Index(
            "uq_roles_company_id_name",
            text("coalesce(company_id, '00000000-0000-0000-0000-000000000000'::uuid)"),
            "name",
            unique=True,
            postgresql_where=text("delete_time IS NULL"),
        ),
        # ListRoles: the company's roles by name (migration identity_0010).
        Index(None, "company_id", "name", "id"),
    )


class RoleBindingRow(Base):
    __tablename__ = "role_bindings"

    id: Mapped[uuid.UUID] = mapped_column(
        PG_UUID(as_uuid=True), primary_key=True, default=uuid.uuid4
    )
    company_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    user_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    role_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    create_time: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True), nullable=False, server_default=func.now()
    )
    created_by: Mapped[uuid.UUID | None] = mapped_column(PG_UUID(as_uuid=True))

    __table_args__ = (
        UniqueConstraint("company_id", "user_id", "role_id"),
        ForeignKeyConstraint(["company_id", "user_id"], ["users.company_id", "users.id"]),
        ForeignKeyConstraint(["role_id"], ["roles.id"]),
        # ListRoleBindings: newest first (migration identity_0010).
        Index(None, "company_id", "create_time", "id"),
    )
    __mapper_args__ = {"eager_defaults": True}


class ServiceAccountRow(TenantResourceMixin, Base):
    __tablename__ = "service_accounts"

    name: Mapped[str] = mapped_column(Text, nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")

    __table_args__ = (
        UniqueConstraint("company_id", "id"),
        Index(
            "uq_service_accounts_company_id_name",
            "company_id",
            "name",
            unique=True,
            postgresql_where=text("delete_time IS NULL"),
        ),
        # ListServiceAccounts: newest first (migration identity_0010).
        Index(None, "company_id", "create_time", "id"),
    )


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(
        PG_UUID(as_uuid=True), primary_key=True, default=uuid.uuid4
    )
    company_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    service_account_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    prefix: Mapped[str] = mapped_column(Text, nullable=False)
    secret_hash: Mapped[str] = mapped_column(Text, nullable=False)
    display_name: Mapped[str] = mapped_column(Text, nullable=False, default="")
    permissions: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, default=list)
    expire_time: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))
    last_use_time: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))
    revoke_time: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))
    create_time: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True), nullable=False, server_default=func.now()
    )
    created_by: Mapped[uuid.UUID | None] = mapped_column(PG_UUID(as_uuid=True))

    __table_args__ = (
        UniqueConstraint("prefix"),
        ForeignKeyConstraint(
            ["company_id", "service_account_id"],
            ["service_accounts.company_id", "service_accounts.id"],
        ),
        # ListApiKeys: an account's keys, newest first (migration identity_0010).
        Index(None, "company_id", "service_account_id", "create_time"),
    )
    __mapper_args__ = {"eager_defaults": True}


class SigningKeyRow(Base):
    """Platform-wide: the keys that sign every access token."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(Text, primary_key=True)
    algorithm: Mapped[str] = mapped_column(Text, nullable=False)
    state: Mapped[str] = mapped_column(Text, nullable=False)
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    # AES-256-GCM ciphertext; the key comes from settings, never from the database.
    private_key_encrypted: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    create_time: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True), nullable=False, server_default=func.now()
    )
    activate_time: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))
    retire_time: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))
    __mapper_args__ = {"eager_defaults": True}


class PasswordResetRow(Base):
    """A single-use password-reset token, stored as its SHA-256 only."""

    __tablename__ = "password_resets"

    token_hash: Mapped[str] = mapped_column(Text, primary_key=True)
    company_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    user_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    create_time: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True), nullable=False, server_default=func.now()
    )
    expire_time: Mapped[datetime] = mapped_column(TIMESTAMP(timezone=True), nullable=False)
    use_time: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))

    __table_args__ = (
        ForeignKeyConstraint(["company_id", "user_id"], ["users.company_id", "users.id"]),
        Index(None, "user_id"),
    )
    __mapper_args__ = {"eager_defaults": True}


class InvitationRow(Base):
    """A single-use invitation token of an INVITED user, stored as its SHA-256
    only (migration identity_0012)."""

    __tablename__ = "invitations"

    token_hash: Mapped[str] = mapped_column(Text, primary_key=True)
    company_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    user_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    create_time: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True), nullable=False, server_default=func.now()
    )
    expire_time: Mapped[datetime] = mapped_column(TIMESTAMP(timezone=True), nullable=False)
    use_time: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))

    __table_args__ = (
        ForeignKeyConstraint(["company_id", "user_id"], ["users.company_id", "users.id"]),
        Index(None, "user_id"),
    )
    __mapper_args__ = {"eager_defaults": True}


class EmailChangeRow(Base):
    """A pending e-mail change: the new address and the single-use token mailed
    to it, stored as its SHA-256 only (migration identity_0012)."""

    __tablename__ = "email_changes"

    token_hash: Mapped[str] = mapped_column(Text, primary_key=True)
    company_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    user_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    new_email: Mapped[str] = mapped_column(Text, nullable=False)
    create_time: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True), nullable=False, server_default=func.now()
    )
    expire_time: Mapped[datetime] = mapped_column(TIMESTAMP(timezone=True), nullable=False)
    use_time: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))

    __table_args__ = (
        ForeignKeyConstraint(["company_id", "user_id"], ["users.company_id", "users.id"]),
        Index(None, "user_id"),
    )
    __mapper_args__ = {"eager_defaults": True}


class UserMfaRow(Base):
    """A user's TOTP factor: the secret encrypted (bound to the user id), when
    it was confirmed (None: enrolment pending) and the last time-step a code
    was accepted for."""

    __tablename__ = "user_mfa"

    user_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), primary_key=True)
    company_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    secret_encrypted: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    confirm_time: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))
    last_used_step: Mapped[int | None] = mapped_column(BigInteger)
    create_time: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True), nullable=False, server_default=func.now()
    )

    __table_args__ = (
        ForeignKeyConstraint(["company_id", "user_id"], ["users.company_id", "users.id"]),
    )
    __mapper_args__ = {"eager_defaults": True}


class MfaRecoveryCodeRow(Base):
    """A single-use recovery code, stored as its SHA-256 only."""

    __tablename__ = "mfa_recovery_codes"

    user_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), primary_key=True)
    code_hash: Mapped[str] = mapped_column(Text, primary_key=True)
    company_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    create_time: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True), nullable=False, server_default=func.now()
    )
    use_time: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))

    __table_args__ = (
        ForeignKeyConstraint(["company_id", "user_id"], ["users.company_id", "users.id"]),
    )
    __mapper_args__ = {"eager_defaults": True}


class LoginChallengeRow(Base):
    """A login's pending step (MFA_TOTP, NEW_PASSWORD_REQUIRED), its opaque
    token stored as SHA-256 only; single-use, short-lived. The fingerprint of
    the password hash it was issued for: a password change since refuses it."""

    __tablename__ = "login_challenges"

    token_hash: Mapped[str] = mapped_column(Text, primary_key=True)
    company_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    user_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    password_fingerprint: Mapped[str] = mapped_column(Text, nullable=False)
    email_key: Mapped[str] = mapped_column(Text, nullable=False)
    user_agent: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    create_time: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True), nullable=False, server_default=func.now()
    )
    expire_time: Mapped[datetime] = mapped_column(TIMESTAMP(timezone=True), nullable=False)
    use_time: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))

    __table_args__ = (
        ForeignKeyConstraint(["company_id", "user_id"], ["users.company_id", "users.id"]),
        Index(None, "user_id"),
    )
    __mapper_args__ = {"eager_defaults": True}


class MfaPolicyRow(Base):
    """Per company: the roles whose permissions need a login with a second factor."""

    __tablename__ = "mfa_policies"

    company_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), primary_key=True)
    required_roles: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, default=list)
    update_time: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True), nullable=False, server_default=func.now()
    )
    updated_by: Mapped[uuid.UUID | None] = mapped_column(PG_UUID(as_uuid=True))
    __mapper_args__ = {"eager_defaults": True}


class LoginThrottleRow(Base):
    """Failed-login state per account (scope ``account``), account from one client
    address (``account_address``) or client address (``address``); password-reset
    request counts (``reset_address``, ``reset_account``)."""

    __tablename__ = "login_throttles"

    scope: Mapped[str] = mapped_column(Text, primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    window_start: Mapped[datetime] = mapped_column(TIMESTAMP(timezone=True), nullable=False)
    locked_until: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))
    # How many times this key was locked in a row: the next lock lasts longer.
    lock_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # Attempts reserved and being checked right now (login's account keys).
    pending: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default=text("0")
    )


class IdempotencyRow(IdempotencyMixin, Base):
    """The first answer to a request id, so a retry gets it again (AIP-155)."""

    __tablename__ = "idempotency_keys"


class RevocationRow(Base):
    """A revoked session (or API key), or a subject whose tokens issued before
    ``not_before`` stop. Platform-wide and append-only for the application;
    written only through ``application.revocations`` (which keeps the commit
    order of ``seq``)."""

    __tablename__ = "revocations"

    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    target: Mapped[str] = mapped_column(Text, nullable=False)
    not_before: Mapped[datetime] = mapped_column(TIMESTAMP(timezone=True), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    create_time: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True), nullable=False, server_default=func.now()
    )

    __table_args__ = (
        CheckConstraint("kind IN ('session', 'subject')", name="kind"),
        Index(None, "not_before"),
    )


class AuditEventRow(AuditLogMixin, Base):
    __tablename__ = "audit_events"
    #: Platform admins list every company's events (index: migration identity_0010).
    audit_across_companies = True


__all__ = [
    "SCHEMA",
    "ApiKeyRow",
    "AuditEventRow",
    "Base",
    "EmailChangeRow",
    "IdempotencyRow",
    "InvitationRow",
    "LoginThrottleRow",
    "PasswordResetRow",
    "RefreshTokenRow",
    "RevocationRow",
    "RoleBindingRow",
    "RoleRow",
    "ServiceAccountRow",
    "SessionRow",
    "SigningKeyRow",
    "UserRow",
]


class IdentityOutboxRow(OutboxMixin, Base):
    """Identity's events, written with the changes (cardinsa_foundation.outbox)."""

    __tablename__ = "outbox_events"
