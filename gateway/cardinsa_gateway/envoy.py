"""Render the Envoy v3 bootstrap (static resources) for the Cardinsa gateway.

Inputs: :data:`cardinsa_gateway.services.UPSTREAMS` (which services, which
packages, which worker ports), :class:`GatewaySettings` and the descriptor set.
Nothing per method is written by hand: routes for reads (retries), the login
route (stricter rate limit), per-method timeouts and the JWT rules (public
methods open) all come from the contract.

Request flow on the one listener (codec AUTO: HTTP/1.1, HTTP/2, gRPC):

    health_check (/healthz) → cors → buffer (body limit) → local_ratelimit (overall)
    → grpc_json_transcoder (REST → gRPC; unknown paths 404, unknown query
    parameters 400) → local_ratelimit (login, per client address) → jwt_authn
    → router

The filters after the transcoder see the gRPC path (``/pkg.Service/Method``) for
REST and native gRPC calls alike, so one rule list serves both. REST calls are
told apart from native gRPC by ``x-envoy-original-path``, which the transcoder
sets (clients cannot: Envoy strips ``x-envoy-*`` from external requests); their
routes drop the ``grpc-*`` response headers.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cardinsa_gateway.contract import Contract, Method
from cardinsa_gateway.services import (
    LOGIN_METHOD,
    OPERATOR_SERVICES,
    REFLECTION_SERVICES,
    ROUTED_PACKAGES_HEADER,
    UPSTREAM_HEADER,
    UPSTREAMS,
    Upstream,
)
from cardinsa_gateway.settings import GatewaySettings

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

JWT_PROVIDER = "identity"
JWKS_CLUSTER = "jwks"
OTLP_CLUSTER = "otlp_collector"
TRACING_SERVICE_NAME = "cardinsa-gateway"
LISTENER = "cardinsa"
#: The stats-only listener: GET /metrics → the admin's /stats/prometheus.
METRICS_LISTENER = "metrics"
METRICS_PATH = "/metrics"
ADMIN_CLUSTER = "envoy_admin"
ADMIN_PROMETHEUS_PATH = "/stats/prometheus"
HEALTH_PATH = "/healthz"
OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/docs"
REST_MARKER = "x-envoy-original-path"  # set by the transcoder on REST calls
REQUEST_ID = "x-request-id"
UNROUTED_HEADER = ":cardinsa-unrouted"
GATEWAY_AUTH_HEADER = "x-cardinsa-gateway-auth"
#: Request headers Envoy accepts: below the services' gRPC metadata limit
#: (cardinsa_foundation.server.MAX_METADATA_BYTES, 16 KiB) by more than what
#: Envoy adds (forwarding, request id, the gateway's proof: well under 1 KiB),
#: so an oversized request gets Envoy's 431 instead of reaching a service that
#: refuses it with RESOURCE_EXHAUSTED (429, naming the internal headers).
MAX_REQUEST_HEADERS_KB = 12
#: Verified JWTs Envoy keeps per worker thread (jwt_authn's jwt_cache_config).
JWT_CACHE_SIZE = 1000
#: Failed active health checks before Envoy stops routing to an endpoint: a
#: worker that reports NOT_SERVING is out within this many health intervals, so
#: the services' drain delay (CARDINSA_DRAIN_DELAY_S) must be longer (a test
#: checks the defaults).
UNHEALTHY_THRESHOLD = 2
#: Consecutive connection failures (refused, reset, timed out) after which an
#: endpoint is ejected at once, before its health check notices.
EJECT_AFTER_LOCAL_FAILURES = 2
#: Consecutive 502/503/504 answers (gRPC UNAVAILABLE counts as 503) to eject.
EJECT_AFTER_GATEWAY_FAILURES = 3
# The services accept request ids of this shape (cardinsa_foundation.interceptors);
# the gateway refuses others, so its log and theirs carry the same id.
REQUEST_ID_PATTERN = r"[A-Za-z0-9._:\-]{1,128}"
ERROR_DOMAIN = "gateway.cardinsa.io"
# A request header name gRPC metadata does not allow (only a-z, 0-9, "-", "_"
# and "."; HTTP allows more, e.g. "%" or "`"). Pseudo-headers (":path") excluded.
NOT_A_GRPC_HEADER_NAME = r"[^a-z0-9_.\-:].*|[a-z0-9_.\-]+[^a-z0-9_.\-].*"
GRPC_RESPONSE_HEADERS = (
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "grpc-encoding",
    "grpc-accept-encoding",
)
DOCS_HTML = Path(__file__).with_name("docs.html")

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


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        host, _, port = text.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"endpoint {text!r} is not host:port")
        return cls(host.strip("[]"), int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def unrouted_packages(contract: Contract, upstreams: Sequence[Upstream] = UPSTREAMS) -> list[str]:
    """Cardinsa packages with services that no upstream lists (a test keeps this empty)."""
    listed = {p for u in upstreams for p in u.packages}
    return sorted({m.package for m in contract.cardinsa_methods() if m.package not in listed})


def settings_environment() -> dict[str, str]:
    """The variables as the services see them: the project's ``.env``, then
    ``./.env``, then the process environment (which wins) — the same sources
    and order as pydantic-settings in the services, so the gateway routes to the
    ports they really listen on."""
    from dotenv import dotenv_values

    from cardinsa_gateway.settings import PROJECT_ROOT

    merged: dict[str, str] = {}
    for path in (PROJECT_ROOT / ".env", Path(".env")):
        if path.is_file():
            merged.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    merged.update(os.environ)
    return merged


def default_endpoints(
    settings: GatewaySettings,
    workers: int = 1,
    environ: Mapping[str, str] | None = None,
    upstreams: Sequence[Upstream] = UPSTREAMS,
) -> dict[str, list[Endpoint]]:
    """Where each service listens, from the same variables the services read.

    ``CARDINSA_<NAME>_ADDRESS`` (``host:port``, for example a headless Kubernetes
    Service ``identity:50051`` that resolves to every ready pod) wins; otherwise
    one endpoint per worker on ``gateway_upstream_host``: ``CARDINSA_<NAME>_PORT + i x
    CARDINSA_WORKER_PORT_STEP`` (the services' own rule).
    """
    env = settings_environment() if environ is None else environ
    found: dict[str, list[Endpoint]] = {}
    for upstream in upstreams:
        prefix = f"CARDINSA_{upstream.name.upper()}"
        address = env.get(f"{prefix}_ADDRESS", "").strip()
        if address:
            found[upstream.name] = [Endpoint.parse(a) for a in address.split(",") if a.strip()]
            continue
        base = int(env.get(f"{prefix}_PORT", upstream.port))
        step = settings.worker_port_step
        found[upstream.name] = [
            Endpoint(settings.gateway_upstream_host, base + i * step)
            for i in range(max(1, workers))
        ]
    return found


#: Retries of a request that never reached a worker (see _method_route).
UNSENT_RETRIES = 2


def _other_host() -> Json:
    """A retry goes to another endpoint than the ones already tried."""
    return {
        "retry_host_predicate": [
            {
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": {
                    TYPE: "type.googleapis.com/envoy.extensions.retry.host."
                    "previous_hosts.v3.PreviousHostsPredicate"
                },
            }
        ],
        "host_selection_retry_max_attempts": 3,
    }


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _seconds(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return f"{text}s"


def _percent(value: int = 100) -> Json:
    return {"default_value": {"numerator": value, "denominator": "HUNDRED"}, "runtime_key": ""}


def _disabled() -> Json:
    return {TYPE: T_FILTER_CONFIG, "disabled": True}


def _exact(name: str, value: str) -> Json:
    return {"name": name, "string_match": {"exact": value}}


def _present(name: str, present: bool = True) -> Json:
    return {"name": name, "present_match": True, "invert_match": not present}


def _self_address(host: str) -> str:
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104


def _socket(host: str, port: int) -> Json:
    return {"socket_address": {"address": host, "port_value": port}}


def _inline_hashes(html: str) -> tuple[list[str], list[str]]:
    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    scripts = [digest(s) for s in re.findall(r"<script>(.*?)</script>", html, flags=re.S)]
    styles = [digest(s) for s in re.findall(r"<style>(.*?)</style>", html, flags=re.S)]
    return scripts, styles


class EnvoyConfig:
    """Builds the bootstrap as a plain dict (serialise with :meth:`to_json`)."""

    def __init__(
        self,
        contract: Contract,
        settings: GatewaySettings,
        *,
        descriptor_path: Path,
        openapi_path: Path,
        endpoints: Mapping[str, Sequence[Endpoint]],
        upstreams: Sequence[Upstream] = UPSTREAMS,
    ) -> None:
        self.contract = contract
        self.settings = settings
        self.descriptor_path = descriptor_path.resolve()
        self.openapi_path = openapi_path.resolve()
        self.upstreams = list(upstreams)
        self.endpoints = {name: list(eps) for name, eps in endpoints.items()}
        if not self.upstreams:
            raise ValueError("no upstream services")
        self._check_coverage()

    # --- sanity -----------------------------------------------------------------

    def _check_coverage(self) -> None:
        """Every upstream serves something; no package is listed twice."""
        owner: dict[str, str] = {}
        for upstream in self.upstreams:
            if not self.endpoints.get(upstream.name):
                raise ValueError(f"upstream {upstream.name!r} has no endpoints")
            if not self.contract.services(upstream.packages):
                raise ValueError(
                    f"upstream {upstream.name!r}: no service in {', '.join(upstream.packages)} "
                    "in the descriptor set (run `make proto`?)"
                )
            for package in upstream.packages:
                if package in owner:
                    raise ValueError(
                        f"package {package} is listed by {owner[package]} and {upstream.name}"
                    )
                owner[package] = upstream.name
        for upstream in self.upstreams:
            for method in self.contract.methods_of(upstream.packages):
                if method.client_streaming:
                    raise ValueError(f"{method.grpc_path}: streaming methods need their own routes")

    # --- the document -----------------------------------------------------------

    def build(self) -> Json:
        s = self.settings
        return {
            "node": {"id": "cardinsa-gateway", "cluster": "cardinsa-gateway"},
            "admin": {
                "address": _socket("127.0.0.1", s.gateway_admin_port),
                "access_log": [],
            },
            # The request-id pattern's bounded repeat compiles to ~650 RE2 steps
            # (the default ceiling is 100).
            "layered_runtime": {
                "layers": [
                    {
                        "name": "static",
                        "static_layer": {"re2.max_program_size.error_level": 1000},
                    }
                ]
            },
            "overload_manager": {
                "resource_monitors": [
                    {
                        "name": "envoy.resource_monitors.global_downstream_max_connections",
                        "typed_config": {
                            TYPE: T_CONN_LIMIT,
                            "max_active_downstream_connections": 50_000,
                        },
                    }
                ]
            },
            "static_resources": {
                "listeners": [self._listener(), *self._metrics_listener()],
                "clusters": [
                    *(self._cluster(u) for u in self.upstreams),
                    self._jwks_cluster(),
                    *self._admin_cluster(),
                    *([self._otlp_cluster()] if s.tracing_enabled else []),
                ],
            },
        }

    def to_json(self) -> str:
        return json.dumps(self.build(), indent=2) + "\n"

    # --- listener ---------------------------------------------------------------

    def _listener(self) -> Json:
        s = self.settings
        return {
            "name": LISTENER,
            "address": _socket(s.gateway_host, s.gateway_port),
            "per_connection_buffer_limit_bytes": 1_048_576,
            "filter_chains": [
                {
                    "filters": [
                        {
                            "name": "envoy.filters.network.http_connection_manager",
                            "typed_config": self._connection_manager(),
                        }
                    ]
                }
            ],
        }

    # --- Prometheus -------------------------------------------------------------

    def _metrics_listener(self) -> list[Json]:
        """Envoy's statistics for Prometheus on a listener of their own.

        The admin interface stays on 127.0.0.1 (it can stop Envoy); this listener
        forwards exactly ``GET /metrics`` to the admin's ``/stats/prometheus`` and
        answers everything else with 404 itself (its paths are normalised first,
        so ``/metrics/../quitquitquit`` is ``/quitquitquit``: 404).
        """
        s = self.settings
        if not s.gateway_metrics_port:
            return []
        manager = {
            TYPE: T_HCM,
            "stat_prefix": METRICS_LISTENER,
            "codec_type": "AUTO",
            "normalize_path": True,
            "merge_slashes": True,
            "path_with_escaped_slashes_action": "REJECT_REQUEST",
            "server_name": "cardinsa-gateway",
            "server_header_transformation": "OVERWRITE",
            "request_headers_timeout": "10s",
            "common_http_protocol_options": {"idle_timeout": "60s"},
            "route_config": {
                "name": METRICS_LISTENER,
                "virtual_hosts": [
                    {
                        "name": METRICS_LISTENER,
                        "domains": ["*"],
                        "routes": [
                            {
                                "name": "prometheus",
                                "match": {
                                    "path": METRICS_PATH,
                                    "headers": [
                                        {
                                            "name": ":method",
                                            "string_match": {"safe_regex": {"regex": "GET|HEAD"}},
                                        },
                                        # :path carries the query string: none allowed
                                        # (the admin page's options stay its defaults).
                                        _exact(":path", METRICS_PATH),
                                    ],
                                },
                                "route": {
                                    "cluster": ADMIN_CLUSTER,
                                    "prefix_rewrite": ADMIN_PROMETHEUS_PATH,
                                    "timeout": "10s",
                                },
                            },
                            {
                                "name": "not-metrics",
                                "match": {"prefix": "/"},
                                "direct_response": {
                                    "status": 404,
                                    "body": {"inline_string": f"only GET {METRICS_PATH}\n"},
                                },
                            },
                        ],
                    }
                ],
            },
            "http_filters": [{"name": F_ROUTER, "typed_config": {TYPE: T_ROUTER}}],
        }
        return [
            {
                "name": METRICS_LISTENER,
                "address": _socket(s.metrics_host, s.gateway_metrics_port),
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
        ]

    def _admin_cluster(self) -> list[Json]:
        if not self.settings.gateway_metrics_port:
            return []
        return [
            {
                "name": ADMIN_CLUSTER,
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": ADMIN_CLUSTER,
                    "endpoints": [
                        {
                            "lb_endpoints": [
                                {
                                    "endpoint": {
                                        "address": _socket(
                                            "127.0.0.1", self.settings.gateway_admin_port
                                        )
                                    }
                                }
                            ]
                        }
                    ],
                },
            }
        ]

    def _connection_manager(self) -> Json:
        s = self.settings
        manager = self._base_connection_manager()
        if s.tracing_enabled:
            manager.update(self._tracing())
        return manager

    def _tracing(self) -> Json:
        """OpenTelemetry: a server span per request (continuing a client's W3C
        ``traceparent``, else a new trace) and a client span per upstream
        attempt, whose context goes upstream as ``traceparent``; exported over
        OTLP/gRPC (cluster :data:`OTLP_CLUSTER`). Only rendered with tracing on."""
        s = self.settings
        return {
            "tracing": {
                "random_sampling": {"value": round(s.tracing_sample_ratio * 100, 4)},
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

    def _base_connection_manager(self) -> Json:
        s = self.settings
        return {
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
            "access_log": [self._access_log()],
            "local_reply_config": self._local_replies(),
            "http_filters": self._http_filters(),
            "route_config": self._route_config(),
        }

    def _access_log(self) -> Json:
        return {
            "name": "envoy.access_loggers.file",
            "typed_config": {
                TYPE: T_FILE_LOG,
                "path": self.settings.gateway_access_log,
                "log_format": {
                    # Paths are logged without their query string: a query may
                    # carry values that do not belong in a log.
                    "json_format": {
                        "time": "%START_TIME%",
                        "logger": "cardinsa.gateway.access",
                        "request_id": "%REQ(X-REQUEST-ID)%",
                        **({"trace_id": "%TRACE_ID%"} if self.settings.tracing_enabled else {}),
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

    def _local_replies(self) -> Json:
        """Envoy's own error replies as ``{code, message, details}`` JSON.

        Only for REST clients: a native gRPC call (content-type application/grpc
        and no transcoder marker) keeps Envoy's gRPC reply (status in trailers).
        """
        not_native_grpc = {
            "or_filter": {
                "filters": [
                    {
                        "header_filter": {
                            "header": {
                                "name": "content-type",
                                "string_match": {"prefix": "application/grpc"},
                                "invert_match": True,
                                "treat_missing_header_as_empty": True,
                            }
                        }
                    },
                    {"header_filter": {"header": _present(REST_MARKER)}},
                ]
            }
        }
        mappers = []
        for first, last, code, reason, message in LOCAL_REPLIES:
            if first == last:
                status_filter: Json = {
                    "status_code_filter": {
                        "comparison": {
                            "op": "EQ",
                            "value": {"default_value": first, "runtime_key": "_"},
                        }
                    }
                }
            else:
                status_filter = {
                    "and_filter": {
                        "filters": [
                            {
                                "status_code_filter": {
                                    "comparison": {
                                        "op": "GE",
                                        "value": {"default_value": first, "runtime_key": "_"},
                                    }
                                }
                            },
                            {
                                "status_code_filter": {
                                    "comparison": {
                                        "op": "LE",
                                        "value": {"default_value": last, "runtime_key": "_"},
                                    }
                                }
                            },
                        ]
                    }
                }
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
                    "headers_to_add": self._security_headers(),
                }
            )
        return {"mappers": mappers}

    # --- HTTP filters -----------------------------------------------------------

    def _http_filters(self) -> list[Json]:
        s = self.settings
        return [
            {
                "name": F_HEALTH,
                "typed_config": {
                    TYPE: T_HEALTH,
                    "pass_through_mode": False,
                    "headers": [_exact(":path", HEALTH_PATH)],
                    # Healthy while every service has at least one healthy worker (Envoy
                    # truncates the percentage to an integer: 1 % = "any healthy host").
                    "cluster_min_healthy_percentages": {
                        u.name: {"value": 1} for u in self.upstreams
                    },
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
                    "filter_enabled": _percent(),
                    "filter_enforced": _percent(),
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
            {"name": F_TRANSCODER, "typed_config": self._transcoder()},
            {
                # Configured per route (the login route); a no-op elsewhere.
                "name": F_LOGIN_LIMIT,
                "typed_config": {TYPE: T_RATELIMIT, "stat_prefix": "login"},
            },
            {"name": F_JWT, "typed_config": self._jwt()},
            {"name": F_ROUTER, "typed_config": {TYPE: T_ROUTER, "suppress_envoy_headers": True}},
        ]

    def _transcoder(self) -> Json:
        s = self.settings
        services = [name for u in self.upstreams for name in self.contract.services(u.packages)]
        return {
            TYPE: T_TRANSCODER,
            "proto_descriptor": str(self.descriptor_path),
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

    def _jwt(self) -> Json:
        s = self.settings
        if s.gateway_jwks_uri:
            uri = s.gateway_jwks_uri
        else:
            host = _self_address(s.gateway_host)
            host = f"[{host}]" if ":" in host else host
            uri = f"http://{host}:{s.gateway_port}/.well-known/jwks.json"
        rules: list[Json] = []
        # Public methods (from the contract) and the operator services are open;
        # everything else — including what the contract does not know — needs
        # a valid token. The services check permissions themselves.
        for method in self._public_methods():
            rules.append({"match": {"path": method.grpc_path}})
        for service in OPERATOR_SERVICES:
            rules.append({"match": {"prefix": f"/{service}/"}})
        rules.append({"match": {"prefix": "/"}, "requires": {"provider_name": JWT_PROVIDER}})
        return {
            TYPE: T_JWT,
            "providers": {
                JWT_PROVIDER: {
                    "issuer": s.jwt_issuer,
                    "audiences": [s.jwt_audience],
                    "remote_jwks": {
                        "http_uri": {"uri": uri, "cluster": JWKS_CLUSTER, "timeout": "2s"},
                        "cache_duration": f"{s.jwks_cache_ttl_s}s",
                        "async_fetch": {"fast_listener": True, "failed_refetch_duration": "1s"},
                        "retry_policy": {
                            "num_retries": 3,
                            "retry_back_off": {"base_interval": "0.2s", "max_interval": "2s"},
                        },
                    },
                    # Only the Authorization header (not ?access_token=).
                    "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
                    "forward": True,
                    "clock_skew_seconds": 30,
                    # Verified tokens are remembered per worker (a client sends
                    # the same token for its whole session): measured with make
                    # bench, verifying a 1-3 KB EdDSA token on every request was a
                    # large part of Envoy's CPU per REST call. A cached token is
                    # still refused once it expires, and every service verifies
                    # it again itself (its JWKS cache drops retired keys).
                    "jwt_cache_config": {"jwt_cache_size": JWT_CACHE_SIZE},
                }
            },
            "rules": rules,
            "bypass_cors_preflight": True,
        }

    def _public_methods(self) -> list[Method]:
        return [
            m for u in self.upstreams for m in self.contract.methods_of(u.packages) if m.is_public
        ]

    # --- routes -----------------------------------------------------------------

    def _security_headers(self) -> list[Json]:
        s = self.settings
        headers = {
            "x-content-type-options": "nosniff",
            "x-frame-options": "DENY",
            "referrer-policy": "no-referrer",
            "cache-control": "no-store",
        }
        if s.gateway_hsts_max_age_s:
            headers["strict-transport-security"] = (
                f"max-age={s.gateway_hsts_max_age_s}; includeSubDomains"
            )
        return [
            {"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
            for k, v in headers.items()
        ]

    def _route_config(self) -> Json:
        s = self.settings
        virtual_host: Json = {
            "name": LISTENER,
            "domains": ["*"],
            "routes": self._routes(),
            "response_headers_to_add": self._security_headers(),
            "typed_per_filter_config": {F_CORS: self._cors()},
        }
        if s.secret:
            # Proof for the services that the call came through us (they then
            # trust x-envoy-external-address, which Envoy sets itself).
            virtual_host["request_headers_to_add"] = [
                {
                    "header": {"key": GATEWAY_AUTH_HEADER, "value": s.secret},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                }
            ]
        else:
            virtual_host["request_headers_to_remove"] = [GATEWAY_AUTH_HEADER]
        size = self.openapi_path.stat().st_size if self.openapi_path.exists() else 0
        return {
            "name": LISTENER,
            "virtual_hosts": [virtual_host],
            "max_direct_response_body_size_bytes": max(1 << 20, size + 4096),
        }

    def _cors(self) -> Json:
        s = self.settings
        return {
            TYPE: T_CORS_POLICY,
            "allow_origin_string_match": [{"exact": origin} for origin in s.cors_origins],
            "allow_methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
            "allow_headers": "authorization, content-type, x-request-id",
            "expose_headers": "x-request-id, www-authenticate, retry-after",
            "max_age": "600",
            "allow_credentials": False,
            "forward_not_matching_preflights": False,
        }

    def _gateway_route(
        self, path: str, body: Json, content_type: str, headers: dict[str, str]
    ) -> Json:
        return {
            "name": path,
            "match": {"path": path, "headers": [_exact(":method", "GET")]},
            "direct_response": {"status": 200, **body},
            "response_headers_to_add": [
                {"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
                for k, v in {"content-type": content_type, **headers}.items()
            ],
            "typed_per_filter_config": {
                F_TRANSCODER: _disabled(),
                F_JWT: {TYPE: T_JWT_ROUTE, "disabled": True},
            },
        }

    def _routes(self) -> list[Json]:
        routes: list[Json] = []
        # 1. What the gateway serves itself.
        routes.append(
            self._gateway_route(
                OPENAPI_PATH,
                {"body": {"filename": str(self.openapi_path)}},
                "application/json",
                {"cache-control": "no-cache", "access-control-allow-origin": "*"},
            )
        )
        html = DOCS_HTML.read_text(encoding="utf-8")
        scripts, styles = _inline_hashes(html)
        csp = (
            "default-src 'none'; "
            f"script-src {' '.join(scripts) or chr(39) + 'none' + chr(39)}; "
            f"style-src {' '.join(styles) or chr(39) + 'none' + chr(39)}; "
            "connect-src 'self'; img-src 'self' data:; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
        routes.append(
            self._gateway_route(
                DOCS_PATH,
                {"body": {"inline_string": html}},
                "text/html; charset=utf-8",
                {"content-security-policy": csp, "cache-control": "no-cache"},
            )
        )
        # 2. A malformed request id is refused rather than replaced, so that the
        #    gateway's log and the services' logs always carry the same id.
        routes.append(
            {
                "name": "bad-request-id",
                "match": {
                    "prefix": "/",
                    "headers": [
                        {
                            "name": REQUEST_ID,
                            "string_match": {"safe_regex": {"regex": REQUEST_ID_PATTERN}},
                            "invert_match": True,
                        }
                    ],
                },
                "direct_response": {
                    "status": 400,
                    "body": {"inline_string": f"x-request-id must match {REQUEST_ID_PATTERN}"},
                },
                "typed_per_filter_config": {
                    F_TRANSCODER: _disabled(),
                    F_JWT: {TYPE: T_JWT_ROUTE, "disabled": True},
                },
            }
        )
        # 3. A body on a REST call whose verb never takes one (GET, DELETE: no
        #    binding of the contract declares a body for them) is refused. The
        #    transcoder would otherwise read it as the request message and merge
        #    its fields into what the path and query say -- parameters that the
        #    URL leaves out. Routes match on headers, before any body arrives, so
        #    a body is seen by its Content-Length; one without (HTTP/1.1 chunked,
        #    or HTTP/2 DATA without the header: Envoy drops Transfer-Encoding
        #    before routing) still gets through. Its fields are validated by the
        #    services like query parameters, the access log never shows either.
        bodyless = self._bodyless_verbs()
        if bodyless:
            routes.append(
                {
                    "name": "body-on-bodyless-verb",
                    "match": {
                        "prefix": "/",
                        "headers": [
                            {
                                "name": ":method",
                                "string_match": {"safe_regex": {"regex": "|".join(bodyless)}},
                            },
                            {
                                "name": "content-length",
                                "string_match": {"safe_regex": {"regex": "0*[1-9][0-9]*"}},
                            },
                        ],
                    },
                    "direct_response": {
                        "status": 400,
                        "body": {
                            "inline_string": (
                                f"a {' or '.join(bodyless)} request takes no body; "
                                "send its fields in the path and query"
                            )
                        },
                    },
                    "typed_per_filter_config": {
                        F_TRANSCODER: _disabled(),
                        F_JWT: {TYPE: T_JWT_ROUTE, "disabled": True},
                    },
                }
            )
        # 4. Methods that differ from their service's default: reads (retries),
        #    login (rate limit per client address), own timeouts.
        for upstream in self.upstreams:
            for method in self.contract.methods_of(upstream.packages):
                if method.server_streaming:
                    # A long stream (WatchRevocations): no overall timeout, no
                    # buffering; the upstream ends it after a few minutes.
                    routes.append(
                        {
                            "name": method.grpc_path,
                            "match": {"path": method.grpc_path},
                            "route": {
                                "cluster": upstream.name,
                                "timeout": "0s",
                                "idle_timeout": "300s",
                            },
                            "typed_per_filter_config": {
                                F_BUFFER: {TYPE: T_BUFFER_ROUTE, "disabled": True}
                            },
                        }
                    )
                    continue
                timeout = self._method_timeout(upstream, method)
                special = (
                    method.is_read
                    or method.grpc_path == LOGIN_METHOD
                    or timeout != upstream.timeout_s
                )
                if special:
                    routes.append(
                        self._method_route({"path": method.grpc_path}, upstream, method, timeout)
                    )
        # 5. Every other method of each service, by package prefix.
        for upstream in self.upstreams:
            for package in upstream.packages:
                routes.append(
                    self._method_route(
                        {"prefix": f"/{package}."}, upstream, None, upstream.timeout_s
                    )
                )
        # 6. Health and reflection: to the upstream the caller names, else the first.
        #    Reflection without a name lists every routed service (the first
        #    upstream knows the whole contract), so grpcurl sees one API.
        for service in OPERATOR_SERVICES:
            for upstream in self.upstreams:
                routes.append(
                    self._operator_route(
                        service, upstream, [_exact(UPSTREAM_HEADER, upstream.name)]
                    )
                )
            routes.append(self._operator_route(service, self.upstreams[0], []))
        # 7. Anything else: 404. REST calls match here *before* transcoding
        #    (their path is still /v1/...): the transcoder then answers unknown
        #    paths itself, and the header-mutation filter, which keeps the route
        #    it saw first, drops the grpc-* headers from their responses.
        #    Native gRPC calls of unknown methods get UNIMPLEMENTED.
        routes.append(
            {
                "name": "rest",
                "match": {
                    "prefix": "/",
                    "headers": [
                        {
                            "name": "content-type",
                            "string_match": {"prefix": "application/grpc"},
                            "invert_match": True,
                            "treat_missing_header_as_empty": True,
                        }
                    ],
                },
                # A route entry (not a direct response), so that the CORS filter
                # applies; its cluster comes from a pseudo-header no client can
                # send, so whatever the transcoder lets through untranslated
                # gets 404 rather than reaching a service.
                "route": {
                    "cluster_header": UNROUTED_HEADER,
                    "cluster_not_found_response_code": "NOT_FOUND",
                },
                "typed_per_filter_config": {F_MUTATION: self._drop_grpc_headers()},
            }
        )
        routes.append(
            {
                "name": "not-found",
                "match": {"prefix": "/"},
                "direct_response": {"status": 404, "body": {"inline_string": "no such method"}},
            }
        )
        return routes

    def _bodyless_verbs(self) -> list[str]:
        """HTTP verbs no REST binding of the routed services takes a body with."""
        bindings = [
            b
            for u in self.upstreams
            for m in self.contract.methods_of(u.packages)
            for b in m.bindings
        ]
        with_body = {b.verb for b in bindings if b.body}
        return sorted({b.verb for b in bindings} - with_body)

    @staticmethod
    def _drop_grpc_headers() -> Json:
        return {
            TYPE: T_MUTATION_ROUTE,
            "mutations": {"response_mutations": [{"remove": h} for h in GRPC_RESPONSE_HEADERS]},
        }

    @staticmethod
    def _method_timeout(upstream: Upstream, method: Method) -> float:
        return upstream.method_timeouts.get(f"{method.service}/{method.name}", upstream.timeout_s)

    def _method_route(
        self, match: Json, upstream: Upstream, method: Method | None, timeout_s: float
    ) -> Json:
        name = method.grpc_path if method else f"{match.get('prefix')}*"
        action: Json = {
            "cluster": upstream.name,
            "timeout": _seconds(timeout_s),
            # A native client's grpc-timeout is honoured up to the route timeout.
            "max_stream_duration": {"grpc_timeout_header_max": _seconds(timeout_s)},
        }
        if method is not None and method.is_read and self.settings.gateway_read_retries:
            action["retry_policy"] = {
                # "cancelled": a read the upstream gave up on without the client
                # asking (seen under a burst of 1 000 new connections: a few
                # dozen GetPolicy calls answered CANCELLED by core's gRPC stack
                # before reaching the service) is safe to send again.
                "retry_on": "connect-failure,refused-stream,reset,unavailable,cancelled",
                "num_retries": self.settings.gateway_read_retries,
                "per_try_timeout": _seconds(max(1.0, timeout_s / 3)),
                "retry_back_off": {"base_interval": "0.05s", "max_interval": "0.5s"},
                **_other_host(),
            }
        else:
            # Any method, writes included, when the request never reached a
            # worker: the connection was refused or failed, the stream was
            # refused (HTTP/2 REFUSED_STREAM: not processed) or reset before the
            # request was sent. A write that reached a worker is never retried.
            action["retry_policy"] = {
                "retry_on": "connect-failure,refused-stream,reset-before-request",
                "num_retries": UNSENT_RETRIES,
                "retry_back_off": {"base_interval": "0.05s", "max_interval": "0.5s"},
                **_other_host(),
            }
        route: Json = {"name": name, "match": match, "route": action}
        if method is not None and method.grpc_path == LOGIN_METHOD:
            route["typed_per_filter_config"] = {F_LOGIN_LIMIT: self._login_limit()}
        return route

    def _login_limit(self) -> Json:
        s = self.settings
        window = f"{s.gateway_login_window_s}s"
        return {
            TYPE: T_RATELIMIT,
            "stat_prefix": "login",
            # All clients together: a ceiling well above one client's share.
            "token_bucket": {
                "max_tokens": s.gateway_login_limit * 50,
                "tokens_per_fill": s.gateway_login_limit * 50,
                "fill_interval": window,
            },
            "filter_enabled": _percent(),
            "filter_enforced": _percent(),
            "rate_limited_as_resource_exhausted": True,
            # One bucket per client address (the trusted one, see use_remote_address).
            "rate_limits": [{"actions": [{"remote_address": {}}]}],
            "descriptors": [
                {
                    "entries": [{"key": "remote_address"}],
                    "token_bucket": {
                        "max_tokens": s.gateway_login_limit,
                        "tokens_per_fill": s.gateway_login_limit,
                        "fill_interval": window,
                    },
                }
            ],
            "max_dynamic_descriptors": 100_000,
            "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
        }

    def _operator_route(self, service: str, upstream: Upstream, headers: list[Json]) -> Json:
        route: Json = {
            "name": f"{service}@{upstream.name}" + ("" if headers else " (default)"),
            "match": {"prefix": f"/{service}/", "headers": headers},
            # Watch and reflection are streams: no overall timeout.
            "route": {"cluster": upstream.name, "timeout": "0s", "idle_timeout": "300s"},
            "typed_per_filter_config": {F_BUFFER: {TYPE: T_BUFFER_ROUTE, "disabled": True}},
        }
        if service in REFLECTION_SERVICES:
            if headers:  # a named upstream: its own services
                route["request_headers_to_remove"] = [ROUTED_PACKAGES_HEADER]
            else:
                route["request_headers_to_add"] = [
                    {
                        "header": {
                            "key": ROUTED_PACKAGES_HEADER,
                            "value": ",".join(p for u in self.upstreams for p in u.packages),
                        },
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                    }
                ]
        return route

    # --- clusters ---------------------------------------------------------------

    def _cluster(self, upstream: Upstream) -> Json:
        s = self.settings
        endpoints = self.endpoints[upstream.name]
        static = all(_is_ip(e.host) for e in endpoints)
        cluster: Json = {
            "name": upstream.name,
            # A host name (a headless Service) resolves to every ready pod, each
            # its own endpoint, health-checked on its own.
            "type": "STATIC" if static else "STRICT_DNS",
            "connect_timeout": _seconds(s.gateway_connect_timeout_s),
            # Fewest requests in flight: a slow worker gets less. A dead worker
            # answers fastest (connection refused) and would attract traffic,
            # but it is ejected after EJECT_AFTER_LOCAL_FAILURES failures
            # (outlier detection below) and its requests retried elsewhere.
            "lb_policy": "LEAST_REQUEST",
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    TYPE: T_HTTP_OPTIONS,
                    "explicit_http_config": {
                        "http2_protocol_options": {
                            "max_concurrent_streams": 1000,
                            "connection_keepalive": {"interval": "30s", "timeout": "5s"},
                        }
                    },
                    "common_http_protocol_options": {"idle_timeout": "300s"},
                }
            },
            "load_assignment": {
                "cluster_name": upstream.name,
                "endpoints": [
                    {
                        "lb_endpoints": [
                            {"endpoint": {"address": _socket(e.host, e.port)}} for e in endpoints
                        ]
                    }
                ],
            },
            "health_checks": [
                {
                    "timeout": _seconds(s.gateway_health_timeout_s),
                    "interval": _seconds(s.gateway_health_interval_s),
                    "no_traffic_interval": _seconds(s.gateway_health_interval_s),
                    "unhealthy_threshold": UNHEALTHY_THRESHOLD,
                    "healthy_threshold": 1,
                    "always_log_health_check_failures": True,
                    # The service's own name (it follows its database, like ""):
                    # another service on that port answers NOT_FOUND, a failure.
                    "grpc_health_check": {"service_name": self._health_name(upstream)},
                }
            ],
            # Passive checks between the active ones: an endpoint whose
            # connections fail (kill -9: refused) or that answers UNAVAILABLE
            # again and again is ejected at once, for 5 s doubling per ejection
            # (up to 30 s); a successful health check brings it back. At most
            # half of the endpoints (at least one) are ejected.
            "outlier_detection": {
                "split_external_local_origin_errors": True,
                "consecutive_local_origin_failure": EJECT_AFTER_LOCAL_FAILURES,
                "enforcing_consecutive_local_origin_failure": 100,
                "consecutive_gateway_failure": EJECT_AFTER_GATEWAY_FAILURES,
                "enforcing_consecutive_gateway_failure": 100,
                "enforcing_consecutive_5xx": 0,
                "enforcing_success_rate": 0,
                "enforcing_local_origin_success_rate": 0,
                "interval": "1s",
                "base_ejection_time": "5s",
                "max_ejection_time": "30s",
                "max_ejection_percent": 50,
                "successful_active_health_check_uneject_host": True,
            },
            # An all-unhealthy cluster gets no traffic (503 at once), not panic routing.
            "common_lb_config": {"healthy_panic_threshold": {"value": 0}},
            "circuit_breakers": {
                "thresholds": [
                    {
                        "max_connections": 10_000,
                        "max_pending_requests": 10_000,
                        "max_requests": 10_000,
                        # Concurrent retries (reads only) may reach a fifth of
                        # the requests in flight, at least 20: Envoy's default of
                        # three refused most retries of a burst of failures.
                        "retry_budget": {
                            "budget_percent": {"value": 20.0},
                            "min_retry_concurrency": 20,
                        },
                    }
                ]
            },
        }
        if not static:
            cluster["dns_lookup_family"] = "V4_PREFERRED"
            cluster["dns_refresh_rate"] = "5s"
            cluster["respect_dns_ttl"] = True
        return cluster

    def _health_name(self, upstream: Upstream) -> str:
        """The health name the gateway checks: the upstream's first service."""
        return self.contract.services(upstream.packages)[0]

    def _jwks_cluster(self) -> Json:
        s = self.settings
        if not s.gateway_jwks_uri:
            address = _self_address(s.gateway_host)
            return {
                "name": JWKS_CLUSTER,
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": JWKS_CLUSTER,
                    "endpoints": [
                        {
                            "lb_endpoints": [
                                {"endpoint": {"address": _socket(address, s.gateway_port)}}
                            ]
                        }
                    ],
                },
            }
        url = urlsplit(s.gateway_jwks_uri)
        secure = url.scheme == "https"
        host = url.hostname or "localhost"
        cluster: Json = {
            "name": JWKS_CLUSTER,
            "type": "LOGICAL_DNS",
            "dns_lookup_family": "V4_PREFERRED",
            "connect_timeout": "2s",
            "load_assignment": {
                "cluster_name": JWKS_CLUSTER,
                "endpoints": [
                    {
                        "lb_endpoints": [
                            {
                                "endpoint": {
                                    "address": _socket(host, url.port or (443 if secure else 80))
                                }
                            }
                        ]
                    }
                ],
            },
        }
        if secure:
            cluster["transport_socket"] = {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {TYPE: T_TLS, "sni": host},
            }
        return cluster

    def _otlp_cluster(self) -> Json:
        """The collector that receives the gateway's spans (OTLP over gRPC)."""
        url = urlsplit(self.settings.tracing_otlp_endpoint)
        secure = url.scheme == "https"
        host = url.hostname or "127.0.0.1"
        cluster: Json = {
            "name": OTLP_CLUSTER,
            "type": "STATIC" if _is_ip(host) else "STRICT_DNS",
            "connect_timeout": "2s",
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    TYPE: T_HTTP_OPTIONS,
                    "explicit_http_config": {"http2_protocol_options": {}},
                }
            },
            "load_assignment": {
                "cluster_name": OTLP_CLUSTER,
                "endpoints": [
                    {
                        "lb_endpoints": [
                            {
                                "endpoint": {
                                    "address": _socket(host, url.port or (443 if secure else 4317))
                                }
                            }
                        ]
                    }
                ],
            },
        }
        if not _is_ip(host):
            cluster["dns_lookup_family"] = "V4_PREFERRED"
        if secure:
            cluster["transport_socket"] = {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {TYPE: T_TLS, "sni": host},
            }
        return cluster


def render(
    contract: Contract,
    settings: GatewaySettings,
    *,
    descriptor_path: Path,
    openapi_path: Path,
    endpoints: Mapping[str, Sequence[Endpoint]],
    upstreams: Iterable[Upstream] = UPSTREAMS,
) -> Json:
    return EnvoyConfig(
        contract,
        settings,
        descriptor_path=descriptor_path,
        openapi_path=openapi_path,
        endpoints=endpoints,
        upstreams=list(upstreams),
    ).build()
