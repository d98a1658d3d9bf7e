"""The real gateway for tests: Envoy, configured by the gateway generator, in
front of real services, and a client for its HTTP replies.

:func:`running_gateway` starts Envoy as a child process on free ports of
127.0.0.1 in front of the given endpoints (services the test started, or ports
nothing listens on: an unavailable service), waits until it serves, and stops
it by its PID on exit (also when a test fails). The services run inside the
test process (the session's ``identity`` fixture and whatever else the suite
starts), so every HTTP call is made from a worker thread: the event loop must
keep serving them meanwhile.

The test configuration differs from the defaults only where a test needs it:
a login limit of 3 per client address and one trusted proxy hop (so each test
can act as its own client address through X-Forwarded-For). Used by the
gateway suite (tests/integration/gateway) and the attack suite
(tests/integration/hostile).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from cardinsa_foundation.local_postgres import find_free_port
from cardinsa_gateway.envoy import Endpoint
from cardinsa_gateway.process import (
    EnvoyProcess,
    render_to_file,
    select_upstreams,
)
from cardinsa_gateway.settings import GatewaySettings
from support.identity_harness import GATEWAY_SECRET, IdentityHarness
from support.rest import Reply, exchange

__all__ = [
    "CORS_ORIGIN",
    "LOGIN_LIMIT",
    "Endpoint",
    "EnvoyProcess",
    "Gateway",
    "GatewaySettings",
    "Reply",
    "render_to_file",
    "running_gateway",
    "select_upstreams",
    "wait_until_serving",
]

LOGIN_LIMIT = 3
CORS_ORIGIN = "https://app.example.test"
START_TIMEOUT_S = 30.0


@dataclass
class Gateway:
    host: str
    port: int
    admin_port: int
    config: Path
    access_log: Path
    settings: GatewaySettings
    process: EnvoyProcess
    identity_address: str
    # The port of the unavailable company service, where the test routes it to one.
    company_port: int = 0
    log_files: list[Path] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def request_sync(
        self,
        method: str,
        path: str,
        body: bytes | str | dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        token: str | None = None,
        client: str | None = None,
        port: int | None = None,
    ) -> Reply:
        sent = dict(headers or {})
        if isinstance(body, dict):
            body = json.dumps(body)
            sent.setdefault("content-type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        if token is not None:
            sent["authorization"] = f"Bearer {token}"
        if client is not None:
            # One trusted hop is configured: this is the client address Envoy uses.
            sent["x-forwarded-for"] = client
        return exchange(
            self.host, port or self.port, method, path, body=body, headers=sent, timeout_s=20
        )

    async def request(self, method: str, path: str, *args: Any, **kwargs: Any) -> Reply:
        return await asyncio.to_thread(self.request_sync, method, path, *args, **kwargs)

    async def admin(self, path: str) -> Reply:
        return await self.request("GET", path, port=self.admin_port)

    def access_log_lines(self) -> list[dict[str, Any]]:
        if not self.access_log.exists():
            return []
        lines = []
        for line in self.access_log.read_text().splitlines():
            if line.strip():
                lines.append(json.loads(line))
        return lines

    async def log_line(self, request_id: str, timeout_s: float = 5.0) -> dict[str, Any]:
        """The access-log entry of ``request_id`` (Envoy flushes every 250 ms)."""
        deadline = time.monotonic() + timeout_s
        while True:
            for line in self.access_log_lines():
                if line.get("request_id") == request_id:
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(f"no access-log line for request {request_id}")
            await asyncio.sleep(0.1)


async def wait_until_serving(
    gateway: Gateway, identity: IdentityHarness, *, all_healthy: bool = False
) -> None:
    """Envoy live, identity healthy behind it, and the JWKS fetched (a token works);
    with ``all_healthy`` also every other service (the gateway's ``/healthz``)."""
    token = await identity.token(identity.admin_a)
    deadline = time.monotonic() + START_TIMEOUT_S
    last: object = None
    while time.monotonic() < deadline:
        if not gateway.process.alive():
            raise RuntimeError(f"envoy exited; see {gateway.log_files}")
        try:
            ready = await gateway.admin("/ready")
            if ready.status == 200:
                reply = await gateway.request(
                    "GET", f"/v1/users/{identity.admin_a.user_id}", token=token
                )
                if reply.status == 200 and not all_healthy:
                    return
                last = (reply.status, reply.body[:200])
                if reply.status == 200:
                    health = await gateway.request("GET", "/healthz")
                    if health.status == 200:
                        return
                    last = ("/healthz", health.status, health.body[:200])
        except OSError as error:
            last = error
        await asyncio.sleep(0.2)
    raise TimeoutError(f"the gateway did not serve within {START_TIMEOUT_S} s (last: {last})")


@contextlib.asynccontextmanager
async def running_gateway(
    identity: IdentityHarness,
    folder: Path,
    endpoints: Mapping[str, Sequence[Endpoint]],
    *,
    all_healthy: bool = True,
    company_port: int = 0,
    **overrides: Any,
) -> AsyncIterator[Gateway]:
    """Envoy in front of ``endpoints`` (service name → where it listens; only these
    services are routed, in this order), serving on free ports of 127.0.0.1 until
    the block ends, then stopped by its PID. ``overrides`` are gateway settings.
    Config, access log and Envoy's output are written to ``folder``."""
    port, admin_port, metrics_port = find_free_port(), find_free_port(), find_free_port()
    values: dict[str, Any] = {
        "environment": "test",
        "gateway_host": "127.0.0.1",
        "gateway_port": port,
        "gateway_admin_port": admin_port,
        "gateway_metrics_port": metrics_port,
        "gateway_secret": SecretStr(GATEWAY_SECRET),
        "gateway_trusted_hops": 1,
        "gateway_login_limit": LOGIN_LIMIT,
        "gateway_access_log": str(folder / "access.log"),
        "cors_origins": [CORS_ORIGIN],
        "jwt_issuer": identity.settings.jwt_issuer,
        "jwt_audience": identity.settings.jwt_audience,
        "gateway_health_interval_s": 1.0,
    }
    values.update(overrides)
    settings = GatewaySettings(_env_file=None, **values)  # type: ignore[call-arg]
    config = render_to_file(
        folder / "envoy.json",
        settings=settings,
        upstreams=select_upstreams(list(endpoints)),
        endpoints=endpoints,
    )
    stdout, stderr = folder / "envoy.stdout", folder / "envoy.stderr"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = EnvoyProcess(config, admin_port, f"127.0.0.1:{port}", stdout=out, stderr=err)
        gateway = Gateway(
            host="127.0.0.1",
            port=port,
            admin_port=admin_port,
            config=config,
            access_log=folder / "access.log",
            settings=settings,
            process=process,
            identity_address=identity.app.server.address,
            company_port=company_port,
            log_files=[stdout, stderr],
        )
        try:
            process.start()
            await wait_until_serving(gateway, identity, all_healthy=all_healthy)
            yield gateway
        finally:
            await asyncio.to_thread(process.stop)
    assert not process.alive()
