"""Envoy's statistics for Prometheus: ``GET /metrics`` on a listener of its
own, forwarded to the admin interface (which stays on 127.0.0.1)."""

from __future__ import annotations

from cardinsa_gateway.envoy_names import (
    F_ROUTER,
    T_HCM,
    T_ROUTER,
    TYPE,
    Json,
    exact,
    http_listener,
    single_endpoint,
    socket_address,
)
from cardinsa_gateway.settings import GatewaySettings

#: The stats-only listener: GET /metrics → the admin's /stats/prometheus.
METRICS_LISTENER = "metrics"
METRICS_PATH = "/metrics"
ADMIN_CLUSTER = "envoy_admin"
ADMIN_PROMETHEUS_PATH = "/stats/prometheus"


def metrics_listener(settings: GatewaySettings) -> list[Json]:
    """Envoy's statistics for Prometheus on a listener of their own.

    The admin interface stays on 127.0.0.1 (it can stop Envoy); this listener
    forwards exactly ``GET /metrics`` to the admin's ``/stats/prometheus`` and
    answers everything else with 404 itself (its paths are normalised first,
    so ``/metrics/../quitquitquit`` is ``/quitquitquit``: 404).
    """
    s = settings
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
                                    exact(":path", METRICS_PATH),
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
        http_listener(
            METRICS_LISTENER, socket_address(s.metrics_host, s.gateway_metrics_port), manager
        )
    ]


def admin_cluster(settings: GatewaySettings) -> list[Json]:
    """The admin interface as the metrics listener's upstream (none without it)."""
    if not settings.gateway_metrics_port:
        return []
    return [
        {
            "name": ADMIN_CLUSTER,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": single_endpoint(
                ADMIN_CLUSTER, "127.0.0.1", settings.gateway_admin_port
            ),
        }
    ]
