"""Attack suite: Envoy's admin interface from the outside.

The admin interface (loopback only) can stop Envoy, fail its health checks and
dump its configuration, which carries the gateway secret. Outside it, only
``GET /metrics`` on the stats listener reaches it (as ``/stats/prometheus``).
Every admin page, with every trick to reach it (other verbs, a query string,
dot segments, encoded dots, doubled slashes), is tried on the stats listener
and on the main listener; afterwards Envoy is still live and ready.
"""

from __future__ import annotations

import asyncio

import pytest
from hostile_attacks import AttackLog
from support.gateway_harness import Gateway

pytestmark = pytest.mark.asyncio(loop_scope="session")

ADMIN_PAGES = (
    ("POST", "/quitquitquit"),
    ("POST", "/healthcheck/fail"),
    ("POST", "/drain_listeners"),
    ("POST", "/logging?level=trace"),
    ("POST", "/reset_counters"),
    ("GET", "/config_dump"),
    ("GET", "/clusters"),
    ("GET", "/stats"),
    ("GET", "/stats/prometheus"),
    ("GET", "/server_info"),
    ("GET", "/ready"),
)
DETOURS = (
    "{page}",
    "/metrics/..{page}",
    "/metrics/%2e%2e{page}",
    "//metrics/..{page}",
    "/metrics?x=1&{page}",
)


async def test_admin_pages_are_not_reachable_from_outside(
    hostile_gateway: Gateway, attacks: AttackLog
) -> None:
    gateway = hostile_gateway
    stats_port = gateway.settings.gateway_metrics_port
    for listener, port in (("stats listener", stats_port), ("main listener", gateway.port)):
        with attacks.attempt(
            "Envoy admin pages through the gateway's listeners",
            f"{listener}: {len(ADMIN_PAGES)} pages x {len(DETOURS)} detours",
        ):
            for method, page in ADMIN_PAGES:
                for detour in DETOURS:
                    path = detour.format(page=page)
                    reply = await gateway.request(method, path, port=port)
                    leaked = b"envoy_" in reply.body or b'"configs"' in reply.body
                    assert reply.status in (400, 401, 404), (listener, method, path, reply.status)
                    assert not leaked, (listener, method, path)
    # Nothing above reached the admin interface: Envoy still serves and is ready.
    await asyncio.sleep(0.2)
    assert gateway.process.alive()
    assert (await gateway.admin("/ready")).status == 200
    assert (await gateway.request("GET", "/metrics", port=stats_port)).status == 200
