"""Errors: codes, AIP-193 details, database/network mapping, nothing leaked."""

from __future__ import annotations

import asyncio
import datetime
import socket
from typing import Any

import asyncpg
import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql.asyncpg import (
    AsyncAdapt_asyncpg_connection,
    AsyncAdapt_asyncpg_dbapi,
)

from cardinsa_foundation import errors
from cardinsa_foundation.context import request_id_var
from cardinsa_foundation.errors import (
    ERROR_DOMAIN,
    Aborted,
    AlreadyExists,
    CardinsaError,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PreconditionViolation,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    describe_for_log,
    from_exception,
    to_rpc_status,
)

SQL = "INSERT INTO users (id, email, password_hash) VALUES ($1::UUID, $2, $3)"
ROW_VALUE = "alice@example.com"
PARAMS = ("8d0c1c2e-0000-0000-0000-000000000001", ROW_VALUE, "$argon2id$v=19$m=1$abc")

_DBAPI = AsyncAdapt_asyncpg_dbapi(asyncpg)


def pg_error(sqlstate: str, constraint: str | None = None, **fields: str) -> Exception:
    """A real asyncpg exception built the way asyncpg builds it from a server message."""
    msg: dict[str, str] = {
        "C": sqlstate,
        "M": f'server message mentioning "{ROW_VALUE}" and db-primary-7.internal',
        "D": f"Key (email)=({ROW_VALUE}) already exists.",
        "t": "users",
    }
    if constraint:
        msg["n"] = constraint
    msg.update(fields)
    err: Exception = asyncpg.exceptions.PostgresError.new(msg)
    return err


def sqlalchemy_wrapped(driver_error: Exception, *, invalidated: bool = False) -> BaseException:
    """Wrap a driver error exactly as SQLAlchemy 2.1's asyncpg dialect does: the dialect
    translates it to its emulated DBAPI error (``raise translated from error``), then
    the engine wraps that in a ``sqlalchemy.exc.DBAPIError`` subclass with ``.orig``
    (``raise wrapper from translated``)."""
    try:
        try:
            try:
                raise driver_error
            except Exception as e:
                AsyncAdapt_asyncpg_connection._handle_exception_no_connection(_DBAPI, e)
        except _DBAPI.Error as translated:
            wrapper = sa_exc.DBAPIError.instance(
                SQL, PARAMS, translated, _DBAPI.Error, connection_invalidated=invalidated
            )
            raise wrapper from translated
    except BaseException as final:
        return final
    raise AssertionError("not raised")


def unpack(status: grpc.Status) -> tuple[status_pb2.Status, dict[str, list[Any]]]:
    """Decode the rich status from the trailing metadata and group details by type."""
    raw = dict(status.trailing_metadata)["grpc-status-details-bin"]
    rich = status_pb2.Status.FromString(raw)
    kinds: dict[str, list[Any]] = {}
    types = {
        "ErrorInfo": error_details_pb2.ErrorInfo,
        "BadRequest": error_details_pb2.BadRequest,
        "RequestInfo": error_details_pb2.RequestInfo,
        "RetryInfo": error_details_pb2.RetryInfo,
        "PreconditionFailure": error_details_pb2.PreconditionFailure,
    }
    for detail in rich.details:
        for name, cls in types.items():
            if detail.Is(cls.DESCRIPTOR):
                msg = cls()
                detail.Unpack(msg)
                kinds.setdefault(name, []).append(msg)
                break
        else:
            kinds.setdefault("other", []).append(detail)
    return rich, kinds


# ------------------------------------------------------------------- classes


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
        (NotFound, grpc.StatusCode.NOT_FOUND),
        (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
        (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
        (Aborted, grpc.StatusCode.ABORTED),
        (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
        (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
        (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (Unavailable, grpc.StatusCode.UNAVAILABLE),
        (DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
        (Internal, grpc.StatusCode.INTERNAL),
        (CardinsaError, grpc.StatusCode.INTERNAL),
    ],
)
def test_each_class_has_its_grpc_code_and_reason(
    cls: type[CardinsaError], code: grpc.StatusCode
) -> None:
    err = cls("msg")
    assert err.code == code
    assert err.reason == code.name
    assert isinstance(err, CardinsaError)
    status = to_rpc_status(err, "r1")
    assert status.code == code
    _, kinds = unpack(status)
    assert kinds["ErrorInfo"][0].reason == code.name


def test_reason_override_and_validation() -> None:
    assert NotFound("x", reason="POLICY_NOT_FOUND").reason == "POLICY_NOT_FOUND"
    assert NotFound("x").reason == "NOT_FOUND"  # class default untouched
    for bad in ("policy_not_found", "Policy", "A", "TRAILING_", ""):
        with pytest.raises(ValueError, match="UPPER_SNAKE"):
            NotFound("x", reason=bad)


# -------------------------------------------------------------------- status


def test_rpc_status_round_trip_carries_all_details() -> None:
    err = InvalidArgument(
        "user.email is not a valid address",
        reason="INVALID_EMAIL",
        metadata={"field": "user.email"},
        field_violations=[
            FieldViolation("user.email", "must be an email address"),
            FieldViolation("user.display_name", "must not be empty"),
        ],
        retry_after=datetime.timedelta(seconds=2, milliseconds=500),
    )
    status = to_rpc_status(err, "req-123")
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT
    assert status.details == "user.email is not a valid address"

    rich, kinds = unpack(status)
    assert rich.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert rich.message == status.details
    assert "other" not in kinds
    assert len(kinds["ErrorInfo"]) == 1
    info = kinds["ErrorInfo"][0]
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "INVALID_EMAIL",
        ERROR_DOMAIN,
        {"field": "user.email"},
    )
    (bad_request,) = kinds["BadRequest"]
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("user.email", "must be an email address"),
        ("user.display_name", "must not be empty"),
    ]
    (request_info,) = kinds["RequestInfo"]
    assert request_info.request_id == "req-123"
    (retry,) = kinds["RetryInfo"]
    assert retry.retry_delay.ToTimedelta() == datetime.timedelta(seconds=2.5)


def test_rpc_status_minimal_has_only_error_info_and_request_info() -> None:
    _, kinds = unpack(to_rpc_status(NotFound("policy not found"), "r"))
    assert sorted(kinds) == ["ErrorInfo", "RequestInfo"]


def test_rpc_status_without_request_id_omits_request_info() -> None:
    _, kinds = unpack(to_rpc_status(ResourceExhausted("slow down"), None))
    assert sorted(kinds) == ["ErrorInfo"]


def test_precondition_violations_travel_as_one_precondition_failure() -> None:
    err = FailedPrecondition(
        "2 claims would lose cover",
        reason="CLAIMS_WOULD_LOSE_COVER",
        metadata={"count": "2"},
        precondition_violations=[
            PreconditionViolation("CLAIM_COVER", "claims/a", "claim CLM-1 loses cover"),
            PreconditionViolation("CLAIM_COVER", "claims/b", "claim CLM-2 loses cover"),
        ],
    )
    _, kinds = unpack(to_rpc_status(err, "r"))
    assert sorted(kinds) == ["ErrorInfo", "PreconditionFailure", "RequestInfo"]
    (failure,) = kinds["PreconditionFailure"]
    assert [(v.type, v.subject, v.description) for v in failure.violations] == [
        ("CLAIM_COVER", "claims/a", "claim CLM-1 loses cover"),
        ("CLAIM_COVER", "claims/b", "claim CLM-2 loses cover"),
    ]
    assert kinds["ErrorInfo"][0].reason == "CLAIMS_WOULD_LOSE_COVER"


def test_precondition_violations_are_bounded_and_clipped() -> None:
    many = [PreconditionViolation("CLAIM_COVER", f"claims/{i}", "d" * 1000) for i in range(25)]
    _, kinds = unpack(to_rpc_status(FailedPrecondition("x", precondition_violations=many), None))
    shown = kinds["PreconditionFailure"][0].violations
    assert len(shown) == errors.MAX_FIELD_VIOLATIONS + 1
    assert all(len(v.description) <= errors.MAX_DETAIL_CHARS for v in shown)
    assert shown[-1].description == "... and 5 more violations"


def test_internal_status_never_carries_precondition_violations() -> None:
    err = Internal(
        "bug", precondition_violations=[PreconditionViolation("X", "db-primary-7", "secret")]
    )
    rich, kinds = unpack(to_rpc_status(err, None))
    assert "PreconditionFailure" not in kinds and b"db-primary-7" not in rich.SerializeToString()


def test_internal_status_never_carries_what_the_code_put_in() -> None:
    err = Internal(
        "pool worker crashed at db-primary-7.internal",
        reason="WORKER_CRASHED",
        metadata={"host": "db-primary-7.internal"},
        field_violations=[FieldViolation("x", "db-primary-7.internal")],
    )
    status = to_rpc_status(err, "req-9")
    assert status.code == grpc.StatusCode.INTERNAL
    assert status.details == "internal error (request id req-9)"
    rich, kinds = unpack(status)
    assert b"db-primary-7" not in rich.SerializeToString()
    assert sorted(kinds) == ["ErrorInfo", "RequestInfo"]
    assert dict(kinds["ErrorInfo"][0].metadata) == {}
    assert to_rpc_status(err, None).details == "internal error"


# ------------------------------------------------------------------ mapping


@pytest.mark.parametrize(
    ("sqlstate", "cls", "reason"),
    [
        ("23505", AlreadyExists, "ALREADY_EXISTS"),
        ("23503", FailedPrecondition, "REFERENCE_VIOLATION"),
        ("23514", InvalidArgument, "CONSTRAINT_VIOLATION"),
        ("23502", InvalidArgument, "CONSTRAINT_VIOLATION"),
        ("23P01", AlreadyExists, "CONFLICT"),
        ("22P02", InvalidArgument, "INVALID_VALUE"),
        ("40001", Aborted, "TRANSACTION_CONFLICT"),
        ("40P01", Aborted, "TRANSACTION_CONFLICT"),
        ("55P03", Unavailable, "LOCK_TIMEOUT"),
        ("57014", Unavailable, "STATEMENT_TIMEOUT"),
        ("57P01", Unavailable, "DATABASE_UNAVAILABLE"),
        ("57P03", Unavailable, "DATABASE_UNAVAILABLE"),
        ("08006", Unavailable, "DATABASE_UNAVAILABLE"),
        ("08003", Unavailable, "DATABASE_UNAVAILABLE"),
        ("53300", Unavailable, "DATABASE_UNAVAILABLE"),
        ("42601", Internal, "INTERNAL"),  # syntax error: our bug
        ("42501", Internal, "INTERNAL"),  # row-level security violation: our bug
    ],
)
@pytest.mark.parametrize("wrapped", [True, False], ids=["sqlalchemy", "raw-asyncpg"])
def test_database_errors_map_by_sqlstate(
    sqlstate: str, cls: type[CardinsaError], reason: str, wrapped: bool
) -> None:
    driver = pg_error(sqlstate)
    assert driver.sqlstate == sqlstate  # type: ignore[attr-defined]
    exc = sqlalchemy_wrapped(driver) if wrapped else driver
    if wrapped:
        assert isinstance(exc, sa_exc.DBAPIError)
    mapped = from_exception(exc)
    assert type(mapped) is cls
    assert mapped.reason == reason
    assert mapped.__cause__ is exc
    # Nothing of the row, the SQL or the server's text reaches the client.
    rich, _ = unpack(to_rpc_status(mapped, "r"))
    wire = rich.SerializeToString()
    for secret in (ROW_VALUE, "INSERT", "users", "db-primary-7", "argon2"):
        assert secret.encode() not in wire, secret


def test_sqlalchemy_wrapping_is_what_the_dialect_really_produces() -> None:
    exc = sqlalchemy_wrapped(pg_error("23505", "uq_users_email"))
    assert isinstance(exc, sa_exc.IntegrityError)
    assert isinstance(exc.orig, _DBAPI.UniqueViolationError)
    assert isinstance(exc.__cause__, _DBAPI.UniqueViolationError)
    assert isinstance(exc.orig.__cause__, asyncpg.exceptions.UniqueViolationError)


def test_unique_violation_names_our_constraint_only() -> None:
    ours = from_exception(sqlalchemy_wrapped(pg_error("23505", "uq_users_company_id_email")))
    assert isinstance(ours, AlreadyExists)
    assert ours.metadata == {"constraint": "uq_users_company_id_email"}

    postgres_named = from_exception(sqlalchemy_wrapped(pg_error("23505", "users_email_key")))
    assert postgres_named.metadata == {}
    weird = from_exception(pg_error("23505", "uq_users; DROP TABLE users"))
    assert weird.metadata == {}
    longest = "fk_" + "x" * 60  # PostgreSQL's identifier limit is 63 characters
    assert from_exception(pg_error("23503", longest)).metadata == {"constraint": longest}

    fk = from_exception(sqlalchemy_wrapped(pg_error("23503", "fk_claims_company_id_policy")))
    assert isinstance(fk, FailedPrecondition)
    assert fk.metadata == {"constraint": "fk_claims_company_id_policy"}


def test_closed_connection_is_unavailable() -> None:
    closed = asyncpg.exceptions.InterfaceError("cannot perform operation: connection is closed")
    assert isinstance(from_exception(closed), Unavailable)
    wrapped = sqlalchemy_wrapped(closed, invalidated=True)
    assert isinstance(wrapped, sa_exc.InterfaceError)
    mapped = from_exception(wrapped)
    assert (type(mapped), mapped.reason) == (Unavailable, "DATABASE_UNAVAILABLE")
    # Another interface error (a programming bug) stays INTERNAL.
    busy = asyncpg.exceptions.InterfaceError("another operation is in progress")
    assert isinstance(from_exception(sqlalchemy_wrapped(busy)), Internal)


def test_connection_does_not_exist_is_unavailable() -> None:
    err = asyncpg.exceptions.ConnectionDoesNotExistError(
        "connection was closed in the middle of operation"
    )
    assert isinstance(from_exception(err), Unavailable)
    assert isinstance(from_exception(sqlalchemy_wrapped(err)), Unavailable)


@pytest.mark.parametrize(
    ("exc", "cls", "reason"),
    [
        (
            sa_exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached"),
            Unavailable,
            "DATABASE_BUSY",
        ),
        (
            ConnectionRefusedError(111, "Connect call failed ('10.0.0.7', 5432)"),
            Unavailable,
            "DEPENDENCY_UNAVAILABLE",
        ),
        (ConnectionResetError(104, "reset"), Unavailable, "DEPENDENCY_UNAVAILABLE"),
        (
            OSError("Multiple exceptions: [Errno 111] Connect call failed"),
            Unavailable,
            "DEPENDENCY_UNAVAILABLE",
        ),
        (socket.gaierror(-2, "Name or service not known"), Unavailable, "DEPENDENCY_UNAVAILABLE"),
        (TimeoutError(), DeadlineExceeded, "TIMEOUT"),
        (asyncio.TimeoutError(), DeadlineExceeded, "TIMEOUT"),  # noqa: UP041 (the same in 3.11)
        (FileNotFoundError(2, "/etc/cardinsa/secret.key"), Internal, "INTERNAL"),
        (KeyError("password"), Internal, "INTERNAL"),
    ],
)
def test_non_sqlstate_failures(exc: BaseException, cls: type[CardinsaError], reason: str) -> None:
    mapped = from_exception(exc)
    assert (type(mapped), mapped.reason) == (cls, reason)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.UNAVAILABLE, Unavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, DeadlineExceeded),
        (grpc.StatusCode.NOT_FOUND, Internal),
        (grpc.StatusCode.INTERNAL, Internal),
    ],
)
def test_failed_call_to_another_service_never_forwards_its_message(
    code: grpc.StatusCode, cls: type[CardinsaError]
) -> None:
    upstream = grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="company db-7 table x missing"
    )
    mapped = from_exception(upstream)
    assert type(mapped) is cls
    assert "db-7" not in to_rpc_status(mapped, "r").details


def test_unknown_exception_leaks_nothing() -> None:
    secret = "SELECT * FROM users WHERE password='hunter2' -- host db-primary-7.internal"
    mapped = from_exception(RuntimeError(secret))
    assert isinstance(mapped, Internal)
    assert mapped.message == "internal error"
    status = to_rpc_status(mapped, "req-42")
    assert status.details == "internal error (request id req-42)"
    rich, kinds = unpack(status)
    wire = rich.SerializeToString()
    for fragment in ("SELECT", "hunter2", "db-primary-7", "RuntimeError"):
        assert fragment.encode() not in wire
    assert kinds["RequestInfo"][0].request_id == "req-42"


def test_cardinsa_error_passes_through_unchanged() -> None:
    err = NotFound("policy not found")
    assert from_exception(err) is err


def test_implicit_context_does_not_lend_its_code() -> None:
    """A bug raised while handling a unique violation is a bug, not ALREADY_EXISTS."""
    try:
        try:
            raise sqlalchemy_wrapped(pg_error("23505"))
        except sa_exc.IntegrityError:
            raise KeyError("oops") from None
    except KeyError as bug:
        assert isinstance(from_exception(bug), Internal)
    try:
        try:
            raise sqlalchemy_wrapped(pg_error("23505"))
        except sa_exc.IntegrityError:
            empty: dict[str, int] = {}
            empty["missing"]
    except KeyError as bug:
        assert bug.__context__ is not None
        assert isinstance(from_exception(bug), Internal)


def test_describe_for_log() -> None:
    db = sqlalchemy_wrapped(pg_error("40001"))
    assert describe_for_log(db) == {
        "error_code": "ABORTED",
        "error_reason": "TRANSACTION_CONFLICT",
        "error_type": "sqlalchemy.exc.DBAPIError",
        "error_message": "the transaction conflicted with a concurrent one, retry the request",
        "sqlstate": "40001",
    }
    bug = describe_for_log(ZeroDivisionError("division by zero"))
    assert bug["error_code"] == "INTERNAL"
    assert bug["error_type"] == "builtins.ZeroDivisionError"
    assert "sqlstate" not in bug
    mine = describe_for_log(NotFound("policy not found", reason="POLICY_NOT_FOUND"))
    assert mine["error_type"] == "cardinsa_foundation.errors.NotFound"
    assert mine["error_reason"] == "POLICY_NOT_FOUND"


# --------------------------------------------------------------- real server


async def test_abort_sends_rich_status_over_a_real_channel() -> None:
    async def handler(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        request_id_var.set("req-from-context")
        await errors.abort(
            context,
            FailedPrecondition(
                "policy is CANCELLED; cannot renew",
                reason="ILLEGAL_TRANSITION",
                metadata={"state": "CANCELLED", "transition": "renew"},
            ),
        )

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "test.Errors", {"Fail": grpc.unary_unary_rpc_method_handler(handler)}
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/test.Errors/Fail")(b"")
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert caught.value.details() == "policy is CANCELLED; cannot renew"
            rich = await rpc_status.aio.from_call(call)
    finally:
        await server.stop(None)
    assert rich is not None
    infos = [d for d in rich.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    assert len(infos) == 1
    info = error_details_pb2.ErrorInfo()
    infos[0].Unpack(info)
    assert info.reason == "ILLEGAL_TRANSITION"
    assert dict(info.metadata) == {"state": "CANCELLED", "transition": "renew"}
    req: list[any_pb2.Any] = [
        d for d in rich.details if d.Is(error_details_pb2.RequestInfo.DESCRIPTOR)
    ]
    request_info = error_details_pb2.RequestInfo()
    req[0].Unpack(request_info)
    assert request_info.request_id == "req-from-context"


def test_lost_optimistic_concurrency_race_is_aborted() -> None:
    from sqlalchemy.orm.exc import StaleDataError

    from cardinsa_foundation.errors import Aborted, from_exception

    mapped = from_exception(
        StaleDataError(
            "UPDATE statement on table 'users' expected to update 1 row(s); 0 were matched."
        )
    )
    assert isinstance(mapped, Aborted)
    assert mapped.reason == "CONCURRENT_MODIFICATION"
    assert "users" not in str(mapped)


def test_rich_status_stays_small_whatever_the_input_echoed() -> None:
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status as rs

    from cardinsa_foundation.errors import FieldViolation, InvalidArgument, to_rpc_status

    error = InvalidArgument(
        "bad " + "x" * 20_000,
        metadata={"path": "y" * 20_000},
        field_violations=[FieldViolation(f"f[{i}]", "z" * 5_000) for i in range(300)],
    )
    status = to_rpc_status(error, "req-1")
    packed = dict(status.trailing_metadata)["grpc-status-details-bin"]
    assert len(packed) < 8 * 1024  # gRPC's soft metadata limit
    decoded = rs.status_pb2.Status.FromString(packed)
    bad = error_details_pb2.BadRequest()
    next(d for d in decoded.details if d.Is(bad.DESCRIPTOR)).Unpack(bad)
    assert len(bad.field_violations) == 21
    assert bad.field_violations[-1].description == "... and 280 more violations"
