"""A real OTLP trace receiver on 127.0.0.1: the collector's gRPC TraceService
(``opentelemetry.proto.collector.trace.v1``), keeping every span it is sent.

Envoy's OpenTelemetry tracer and the services' OTLP exporters send to it
exactly as to a collector. :meth:`OtlpReceiver.spans` flattens what arrived into
:class:`ReceivedSpan` rows (service name from the resource, ids in hex);
:func:`render_tree` prints one trace as an indented tree of
``service  span name  (kind)`` lines, each under its parent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

__all__ = ["OtlpReceiver", "ReceivedSpan", "render_tree"]

_KINDS = {
    trace_pb2.Span.SPAN_KIND_SERVER: "server",
    trace_pb2.Span.SPAN_KIND_CLIENT: "client",
    trace_pb2.Span.SPAN_KIND_INTERNAL: "internal",
    trace_pb2.Span.SPAN_KIND_PRODUCER: "producer",
    trace_pb2.Span.SPAN_KIND_CONSUMER: "consumer",
}


def _value(value: common_pb2.AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root
    start_ns: int
    end_ns: int
    attributes: dict[str, Any] = field(hash=False, compare=False)


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self, sink: Callable[[trace_service_pb2.ExportTraceServiceRequest], None]) -> None:
        self._sink = sink

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._sink(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpReceiver:
    """``with OtlpReceiver() as receiver:`` listens on ``receiver.endpoint``."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._lock = threading.Lock()
        self._requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.exports = 0
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(
            _TraceService(self._keep), self._server
        )
        self.port = self._server.add_insecure_port(f"{host}:0")
        self.host = host

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _keep(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        with self._lock:
            self._requests.append(request)
            self.exports += 1

    def __enter__(self) -> OtlpReceiver:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._server.stop(grace=1).wait(5)

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            requests = list(self._requests)
        found: list[ReceivedSpan] = []
        for request in requests:
            for resource_spans in request.resource_spans:
                resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                service = str(resource.get("service.name", "?"))
                for scope in resource_spans.scope_spans:
                    for span in scope.spans:
                        found.append(
                            ReceivedSpan(
                                service=service,
                                name=span.name,
                                kind=_KINDS.get(span.kind, "unspecified"),
                                trace_id=span.trace_id.hex(),
                                span_id=span.span_id.hex(),
                                parent_id=span.parent_span_id.hex(),
                                start_ns=span.start_time_unix_nano,
                                end_ns=span.end_time_unix_nano,
                                attributes={a.key: _value(a.value) for a in span.attributes},
                            )
                        )
        return found

    def wait_for(
        self, done: Callable[[list[ReceivedSpan]], bool], timeout_s: float = 60.0
    ) -> list[ReceivedSpan]:
        """Poll until ``done(spans)`` (exporters send in batches); the spans either way."""
        deadline = time.monotonic() + timeout_s
        while True:
            spans = self.spans()
            if done(spans) or time.monotonic() > deadline:
                return spans
            time.sleep(0.2)


def render_tree(spans: Sequence[ReceivedSpan], *, outside: Iterable[str] = ()) -> str:
    """One trace as lines ``service  name  (kind)``, children indented under
    their parent, siblings by start time; ``outside`` parent ids (a client's
    own span) are shown as such."""
    by_id = {s.span_id: s for s in spans}
    children: dict[str, list[ReceivedSpan]] = {}
    roots: list[ReceivedSpan] = []
    outside_ids = set(outside)
    for span in spans:
        if span.parent_id and span.parent_id in by_id:
            children.setdefault(span.parent_id, []).append(span)
        else:
            roots.append(span)
    lines: list[str] = []

    def walk(span: ReceivedSpan, depth: int) -> None:
        parent = span.parent_id or "-"
        if span.parent_id in outside_ids:
            parent += " (the client's span)"
        lines.append(
            f"{'  ' * depth}{span.service:<18} {span.name}  ({span.kind}; "
            f"span {span.span_id}, parent {parent})"
        )
        for child in sorted(children.get(span.span_id, []), key=lambda s: s.start_ns):
            walk(child, depth + 1)

    for root in sorted(roots, key=lambda s: s.start_ns):
        walk(root, 0)
    return "\n".join(lines)
