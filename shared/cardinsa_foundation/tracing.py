"""OpenTelemetry traces: off by default, on with ``CARDINSA_TRACING_ENABLED=true``.

One call through the gateway becomes one trace: Envoy starts it (or continues a
client's W3C ``traceparent``) and passes it on; every service continues it in
its call pipeline (:mod:`cardinsa_foundation.interceptors`), with a span per
RPC, per database statement (:mod:`cardinsa_foundation.db`) and per outgoing
gRPC call (:func:`client_interceptors`, on every channel a service opens),
which carries ``traceparent`` and ``x-request-id`` on to the next service.
Spans go over OTLP/gRPC to ``CARDINSA_TRACING_OTLP_ENDPOINT`` (a collector),
in batches from a background thread; the trace id is in every JSON log line
and in the RequestInfo of every error.

The spans are written here by hand rather than by the OpenTelemetry
instrumentation packages: the services have one interceptor and one database
layer, so a dozen lines each cover every RPC and statement, with the span names
and attributes of the OpenTelemetry semantic conventions (``rpc.*``, ``db.*``),
and nothing patches grpc or SQLAlchemy behind our back.

With tracing off nothing of the SDK is imported, no provider, processor or
exporter exists, and the hooks on the hot path are a test of a module global
(:data:`TRACER` is None): ``make bench`` times them against a GetPolicy's CPU
per call ("tracing off" row, target ≤ 2 %). Only the request id is passed on
to other services then (no trace context exists).

Sampling: Envoy decides for calls through the gateway (its random sampling is
``CARDINSA_TRACING_SAMPLE_RATIO``); a service follows the caller's decision
(``traceparent``'s sampled flag) and samples calls without a parent at the same
ratio. Database statements and outgoing calls outside a sampled call (health
probes, background refreshes) get no span of their own.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from cardinsa_foundation.context import request_id_var, trace_var
from cardinsa_foundation.logging import redact_text

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from cardinsa_foundation.config import Settings

log = logging.getLogger(__name__)

__all__ = [
    "TRACER",
    "ClientCallTracing",
    "ServerSpan",
    "TracedConnection",
    "client_interceptors",
    "configure",
    "database_span",
    "end_server_span",
    "force_flush",
    "otlp_endpoint",
    "shutdown",
    "start_server_span",
    "trace_sqlalchemy",
]

REQUEST_ID_HEADER = "x-request-id"
TRACEPARENT_HEADER = "traceparent"
INSTRUMENTATION_NAME = "cardinsa"

#: The tracer while tracing is on; None when it is off (the hot path's test).
TRACER: Tracer | None = None
_provider: TracerProvider | None = None
_PROPAGATOR = TraceContextTextMapPropagator()

# gRPC codes that make a server span an error (semantic conventions for RPC
# servers: the others are the caller's mistakes, not the server's).
_SERVER_ERROR_CODES = frozenset(
    {"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"}
)
_CODE_NUMBERS = {code.name: code.value[0] for code in grpc.StatusCode}


def otlp_endpoint(url: str) -> tuple[str, int, bool]:
    """``http(s)://host:port`` → (host, port, tls); ValueError for anything else."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be http://host:port or https://host:port")
    if parts.path not in ("", "/") or parts.query or parts.username:
        raise ValueError("must be http://host:port or https://host:port (no path or user)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has an invalid port") from None
    return (
        parts.hostname,
        port or (443 if parts.scheme == "https" else 4317),
        (parts.scheme == "https"),
    )


def configure(settings: Settings, service: str, *, exporter: SpanExporter | None = None) -> bool:
    """Start exporting this process's spans when ``settings.tracing_enabled``.

    ``service`` becomes the resource's ``service.name`` (``cardinsa-<service>``).
    ``exporter`` replaces the OTLP exporter (tests). Returns whether tracing is
    on. Calling it again replaces the previous set-up (flushing it first).
    """
    global TRACER, _provider  # noqa: PLW0603 - the process's one tracer
    shutdown()
    if not settings.tracing_enabled:
        return False
    # Imported only when on: with tracing off none of the SDK is loaded.
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    from cardinsa_foundation import __version__

    if exporter is None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        host, port, tls = otlp_endpoint(settings.tracing_otlp_endpoint)
        exporter = OTLPSpanExporter(
            endpoint=f"{host}:{port}",
            insecure=not tls,
            timeout=settings.tracing_export_timeout_s,
        )
    provider = TracerProvider(
        sampler=ParentBased(TraceIdRatioBased(settings.tracing_sample_ratio)),
        resource=Resource.create(
            {
                "service.name": f"cardinsa-{service}",
                "service.namespace": "cardinsa",
                "service.version": __version__,
                "deployment.environment.name": settings.environment.value,
            }
        ),
        shutdown_on_exit=False,
    )
    provider.add_span_processor(
        BatchSpanProcessor(
            exporter,
            schedule_delay_millis=settings.tracing_export_interval_s * 1000,
            export_timeout_millis=settings.tracing_export_timeout_s * 1000,
        )
    )
    _provider = provider
    TRACER = provider.get_tracer(INSTRUMENTATION_NAME, __version__)
    log.info(
        "tracing on",
        extra={
            "otlp_endpoint": settings.tracing_otlp_endpoint,
            "sample_ratio": settings.tracing_sample_ratio,
        },
    )
    return True


def force_flush(timeout_s: float = 5.0) -> bool:
    """Export the spans still buffered (tests, shutdown)."""
    if _provider is None:
        return True
    return bool(_provider.force_flush(int(timeout_s * 1000)))


def shutdown() -> None:
    """Flush and stop exporting; tracing is off afterwards."""
    global TRACER, _provider
    provider, _provider, TRACER = _provider, None, None
    if provider is not None:
        provider.shutdown()


def _recording_parent() -> bool:
    return trace.get_current_span().is_recording()


# ------------------------------------------------------------------ server side


class ServerSpan:
    """A call's span in the pipeline: started by :func:`start_server_span`,
    ended by :func:`end_server_span` in the same coroutine."""

    __slots__ = ("span", "token")

    def __init__(self, span: Span, token: object) -> None:
        self.span = span
        self.token = token


def start_server_span(method: str, metadata: Mapping[str, str]) -> ServerSpan | None:
    """The span of one incoming call, continuing the caller's ``traceparent``,
    made the current span; None when tracing is off.

    Sets :data:`cardinsa_foundation.context.trace_var` (logs, errors) to its ids.
    """
    tracer = TRACER
    if tracer is None:
        return None
    parent = _PROPAGATOR.extract(metadata) if TRACEPARENT_HEADER in metadata else None
    service, _, name = method.lstrip("/").rpartition("/")
    span = tracer.start_span(
        method.lstrip("/"),
        context=parent,
        kind=SpanKind.SERVER,
        attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
    )
    ids = span.get_span_context()
    trace_var.set((format(ids.trace_id, "032x"), format(ids.span_id, "016x")))
    token = otel_context.attach(trace.set_span_in_context(span))
    return ServerSpan(span, token)


def end_server_span(
    handle: ServerSpan, code: str, request_id: str | None, company_id: str | None
) -> None:
    span = handle.span
    if span.is_recording():
        span.set_attribute("rpc.grpc.status_code", _CODE_NUMBERS.get(code, 2))
        if request_id:
            span.set_attribute("cardinsa.request_id", request_id)
        if company_id:
            span.set_attribute("cardinsa.company_id", company_id)
        if code in _SERVER_ERROR_CODES:
            span.set_status(Status(StatusCode.ERROR, code))
    span.end()
    otel_context.detach(handle.token)  # type: ignore[arg-type]


# ------------------------------------------------------------------ outgoing calls


class ClientCallTracing(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Every outgoing unary call: the caller's request id as ``x-request-id``
    (so the next service logs the same id), and with tracing on a client span
    whose context goes along as ``traceparent``."""

    async def intercept_unary_unary(
        self,
        continuation: Callable[[Any, Any], Awaitable[Any]],
        client_call_details: Any,
        request: Any,
    ) -> Any:
        details = client_call_details
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        request_id = request_id_var.get()
        if request_id and REQUEST_ID_HEADER not in metadata:
            metadata.add(REQUEST_ID_HEADER, request_id)
        tracer = TRACER
        current = trace.get_current_span()
        if tracer is None or not current.get_span_context().is_valid:
            return await continuation(details._replace(metadata=metadata), request)
        if not current.is_recording():
            # Not sampled: pass the trace (and the decision) on, no span.
            _inject(metadata, otel_context.get_current())
            return await continuation(details._replace(metadata=metadata), request)
        method = details.method
        method = method.decode() if isinstance(method, bytes) else str(method)
        service, _, name = method.lstrip("/").rpartition("/")
        span = tracer.start_span(
            method.lstrip("/"),
            kind=SpanKind.CLIENT,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        )
        _inject(metadata, trace.set_span_in_context(span))
        try:
            call = await continuation(details._replace(metadata=metadata), request)
            code = await call.code()
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            span.end()
            raise
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code is not grpc.StatusCode.OK:
            span.set_status(Status(StatusCode.ERROR, code.name))
        span.end()
        return call


def _inject(metadata: grpc.aio.Metadata, context: otel_context.Context) -> None:
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=context)
    for key, value in carrier.items():
        metadata[key] = value


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """For every channel a service opens to another:
    ``grpc.aio.insecure_channel(address, interceptors=client_interceptors())``."""
    return [ClientCallTracing()]


# ------------------------------------------------------------------ database


_TARGET = re.compile(
    r"\b(?:FROM|INTO|UPDATE|JOIN)\s+((?:\"?[A-Za-z_][\w$]*\"?\.)?\"?[A-Za-z_][\w$]*\"?)",
    re.IGNORECASE,
)

# String literals, replaced by '?' in db.query.text (semantic conventions:
# sanitise what is not a parameter; here the tenant BEGIN inlines).
_LITERAL = re.compile(r"'(?:[^']|'')*'")
_CALL = re.compile(r"\s*SELECT\s+([A-Za-z_][\w$]*(?:\.[A-Za-z_][\w$]*)?)\s*\(", re.IGNORECASE)


@functools.lru_cache(maxsize=1024)
def _describe(statement: str) -> tuple[str, str, str]:
    """(span name, operation, text): ``SELECT core.read_policy``, ``INSERT
    core.policies``, ``BEGIN`` -- the semantic conventions' "operation target"
    summary; the text bounded, its string literals replaced by '?' and redacted
    like a log line (statements carry their values as parameters; a literal a
    caller inlined stays out of the trace)."""
    head = statement.lstrip().split(None, 1)
    operation = head[0].upper() if head else ""
    target = _TARGET.search(statement)
    name = operation or "postgresql"
    if target is None and operation == "SELECT":
        target = _CALL.match(statement)  # SELECT set_config(...): the function
    if target is not None and operation in ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH"):
        table = target.group(1).replace('"', "")
        name = f"{operation} {table}"
    return name, operation, redact_text(_LITERAL.sub("'?'", statement[:2000]))


@contextlib.contextmanager
def database_span(statement: str, *, system: str = "postgresql") -> Iterator[Span | None]:
    """A client span around one statement inside a sampled call (else no span).

    The statement text is the parameterised SQL (values are bind parameters,
    never in the text), so no request value reaches the trace.
    """
    tracer = TRACER
    if tracer is None or not _recording_parent():
        yield None
        return
    name, operation, query_text = _describe(statement)
    with tracer.start_as_current_span(
        name,
        kind=SpanKind.CLIENT,
        attributes={
            "db.system.name": system,
            "db.operation.name": operation,
            "db.query.text": query_text,
        },
    ) as span:
        yield span


class TracedConnection:
    """An asyncpg connection whose statements each get a span (see
    :meth:`cardinsa_foundation.db.Database.transaction` with tracing on)."""

    __slots__ = ("_connection",)

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    async def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
        with database_span(query):
            return await self._connection.execute(query, *args, **kwargs)

    async def executemany(self, query: str, *args: Any, **kwargs: Any) -> Any:
        with database_span(query):
            return await self._connection.executemany(query, *args, **kwargs)

    async def fetch(self, query: str, *args: Any, **kwargs: Any) -> Any:
        with database_span(query):
            return await self._connection.fetch(query, *args, **kwargs)

    async def fetchrow(self, query: str, *args: Any, **kwargs: Any) -> Any:
        with database_span(query):
            return await self._connection.fetchrow(query, *args, **kwargs)

    async def fetchval(self, query: str, *args: Any, **kwargs: Any) -> Any:
        with database_span(query):
            return await self._connection.fetchval(query, *args, **kwargs)


def trace_sqlalchemy(sync_engine: Any) -> None:
    """Spans for every statement an engine runs inside a sampled call (its
    cursor events; the statement is SQLAlchemy's parameterised text)."""
    from sqlalchemy import event

    def before(  # noqa: PLR0917 - SQLAlchemy's event signature
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        tracer = TRACER
        if tracer is None or context is None or not _recording_parent():
            return
        name, operation, query_text = _describe(statement)
        context._cardinsa_span = tracer.start_span(
            name,
            kind=SpanKind.CLIENT,
            attributes={
                "db.system.name": "postgresql",
                "db.operation.name": operation,
                "db.query.text": query_text,
            },
        )

    def after(  # noqa: PLR0917 - SQLAlchemy's event signature
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        span = getattr(context, "_cardinsa_span", None)
        if span is not None:
            context._cardinsa_span = None
            span.end()

    def failed(exception_context: Any) -> None:
        context = exception_context.execution_context
        span = getattr(context, "_cardinsa_span", None)
        if span is not None:
            context._cardinsa_span = None
            span.set_status(
                Status(StatusCode.ERROR, type(exception_context.original_exception).__name__)
            )
            span.end()

    event.listen(sync_engine, "before_cursor_execute", before)
    event.listen(sync_engine, "after_cursor_execute", after)
    event.listen(sync_engine, "handle_error", failed)
