"""A server-streaming call (identity's WatchRevocations) goes through the same
pipeline as a unary one: it is in the in-flight gauge while it streams, counted
with its code when it ends, and has a server span (continuing the caller's
``traceparent``) with its status code and request id; refused streams are
mapped to a status with the request id, as unary calls are.

A real grpc.aio server of the foundation on 127.0.0.1, a fake servicer.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support.tokens import AUDIENCE, ISSUER, TokenMinter

from cardinsa.identity.v1 import identity_service_pb2, identity_service_pb2_grpc
from cardinsa_foundation import metrics, tracing
from cardinsa_foundation.auth import JwksCache, TokenVerifier
from cardinsa_foundation.config import Settings
from cardinsa_foundation.errors import FailedPrecondition
from cardinsa_foundation.server import GrpcServer, ServiceRegistration

pytestmark = pytest.mark.integration

SERVICE = "cardinsa.identity.v1.IdentityService"
WATCH = f"{SERVICE}/WatchRevocations"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CLIENT_SPAN}-01"
BROKEN_CURSOR = 13


class FakeIdentity(identity_service_pb2_grpc.IdentityServiceServicer):
    """Sends one message, then waits until released; cursor 13 fails mid-stream."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def WatchRevocations(
        self, request: Any, context: Any
    ) -> AsyncIterator[identity_service_pb2.WatchRevocationsResponse]:
        yield identity_service_pb2.WatchRevocationsResponse(cursor=1, caught_up=True)
        if request.after_cursor == BROKEN_CURSOR:
            raise FailedPrecondition("the stream cannot go on", reason="TEST_STREAM_BROKEN")
        await self.release.wait()
        yield identity_service_pb2.WatchRevocationsResponse(cursor=2)


@pytest.fixture
async def streaming() -> AsyncIterator[dict[str, Any]]:
    signer = TokenMinter()

    async def jwks() -> dict[str, Any]:
        return signer.jwks()

    identity = FakeIdentity()
    server = GrpcServer(
        name="identity",
        services=[
            ServiceRegistration(
                identity_service_pb2.DESCRIPTOR.services_by_name["IdentityService"],
                identity_service_pb2_grpc.add_IdentityServiceServicer_to_server,
                identity,
            )
        ],
        port=0,
        verifier=TokenVerifier(JwksCache(jwks), issuer=ISSUER, audience=AUDIENCE, leeway_s=5),
        grace_period_s=1,
        drain_delay_s=0,
    )
    await server.start()
    channel = grpc.aio.insecure_channel(server.address)
    try:
        yield {
            "stub": identity_service_pb2_grpc.IdentityServiceStub(channel),  # type: ignore[no-untyped-call]
            "token": signer.token(perms=["revocations.watch"]),
            "identity": identity,
        }
    finally:
        identity.release.set()
        await channel.close()
        await server.stop(grace_s=1)


def in_flight() -> float:
    value = metrics.REGISTRY.get_sample_value(
        "grpc_server_in_flight", {"grpc_service": SERVICE, "grpc_method": "WatchRevocations"}
    )
    return value or 0.0


def handled(code: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "grpc_server_handled_total",
        {"grpc_service": SERVICE, "grpc_method": "WatchRevocations", "grpc_code": code},
    )
    return value or 0.0


def watch(
    streaming: dict[str, Any], request_id: str, *, after_cursor: int = 0, authorized: bool = True
) -> Any:
    metadata = [("x-request-id", request_id), ("traceparent", TRACEPARENT)]
    if authorized:
        metadata.append(("authorization", f"Bearer {streaming['token']}"))
    return streaming["stub"].WatchRevocations(
        identity_service_pb2.WatchRevocationsRequest(after_cursor=after_cursor),
        metadata=metadata,
        timeout=10,
    )


async def test_a_stream_is_in_flight_while_it_streams_and_counted_when_it_ends(
    streaming: dict[str, Any],
) -> None:
    before, ok_before = in_flight(), handled("OK")
    call = watch(streaming, f"stream-{uuid.uuid4()}")
    first = await call.read()
    assert first.cursor == 1
    assert in_flight() == before + 1
    assert handled("OK") == ok_before  # not counted before it ends
    streaming["identity"].release.set()
    second = await call.read()
    assert second.cursor == 2
    assert await call.read() is grpc.aio.EOF
    assert await call.code() is grpc.StatusCode.OK
    for _ in range(50):  # the server's bookkeeping runs after the last message
        if in_flight() == before and handled("OK") == ok_before + 1:
            break
        await asyncio.sleep(0.02)
    assert in_flight() == before
    assert handled("OK") == ok_before + 1


async def test_a_stream_failing_or_refused_gets_the_mapped_status_and_its_request_id(
    streaming: dict[str, Any],
) -> None:
    before = in_flight()
    broken = watch(streaming, "stream-broken", after_cursor=BROKEN_CURSOR)
    assert (await broken.read()).cursor == 1
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await broken.read()
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert ("x-request-id", "stream-broken") in tuple(caught.value.trailing_metadata() or ())

    refused = watch(streaming, "stream-refused", authorized=False)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await refused.read()
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert ("x-request-id", "stream-refused") in tuple(caught.value.trailing_metadata() or ())
    for _ in range(50):
        if in_flight() == before:
            break
        await asyncio.sleep(0.02)
    assert in_flight() == before


async def test_with_tracing_on_a_stream_has_a_server_span_like_a_unary_call(
    streaming: dict[str, Any],
) -> None:
    exporter = InMemorySpanExporter()
    settings = Settings(_env_file=None, tracing_enabled=True)  # type: ignore[call-arg]
    assert tracing.configure(settings, "identity", exporter=exporter) is True
    try:
        streaming["identity"].release.set()
        request_id = f"traced-{uuid.uuid4()}"
        replies = [reply async for reply in watch(streaming, request_id)]
        assert [reply.cursor for reply in replies] == [1, 2]
        broken = watch(streaming, "traced-broken", after_cursor=BROKEN_CURSOR)
        assert (await broken.read()).cursor == 1
        with pytest.raises(grpc.aio.AioRpcError):
            await broken.read()
        for _ in range(50):
            assert tracing.force_flush()
            if len(exporter.get_finished_spans()) >= 2:
                break
            await asyncio.sleep(0.02)
        spans = [s for s in exporter.get_finished_spans() if s.kind is trace.SpanKind.SERVER]
    finally:
        tracing.shutdown()
    by_request = {(s.attributes or {}).get("cardinsa.request_id"): s for s in spans}
    assert set(by_request) == {request_id, "traced-broken"}, spans
    ok = by_request[request_id]
    assert ok.name == WATCH
    assert format(ok.context.trace_id, "032x") == TRACE_ID
    assert ok.parent is not None and format(ok.parent.span_id, "016x") == CLIENT_SPAN
    assert (ok.attributes or {})["rpc.grpc.status_code"] == 0
    assert (ok.attributes or {}).get("cardinsa.company_id")
    assert (by_request["traced-broken"].attributes or {})["rpc.grpc.status_code"] == 9
