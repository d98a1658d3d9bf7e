"""The vocabulary of the Envoy bootstrap: type URLs, filter, listener and
cluster names that more than one part of it refers to, and the small JSON
shapes they all use. The request flow is explained in
:mod:`cardinsa_gateway.envoy`."""

from __future__ import annotations

import ipaddress
from typing import Any

Json = dict[str, Any]

TYPE = "@type"
T_HCM = (
    "type.googleapis.com/"
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
T_TRANSCODER = (
    "type.googleapis.com/envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder"
)
T_JWT = "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"
T_JWT_ROUTE = "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig"
T_RATELIMIT = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
T_CORS = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"
T_CORS_POLICY = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy"
T_BUFFER = "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer"
T_BUFFER_ROUTE = "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute"
T_MUTATION = "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation"
T_MUTATION_ROUTE = (
    "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute"
)
T_HEALTH = "type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck"
T_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
T_FILTER_CONFIG = "type.googleapis.com/envoy.config.route.v3.FilterConfig"
T_HTTP_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
T_FILE_LOG = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
T_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
T_OTEL = "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig"
T_UUID_REQUEST_ID = "type.googleapis.com/envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig"
T_CONN_LIMIT = (
    "type.googleapis.com/"
    "envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig"
)

F_HEALTH = "envoy.filters.http.health_check"
F_CORS = "envoy.filters.http.cors"
F_BUFFER = "envoy.filters.http.buffer"
F_RATELIMIT = "cardinsa.ratelimit.overall"
F_MUTATION = "cardinsa.rest_response_headers"
F_TRANSCODER = "envoy.filters.http.grpc_json_transcoder"
F_LOGIN_LIMIT = "cardinsa.ratelimit.login"
F_JWT = "envoy.filters.http.jwt_authn"
F_ROUTER = "envoy.filters.http.router"

LISTENER = "cardinsa"
JWKS_CLUSTER = "jwks"
OTLP_CLUSTER = "otlp_collector"
HEALTH_PATH = "/healthz"
REST_MARKER = "x-envoy-original-path"  # set by the transcoder on REST calls


def seconds(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return f"{text}s"


def percent(value: int = 100) -> Json:
    return {"default_value": {"numerator": value, "denominator": "HUNDRED"}, "runtime_key": ""}


def disabled() -> Json:
    return {TYPE: T_FILTER_CONFIG, "disabled": True}


def exact(name: str, value: str) -> Json:
    return {"name": name, "string_match": {"exact": value}}


def present(name: str, is_present: bool = True) -> Json:
    return {"name": name, "present_match": True, "invert_match": not is_present}


def not_grpc_content() -> Json:
    """A header matcher: the request's content-type is not gRPC (REST calls)."""
    return {
        "name": "content-type",
        "string_match": {"prefix": "application/grpc"},
        "invert_match": True,
        "treat_missing_header_as_empty": True,
    }


def socket_address(host: str, port: int) -> Json:
    return {"socket_address": {"address": host, "port_value": port}}


def self_address(host: str) -> str:
    """Where the gateway reaches its own listener bound to ``host``."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def single_endpoint(cluster: str, host: str, port: int) -> Json:
    """A cluster's ``load_assignment`` with one endpoint."""
    return {
        "cluster_name": cluster,
        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket_address(host, port)}}]}],
    }


def tls_to(host: str) -> Json:
    """A cluster's ``transport_socket``: TLS with ``host`` as SNI."""
    return {"name": "envoy.transport_sockets.tls", "typed_config": {TYPE: T_TLS, "sni": host}}


def http_listener(name: str, address: Json, manager: Json, **options: Any) -> Json:
    """A listener whose one filter is the HTTP connection ``manager``."""
    return {
        "name": name,
        "address": address,
        **options,
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": manager,
                    }
                ]
            }
        ],
    }
