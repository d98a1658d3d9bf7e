"""Identity's Prometheus metrics move with real calls (scraped over HTTP)."""

from __future__ import annotations

import asyncio
import re
import urllib.request

import grpc
import pytest
from support.identity_harness import IdentityHarness

from cardinsa.identity.v1 import auth_service_pb2


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def _value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + ("{" if labels else "")) and line.split(" ")[0] != name:
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_metrics_count_calls_failures_lockouts_reuse_and_the_pool(
    identity: IdentityHarness,
) -> None:
    port = identity.app.server.bound_metrics_port
    assert port
    before = await asyncio.to_thread(_scrape, port)
    user = await identity.create_user(identity.admin_a)
    pair = await identity.login(user.email)
    await identity.auth.RefreshToken(
        auth_service_pb2.RefreshTokenRequest(refresh_token=pair.refresh_token)
    )
    with pytest.raises(grpc.aio.AioRpcError):  # reuse of the rotated token
        await identity.auth.RefreshToken(
            auth_service_pb2.RefreshTokenRequest(refresh_token=pair.refresh_token)
        )
    limit = identity.settings.login_max_failures_per_account
    for i in range(limit + 1):  # the last one locks the account
        with pytest.raises(grpc.aio.AioRpcError):
            await identity.login(
                user.email, "wrong password 123456", client_address=f"198.18.0.{i}"
            )
    after = await asyncio.to_thread(_scrape, port)

    def moved(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    login = {"grpc_service": "cardinsa.identity.v1.AuthService", "grpc_method": "Login"}
    assert moved("grpc_server_handled_total", grpc_code="OK", **login) >= 2
    assert moved("grpc_server_handled_total", grpc_code="UNAUTHENTICATED", **login) == limit
    assert moved("grpc_server_handled_total", grpc_code="RESOURCE_EXHAUSTED", **login) == 1
    assert moved("grpc_server_handling_seconds_count", **login) >= limit + 3
    assert moved("identity_login_failures_total") == limit
    assert moved("identity_lockouts_total") == 1
    assert moved("identity_refresh_token_reuse_total") == 1
    assert _value(after, "db_pool_size", pool="identity") == identity.settings.db_pool_size
    assert re.search(r'^db_pool_checked_out\{pool="identity"\} \d', after, re.MULTILINE)
