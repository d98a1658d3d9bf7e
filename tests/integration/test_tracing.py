"""Tracing in one process: two real foundation servers on 127.0.0.1 (a "front"
whose handler reads the real test PostgreSQL and calls a "back" server through
a channel with the foundation's client interceptors), tracing off and on.

- off (the default): no span exists in the handler, nothing of the SDK is even
  imported (checked in a fresh interpreter), no provider or exporter is created
  and the real OTLP receiver gets nothing; the request id still goes on to the
  next service, without any trace context;
- on (spans kept in memory by the SDK's in-memory exporter): the RPC span
  continues the caller's ``traceparent``; the statements of Database.transaction
  (asyncpg) and of a unit of work (SQLAlchemy) and the outgoing call are its
  children; the back server's span is the outgoing call's child and sees the
  same request id; the trace id is in the JSON log line and in an error's
  RequestInfo; health checks get no span.

The end-to-end picture (Envoy, core, company, the OTLP wire) is in
tests/e2e/test_e2e_tracing.py.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import text
from support.otlp_receiver import OtlpReceiver
from support.tokens import AUDIENCE, ISSUER, TokenMinter

from cardinsa.identity.v1 import resources_pb2, user_service_pb2, user_service_pb2_grpc
from cardinsa_foundation import tracing
from cardinsa_foundation.auth import JwksCache, TokenVerifier
from cardinsa_foundation.config import Settings
from cardinsa_foundation.context import current_request_id, trace_var
from cardinsa_foundation.db import Database
from cardinsa_foundation.errors import NotFound
from cardinsa_foundation.logging import configure_logging
from cardinsa_foundation.server import GrpcServer, ServiceRegistration

pytestmark = pytest.mark.integration

GET_USER = "cardinsa.identity.v1.UserService/GetUser"
MISSING = "00000000-0000-0000-0000-000000000000"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CLIENT_SPAN}-01"


@dataclass
class Seen:
    """What the handlers observed."""

    front_span_valid: list[bool] = field(default_factory=list)
    front_trace: list[tuple[str, str] | None] = field(default_factory=list)
    back_metadata: list[dict[str, str]] = field(default_factory=list)


class Front(user_service_pb2_grpc.UserServiceServicer):
    def __init__(self, db: Database, back: grpc.aio.Channel, seen: Seen) -> None:
        self.db = db
        self.back = user_service_pb2_grpc.UserServiceStub(back)  # type: ignore[no-untyped-call]
        self.seen = seen

    async def GetUser(self, request: Any, context: Any) -> resources_pb2.User:
        self.seen.front_span_valid.append(trace.get_current_span().get_span_context().is_valid)
        self.seen.front_trace.append(trace_var.get())
        async with self.db.transaction(company_id=None) as connection:
            await connection.fetchval("SELECT 1 AS asyncpg_statement")
        async with self.db.unit_of_work(company_id=None) as session:
            await session.execute(text("SELECT 2 AS orm_statement"))
        metadata = dict(context.invocation_metadata())
        try:
            reply: resources_pb2.User = await self.back.GetUser(
                user_service_pb2.GetUserRequest(user_id=request.user_id),
                metadata=[("authorization", metadata["authorization"])],
                timeout=10,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.NOT_FOUND:
                raise NotFound("user not found", reason="USER_NOT_FOUND") from None
            raise
        return reply


class Back(user_service_pb2_grpc.UserServiceServicer):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    async def GetUser(self, request: Any, context: Any) -> resources_pb2.User:
        self.seen.back_metadata.append(dict(context.invocation_metadata()))
        if request.user_id == MISSING:
            raise NotFound("user not found", reason="USER_NOT_FOUND")
        return resources_pb2.User(id=request.user_id, email="a@b.example")


def _server(name: str, servicer: Any, verifier: TokenVerifier) -> GrpcServer:
    return GrpcServer(
        name=name,
        services=[
            ServiceRegistration(
                user_service_pb2.DESCRIPTOR.services_by_name["UserService"],
                user_service_pb2_grpc.add_UserServiceServicer_to_server,
                servicer,
            )
        ],
        port=0,
        verifier=verifier,
        grace_period_s=1,
        drain_delay_s=0,
    )


@dataclass
class Pair:
    front: GrpcServer
    channel: grpc.aio.Channel
    token: str
    seen: Seen
    log: io.StringIO


@pytest.fixture
async def pair_factory(test_database_url: str) -> AsyncIterator[Any]:
    """Builds front + back once tracing is configured (the Database hooks its
    engine at construction, as in a service); stops everything it built."""
    signer = TokenMinter()

    async def jwks() -> dict[str, Any]:
        return signer.jwks()

    verifier = TokenVerifier(JwksCache(jwks), issuer=ISSUER, audience=AUDIENCE, leeway_s=5)
    built: list[tuple[GrpcServer, GrpcServer, grpc.aio.Channel, grpc.aio.Channel, Database]] = []
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level

    async def build() -> Pair:
        seen = Seen()
        log = io.StringIO()
        configure_logging("INFO", True, "trace-test", stream=log)
        db = Database(test_database_url, Settings(_env_file=None))  # type: ignore[call-arg]
        back = _server("back", Back(seen), verifier)
        await back.start()
        to_back = grpc.aio.insecure_channel(
            back.address, interceptors=tracing.client_interceptors()
        )
        front = _server("front", Front(db, to_back, seen), verifier)
        await front.start()
        channel = grpc.aio.insecure_channel(front.address)
        built.append((front, back, channel, to_back, db))
        token = signer.token(perms=["users.get"])
        return Pair(front, channel, token, seen, log)

    try:
        yield build
    finally:
        for front, back, channel, to_back, db in built:
            await channel.close()
            await front.stop(grace_s=1)
            await to_back.close()
            await back.stop(grace_s=1)
            await db.dispose()
        tracing.shutdown()
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)


async def _get_user(pair: Pair, user_id: str, request_id: str) -> Any:
    stub = user_service_pb2_grpc.UserServiceStub(pair.channel)  # type: ignore[no-untyped-call]
    return await stub.GetUser(
        user_service_pb2.GetUserRequest(user_id=user_id),
        metadata=[
            ("authorization", f"Bearer {pair.token}"),
            ("x-request-id", request_id),
            ("traceparent", TRACEPARENT),
        ],
        timeout=10,
    )


def _request_info(error: grpc.aio.AioRpcError) -> error_details_pb2.RequestInfo:
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.RequestInfo.DESCRIPTOR):
            info = error_details_pb2.RequestInfo()
            detail.Unpack(info)
            return info
    raise AssertionError("no RequestInfo")


def _log_lines(pair: Pair) -> list[dict[str, Any]]:
    return [json.loads(line) for line in pair.log.getvalue().splitlines() if line.startswith("{")]


def test_with_tracing_off_nothing_of_the_sdk_is_even_loaded() -> None:
    script = (
        "import sys\n"
        "import cardinsa_foundation.server, cardinsa_foundation.db\n"
        "from cardinsa_foundation import tracing\n"
        "from cardinsa_foundation.config import Settings\n"
        "assert tracing.configure(Settings(_env_file=None), 'probe') is False\n"
        "assert tracing.TRACER is None and tracing._provider is None\n"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', "
        "'opentelemetry.exporter'))))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "CARDINSA_TRACING_ENABLED": "false"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout


async def test_with_tracing_off_no_span_or_exporter_exists_and_the_request_id_goes_on(
    pair_factory: Any,
) -> None:
    with OtlpReceiver() as receiver:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, tracing_enabled=False, tracing_otlp_endpoint=receiver.endpoint
        )
        assert tracing.configure(settings, "front") is False
        pair: Pair = await pair_factory()
        request_id = f"off-{uuid.uuid4()}"
        reply = await _get_user(pair, str(uuid.uuid4()), request_id)
        assert reply.email == "a@b.example"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _get_user(pair, MISSING, f"off-{uuid.uuid4()}")
        assert caught.value.code() is grpc.StatusCode.NOT_FOUND

        assert tracing.TRACER is None and tracing._provider is None
        assert tracing.force_flush() is True  # nothing to flush
        assert pair.seen.front_span_valid == [False, False]
        assert pair.seen.front_trace == [None, None]
        # The request id reaches the next service; no trace context does.
        first = pair.seen.back_metadata[0]
        assert first["x-request-id"] == request_id
        assert "traceparent" not in first
        assert _request_info(caught.value).serving_data == ""
        lines = [line for line in _log_lines(pair) if line.get("request_id") == request_id]
        assert lines and not any("trace_id" in line for line in lines), lines
        assert receiver.exports == 0


async def test_with_tracing_on_the_call_its_statements_and_its_outgoing_call_are_one_trace(
    pair_factory: Any,
) -> None:
    exporter = InMemorySpanExporter()
    settings = Settings(_env_file=None, tracing_enabled=True)  # type: ignore[call-arg]
    assert tracing.configure(settings, "front", exporter=exporter) is True
    pair: Pair = await pair_factory()
    request_id = f"on-{uuid.uuid4()}"
    await _get_user(pair, str(uuid.uuid4()), request_id)
    health = health_pb2_grpc.HealthStub(pair.channel)  # type: ignore[no-untyped-call]
    await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert tracing.force_flush()
    spans: list[ReadableSpan] = list(exporter.get_finished_spans())

    def hex_id(value: int, width: int = 16) -> str:
        return format(value, f"0{width}x")

    by_id = {hex_id(s.context.span_id): s for s in spans}
    assert {hex_id(s.context.trace_id, 32) for s in spans} == {TRACE_ID}, spans
    servers = [s for s in spans if s.kind is trace.SpanKind.SERVER]
    assert all(s.name == GET_USER for s in servers), [s.name for s in servers]  # no health span
    (front,) = [s for s in servers if s.parent and hex_id(s.parent.span_id) == CLIENT_SPAN]
    assert front.attributes is not None
    assert front.attributes["cardinsa.request_id"] == request_id
    assert front.attributes["rpc.grpc.status_code"] == 0
    children = [s for s in spans if s.parent and s.parent.span_id == front.context.span_id]
    names = [s.name for s in sorted(children, key=lambda s: s.start_time or 0)]
    # BEGIN (with the tenant), the asyncpg statement, COMMIT; the ORM's tenant
    # setting and statement; the call to the back server.
    assert names[:3] == ["BEGIN", "SELECT", "COMMIT"], names
    texts = [str((s.attributes or {}).get("db.query.text", "")) for s in children]
    assert any("asyncpg_statement" in t for t in texts), texts
    assert any("orm_statement" in t for t in texts), texts
    assert names[-1] == GET_USER, names
    call = sorted(children, key=lambda s: s.start_time or 0)[-1]
    assert call.kind is trace.SpanKind.CLIENT
    (back,) = [s for s in servers if s is not front]
    assert back.parent is not None and by_id[hex_id(back.parent.span_id)] is call
    # What the back server received: the same request id, the client span's context.
    received = pair.seen.back_metadata[0]
    assert received["x-request-id"] == request_id
    assert received["traceparent"] == f"00-{TRACE_ID}-{hex_id(call.context.span_id)}-01"
    # The trace id in the handler's context and in the call's log line.
    assert pair.seen.front_trace == [(TRACE_ID, hex_id(front.context.span_id))]
    access = [
        line
        for line in _log_lines(pair)
        if line.get("request_id") == request_id and line.get("message") == "rpc"
    ]
    assert {line["trace_id"] for line in access} == {TRACE_ID}, access
    assert hex_id(front.context.span_id) in {line["span_id"] for line in access}


async def test_with_tracing_on_an_error_names_its_trace(pair_factory: Any) -> None:
    exporter = InMemorySpanExporter()
    settings = Settings(_env_file=None, tracing_enabled=True)  # type: ignore[call-arg]
    tracing.configure(settings, "front", exporter=exporter)
    pair: Pair = await pair_factory()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _get_user(pair, MISSING, f"err-{uuid.uuid4()}")
    # The back server's NOT_FOUND, passed through the front's pipeline.
    assert _request_info(caught.value).serving_data == f"trace_id={TRACE_ID}"
    assert current_request_id() is None  # nothing leaked into the test's context
