"""The database goes away and comes back: health follows, callers get UNAVAILABLE.

A PostgreSQL server of its own (stopped and started by the test, by PID), a
real identity server on it, and real gRPC calls: while the database is down the
service reports NOT_SERVING within a bounded time and answers UNAVAILABLE
(never INTERNAL); when it returns, the service is SERVING again without a
restart and calls succeed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.identity_harness import PASSWORD, unique_email

from cardinsa.identity.v1 import auth_service_pb2, auth_service_pb2_grpc
from cardinsa_foundation.db import app_role_url
from cardinsa_foundation.local_postgres import LocalPostgres, find_free_port
from cardinsa_foundation.migrations import upgrade
from cardinsa_identity.application.bootstrap import ensure_user_with_role
from cardinsa_identity.cli import MIGRATIONS
from cardinsa_identity.main import IdentityApp, build
from cardinsa_identity.settings import IdentitySettings

# Health is probed every second; allow for a probe that hangs until its timeout.
NOT_SERVING_BOUND_S = 5.0


@pytest_asyncio.fixture
async def own_database(tmp_path: Path) -> AsyncIterator[LocalPostgres]:
    server = LocalPostgres(tmp_path / "pg", find_free_port("127.0.0.1"), durable=False)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


async def _status(channel: grpc.aio.Channel) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=3
    )
    return int(reply.status)


async def _wait_for(channel: grpc.aio.Channel, wanted: int, bound_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < bound_s:
        if await _status(channel) == wanted:
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    pytest.fail(f"health did not become {wanted} within {bound_s} s")


async def test_health_and_errors_follow_the_database(
    own_database: LocalPostgres, identity_settings: IdentitySettings
) -> None:
    admin_url = own_database.admin_url()
    await upgrade(MIGRATIONS, admin_url, "identity")
    settings = identity_settings.model_copy(
        update={"db_pool_timeout_s": 2.0, "db_connect_timeout_s": 1.0}
    )
    app: IdentityApp = build(settings, app_role_url(admin_url), port=0, metrics_port=0)
    await app.start()
    email = unique_email("outage")
    await ensure_user_with_role(
        app.ctx, email=email, password=PASSWORD, company_id=uuid.uuid4(), role_name="viewer"
    )
    try:
        async with grpc.aio.insecure_channel(app.server.address) as channel:
            auth = auth_service_pb2_grpc.AuthServiceStub(channel)
            login = auth_service_pb2.LoginRequest(email=email, password=PASSWORD)
            assert await _status(channel) == health_pb2.HealthCheckResponse.SERVING
            assert (await auth.Login(login)).access_token

            await asyncio.to_thread(own_database.stop)
            await _wait_for(
                channel, health_pb2.HealthCheckResponse.NOT_SERVING, NOT_SERVING_BOUND_S
            )
            for _ in range(3):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await auth.Login(login, timeout=10)
                assert caught.value.code() is grpc.StatusCode.UNAVAILABLE, caught.value.details()
            live = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="cardinsa.liveness")
            )
            assert live.status == health_pb2.HealthCheckResponse.SERVING

            await asyncio.to_thread(own_database.start)
            await _wait_for(channel, health_pb2.HealthCheckResponse.SERVING, 15)
            assert (await auth.Login(login)).access_token  # no restart needed
    finally:
        await app.stop()
