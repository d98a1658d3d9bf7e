"""The main listener's routes, in the order they match: what the gateway
serves itself (``/openapi.json``, ``/docs``), refusals (a malformed request id,
a body on a bodyless verb), the methods with their own route (reads with
retries, login with its rate limit, own timeouts), every other method by
package, health and reflection, and the 404 catch-alls. Also the virtual
host's CORS policy and security headers (which Envoy's own replies carry too).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

from cardinsa_gateway.contract import Contract, Method
from cardinsa_gateway.envoy_names import (
    F_BUFFER,
    F_CORS,
    F_JWT,
    F_LOGIN_LIMIT,
    F_MUTATION,
    F_TRANSCODER,
    LISTENER,
    T_BUFFER_ROUTE,
    T_CORS_POLICY,
    T_JWT_ROUTE,
    T_MUTATION_ROUTE,
    T_RATELIMIT,
    TYPE,
    Json,
    disabled,
    exact,
    not_grpc_content,
    percent,
    seconds,
)
from cardinsa_gateway.services import (
    LOGIN_LIMITED_METHODS,
    OPERATOR_SERVICES,
    REFLECTION_SERVICES,
    ROUTED_PACKAGES_HEADER,
    UPSTREAM_HEADER,
    Upstream,
)
from cardinsa_gateway.settings import GatewaySettings

OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/docs"
DOCS_HTML = Path(__file__).with_name("docs.html")
REQUEST_ID = "x-request-id"
# The services accept request ids of this shape (cardinsa_foundation.interceptors);
# the gateway refuses others, so its log and theirs carry the same id.
REQUEST_ID_PATTERN = r"[A-Za-z0-9._:\-]{1,128}"
UNROUTED_HEADER = ":cardinsa-unrouted"
GATEWAY_AUTH_HEADER = "x-cardinsa-gateway-auth"
GRPC_RESPONSE_HEADERS = (
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "grpc-encoding",
    "grpc-accept-encoding",
)
#: Retries of a request that never reached a worker (see _method_route).
UNSENT_RETRIES = 2


def route_config(
    settings: GatewaySettings,
    contract: Contract,
    upstreams: Sequence[Upstream],
    openapi_path: Path,
) -> Json:
    s = settings
    virtual_host: Json = {
        "name": LISTENER,
        "domains": ["*"],
        "routes": _routes(settings, contract, upstreams, openapi_path),
        "response_headers_to_add": security_headers(settings),
        "typed_per_filter_config": {F_CORS: _cors(settings)},
    }
    if s.secret:
        # Proof for the services that the call came through us (they then
        # trust x-envoy-external-address, which Envoy sets itself).
        virtual_host["request_headers_to_add"] = _overwrite({GATEWAY_AUTH_HEADER: s.secret})
    else:
        virtual_host["request_headers_to_remove"] = [GATEWAY_AUTH_HEADER]
    size = openapi_path.stat().st_size if openapi_path.exists() else 0
    return {
        "name": LISTENER,
        "virtual_hosts": [virtual_host],
        "max_direct_response_body_size_bytes": max(1 << 20, size + 4096),
    }


def security_headers(settings: GatewaySettings) -> list[Json]:
    s = settings
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
    return _overwrite(headers)


def _overwrite(headers: dict[str, str]) -> list[Json]:
    return [
        {"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
        for k, v in headers.items()
    ]


def _cors(settings: GatewaySettings) -> Json:
    return {
        TYPE: T_CORS_POLICY,
        "allow_origin_string_match": [{"exact": origin} for origin in settings.cors_origins],
        "allow_methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
        "allow_headers": "authorization, content-type, x-request-id",
        "expose_headers": "x-request-id, www-authenticate, retry-after",
        "max_age": "600",
        "allow_credentials": False,
        "forward_not_matching_preflights": False,
    }


def _answered_here() -> Json:
    """Per-filter config of a route the gateway answers itself: neither
    transcoded nor authenticated."""
    return {F_TRANSCODER: disabled(), F_JWT: {TYPE: T_JWT_ROUTE, "disabled": True}}


def _gateway_route(path: str, body: Json, content_type: str, headers: dict[str, str]) -> Json:
    return {
        "name": path,
        "match": {"path": path, "headers": [exact(":method", "GET")]},
        "direct_response": {"status": 200, **body},
        "response_headers_to_add": _overwrite({"content-type": content_type, **headers}),
        "typed_per_filter_config": _answered_here(),
    }


def _inline_hashes(html: str) -> tuple[list[str], list[str]]:
    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    scripts = [digest(s) for s in re.findall(r"<script>(.*?)</script>", html, flags=re.S)]
    styles = [digest(s) for s in re.findall(r"<style>(.*?)</style>", html, flags=re.S)]
    return scripts, styles


def _routes(
    settings: GatewaySettings,
    contract: Contract,
    upstreams: Sequence[Upstream],
    openapi_path: Path,
) -> list[Json]:
    routes: list[Json] = []
    # 1. What the gateway serves itself.
    routes.append(
        _gateway_route(
            OPENAPI_PATH,
            {"body": {"filename": str(openapi_path)}},
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
        _gateway_route(
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
            "typed_per_filter_config": _answered_here(),
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
    bodyless = _bodyless_verbs(contract, upstreams)
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
                "typed_per_filter_config": _answered_here(),
            }
        )
    # 4. Methods that differ from their service's default: reads (retries),
    #    login (rate limit per client address), own timeouts.
    for upstream in upstreams:
        for method in contract.methods_of(upstream.packages):
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
            timeout = _method_timeout(upstream, method)
            special = (
                method.is_read
                or method.grpc_path in LOGIN_LIMITED_METHODS
                or timeout != upstream.timeout_s
            )
            if special:
                routes.append(
                    _method_route(settings, {"path": method.grpc_path}, upstream, method, timeout)
                )
    # 5. Every other method of each service, by package prefix.
    for upstream in upstreams:
        for package in upstream.packages:
            routes.append(
                _method_route(
                    settings, {"prefix": f"/{package}."}, upstream, None, upstream.timeout_s
                )
            )
    # 6. Health and reflection: to the upstream the caller names, else the first.
    #    Reflection without a name lists every routed service (the first
    #    upstream knows the whole contract), so grpcurl sees one API.
    for service in OPERATOR_SERVICES:
        for upstream in upstreams:
            routes.append(
                _operator_route(
                    service, upstream, [exact(UPSTREAM_HEADER, upstream.name)], upstreams
                )
            )
        routes.append(_operator_route(service, upstreams[0], [], upstreams))
    # 7. Anything else: 404. REST calls match here *before* transcoding
    #    (their path is still /v1/...): the transcoder then answers unknown
    #    paths itself, and the header-mutation filter, which keeps the route
    #    it saw first, drops the grpc-* headers from their responses.
    #    Native gRPC calls of unknown methods get UNIMPLEMENTED.
    routes.append(
        {
            "name": "rest",
            "match": {"prefix": "/", "headers": [not_grpc_content()]},
            # A route entry (not a direct response), so that the CORS filter
            # applies; its cluster comes from a pseudo-header no client can
            # send, so whatever the transcoder lets through untranslated
            # gets 404 rather than reaching a service.
            "route": {
                "cluster_header": UNROUTED_HEADER,
                "cluster_not_found_response_code": "NOT_FOUND",
            },
            "typed_per_filter_config": {F_MUTATION: _drop_grpc_headers()},
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


def _bodyless_verbs(contract: Contract, upstreams: Sequence[Upstream]) -> list[str]:
    """HTTP verbs no REST binding of the routed services takes a body with."""
    bindings = [b for u in upstreams for m in contract.methods_of(u.packages) for b in m.bindings]
    with_body = {b.verb for b in bindings if b.body}
    return sorted({b.verb for b in bindings} - with_body)


def _drop_grpc_headers() -> Json:
    return {
        TYPE: T_MUTATION_ROUTE,
        "mutations": {"response_mutations": [{"remove": h} for h in GRPC_RESPONSE_HEADERS]},
    }


def _method_timeout(upstream: Upstream, method: Method) -> float:
    return upstream.method_timeouts.get(f"{method.service}/{method.name}", upstream.timeout_s)


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


def _method_route(
    settings: GatewaySettings,
    match: Json,
    upstream: Upstream,
    method: Method | None,
    timeout_s: float,
) -> Json:
    name = method.grpc_path if method else f"{match.get('prefix')}*"
    action: Json = {
        "cluster": upstream.name,
        "timeout": seconds(timeout_s),
        # A native client's grpc-timeout is honoured up to the route timeout.
        "max_stream_duration": {"grpc_timeout_header_max": seconds(timeout_s)},
    }
    if method is not None and method.is_read and settings.gateway_read_retries:
        action["retry_policy"] = {
            # "cancelled": a read the upstream gave up on without the client
            # asking (seen under a burst of 1 000 new connections: a few
            # dozen GetPolicy calls answered CANCELLED by core's gRPC stack
            # before reaching the service) is safe to send again.
            "retry_on": "connect-failure,refused-stream,reset,unavailable,cancelled",
            "num_retries": settings.gateway_read_retries,
            "per_try_timeout": seconds(max(1.0, timeout_s / 3)),
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
    if method is not None and method.grpc_path in LOGIN_LIMITED_METHODS:
        route["typed_per_filter_config"] = {F_LOGIN_LIMIT: _login_limit(settings)}
    return route


def _login_limit(settings: GatewaySettings) -> Json:
    s = settings
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
        "filter_enabled": percent(),
        "filter_enforced": percent(),
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


def _operator_route(
    service: str, upstream: Upstream, headers: list[Json], upstreams: Sequence[Upstream]
) -> Json:
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
            packages = ",".join(p for u in upstreams for p in u.packages)
            route["request_headers_to_add"] = _overwrite({ROUTED_PACKAGES_HEADER: packages})
    return route
