"""The ``jwt_authn`` filter: which calls need a token (all but the contract's
public methods and the operator services) and where the keys come from."""

from __future__ import annotations

from collections.abc import Sequence

from cardinsa_gateway.contract import Contract, Method
from cardinsa_gateway.envoy_names import JWKS_CLUSTER, T_JWT, TYPE, Json, self_address
from cardinsa_gateway.services import OPERATOR_SERVICES, Upstream
from cardinsa_gateway.settings import GatewaySettings

JWT_PROVIDER = "identity"
#: Verified JWTs Envoy keeps per worker thread (jwt_authn's jwt_cache_config).
JWT_CACHE_SIZE = 1000


def jwt_authn(settings: GatewaySettings, contract: Contract, upstreams: Sequence[Upstream]) -> Json:
    s = settings
    if s.gateway_jwks_uri:
        uri = s.gateway_jwks_uri
    else:
        host = self_address(s.gateway_host)
        host = f"[{host}]" if ":" in host else host
        uri = f"http://{host}:{s.gateway_port}/.well-known/jwks.json"
    rules: list[Json] = []
    # Public methods (from the contract) and the operator services are open;
    # everything else — including what the contract does not know — needs
    # a valid token. The services check permissions themselves.
    for method in public_methods(contract, upstreams):
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
                # the same token for its whole session): verifying it on every
                # request is a large part of Envoy's CPU per REST call
                # (docs/performance.md). A cached token is
                # still refused once it expires, and every service verifies
                # it again itself (its JWKS cache drops retired keys).
                "jwt_cache_config": {"jwt_cache_size": JWT_CACHE_SIZE},
            }
        },
        "rules": rules,
        "bypass_cors_preflight": True,
    }


def public_methods(contract: Contract, upstreams: Sequence[Upstream]) -> list[Method]:
    return [m for u in upstreams for m in contract.methods_of(u.packages) if m.is_public]
