"""The ``gateway`` fixture: Envoy started by PID in front of the session's identity
(and a ``company`` upstream on a port nothing listens on: an unavailable service)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from support.gateway_harness import Endpoint, Gateway, running_gateway
from support.identity_harness import IdentityHarness

from cardinsa_foundation.local_postgres import find_free_port


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateway(
    identity: IdentityHarness, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Gateway]:
    dead_port = find_free_port()
    async with running_gateway(
        identity,
        tmp_path_factory.mktemp("gateway"),
        {
            "identity": [Endpoint.parse(identity.app.server.address)],
            "company": [Endpoint("127.0.0.1", dead_port)],
        },
        all_healthy=False,
        company_port=dead_port,
    ) as gw:
        yield gw
