"""Client side of the gateway tests: the running gateway and its HTTP replies.

A real Envoy, configured by the gateway generator, in front of the real identity.

The gateway runs as a child process on free ports of 127.0.0.1 and is stopped by
its PID at the end of the module (also when a test fails). identity runs inside
this test process (the session's ``identity`` fixture), so every HTTP call is
made from a worker thread: the event loop must keep serving identity meanwhile.

The test configuration differs from the defaults only where a test needs it:
a login limit of 3 per client address, one trusted proxy hop (so each test can
act as its own client address through X-Forwarded-For) and a ``company``
upstream on a port nothing listens on (an unavailable service).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.identity_harness import IdentityHarness

PROJECT_ROOT = Path(__file__).resolve().parents[3]

from cardinsa_gateway.envoy import Endpoint  # noqa: E402
from cardinsa_gateway.process import (  # noqa: E402
    EnvoyProcess,
    render_to_file,
    select_upstreams,
)
from cardinsa_gateway.settings import GatewaySettings  # noqa: E402

__all__ = [
    "CORS_ORIGIN",
    "LOGIN_LIMIT",
    "Endpoint",
    "EnvoyProcess",
    "Gateway",
    "GatewaySettings",
    "Reply",
    "render_to_file",
    "select_upstreams",
    "wait_until_serving",
]

LOGIN_LIMIT = 3
CORS_ORIGIN = "https://app.example.test"
START_TIMEOUT_S = 30.0


@dataclass
class Reply:
    status: int
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)

    def grpc_headers(self) -> list[str]:
        return [name for name in self.headers if name.startswith("grpc-")]


@dataclass
class Gateway:
    host: str
    port: int
    admin_port: int
    config: Path
    access_log: Path
    settings: GatewaySettings
    process: EnvoyProcess
    company_port: int
    identity_address: str
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
        connection = http.client.HTTPConnection(self.host, port or self.port, timeout=20)
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            found: dict[str, list[str]] = {}
            for name, value in response.getheaders():
                found.setdefault(name.lower(), []).append(value)
            return Reply(response.status, found, response.read())
        finally:
            connection.close()

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


async def wait_until_serving(gateway: Gateway, identity: IdentityHarness) -> None:
    """Envoy live, identity healthy behind it, and the JWKS fetched (a token works)."""
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
                if reply.status == 200:
                    return
                last = (reply.status, reply.body[:200])
        except OSError as error:
            last = error
        await asyncio.sleep(0.2)
    raise TimeoutError(f"the gateway did not serve within {START_TIMEOUT_S} s (last: {last})")
