"""The main listener: its HTTP connection manager (client address, request
ids, limits, access log, tracing), Envoy's own error replies, and the HTTP
filter chain in the order :mod:`cardinsa_gateway.envoy` explains. Its routes
are in :mod:`cardinsa_gateway.envoy_routes`, the JWT rules in
:mod:`cardinsa_gateway.envoy_jwt`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cardinsa_gateway.contract import Contract
from cardinsa_gateway.envoy_jwt import jwt_authn
from cardinsa_gateway.envoy_names import (
    F_BUFFER,
    F_CORS,
    F_HEALTH,
    F_JWT,
    F_LOGIN_LIMIT,
    F_MUTATION,
    F_RATELIMIT,
    F_ROUTER,
    F_TRANSCODER,
    HEALTH_PATH,
    LISTENER,
    OTLP_CLUSTER,
    REST_MARKER,
    T_BUFFER,
    T_CORS,
    T_FILE_LOG,
    T_HCM,
    T_HEALTH,
    T_MUTATION,
    T_OTEL,
    T_RATELIMIT,
    T_ROUTER,
    T_TRANSCODER,
    T_UUID_REQUEST_ID,
    TYPE,
    Json,
    exact,
    http_listener,
    not_grpc_content,
    percent,
    present,
    socket_address,
)
from cardinsa_gateway.envoy_routes import route_config, security_headers
from cardinsa_gateway.services import Upstream
from cardinsa_gateway.settings import GatewaySettings

TRACING_SERVICE_NAME = "cardinsa-gateway"
#: Request headers Envoy accepts: below the services' gRPC metadata limit
#: (cardinsa_foundation.server.MAX_METADATA_BYTES, 16 KiB) by more than what
#: Envoy adds (forwarding, request id, the gateway's proof: well under 1 KiB),
#: so an oversized request gets Envoy's 431 instead of reaching a service that
#: refuses it with RESOURCE_EXHAUSTED (429, naming the internal headers).
#: 13 KiB: an admin's access token lists every permission (about 3.5 KB with
#: the MFA ones), and 9 KB of other headers beside it must still pass.
MAX_REQUEST_HEADERS_KB = 13
ERROR_DOMAIN = "gateway.cardinsa.io"
# A request header name gRPC metadata does not allow (only a-z, 0-9, "-", "_"
# and "."; HTTP allows more, e.g. "%" or "`"). Pseudo-headers (":path") excluded.
NOT_A_GRPC_HEADER_NAME = r"[^a-z0-9_.\-:].*|[a-z0-9_.\-]+[^a-z0-9_.\-].*"

# Envoy-generated replies: HTTP status → (gRPC code, ErrorInfo reason, fixed message).
# A fixed message replaces Envoy's own text where that text could describe our
# internals (upstream connection errors); None keeps Envoy's short text.
LOCAL_REPLIES: tuple[tuple[int, int, int, str, str | None], ...] = (
    # (first status, last status, code, reason, message)
    (400, 400, 3, "BAD_REQUEST", None),
    (401, 401, 16, "UNAUTHENTICATED", None),
    (403, 403, 7, "PERMISSION_DENIED", None),
    (404, 404, 5, "NOT_FOUND", "no such method or path"),
    (405, 405, 12, "METHOD_NOT_ALLOWED", None),
    (408, 408, 4, "REQUEST_TIMEOUT", "the request took too long to arrive"),
    (413, 413, 3, "PAYLOAD_TOO_LARGE", "the request body is too large"),
    (429, 429, 8, "RATE_LIMITED", "too many requests; retry later"),
    (431, 431, 3, "HEADERS_TOO_LARGE", "the request headers are too large"),
    (402, 499, 3, "BAD_REQUEST", None),
    (501, 501, 12, "NOT_IMPLEMENTED", "not implemented"),
    (502, 503, 14, "UNAVAILABLE", "the service is unavailable; retry later"),
    (504, 504, 4, "UPSTREAM_TIMEOUT", "the service did not answer in time"),
    (500, 599, 13, "GATEWAY_ERROR", "internal gateway error"),
)


def main_listener(
    settings: GatewaySettings,
    contract: Contract,
    upstreams: Sequence[Upstream],
    *,
    descriptor_path: Path,
    openapi_path: Path,
) -> Json:
    """The one listener clients reach (codec AUTO: HTTP/1.1, HTTP/2, gRPC)."""
    s = settings
    manager = _connection_manager(
        settings,
        http_filters=_http_filters(settings, contract, upstreams, descriptor_path),
        routes=route_config(settings, contract, upstreams, openapi_path),
    )
    return http_listener(
        LISTENER,
        socket_address(s.gateway_host, s.gateway_port),
        manager,
        per_connection_buffer_limit_bytes=1_048_576,
    )


def _connection_manager(
    settings: GatewaySettings, *, http_filters: list[Json], routes: Json
) -> Json:
    s = settings
    manager = {
        TYPE: T_HCM,
        "stat_prefix": LISTENER,
        "codec_type": "AUTO",
        # Client address: the TCP peer (or the configured number of trusted
        # proxies' X-Forwarded-For entries); no source address counts as
        # internal, so Envoy sets x-envoy-external-address on every request
        # and strips x-envoy-* headers a client sends.
        "use_remote_address": True,
        "xff_num_trusted_hops": s.gateway_trusted_hops,
        "internal_address_config": {"cidr_ranges": []},
        "generate_request_id": True,
        "preserve_external_request_id": True,
        "always_set_request_id_in_response": True,
        "server_name": "cardinsa-gateway",
        "server_header_transformation": "OVERWRITE",
        "normalize_path": True,
        "merge_slashes": True,
        "path_with_escaped_slashes_action": "REJECT_REQUEST",
        "max_request_headers_kb": MAX_REQUEST_HEADERS_KB,
        "request_headers_timeout": "10s",
        "stream_idle_timeout": "300s",
        "common_http_protocol_options": {
            "idle_timeout": "300s",
            "headers_with_underscores_action": "REJECT_REQUEST",
        },
        "http2_protocol_options": {
            "max_concurrent_streams": 256,
            "initial_stream_window_size": 65_536,
            "initial_connection_window_size": 1_048_576,
        },
        "access_log": [_access_log(settings)],
        "local_reply_config": _local_replies(settings),
        "http_filters": http_filters,
        "route_config": routes,
    }
    if s.tracing_enabled:
        manager.update(_tracing(settings))
    return manager


def _tracing(settings: GatewaySettings) -> Json:
    """OpenTelemetry: a server span per request (continuing a client's W3C
    ``traceparent``, else a new trace) and a client span per upstream
    attempt, whose context goes upstream as ``traceparent``; exported over
    OTLP/gRPC (cluster :data:`OTLP_CLUSTER`). Only rendered with tracing on."""
    return {
        "tracing": {
            "random_sampling": {"value": round(settings.tracing_sample_ratio * 100, 4)},
            "spawn_upstream_span": True,
            "provider": {
                "name": "envoy.tracers.opentelemetry",
                "typed_config": {
                    TYPE: T_OTEL,
                    "grpc_service": {
                        "envoy_grpc": {"cluster_name": OTLP_CLUSTER},
                        "timeout": "5s",
                    },
                    "service_name": TRACING_SERVICE_NAME,
                },
            },
        },
        # Envoy would otherwise write its sampling decision into the
        # request id (a UUID's variant digit): the id a client sent must
        # reach the services and the logs unchanged.
        "request_id_extension": {
            "typed_config": {
                TYPE: T_UUID_REQUEST_ID,
                "pack_trace_reason": False,
                "use_request_id_for_trace_sampling": False,
            }
        },
    }


def _access_log(settings: GatewaySettings) -> Json:
    return {
        "name": "envoy.access_loggers.file",
        "typed_config": {
            TYPE: T_FILE_LOG,
            "path": settings.gateway_access_log,
            "log_format": {
                # Paths are logged without their query string: a query may
                # carry values that do not belong in a log.
                "json_format": {
                    "time": "%START_TIME%",
                    "logger": "cardinsa.gateway.access",
                    "request_id": "%REQ(X-REQUEST-ID)%",
                    **({"trace_id": "%TRACE_ID%"} if settings.tracing_enabled else {}),
                    "client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
                    "protocol": "%PROTOCOL%",
                    "method": "%REQ(X-ENVOY-ORIGINAL-METHOD?:METHOD)%",
                    "path": "%PATH(NQ:ORIG)%",
                    "grpc_method": "%REQ(:PATH)%",
                    "status": "%RESPONSE_CODE%",
                    "grpc_status": "%GRPC_STATUS_NUMBER%",
                    "flags": "%RESPONSE_FLAGS%",
                    "details": "%RESPONSE_CODE_DETAILS%",
                    "route": "%ROUTE_NAME%",
                    "upstream": "%UPSTREAM_CLUSTER%",
                    "upstream_host": "%UPSTREAM_HOST%",
                    "duration_ms": "%DURATION%",
                    "response_ms": "%RESPONSE_DURATION%",
                    "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
                    "bytes_in": "%BYTES_RECEIVED%",
                    "bytes_out": "%BYTES_SENT%",
                    "user_agent": "%REQ(USER-AGENT)%",
                },
                "json_format_options": {"sort_properties": False},
            },
        },
    }


def _status(op: str, value: int) -> Json:
    """An access-log filter on the response status (``op``: EQ, GE, LE)."""
    return {
        "status_code_filter": {
            "comparison": {"op": op, "value": {"default_value": value, "runtime_key": "_"}}
        }
    }


def _local_replies(settings: GatewaySettings) -> Json:
    """Envoy's own error replies as ``{code, message, details}`` JSON.

    Only for REST clients: a native gRPC call (content-type application/grpc
    and no transcoder marker) keeps Envoy's gRPC reply (status in trailers).
    """
    not_native_grpc = {
        "or_filter": {
            "filters": [
                {"header_filter": {"header": not_grpc_content()}},
                {"header_filter": {"header": present(REST_MARKER)}},
            ]
        }
    }
    mappers = []
    for first, last, code, reason, message in LOCAL_REPLIES:
        if first == last:
            status_filter = _status("EQ", first)
        else:
            status_filter = {"and_filter": {"filters": [_status("GE", first), _status("LE", last)]}}
        mappers.append(
            {
                "filter": {"and_filter": {"filters": [status_filter, not_native_grpc]}},
                "body_format_override": {
                    "json_format": {
                        "code": code,
                        "message": message or "%LOCAL_REPLY_BODY%",
                        "details": [
                            {
                                TYPE: "type.googleapis.com/google.rpc.ErrorInfo",
                                "reason": reason,
                                "domain": ERROR_DOMAIN,
                            },
                            {
                                TYPE: "type.googleapis.com/google.rpc.RequestInfo",
                                "request_id": "%REQ(X-REQUEST-ID)%",
                            },
                        ],
                    },
                    "content_type": "application/json",
                    "json_format_options": {"sort_properties": False},
                },
                "headers_to_add": security_headers(settings),
            }
        )
    return {"mappers": mappers}


def _http_filters(
    settings: GatewaySettings,
    contract: Contract,
    upstreams: Sequence[Upstream],
    descriptor_path: Path,
) -> list[Json]:
    s = settings
    return [
        {
            "name": F_HEALTH,
            "typed_config": {
                TYPE: T_HEALTH,
                "pass_through_mode": False,
                "headers": [exact(":path", HEALTH_PATH)],
                # Healthy while every service has at least one healthy worker (Envoy
                # truncates the percentage to an integer: 1 % = "any healthy host").
                "cluster_min_healthy_percentages": {u.name: {"value": 1} for u in upstreams},
            },
        },
        {"name": F_CORS, "typed_config": {TYPE: T_CORS}},
        {
            "name": F_BUFFER,
            "typed_config": {TYPE: T_BUFFER, "max_request_bytes": s.gateway_max_request_bytes},
        },
        {
            "name": F_RATELIMIT,
            "typed_config": {
                TYPE: T_RATELIMIT,
                "stat_prefix": "overall",
                "token_bucket": {
                    "max_tokens": s.gateway_rate_limit_burst,
                    "tokens_per_fill": s.gateway_rate_limit_rps,
                    "fill_interval": "1s",
                },
                "filter_enabled": percent(),
                "filter_enforced": percent(),
                "rate_limited_as_resource_exhausted": True,
            },
        },
        {
            # Before the transcoder, so that on the way back it sees the
            # transcoded response (grpc-status merged in from the trailers).
            # Response mutations: on the REST routes only. Requests: headers
            # whose names gRPC metadata does not allow are dropped (as nginx
            # drops invalid header names), since the services' gRPC stack
            # fails the whole call (INTERNAL, "Illegal header key") on one.
            "name": F_MUTATION,
            "typed_config": {
                TYPE: T_MUTATION,
                "mutations": {
                    "request_mutations": [
                        {
                            "remove_on_match": {
                                "key_matcher": {"safe_regex": {"regex": NOT_A_GRPC_HEADER_NAME}}
                            }
                        }
                    ]
                },
            },
        },
        {
            "name": F_TRANSCODER,
            "typed_config": _transcoder(settings, contract, upstreams, descriptor_path),
        },
        {
            # Configured per route (the login route); a no-op elsewhere.
            "name": F_LOGIN_LIMIT,
            "typed_config": {TYPE: T_RATELIMIT, "stat_prefix": "login"},
        },
        {"name": F_JWT, "typed_config": jwt_authn(settings, contract, upstreams)},
        {"name": F_ROUTER, "typed_config": {TYPE: T_ROUTER, "suppress_envoy_headers": True}},
    ]


def _transcoder(
    settings: GatewaySettings,
    contract: Contract,
    upstreams: Sequence[Upstream],
    descriptor_path: Path,
) -> Json:
    s = settings
    services = [name for u in upstreams for name in contract.services(u.packages)]
    return {
        TYPE: T_TRANSCODER,
        "proto_descriptor": str(descriptor_path),
        "services": services,
        "print_options": {
            "add_whitespace": False,
            "always_print_primitive_fields": False,
            "always_print_enums_as_ints": False,
            "preserve_proto_field_names": True,
        },
        "convert_grpc_status": True,
        # "+" in a query string is a space, as HTML forms, httpx, requests and
        # the clients generated from /openapi.json encode it
        # (?filter=email+%3D+%22a%40b%22); a literal plus is %2B.
        "query_param_unescape_plus": True,
        "request_validation_options": {
            "reject_unknown_method": True,
            "reject_unknown_query_parameters": True,
            "reject_binding_body_field_collisions": True,
        },
        "max_request_body_size": s.gateway_max_request_bytes,
        "max_response_body_size": s.gateway_max_response_bytes,
    }
