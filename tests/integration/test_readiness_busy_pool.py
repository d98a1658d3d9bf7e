"""A busy database is not a lost one: readiness under a burst.

Under a burst every pooled connection is checked out and more requests wait
for one. The readiness probe used to ping through the same pool: it queued
behind the requests, timed out, and the service reported NOT_SERVING while
the database answered every request -- the gateway's health check then took
the service out of routing and the burst ended in errors. Now a probe asks
first whether requests were answered lately; only an idle (or failing)
service pings. Real PostgreSQL, a real gRPC server and its health service.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import make_url, text

from cardinsa_foundation.config import Settings
from cardinsa_foundation.db import Database
from cardinsa_foundation.errors import Unavailable
from cardinsa_foundation.server import GrpcServer

pytestmark = pytest.mark.integration

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest_asyncio.fixture(loop_scope="session")
async def one_connection(test_database_url: str) -> AsyncIterator[Database]:
    """A database whose pool holds one connection and lends no more."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, environment="test", db_pool_size=1, db_max_overflow=0
    )
    database = Database(test_database_url, settings, application_name="readiness-busy")
    try:
        yield database
    finally:
        await database.dispose()


async def _status(channel: grpc.aio.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=""))
    return int(reply.status)


async def _serving(name: str, db: Database) -> GrpcServer:
    """A started server with no services of its own, whose readiness is ``db``,
    checked every 0.1 s."""
    server = GrpcServer(
        name=name,
        services=[],
        port=0,
        readiness=db,
        health_interval_s=0.1,
        drain_delay_s=0,
        grace_period_s=1,
    )
    await server.start()
    return server


async def test_a_busy_pool_keeps_the_service_serving(one_connection: Database) -> None:
    db = one_connection
    assert not db.answered_within(60)  # nothing answered yet: a probe must ping
    async with db.unit_of_work(company_id=None) as session:
        await session.execute(text("SELECT 1"))
    assert db.answered_within(60)

    server = await _serving("readiness-busy", db)
    channel = grpc.aio.insecure_channel(server.address)
    release = asyncio.Event()
    busy = asyncio.Event()

    async def request() -> None:
        # One of a burst of requests, each a unit of work of 50 ms, twenty
        # queued for the pool's only connection: a newcomer waits about a second.
        while not release.is_set():
            async with db.unit_of_work(company_id=None) as session:
                await session.execute(text("SELECT pg_sleep(0.05)"))
            busy.set()

    burst = [asyncio.create_task(request()) for _ in range(20)]
    try:
        await busy.wait()
        # What the old probe did: a ping through the pool queues and times out
        # (the server's probe waits at most 0.5 s).
        with pytest.raises(Unavailable):
            await db.ping(timeout_s=0.5)
        # Ten health intervals of a saturated pool: SERVING throughout.
        seen = set()
        for _ in range(20):
            seen.add(await _status(channel))
            await asyncio.sleep(0.05)
        assert seen == {SERVING}
    finally:
        release.set()
        await asyncio.gather(*burst)
        await channel.close()
        await server.stop(grace_s=1)


async def test_an_idle_service_still_pings_and_notices_a_lost_database(
    test_database_url: str,
) -> None:
    """Without recent answers the probe pings: an unreachable database makes
    the service NOT_SERVING, as before."""
    settings = Settings(_env_file=None, environment="test")  # type: ignore[call-arg]
    # A port nothing listens on (the discard port: refused on loopback).
    url = make_url(test_database_url).set(host="127.0.0.1", port=9)
    db = Database(
        url.render_as_string(hide_password=False), settings, application_name="readiness-lost"
    )
    server = await _serving("readiness-lost", db)
    channel = grpc.aio.insecure_channel(server.address)
    try:
        assert not db.answered_within(60)
        assert await _status(channel) == NOT_SERVING
    finally:
        await channel.close()
        await server.stop(grace_s=1)
        await db.dispose()
