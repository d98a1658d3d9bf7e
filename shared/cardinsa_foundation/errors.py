"""Errors as gRPC status codes with AIP-193 details.

Application code raises a `CardinsaError` subclass; the error interceptor (or
`abort`) turns it into a `google.rpc.Status` carrying exactly one `ErrorInfo`,
`BadRequest` field violations when there are any, `PreconditionFailure`
violations when a FAILED_PRECONDITION names what stands in the way, `RequestInfo` with the request
id (and ``trace_id=<hex>`` as its serving data while tracing is on) and
`RetryInfo` when the client should wait. Anything that is not a
`CardinsaError` goes through `from_exception`, which recognises database and
network failures and turns everything else into a bare INTERNAL: exception
text, SQL, row values and hostnames never reach a client, only the log
(`describe_for_log` gives the fields, the traceback is logged by the caller).

The classes carry the gRPC status names: a broken business rule is
FailedPrecondition, bad input InvalidArgument, no or a bad credential
Unauthenticated, a missing permission PermissionDenied, an unknown resource
NotFound, a dependency that is down Unavailable (other database failures are
mapped by `from_exception`), a limit reached ResourceExhausted. There are no
aliases, so that one way exists.

Timeout decisions (see `from_exception`):
- PostgreSQL lock timeout (55P03) and statement timeout / query canceled (57014)
  → UNAVAILABLE: the server rolled the statement back, nothing happened, and a
  retry with backoff is safe and likely to succeed.
- `TimeoutError` / `asyncio.TimeoutError` (asyncpg `command_timeout`,
  `asyncio.timeout` around a call) → DEADLINE_EXCEEDED: the client stopped
  waiting and the outcome is unknown (a COMMIT may have gone through), which is
  exactly what DEADLINE_EXCEEDED tells a client; only idempotent or
  `request_id`-carrying calls should be retried.
"""

from __future__ import annotations

import datetime
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import exc as orm_exc

from cardinsa_foundation.context import current_request_id, current_trace_id

__all__ = [
    "ERROR_DOMAIN",
    "INTERNAL_MESSAGE",
    "OUR_CONSTRAINT_NAME",
    "Aborted",
    "AlreadyExists",
    "CardinsaError",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "PreconditionViolation",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "abort",
    "describe_for_log",
    "from_exception",
    "to_rpc_status",
]

ERROR_DOMAIN = "cardinsa.io"

#: The only message an INTERNAL status ever carries (plus the request id).
INTERNAL_MESSAGE = "internal error"

#: Constraint names that follow our models' naming convention
#: (pk_/uq_/fk_/ck_/ix_/ex_ + table and columns). Only such names may be echoed
#: to a client in ErrorInfo metadata; PostgreSQL's generated names
#: (``users_pkey``, ``users_email_key``) and anything else stay in the log.
OUR_CONSTRAINT_NAME = re.compile(r"^(?:pk|uq|fk|ck|ix|ex)_[a-z0-9_]{1,60}$")  # ≤ 63 chars

# AIP-193: reason is UPPER_SNAKE, at most 63 characters.
_REASON = re.compile(r"^[A-Z][A-Z0-9_]{0,61}[A-Z0-9]$")


@dataclass(frozen=True)
class FieldViolation:
    """One invalid request field; `field` is a path in the request proto's snake_case
    (``user.email``, ``policy.coverages[2].limit``)."""

    field: str
    description: str


@dataclass(frozen=True)
class PreconditionViolation:
    """One thing that stands in the way of the operation (google.rpc
    PreconditionFailure.Violation): ``type`` is UPPER_SNAKE and service-specific
    (``CLAIM_COVER``), ``subject`` names the resource (``claims/<id>``)."""

    type: str
    subject: str
    description: str


class CardinsaError(Exception):
    """Base of every error a client may see; subclasses fix the gRPC code.

    `message` is shown to the client as is, so it must be safe: no exception
    text, SQL, ids of other tenants' data or internal hostnames. `metadata` holds
    the values the message mentions (ErrorInfo.metadata). Raising the base class
    directly yields INTERNAL.
    """

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
        field_violations: Sequence[FieldViolation] = (),
        retry_after: datetime.timedelta | None = None,
        precondition_violations: Sequence[PreconditionViolation] = (),
    ) -> None:
        super().__init__(message)
        chosen = reason if reason is not None else type(self).reason
        if not _REASON.match(chosen):
            raise ValueError(f"error reason must be UPPER_SNAKE (AIP-193): {chosen!r}")
        self.message = message
        self.reason = chosen
        self.metadata: dict[str, str] = {str(k): str(v) for k, v in (metadata or {}).items()}
        self.field_violations: tuple[FieldViolation, ...] = tuple(field_violations)
        self.precondition_violations: tuple[PreconditionViolation, ...] = tuple(
            precondition_violations
        )
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, reason={self.reason!r})"


class InvalidArgument(CardinsaError):
    """The request itself is wrong, whatever the system's state (seed: ValidationException)."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"


class NotFound(CardinsaError):
    """The resource does not exist — or belongs to another tenant, which must look the same."""

    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


class AlreadyExists(CardinsaError):
    """A create collided with an existing natural key."""

    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "ALREADY_EXISTS"


class FailedPrecondition(CardinsaError):
    """A business rule or state forbids the operation now (seed: BusinessLogicException);
    illegal lifecycle transitions name the current state and the transition tried."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"


class Aborted(CardinsaError):
    """A concurrency conflict: stale etag, serialization failure, deadlock. Retry the
    whole read-modify-write."""

    code = grpc.StatusCode.ABORTED
    reason = "ABORTED"


class PermissionDenied(CardinsaError):
    """The caller is known but may not do this (seed: AuthorizationException)."""

    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


class Unauthenticated(CardinsaError):
    """No valid credentials (seed: AuthenticationException)."""

    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class ResourceExhausted(CardinsaError):
    """Rate limit or quota hit (seed: RateLimitException); set `retry_after`."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RESOURCE_EXHAUSTED"


class Unavailable(CardinsaError):
    """A dependency (database, another service) is down or busy; nothing was done and
    a retry with backoff is safe (seed: DatabaseException / ExternalServiceException)."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "UNAVAILABLE"


class DeadlineExceeded(CardinsaError):
    """We stopped waiting; the outcome is unknown."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = "DEADLINE_EXCEEDED"


class Internal(CardinsaError):
    """A bug or an unexpected failure. Clients only ever see `INTERNAL_MESSAGE` and the
    request id, whatever message is given here (it is kept for the log)."""

    code = grpc.StatusCode.INTERNAL
    reason = "INTERNAL"


# --------------------------------------------------------------------------- status


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


MAX_MESSAGE_CHARS = 500
MAX_DETAIL_CHARS = 200
MAX_METADATA_ENTRIES = 20
MAX_FIELD_VIOLATIONS = 20


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _bounded_violations(
    violations: Sequence[FieldViolation],
) -> list[error_details_pb2.BadRequest.FieldViolation]:
    shown = [
        error_details_pb2.BadRequest.FieldViolation(
            field=_clip(v.field, MAX_DETAIL_CHARS),
            description=_clip(v.description, MAX_DETAIL_CHARS),
        )
        for v in violations[:MAX_FIELD_VIOLATIONS]
    ]
    if len(violations) > MAX_FIELD_VIOLATIONS:
        shown.append(
            error_details_pb2.BadRequest.FieldViolation(
                field=_clip(violations[MAX_FIELD_VIOLATIONS].field, MAX_DETAIL_CHARS),
                description=f"... and {len(violations) - MAX_FIELD_VIOLATIONS} more violations",
            )
        )
    return shown


def _bounded_preconditions(
    violations: Sequence[PreconditionViolation],
) -> list[error_details_pb2.PreconditionFailure.Violation]:
    shown = [
        error_details_pb2.PreconditionFailure.Violation(
            type=_clip(v.type, MAX_DETAIL_CHARS),
            subject=_clip(v.subject, MAX_DETAIL_CHARS),
            description=_clip(v.description, MAX_DETAIL_CHARS),
        )
        for v in violations[:MAX_FIELD_VIOLATIONS]
    ]
    if len(violations) > MAX_FIELD_VIOLATIONS:
        shown.append(
            error_details_pb2.PreconditionFailure.Violation(
                type=_clip(violations[MAX_FIELD_VIOLATIONS].type, MAX_DETAIL_CHARS),
                description=f"... and {len(violations) - MAX_FIELD_VIOLATIONS} more violations",
            )
        )
    return shown


def to_rpc_status(error: CardinsaError, request_id: str | None) -> grpc.Status:
    """Build the `grpc.Status` (google.rpc.Status with packed details) for `error`.

    INTERNAL is stripped to a fixed message naming the request id, one ErrorInfo
    without metadata, and RequestInfo, so nothing of a bug's detail can escape
    even if the code that raised it put some in.
    """
    code_value, _ = error.code.value
    internal = error.code == grpc.StatusCode.INTERNAL
    if internal:
        message = INTERNAL_MESSAGE
        if request_id:
            message = f"{INTERNAL_MESSAGE} (request id {request_id})"
        metadata: Mapping[str, str] = {}
    else:
        # Messages and details may quote the client's input: keep the whole
        # status far below gRPC's metadata limits (8 KiB soft, 16 KiB hard),
        # or the client would get a transport error instead of this answer.
        message = _clip(error.message, MAX_MESSAGE_CHARS)
        metadata = {
            _clip(k, MAX_DETAIL_CHARS): _clip(v, MAX_DETAIL_CHARS)
            for k, v in list(error.metadata.items())[:MAX_METADATA_ENTRIES]
        }

    details = [
        _pack(
            error_details_pb2.ErrorInfo(
                reason=error.reason, domain=ERROR_DOMAIN, metadata=dict(metadata)
            )
        )
    ]
    if error.field_violations and not internal:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=_bounded_violations(error.field_violations)
                )
            )
        )
    if error.precondition_violations and not internal:
        details.append(
            _pack(
                error_details_pb2.PreconditionFailure(
                    violations=_bounded_preconditions(error.precondition_violations)
                )
            )
        )
    if error.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromTimedelta(error.retry_after)
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    if request_id:
        # With tracing on, the call's trace id too (the same as in the logs).
        trace_id = current_trace_id()
        details.append(
            _pack(
                error_details_pb2.RequestInfo(
                    request_id=request_id,
                    serving_data=f"trace_id={trace_id}" if trace_id else "",
                )
            )
        )

    return rpc_status.to_status(
        status_pb2.Status(code=code_value, message=message, details=details)
    )


async def abort(context: grpc.aio.ServicerContext, error: CardinsaError) -> NoReturn:
    """Abort the current RPC with `error`'s rich status and the current request id."""
    await context.abort_with_status(to_rpc_status(error, current_request_id()))
    # abort_with_status always raises; this keeps the NoReturn promise honest.
    raise AssertionError("abort_with_status returned")


# ------------------------------------------------------------------- mapping


# Messages are deliberately generic: the constraint, table and row stay in the log.
def _already_exists(constraint: str | None) -> CardinsaError:
    meta = {"constraint": constraint} if constraint else None
    return AlreadyExists("the resource already exists", reason="ALREADY_EXISTS", metadata=meta)


def _reference_violation(constraint: str | None) -> CardinsaError:
    meta = {"constraint": constraint} if constraint else None
    return FailedPrecondition(
        "a referenced resource does not exist, or the resource is still referenced",
        reason="REFERENCE_VIOLATION",
        metadata=meta,
    )


def _constraint_violation(constraint: str | None) -> CardinsaError:
    meta = {"constraint": constraint} if constraint else None
    return InvalidArgument(
        "the request violates a data constraint", reason="CONSTRAINT_VIOLATION", metadata=meta
    )


def _db_unavailable(reason: str = "DATABASE_UNAVAILABLE") -> CardinsaError:
    state = "unavailable" if reason == "DATABASE_UNAVAILABLE" else "busy"
    return Unavailable(f"the database is {state}, retry later", reason=reason)


def _map_sqlstate(sqlstate: str, constraint: str | None) -> CardinsaError | None:
    """SQLSTATE → error; None when the state is not one we recognise (→ INTERNAL)."""
    if sqlstate == "23505":
        return _already_exists(constraint)
    if sqlstate == "23P01":  # exclusion constraint: overlaps an existing row
        meta = {"constraint": constraint} if constraint else None
        return AlreadyExists(
            "the resource conflicts with an existing one", reason="CONFLICT", metadata=meta
        )
    if sqlstate == "23503":
        return _reference_violation(constraint)
    if sqlstate in ("23514", "23502"):
        return _constraint_violation(constraint)
    if sqlstate.startswith("22"):  # data exception: bad uuid text, value too long, ...
        return InvalidArgument(
            "the request contains a value that cannot be stored", reason="INVALID_VALUE"
        )
    if sqlstate in ("40001", "40P01"):
        return Aborted(
            "the transaction conflicted with a concurrent one, retry the request",
            reason="TRANSACTION_CONFLICT",
        )
    if sqlstate == "40003":  # statement completion unknown
        return DeadlineExceeded("the outcome of the operation is unknown", reason="OUTCOME_UNKNOWN")
    if sqlstate == "55P03":
        return _db_unavailable("LOCK_TIMEOUT")
    if sqlstate == "57014":
        return _db_unavailable("STATEMENT_TIMEOUT")
    if (
        sqlstate.startswith(("08", "53"))  # connection exception, insufficient resources
        or sqlstate in ("57P01", "57P02", "57P03", "25006")  # shutdown, starting, read-only
    ):
        return _db_unavailable()
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and what it explicitly wraps: SQLAlchemy's `.orig`, the emulated
    DBAPI error's `.orig`, `__cause__`; each once, bounded. `__context__` is not
    followed: an unrelated bug raised while handling a database error must not
    borrow that error's code."""
    out: list[BaseException] = []
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo and len(out) < 16:
        cur = todo.pop(0)
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        out.append(cur)
        for nxt in (getattr(cur, "orig", None), cur.__cause__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
    return out


def _sqlstate_and_constraint(chain: list[BaseException]) -> tuple[str | None, str | None]:
    sqlstate: str | None = None
    constraint: str | None = None
    for e in chain:
        state = getattr(e, "sqlstate", None)
        if sqlstate is None and isinstance(state, str) and len(state) == 5:
            sqlstate = state
        name = getattr(e, "constraint_name", None)
        if constraint is None and isinstance(name, str):
            constraint = name
    return sqlstate, constraint


def _is_closed_connection(e: BaseException) -> bool:
    """asyncpg's (or the emulated DBAPI's) InterfaceError "connection is closed": it
    carries no SQLSTATE. Matched by type name so that this module needs no asyncpg
    import (it ships no type information)."""
    if not any(cls.__name__ == "InterfaceError" for cls in type(e).__mro__):
        return False
    text = str(e)
    return "connection is closed" in text or "connection was closed" in text


def _map_grpc_error(e: grpc.RpcError) -> CardinsaError:
    """A failed call to another service: never forward its message."""
    code = e.code() if callable(getattr(e, "code", None)) else None
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
        return Unavailable(
            "a dependency is unavailable, retry later", reason="DEPENDENCY_UNAVAILABLE"
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded("a dependency did not answer in time", reason="DEPENDENCY_TIMEOUT")
    return Internal(INTERNAL_MESSAGE)


def _map(exc: BaseException) -> CardinsaError:
    chain = _chain(exc)
    sqlstate, constraint = _sqlstate_and_constraint(chain)
    if constraint is not None and not OUR_CONSTRAINT_NAME.match(constraint):
        constraint = None
    if sqlstate is not None:
        mapped = _map_sqlstate(sqlstate, constraint)
        if mapped is not None:
            return mapped
        return Internal(INTERNAL_MESSAGE)

    for e in chain:
        if isinstance(e, sa_exc.TimeoutError):  # pool exhausted: nothing was sent
            return _db_unavailable("DATABASE_BUSY")
        if isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated:
            return _db_unavailable()
        if isinstance(e, sa_exc.DisconnectionError):
            return _db_unavailable()
        if _is_closed_connection(e):
            return _db_unavailable()

    # The outermost non-database exception decides from here on.
    if isinstance(exc, orm_exc.StaleDataError):
        # Optimistic concurrency: another writer changed the row since it was read.
        return Aborted(
            "the resource changed since it was read; read it again and retry",
            reason="CONCURRENT_MODIFICATION",
        )
    if isinstance(exc, grpc.RpcError):
        return _map_grpc_error(exc)
    # asyncio.TimeoutError is TimeoutError since 3.11, and TimeoutError is an
    # OSError subclass: test it before the connection errors.
    if isinstance(exc, TimeoutError):
        return DeadlineExceeded("the operation timed out", reason="TIMEOUT")
    if isinstance(exc, ConnectionError | socket.gaierror) or type(exc) is OSError:
        # Connection refused/reset, DNS failure, asyncio's "Multiple exceptions:
        # Connect call failed" (a plain OSError). File errors are bugs: INTERNAL.
        return Unavailable(
            "a dependency is unavailable, retry later", reason="DEPENDENCY_UNAVAILABLE"
        )
    return Internal(INTERNAL_MESSAGE)


def from_exception(exc: BaseException) -> CardinsaError:
    """Turn any exception into a client-safe `CardinsaError`.

    A `CardinsaError` is returned unchanged. Others are mapped by SQLSTATE
    (found on asyncpg errors, reached through SQLAlchemy's ``.orig`` and
    ``__cause__``) or by type, and the original is attached as ``__cause__`` so a
    logged traceback shows it. Unknown failures become `Internal` whose message is
    only "internal error". Do not pass ``asyncio.CancelledError`` or
    ``grpc.aio.AbortError`` here: re-raise them.
    """
    if isinstance(exc, CardinsaError):
        return exc
    mapped = _map(exc)
    mapped.__cause__ = exc
    return mapped


def describe_for_log(exc: BaseException) -> dict[str, object]:
    """Log fields for a failed call: ``error_code``, ``error_reason``, ``error_type``
    (the original exception's qualified type), ``error_message`` (only the
    client-safe message) and ``sqlstate`` when a database error is involved.

    The keys avoid the LogRecord attribute names so they can be passed as
    ``extra``. ``error_message`` is the CardinsaError's own message, which for an
    `Internal` raised by our code may say more than the client is told. When
    ``error_code`` is ``"INTERNAL"`` the caller also logs the traceback
    (``exc_info=exc``); the client sees only the request id.
    """
    mapped = from_exception(exc)
    fields: dict[str, object] = {
        "error_code": mapped.code.name,
        "error_reason": mapped.reason,
        "error_type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "error_message": mapped.message,
    }
    if not isinstance(exc, CardinsaError):
        sqlstate, _ = _sqlstate_and_constraint(_chain(exc))
        if sqlstate is not None:
            fields["sqlstate"] = sqlstate
    return fields
