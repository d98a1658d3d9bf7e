"""What every core use case needs, and the rules every one of them applies.

- The company a call acts in is the caller's own, from the verified token;
  core has no cross-tenant code path (platform admins act in their own company
  here too), so no request field can name another company.
- An id that is malformed, unknown or another company's gives the same
  NOT_FOUND (:func:`lookup_uuid`, :func:`not_found`).
- Request ids must be UUIDs; see :mod:`cardinsa_core.application.requests`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from cardinsa_core.application.tenants import TenantDirectory
from cardinsa_core.repository.models import AuditEventRow
from cardinsa_core.settings import CoreSettings
from cardinsa_foundation import models
from cardinsa_foundation.audit import AuditWriter
from cardinsa_foundation.context import Principal, current_principal, current_request_id
from cardinsa_foundation.db import Database
from cardinsa_foundation.errors import (
    Aborted,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)

MAX_NOTE: int = 1000
_MAX_ETAG: int = 128


def utc_today() -> date:
    return datetime.now(UTC).date()


@dataclass
class CoreContext:
    db: Database
    settings: CoreSettings
    audit: AuditWriter[AuditEventRow]
    tenants: TenantDirectory
    #: Today's date for the business rules (injectable for tests).
    today: Callable[[], date] = utc_today


def require_principal() -> Principal:
    principal = current_principal()
    if principal is None:
        raise Unauthenticated("an access token is required", reason="MISSING_TOKEN")
    return principal


def own_company(principal: Principal) -> uuid.UUID:
    """The caller's company: the only one a core call acts in."""
    if not principal.company_id:
        raise PermissionDenied("the caller belongs to no company", reason="NO_TENANT")
    return uuid.UUID(principal.company_id)


def actor_uuid(principal: Principal) -> uuid.UUID | None:
    try:
        return uuid.UUID(principal.subject)
    except ValueError:
        return None


def lookup_uuid(value: str) -> uuid.UUID | None:
    """An id from a request: a malformed one names nothing (NOT_FOUND, like
    another tenant's id), so probing ids tells nothing."""
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return None


def not_found(resource: str, resource_id: str) -> NotFound:
    return NotFound(
        f"{resource} not found",
        reason=f"{resource.upper().replace(' ', '_')}_NOT_FOUND",
        metadata={"id": resource_id[:64]},
    )


def deleted(resource: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"the {resource} is deleted; undelete it first",
        reason="RESOURCE_DELETED",
        metadata={"resource": resource},
    )


def invalid(message: str, violations: Sequence[FieldViolation]) -> None:
    """Raise INVALID_ARGUMENT when there are violations."""
    if violations:
        raise InvalidArgument(message, field_violations=list(violations))


def check_request_id(request_id: str) -> list[FieldViolation]:
    if request_id and lookup_uuid(request_id) is None:
        return [FieldViolation("request_id", "must be a UUID")]
    return []


def check_note(note: str, field: str) -> list[FieldViolation]:
    if len(note) > MAX_NOTE:
        return [FieldViolation(field, f"at most {MAX_NOTE} characters")]
    return []


def check_mask(mask: Sequence[str], allowed: frozenset[str]) -> None:
    """INVALID_ARGUMENT unless ``mask`` is non-empty and names only ``allowed`` fields."""
    if not mask:
        raise InvalidArgument(
            "update_mask is required", field_violations=[FieldViolation("update_mask", "required")]
        )
    unknown = [path for path in mask if path not in allowed]
    if unknown:
        raise InvalidArgument(
            "update_mask names fields that cannot be updated",
            field_violations=[
                FieldViolation(
                    "update_mask",
                    f"'{path[:64]}' cannot be updated; updatable: " + ", ".join(sorted(allowed)),
                )
                for path in unknown
            ],
        )


def log_request_id(request_id: str) -> str | None:
    """What a log row records as the request: the AIP-155 request id when the
    client gave one, else the call's own request id."""
    return request_id or current_request_id()


def check_etag(entity: models.VersionedMixin, etag: str) -> None:
    """The foundation's etag check, after refusing what no etag of ours can be
    (too long, not ASCII) as stale rather than letting it reach the comparison."""
    if etag and (len(etag) > _MAX_ETAG or not etag.isascii()):
        raise Aborted(
            "the resource changed since it was read; read it again and retry",
            reason="ETAG_MISMATCH",
        )
    models.check_etag(entity, etag)
