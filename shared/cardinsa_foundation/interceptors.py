"""The per-call pipeline every Cardinsa server runs, on grpc.aio directly.

Concerns, in the order they act on a call:

1. request id — taken from ``x-request-id`` (when well-formed) or generated,
   put in the request context and returned in the initial metadata;
2. client address — the gRPC peer, or the gateway's trusted header when the
   call proves it came through the gateway;
3. authentication — a bearer access token verified against identity's JWKS;
4. authorization — the rule the proto declares for the method (default deny);
5. tenant context — the company id of the verified token, never anything else;
6. error mapping — CardinsaError and database errors to gRPC status with
   google.rpc details; anything unexpected to INTERNAL with the request id only;
7. metrics and one JSON access-log line per call;
8. tracing (when on) -- the call's span, continuing the caller's
   ``traceparent`` (cardinsa_foundation.tracing); off, one test of a global.

They run as one grpc.aio interceptor rather than a stack of layers, one per
concern: each layer costs every call a share of its CPU before doing any work
(``scripts/bench_interceptors.py``; figures in docs/performance.md). One layer,
with the wrapped handler built once per method and cached, pays that once.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, NoReturn

import grpc
from grpc.aio import ServicerContext

from cardinsa_foundation import metrics, tracing
from cardinsa_foundation.auth import TokenVerifier, bearer_token
from cardinsa_foundation.authorization import (
    INFRASTRUCTURE_SERVICES,
    Access,
    MethodRule,
    rule_for_path,
)
from cardinsa_foundation.context import (
    Principal,
    client_address_var,
    method_var,
    new_request_id,
    principal_var,
    request_id_var,
)
from cardinsa_foundation.errors import (
    CardinsaError,
    Internal,
    InvalidArgument,
    Unauthenticated,
    describe_for_log,
    from_exception,
    to_rpc_status,
)
from cardinsa_foundation.logging import AccessLogger

access_log = AccessLogger("cardinsa.access")
error_log = logging.getLogger("cardinsa.errors")

REQUEST_ID_HEADER = "x-request-id"
GATEWAY_AUTH_HEADER = "x-cardinsa-gateway-auth"
GATEWAY_CLIENT_ADDRESS_HEADER = "x-envoy-external-address"
_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

# Called after authorization with the verified principal; raises a
# CardinsaError to refuse (for example when the caller's company is suspended).
PrincipalCheck = Callable[[Principal], Awaitable[None]]


def _peer_address(peer: str | None) -> str | None:
    # "ipv4:127.0.0.1:5555", "ipv6:[::1]:5555", "unix:/path"
    if not peer:
        return None
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    return rest or kind


class CallPipeline(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Request id, auth, authorization, tenancy, errors, metrics and access log."""

    def __init__(
        self,
        *,
        rules: dict[str, MethodRule],
        verifier: TokenVerifier | None,
        service: str,
        gateway_secret: str | None = None,
        principal_check: PrincipalCheck | None = None,
    ) -> None:
        self._rules = rules
        self._verifier = verifier
        self._service = service
        self._gateway_secret = gateway_secret.encode() if gateway_secret else None
        self._principal_check = principal_check
        self._wrapped: dict[tuple[str, int], grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        key = (method, id(handler))
        wrapped = self._wrapped.get(key)
        if wrapped is None:
            wrapped = self._wrap(method, handler)
            self._wrapped[key] = wrapped
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        rule = rule_for_path(self._rules, method)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, rule, handler.unary_unary),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if rule.access is Access.PUBLIC:
            # Streaming infrastructure (reflection, health watch): public and
            # left as it is.
            return handler
        if handler.unary_stream is not None:
            # Server streaming (WatchRevocations): the same pipeline, once at
            # the start of the stream.
            return grpc.unary_stream_rpc_method_handler(
                self._unary_stream(method, rule, handler.unary_stream),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        # No client-streaming method of ours exists; refuse any that appears
        # without going through the pipeline.
        return grpc.unary_unary_rpc_method_handler(
            self._unary(method, MethodRule(method, Access.DENIED), _never_called),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _unary(
        self,
        method: str,
        rule: MethodRule,
        behavior: Callable[[Any, ServicerContext], Awaitable[Any]],
    ) -> Callable[[Any, ServicerContext], Awaitable[Any]]:
        begin = self._call_scope(method, rule)

        async def call(request: Any, context: ServicerContext) -> Any:
            scope = begin(context)
            try:
                await scope.admit(request)
                return await behavior(request, context)
            except BaseException as exc:
                await scope.fail(exc)
            finally:
                scope.finish()

        return call

    def _unary_stream(
        self,
        method: str,
        rule: MethodRule,
        behavior: Callable[[Any, ServicerContext], AsyncIterator[Any]],
    ) -> Callable[[Any, ServicerContext], AsyncIterator[Any]]:
        """Server streaming: the same pipeline, admitted once at the start; the
        in-flight gauge, the duration and the span cover the whole stream."""
        begin = self._call_scope(method, rule)

        async def call(request: Any, context: ServicerContext) -> AsyncIterator[Any]:
            scope = begin(context)
            try:
                await scope.admit(request)
                async for reply in behavior(request, context):
                    yield reply
            except BaseException as exc:
                await scope.fail(exc)
            finally:
                scope.finish()

        return call

    def _call_scope(self, method: str, rule: MethodRule) -> Callable[[ServicerContext], _Call]:
        """What a method's calls share, computed once per method: a factory of
        :class:`_Call` (one per call)."""
        # Health probes arrive every second from load balancers: count them,
        # but keep them out of the INFO access log. Probes and reflection get
        # no span (a root trace per health check).
        infrastructure = method[1:].split("/", 1)[0] in INFRASTRUCTURE_SERVICES
        shared = _MethodScope(
            pipeline=self,
            method=method,
            rule=rule,
            needs_token=rule.access is not Access.PUBLIC,
            log_level=logging.DEBUG if infrastructure else logging.INFO,
            traced=not infrastructure,
        )
        return partial(_Call, shared)

    async def _authenticate(
        self, metadata: Mapping[str, str], verifier: TokenVerifier | None
    ) -> Principal:
        token = bearer_token(metadata)
        if token is None:
            raise Unauthenticated("an access token is required", reason="MISSING_TOKEN")
        if verifier is None:
            raise Unauthenticated("this server cannot verify tokens", reason="NO_VERIFIER")
        return await verifier.verify(token)

    def _client_address(self, metadata: Mapping[str, str], context: ServicerContext) -> str | None:
        if self._gateway_secret is not None:
            proof = metadata.get(GATEWAY_AUTH_HEADER)
            forwarded = metadata.get(GATEWAY_CLIENT_ADDRESS_HEADER)
            if proof and forwarded and hmac.compare_digest(proof.encode(), self._gateway_secret):
                return forwarded
        return _peer_address(context.peer())


@dataclass(frozen=True, slots=True)
class _MethodScope:
    pipeline: CallPipeline
    method: str
    rule: MethodRule
    needs_token: bool
    log_level: int
    traced: bool


class _Call:
    """One call through the pipeline, unary or streaming: the request id,
    client address, span and in-flight gauge from the start (:meth:`__init__`);
    authentication, authorization and the tenant check (:meth:`admit`); the
    error mapping (:meth:`fail`); metrics, the access log and the span's end
    (:meth:`finish`)."""

    __slots__ = (
        "_in_flight",
        "_metadata",
        "code",
        "context",
        "request_id",
        "scope",
        "span",
        "started",
    )

    def __init__(self, scope: _MethodScope, context: ServicerContext) -> None:
        self.scope = scope
        self.context = context
        self.started = time.perf_counter()
        metadata: Mapping[str, str] = dict(context.invocation_metadata() or ())
        self._metadata = metadata
        request_id = metadata.get(REQUEST_ID_HEADER)
        if not request_id or not _REQUEST_ID_PATTERN.match(request_id):
            request_id = new_request_id()
        self.request_id = request_id
        request_id_var.set(request_id)
        method_var.set(scope.method)
        client_address_var.set(scope.pipeline._client_address(metadata, context))
        self.span = (
            tracing.start_server_span(scope.method, metadata)
            if scope.traced and tracing.TRACER is not None
            else None
        )
        self.code = "OK"
        self._in_flight = metrics.rpc_in_flight(scope.method)
        self._in_flight.__enter__()

    async def admit(self, request: Any) -> None:
        """Refuse the call (raise) unless its caller may make it."""
        scope = self.scope
        # Trailing, not initial, metadata: sending initial metadata early costs
        # a separate write per call (docs/performance.md).
        self.context.set_trailing_metadata(((REQUEST_ID_HEADER, self.request_id),))
        if scope.needs_token:
            pipeline = scope.pipeline
            principal = await pipeline._authenticate(self._metadata, pipeline._verifier)
            principal_var.set(principal)
            scope.rule.check(principal)
            if pipeline._principal_check is not None:
                await pipeline._principal_check(principal)
        if request is MALFORMED_REQUEST:
            raise InvalidArgument(
                "the request is not a valid protobuf message of this method",
                reason="MALFORMED_REQUEST",
            )

    async def fail(self, exc: BaseException) -> NoReturn:
        """The call raised ``exc``: abort with its status (re-raised as is when the
        handler aborted by itself or the call was cancelled)."""
        context = self.context
        if isinstance(exc, grpc.aio.AbortError):
            # The handler aborted by itself (context.abort...).
            self.code = _status_name(context)
            raise exc
        if isinstance(exc, CardinsaError):
            mapped = exc
        elif not isinstance(exc, Exception):
            self.code = "CANCELLED"
            raise exc
        else:
            mapped = from_exception(exc)
            if isinstance(mapped, Internal):
                error_log.error("unexpected error", exc_info=exc, extra=describe_for_log(exc))
        self.code = mapped.code.name
        await context.abort_with_status(_status_with_request_id(mapped, self.request_id))
        raise AssertionError("abort_with_status returned")  # pragma: no cover

    def finish(self) -> None:
        self._in_flight.__exit__(None, None, None)
        elapsed = time.perf_counter() - self.started
        metrics.observe_rpc(self.scope.method, self.code, elapsed)
        access_log.log(
            self.scope.log_level,
            "rpc",
            {"code": self.code, "duration_ms": round(elapsed * 1000, 3)},
        )
        if self.span is not None:
            caller = principal_var.get()
            tracing.end_server_span(
                self.span, self.code, self.request_id, caller.company_id if caller else None
            )


class _Status(grpc.Status):  # type: ignore[misc]
    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: Any) -> None:
        self.code = code
        self.details = details
        self.trailing_metadata = trailing_metadata


def _status_with_request_id(error: CardinsaError, request_id: str) -> grpc.Status:
    """The rich status plus ``x-request-id`` in the trailers (abort replaces
    whatever trailing metadata was set before)."""
    status = to_rpc_status(error, request_id)
    return _Status(
        status.code,
        status.details,
        (*tuple(status.trailing_metadata or ()), (REQUEST_ID_HEADER, request_id)),
    )


# Stands in for a request whose bytes did not parse: grpc.aio parses before any
# interceptor runs and would answer UNKNOWN with the parser's text; this way the
# call reaches the pipeline (authentication first) and gets INVALID_ARGUMENT.
MALFORMED_REQUEST: Any = object()


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:
            return MALFORMED_REQUEST

    return parse


def _status_name(context: ServicerContext) -> str:
    code = getattr(context, "code", None)
    value = code() if callable(code) else None
    if isinstance(value, grpc.StatusCode):
        return str(value.name)
    return "UNKNOWN"


async def _never_called(request: Any, context: ServicerContext) -> Any:  # pragma: no cover
    raise Internal("internal error")
