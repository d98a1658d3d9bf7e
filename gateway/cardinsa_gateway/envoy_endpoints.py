"""Where the services listen, as the gateway routes to them: the same variables
and ``.env`` files the services read, so the gateway's clusters point at the
ports they really listen on."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cardinsa_gateway.contract import Contract
from cardinsa_gateway.services import UPSTREAMS, Upstream
from cardinsa_gateway.settings import GatewaySettings


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
