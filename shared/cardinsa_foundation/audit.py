"""The append-only audit log: one table per service, one writer, same transaction.

Each service declares its table from :class:`AuditLogMixin` and writes to it only
through :class:`AuditWriter`, inside the unit of work that makes the change: the
audit row commits with the change or disappears with its rollback, so the log
can neither miss a change nor record one that did not happen. Who acted, on
whose behalf, for which company and under which request id come from the
request context, not from the caller's arguments.

Append-only is enforced three times: the writer only inserts, the ORM refuses to
update or delete an audit row, and :func:`append_only_ddl` gives migrations a
trigger that makes PostgreSQL refuse UPDATE, DELETE and TRUNCATE for everyone,
including the table owner.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, ClassVar, Final, Generic, TypeVar

from sqlalchemy import TIMESTAMP, Index, Select, Text, event, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, Mapper, declared_attr, mapped_column

from cardinsa_foundation import errors
from cardinsa_foundation.context import (
    Principal,
    current_company_id,
    current_principal,
    current_request_id,
)
from cardinsa_foundation.filtering import FieldType, FilterField, FilterSpec
from cardinsa_foundation.paging import OrderTerm
from cardinsa_foundation.row_batch import SupportsAdd

REDACTED: Final = "[REDACTED]"

#: A detail key containing one of these (case-insensitive) has its value redacted.
SECRET_KEY_PARTS: Final = (
    "password",
    "passwd",
    "token",
    "secret",
    "api_key",
    "apikey",
    "api-key",
    "authorization",
    "credential",
    "private_key",
)
# A value that is plainly a JWT is redacted whatever its key.
_JWT_VALUE: Final = re.compile(r"^eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
_IDENTIFIER: Final = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MAX_DEPTH: Final = 10


class AuditLogMixin:
    """Columns of a service's audit table (``__tablename__`` is the service's choice).

    ``actor_id`` / ``on_behalf_of_id`` / ``entity_id`` are text, not UUID, so that
    any principal subject or entity key is recorded as it is rather than dropped.
    ``audit_across_companies``: platform admins list every company's events
    (``AuditLog(across_companies=True)``), newest first: an index by time alone.
    """

    audit_across_companies: ClassVar[bool] = False

    id: Mapped[uuid.UUID] = mapped_column(
        PG_UUID(as_uuid=True),
        primary_key=True,
        default=uuid.uuid4,
        server_default=func.gen_random_uuid(),
    )
    create_time: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True), nullable=False, server_default=func.now()
    )
    company_id: Mapped[uuid.UUID | None] = mapped_column(PG_UUID(as_uuid=True), nullable=True)
    actor_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    on_behalf_of_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    action: Mapped[str] = mapped_column(Text, nullable=False)
    entity_type: Mapped[str] = mapped_column(Text, nullable=False)
    entity_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    changed_fields: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, default=list, server_default=text("'{}'::text[]")
    )
    request_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, default=dict, server_default=text("'{}'::jsonb")
    )

    @declared_attr.directive
    @classmethod
    def __table_args__(cls) -> tuple[Any, ...]:
        # Reading a tenant's log by time, and an entity's history; the filters
        # of ListAuditEvents (migrations core_0013, identity_0010, company_0006).
        indexes: tuple[Index, ...] = (
            Index(None, "company_id", "create_time"),
            Index(None, "entity_type", "entity_id", "create_time"),
            Index(None, "company_id", "action", "create_time"),
            Index(None, "company_id", "actor_id", "create_time"),
        )
        if cls.audit_across_companies:  # every company's log, newest first, and filtered
            indexes += (
                Index(None, "create_time", "id"),
                Index(None, "action", "create_time"),
                Index(None, "actor_id", "create_time"),
            )
        return indexes

    @declared_attr.directive
    @classmethod
    def __mapper_args__(cls) -> dict[str, Any]:
        return {"eager_defaults": True}


def _refuse_change(mapper: Mapper[Any], connection: Connection, target: Any) -> None:
    raise RuntimeError(f"{type(target).__name__} rows are append-only")


event.listen(AuditLogMixin, "before_update", _refuse_change, propagate=True)
event.listen(AuditLogMixin, "before_delete", _refuse_change, propagate=True)


def _is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(part in lowered for part in SECRET_KEY_PARTS)


def redact_detail(value: Any, *, _depth: int = 0) -> Any:
    """A JSON-ready copy of ``value`` with secret-looking entries replaced by ``[REDACTED]``.

    Keys containing password/token/secret/api_key/... are redacted at any depth,
    JWT-shaped strings wherever they appear; UUIDs, times, decimals and enums
    become strings; bytes are never stored.
    """
    if _depth > _MAX_DEPTH:
        return "[TOO DEEP]"
    if isinstance(value, Mapping):
        return {
            str(key): REDACTED
            if _is_secret_key(str(key))
            else redact_detail(item, _depth=_depth + 1)
            for key, item in value.items()
        }
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return redact_detail(dataclasses.asdict(value), _depth=_depth)
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [redact_detail(item, _depth=_depth + 1) for item in items]
    if isinstance(value, str):
        return REDACTED if _JWT_VALUE.match(value) else value
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Enum):
        return redact_detail(value.value, _depth=_depth)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return f"[{len(bytes(value))} bytes]"
    return str(value)


AuditRowT = TypeVar("AuditRowT", bound=AuditLogMixin)


def _text_id(value: str | uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


class AuditWriter(Generic[AuditRowT]):
    """The one way to write a service's audit table: ``AuditWriter(IdentityAuditLog)``."""

    def __init__(self, model: type[AuditRowT]) -> None:
        self.model = model

    async def record(
        self,
        session: SupportsAdd,
        *,
        action: str,
        entity_type: str,
        entity_id: str | uuid.UUID | None,
        changed_fields: Iterable[str] = (),
        detail: Mapping[str, Any] | None = None,
        company_id: str | uuid.UUID | None = None,
    ) -> AuditRowT:
        """Add an audit row to ``session``: it commits or rolls back with the change.

        ``company_id`` defaults to the caller's company; actor, on-behalf-of and
        request id always come from the request context.
        """
        row = self.build(
            action=action,
            entity_type=entity_type,
            entity_id=entity_id,
            changed_fields=changed_fields,
            detail=detail,
            company_id=company_id,
        )
        session.add(row)
        return row

    def build(
        self,
        *,
        action: str,
        entity_type: str,
        entity_id: str | uuid.UUID | None,
        changed_fields: Iterable[str] = (),
        detail: Mapping[str, Any] | None = None,
        company_id: str | uuid.UUID | None = None,
    ) -> AuditRowT:
        """The row `record` adds, not added to any session: for a hot path that
        inserts it with its own SQL, in the transaction of the change. Same
        content rules as `record` (context-derived actor and request id,
        redacted detail)."""
        principal = current_principal()
        company = company_id if company_id is not None else current_company_id()
        row = self.model()
        row.id = uuid.uuid4()
        row.company_id = None if company is None else uuid.UUID(str(company))
        row.actor_id = principal.subject if principal else None
        row.on_behalf_of_id = principal.on_behalf_of if principal else None
        row.action = action
        row.entity_type = entity_type
        row.entity_id = _text_id(entity_id)
        row.changed_fields = sorted(set(changed_fields))
        row.request_id = current_request_id()
        row.detail = redact_detail(dict(detail or {}))
        return row


def _quote_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f'"{name}"'


def append_only_ddl(schema: str, table: str) -> list[str]:
    """SQL that makes PostgreSQL refuse UPDATE, DELETE and TRUNCATE on an audit table.

    Idempotent (re-running replaces the function and triggers). The statements
    contain no ``%`` and no ``:name``, so they run unchanged through Alembic's
    ``op.execute`` or any driver.
    """
    qualified = f"{_quote_identifier(schema)}.{_quote_identifier(table)}"
    function = f"{_quote_identifier(schema)}.cardinsa_refuse_audit_change"
    row_trigger = _quote_identifier(f"{table}_append_only")
    truncate_trigger = _quote_identifier(f"{table}_no_truncate")
    return [
        f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $body$\n"
        "BEGIN\n"
        "  RAISE EXCEPTION USING\n"
        "    MESSAGE = 'audit log ' || TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME\n"
        "              || ' is append-only (' || TG_OP || ' refused)',\n"
        "    ERRCODE = 'insufficient_privilege';\n"
        "END\n"
        "$body$",
        f"DROP TRIGGER IF EXISTS {row_trigger} ON {qualified}",
        f"CREATE TRIGGER {row_trigger} BEFORE UPDATE OR DELETE ON {qualified} "
        f"FOR EACH ROW EXECUTE FUNCTION {function}()",
        f"DROP TRIGGER IF EXISTS {truncate_trigger} ON {qualified}",
        f"CREATE TRIGGER {truncate_trigger} BEFORE TRUNCATE ON {qualified} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
    ]


class AuditLog(Generic[AuditRowT]):
    """A service's audit table as its List RPC reads it: the AIP-160 filter
    fields, newest first, one company's events or (``across_companies``, for
    platform admins) every company's."""

    def __init__(self, model: type[AuditRowT], *, across_companies: bool) -> None:
        columns: Any = model
        fields = {
            "action": FilterField(columns.action, FieldType.STRING),
            "entity_type": FilterField(columns.entity_type, FieldType.STRING),
            "entity_id": FilterField(columns.entity_id, FieldType.STRING),
            "actor_id": FilterField(columns.actor_id, FieldType.STRING),
            "create_time": FilterField(columns.create_time, FieldType.TIMESTAMP),
        }
        if across_companies:
            fields["company_id"] = FilterField(columns.company_id, FieldType.UUID)
        self.model = model
        self.filter = FilterSpec(fields)
        self.order: list[OrderTerm] = [OrderTerm(columns.create_time, True)]

    def query(self, company: uuid.UUID | None, filter: str) -> Select[AuditRowT]:
        """The events of ``company`` (None: of every company) that ``filter``
        selects; INVALID_ARGUMENT for a bad filter."""
        condition = self.filter.parse(filter)
        columns: Any = self.model
        stmt = select(self.model)
        if company is not None:
            stmt = stmt.where(columns.company_id == company)
        if condition is not None:
            stmt = stmt.where(condition)
        return stmt


def audit_log_company(principal: Principal, company_id: str) -> uuid.UUID | None:
    """Whose audit log a caller reads: ``company_id`` when given (another
    company's only for a platform admin: PERMISSION_DENIED for anyone else,
    whether it exists or not), else the caller's own company, else (a platform
    admin without one named) None: every company's."""
    own = principal.company_id
    if company_id:
        try:
            wanted = uuid.UUID(company_id)
        except ValueError:
            raise errors.InvalidArgument(
                "company_id must be a UUID",
                field_violations=[errors.FieldViolation("company_id", "must be a UUID")],
            ) from None
        if not principal.is_platform_admin and str(wanted) != own:
            raise errors.PermissionDenied(
                "only platform administrators read another company's audit log",
                reason="CROSS_COMPANY_DENIED",
            )
        return wanted
    if principal.is_platform_admin:
        return None
    if own:
        return uuid.UUID(own)
    raise errors.InvalidArgument(
        "company_id is required for a caller without a company",
        field_violations=[errors.FieldViolation("company_id", "required")],
    )
