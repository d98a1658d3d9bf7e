"""Render the Envoy v3 bootstrap (static resources) for the Cardinsa gateway.

Inputs: :data:`cardinsa_gateway.services.UPSTREAMS` (which services, which
packages, which worker ports), :class:`GatewaySettings` and the descriptor set.
Nothing per method is written by hand: routes for reads (retries), the login
route (stricter rate limit), per-method timeouts and the JWT rules (public
methods open) all come from the contract.

Request flow on the one listener (codec AUTO: HTTP/1.1, HTTP/2, gRPC):

    health_check (/healthz) → cors → buffer (body limit) → local_ratelimit (overall)
    → header_mutation (REST: drop grpc-*) → grpc_json_transcoder (REST → gRPC;
    unknown paths 404, unknown query parameters 400) → local_ratelimit (login,
    per client address) → jwt_authn → router

The filters after the transcoder see the gRPC path (``/pkg.Service/Method``) for
REST and native gRPC calls alike, so one rule list serves both. REST calls are
told apart from native gRPC by ``x-envoy-original-path``, which the transcoder
sets (clients cannot: Envoy strips ``x-envoy-*`` from external requests); their
routes drop the ``grpc-*`` response headers.

This module assembles the document (:class:`EnvoyConfig`, :func:`render`); its
parts, each a module of plain functions from the settings and the contract:

- ``envoy_listener``: the listener, its connection manager (client address,
  request ids, access log, tracing), Envoy's own error replies, the filter chain;
- ``envoy_routes``: the routes in matching order, CORS and security headers;
- ``envoy_jwt``: the ``jwt_authn`` rules and where the keys come from;
- ``envoy_clusters``: the services' clusters (health checks, outlier detection),
  the JWKS source, the trace collector;
- ``envoy_metrics``: ``GET /metrics`` on its own listener, the admin cluster;
- ``envoy_endpoints``: where the services listen (:func:`default_endpoints`);
- ``envoy_names``: type URLs, filter and cluster names, small JSON shapes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from cardinsa_gateway.contract import Contract
from cardinsa_gateway.envoy_clusters import (
    UNHEALTHY_THRESHOLD,
    jwks_cluster,
    otlp_cluster,
    upstream_cluster,
)
from cardinsa_gateway.envoy_endpoints import (
    Endpoint,
    default_endpoints,
    settings_environment,
    unrouted_packages,
)
from cardinsa_gateway.envoy_listener import MAX_REQUEST_HEADERS_KB, main_listener
from cardinsa_gateway.envoy_metrics import admin_cluster, metrics_listener
from cardinsa_gateway.envoy_names import (
    F_JWT,
    F_LOGIN_LIMIT,
    F_TRANSCODER,
    HEALTH_PATH,
    OTLP_CLUSTER,
    T_CONN_LIMIT,
    TYPE,
    Json,
    socket_address,
)
from cardinsa_gateway.services import UPSTREAMS, Upstream
from cardinsa_gateway.settings import GatewaySettings

__all__ = [
    "F_JWT",
    "F_LOGIN_LIMIT",
    "F_TRANSCODER",
    "HEALTH_PATH",
    "MAX_REQUEST_HEADERS_KB",
    "OTLP_CLUSTER",
    "UNHEALTHY_THRESHOLD",
    "Endpoint",
    "EnvoyConfig",
    "default_endpoints",
    "render",
    "settings_environment",
    "unrouted_packages",
]


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
                "address": socket_address("127.0.0.1", s.gateway_admin_port),
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
                "listeners": [
                    main_listener(
                        s,
                        self.contract,
                        self.upstreams,
                        descriptor_path=self.descriptor_path,
                        openapi_path=self.openapi_path,
                    ),
                    *metrics_listener(s),
                ],
                "clusters": [
                    *(
                        upstream_cluster(s, self.contract, u, self.endpoints[u.name])
                        for u in self.upstreams
                    ),
                    jwks_cluster(s),
                    *admin_cluster(s),
                    *([otlp_cluster(s)] if s.tracing_enabled else []),
                ],
            },
        }

    def to_json(self) -> str:
        return json.dumps(self.build(), indent=2) + "\n"


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
