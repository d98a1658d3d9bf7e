"""THE list of services behind the gateway — the one place a service is added.

Everything else (clusters, health checks, routes, JWT rules, transcoder
services, the OpenAPI document) is derived from this list and the descriptor
set. Adding a service is one entry here:

    Upstream("company", packages=("cardinsa.company.v1",), port=50052),

``port`` is the first worker's port; worker ``i`` listens on ``port + i x
CARDINSA_WORKER_PORT_STEP`` (``--workers N`` of the service; 100 by default, so
the workers of different services never share a port), and each worker is its own endpoint of the
cluster (Envoy keeps few HTTP/2 connections, so one reused port balances badly).
``CARDINSA_<NAME>_PORT`` overrides the port, the same variable the service reads.

A configuration may be rendered for a subset (the services actually started:
`make up` before every service exists, tests in front of identity alone); the
paths of the others then answer 404. A unit test keeps every package of the
contract listed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Upstream:
    name: str  # cluster name; also the value of the x-cardinsa-upstream header
    packages: tuple[str, ...]  # gRPC packages this service serves
    port: int  # first worker's port
    timeout_s: float = 15.0  # per-route timeout of the service's methods
    # Per-method timeouts, "Service/Method" → seconds (overrides timeout_s).
    method_timeouts: Mapping[str, float] = field(default_factory=dict)


UPSTREAMS: tuple[Upstream, ...] = (
    Upstream(
        "identity",
        packages=("cardinsa.identity.v1",),
        port=50051,
        # Password hashing takes a few hundred milliseconds on purpose.
        method_timeouts={"AuthService/Login": 10.0, "AuthService/ChangePassword": 10.0},
    ),
    Upstream("company", packages=("cardinsa.company.v1",), port=50052),
    Upstream("core", packages=("cardinsa.core.v1",), port=50053),
)

# Services every upstream carries (grpc.health.v1, server reflection). Through
# the gateway they reach the upstream named in the `x-cardinsa-upstream`
# request header, or the first upstream without it. Public, like /openapi.json.
OPERATOR_SERVICES: tuple[str, ...] = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
)
UPSTREAM_HEADER = "x-cardinsa-upstream"
# Server reflection through the gateway (without UPSTREAM_HEADER) answers for
# every service it routes: the gateway names their packages in this header and
# the service's reflection lists them (cardinsa_foundation.reflection, same name).
REFLECTION_SERVICES: tuple[str, ...] = (
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
)
ROUTED_PACKAGES_HEADER = "x-cardinsa-routed-packages"

# The method whose route carries the stricter (per client address) rate limit.
LOGIN_METHOD = "/cardinsa.identity.v1.AuthService/Login"
# Every method limited like login: the password and the answer to its challenge
# (a second-factor code or a new password), each with a bucket of its own.
LOGIN_LIMITED_METHODS: tuple[str, ...] = (
    LOGIN_METHOD,
    "/cardinsa.identity.v1.AuthService/RespondToAuthChallenge",
)
