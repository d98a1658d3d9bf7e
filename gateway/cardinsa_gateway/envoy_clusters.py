"""The gateway's upstream clusters: one per service (load balancing, health
checks, outlier detection, circuit breakers), the JWKS source and the trace
collector. The admin cluster behind ``/metrics`` is in
:mod:`cardinsa_gateway.envoy_metrics`."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from cardinsa_gateway.contract import Contract
from cardinsa_gateway.envoy_endpoints import Endpoint
from cardinsa_gateway.envoy_names import (
    JWKS_CLUSTER,
    OTLP_CLUSTER,
    T_HTTP_OPTIONS,
    TYPE,
    Json,
    is_ip,
    seconds,
    self_address,
    single_endpoint,
    socket_address,
    tls_to,
)
from cardinsa_gateway.services import Upstream
from cardinsa_gateway.settings import GatewaySettings

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


def upstream_cluster(
    settings: GatewaySettings,
    contract: Contract,
    upstream: Upstream,
    endpoints: Sequence[Endpoint],
) -> Json:
    """The cluster of one service: each endpoint (worker or pod) health-checked
    and ejected on its own."""
    s = settings
    static = all(is_ip(e.host) for e in endpoints)
    cluster: Json = {
        "name": upstream.name,
        # A host name (a headless Service) resolves to every ready pod, each
        # its own endpoint, health-checked on its own.
        "type": "STATIC" if static else "STRICT_DNS",
        "connect_timeout": seconds(s.gateway_connect_timeout_s),
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
                        {"endpoint": {"address": socket_address(e.host, e.port)}} for e in endpoints
                    ]
                }
            ],
        },
        "health_checks": [
            {
                "timeout": seconds(s.gateway_health_timeout_s),
                "interval": seconds(s.gateway_health_interval_s),
                "no_traffic_interval": seconds(s.gateway_health_interval_s),
                "unhealthy_threshold": UNHEALTHY_THRESHOLD,
                "healthy_threshold": 1,
                "always_log_health_check_failures": True,
                # The service's own name (it follows its database, like ""):
                # another service on that port answers NOT_FOUND, a failure.
                "grpc_health_check": {"service_name": health_name(contract, upstream)},
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


def health_name(contract: Contract, upstream: Upstream) -> str:
    """The health name the gateway checks: the upstream's first service."""
    return contract.services(upstream.packages)[0]


def jwks_cluster(settings: GatewaySettings) -> Json:
    """Where Envoy fetches the JWKS: the gateway's own listener (identity's
    ``/.well-known/jwks.json`` behind it) unless ``gateway_jwks_uri`` is set."""
    s = settings
    if not s.gateway_jwks_uri:
        address = self_address(s.gateway_host)
        return {
            "name": JWKS_CLUSTER,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": single_endpoint(JWKS_CLUSTER, address, s.gateway_port),
        }
    url = urlsplit(s.gateway_jwks_uri)
    secure = url.scheme == "https"
    host = url.hostname or "localhost"
    cluster: Json = {
        "name": JWKS_CLUSTER,
        "type": "LOGICAL_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "2s",
        "load_assignment": single_endpoint(JWKS_CLUSTER, host, url.port or (443 if secure else 80)),
    }
    if secure:
        cluster["transport_socket"] = tls_to(host)
    return cluster


def otlp_cluster(settings: GatewaySettings) -> Json:
    """The collector that receives the gateway's spans (OTLP over gRPC)."""
    url = urlsplit(settings.tracing_otlp_endpoint)
    secure = url.scheme == "https"
    host = url.hostname or "127.0.0.1"
    cluster: Json = {
        "name": OTLP_CLUSTER,
        "type": "STATIC" if is_ip(host) else "STRICT_DNS",
        "connect_timeout": "2s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                TYPE: T_HTTP_OPTIONS,
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": single_endpoint(
            OTLP_CLUSTER, host, url.port or (443 if secure else 4317)
        ),
    }
    if not is_ip(host):
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    if secure:
        cluster["transport_socket"] = tls_to(host)
    return cluster
