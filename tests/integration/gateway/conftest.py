"""The ``gateway`` fixture: Envoy started by PID in front of the session's identity."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from gateway_harness import (
    CORS_ORIGIN,
    LOGIN_LIMIT,
    Endpoint,
    EnvoyProcess,
    Gateway,
    GatewaySettings,
    render_to_file,
    select_upstreams,
    wait_until_serving,
)
from pydantic import SecretStr
from support.identity_harness import GATEWAY_SECRET, IdentityHarness

from cardinsa_foundation.local_postgres import find_free_port


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateway(
    identity: IdentityHarness, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Gateway]:
    folder = tmp_path_factory.mktemp("gateway")
    port, admin_port, dead_port = find_free_port(), find_free_port(), find_free_port()
    settings = GatewaySettings(  # type: ignore[call-arg]
        _env_file=None,
        environment="test",
        gateway_host="127.0.0.1",
        gateway_port=port,
        gateway_admin_port=admin_port,
        gateway_secret=SecretStr(GATEWAY_SECRET),
        gateway_trusted_hops=1,
        gateway_login_limit=LOGIN_LIMIT,
        gateway_access_log=str(folder / "access.log"),
        cors_origins=[CORS_ORIGIN],
        jwt_issuer=identity.settings.jwt_issuer,
        jwt_audience=identity.settings.jwt_audience,
        gateway_health_interval_s=1.0,
    )
    config = render_to_file(
        folder / "envoy.json",
        settings=settings,
        upstreams=select_upstreams(["identity", "company"]),
        endpoints={
            "identity": [Endpoint.parse(identity.app.server.address)],
            "company": [Endpoint("127.0.0.1", dead_port)],
        },
    )
    stdout, stderr = folder / "envoy.stdout", folder / "envoy.stderr"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = EnvoyProcess(config, admin_port, f"127.0.0.1:{port}", stdout=out, stderr=err)
        gw = Gateway(
            host="127.0.0.1",
            port=port,
            admin_port=admin_port,
            config=config,
            access_log=folder / "access.log",
            settings=settings,
            process=process,
            company_port=dead_port,
            identity_address=identity.app.server.address,
            log_files=[stdout, stderr],
        )
        try:
            process.start()
            await wait_until_serving(gw, identity)
            yield gw
        finally:
            await asyncio.to_thread(process.stop)
    assert not process.alive()
