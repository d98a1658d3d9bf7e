"""The checks and answers every use case of every service shares.

A use case (the application layer of a service) starts the same way everywhere:
who is calling (:func:`require_principal`), which resource the request names
(:func:`lookup_uuid`: a malformed id names nothing, so the answer is the same
NOT_FOUND as for an unknown or another tenant's id, and probing ids tells
nothing), whether the request is well formed (:func:`invalid` with the field
violations of :func:`check_request_id`, :func:`check_mask`, :func:`check_note`),
and whether the caller read the version it changes (:func:`check_etag`).
Service-specific rules (which company a call acts in, who may act on whom) stay
in the service's own ``application/context.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_foundation import models
from cardinsa_foundation.config import Settings
from cardinsa_foundation.context import Principal, current_principal, current_request_id
from cardinsa_foundation.errors import (
    Aborted,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unauthenticated,
)
from cardinsa_foundation.paging import OrderTerm, Page, paginate, query_fingerprint

__all__ = [
    "MAX_NOTE",
    "Paging",
    "actor_uuid",
    "check_etag",
    "check_mask",
    "check_note",
    "check_request_id",
    "deleted",
    "invalid",
    "log_request_id",
    "lookup_uuid",
    "not_found",
    "parse_uuid",
    "require_principal",
]

T = TypeVar("T")

#: The longest free-text note a transition may carry.
MAX_NOTE: int = 1000
#: No etag this suite issues is longer; a longer one is stale, not compared.
_MAX_ETAG: int = 128


def require_principal() -> Principal:
    """The verified caller, or UNAUTHENTICATED (``MISSING_TOKEN``)."""
    principal = current_principal()
    if principal is None:
        raise Unauthenticated("an access token is required", reason="MISSING_TOKEN")
    return principal


def actor_uuid(principal: Principal) -> uuid.UUID | None:
    """The caller's id as a UUID; None for a subject that is not one (a service)."""
    try:
        return uuid.UUID(principal.subject)
    except ValueError:
        return None


def lookup_uuid(value: str) -> uuid.UUID | None:
    """An id from a request, or None when it is malformed: the caller then answers
    NOT_FOUND, as for an id that names nothing."""
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return None


def parse_uuid(value: str, field: str) -> uuid.UUID:
    """A field that must be a UUID (not a lookup): INVALID_ARGUMENT naming ``field``."""
    parsed = lookup_uuid(value)
    if parsed is None:
        raise InvalidArgument(
            f"{field} must be a UUID",
            field_violations=[FieldViolation(field, "must be a UUID")],
        )
    return parsed


def not_found(resource: str, resource_id: str) -> NotFound:
    """NOT_FOUND with reason ``<RESOURCE>_NOT_FOUND`` and the (truncated) id."""
    return NotFound(
        f"{resource} not found",
        reason=f"{resource.upper().replace(' ', '_')}_NOT_FOUND",
        metadata={"id": resource_id[:64]},
    )


def deleted(resource: str) -> FailedPrecondition:
    """FAILED_PRECONDITION for acting on a soft-deleted resource."""
    return FailedPrecondition(
        f"the {resource} is deleted; undelete it first",
        reason="RESOURCE_DELETED",
        metadata={"resource": resource},
    )


def invalid(message: str, violations: Sequence[FieldViolation]) -> None:
    """Raise INVALID_ARGUMENT carrying ``violations`` when there are any."""
    if violations:
        raise InvalidArgument(message, field_violations=list(violations))


def check_request_id(request_id: str) -> list[FieldViolation]:
    """An AIP-155 request id is optional and, when given, a UUID."""
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
    """The model's etag check, after refusing what no etag of ours can be (too
    long, not ASCII) as stale rather than letting it reach the comparison."""
    if etag and (len(etag) > _MAX_ETAG or not etag.isascii()):
        raise Aborted(
            "the resource changed since it was read; read it again and retry",
            reason="ETAG_MISMATCH",
        )
    models.check_etag(entity, etag)


class Paging:
    """What a service's use-case context adds for every List: one page of a
    statement, its token signed with the service's secret and bound to the
    query it was issued for (a token of another query, parent or tenant is
    refused)."""

    settings: Settings

    async def page(
        self,
        session: AsyncSession,
        stmt: Select[T],
        *,
        order: Sequence[OrderTerm],
        page_size: int,
        page_token: str,
        **query: Any,
    ) -> Page[T]:
        """One page of ``stmt``; ``query`` (filter, order_by, show_deleted, parent,
        company ...) is what a page token of this listing must have been issued for."""
        return await paginate(
            session,
            stmt,
            order=list(order),
            page_size=page_size,
            page_token=page_token,
            fingerprint=query_fingerprint(**query),
            secret=self.settings.page_token_secret,
        )
