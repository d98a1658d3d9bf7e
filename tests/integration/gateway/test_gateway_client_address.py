"""The client address the services count logins by comes through exactly the
configured number of trusted proxies (CARDINSA_GATEWAY_TRUSTED_HOPS), never
further: real Envoy in front of the session's identity server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from support.gateway_harness import Endpoint, Gateway, running_gateway
from support.identity_harness import IdentityHarness


async def _login_address(gateway: Gateway, identity: IdentityHarness, xff: str) -> set[str]:
    """Log in through the gateway with ``xff`` as X-Forwarded-For; the address
    identity recorded on the new session."""
    account = await identity.create_user(identity.admin_a, roles=["company-admin"])
    reply = await gateway.request(
        "POST",
        "/v1/auth:login",
        {"email": account.email, "password": account.password},
        {"x-forwarded-for": xff},
    )
    assert reply.status == 200, reply.body
    token = reply.json()["access_token"]
    sessions = await gateway.request("GET", f"/v1/users/{account.user_id}/sessions", token=token)
    assert sessions.status == 200, sessions.body
    return {s.get("client_address") for s in sessions.json()["sessions"]}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def direct_gateway(
    identity: IdentityHarness, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Gateway]:
    """Clients reach Envoy directly: no trusted proxy (the production default)."""
    async with running_gateway(
        identity,
        tmp_path_factory.mktemp("gateway-direct"),
        {"identity": [Endpoint.parse(identity.app.server.address)]},
        all_healthy=False,
        gateway_trusted_hops=0,
    ) as gw:
        yield gw


async def test_one_trusted_hop_takes_the_address_the_proxy_appended(
    gateway: Gateway, identity: IdentityHarness
) -> None:
    """Behind one proxy (an Ingress), the client's own X-Forwarded-For entries are
    ignored: only the one the proxy appended (the last) is the client address."""
    assert gateway.settings.gateway_trusted_hops == 1
    assert await _login_address(gateway, identity, "6.6.6.6, 7.7.7.7, 203.0.113.88") == {
        "203.0.113.88"
    }


async def test_no_trusted_hop_ignores_x_forwarded_for(
    direct_gateway: Gateway, identity: IdentityHarness
) -> None:
    assert direct_gateway.settings.gateway_trusted_hops == 0
    assert await _login_address(direct_gateway, identity, "203.0.113.99") == {"127.0.0.1"}
