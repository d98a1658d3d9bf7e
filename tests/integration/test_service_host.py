"""The foundation's service host (what every service's ``main.build()`` stands
on), with the real test PostgreSQL and a real grpc.aio server on 127.0.0.1:

- the server it builds serves the registered service, health ("" and per
  service, following the database), reflection and GetServerInfo with the
  database as a dependency; the database pool is in the metrics;
- stopping the server closes what the host opened, last opened first, each step
  on its own (one failing does not keep the others from running), and the
  port no longer answers;
- following identity's revocations: off, or no service key in development,
  gives nothing; no key in production refuses to start.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from pydantic import SecretStr
from support.tokens import AUDIENCE, ISSUER, TokenMinter

from cardinsa.common.v1 import common_pb2
from cardinsa.identity.v1 import identity_service_pb2, identity_service_pb2_grpc
from cardinsa_foundation import metrics
from cardinsa_foundation.auth import JwksCache
from cardinsa_foundation.config import Environment, Settings
from cardinsa_foundation.host import ServiceHost, registration
from cardinsa_foundation.server_info import ServerInfoProvider

pytestmark = pytest.mark.integration

NAME = "hosttest"


class HostSettings(Settings):
    hosttest_port: int = 0
    hosttest_metrics_port: int = 0
    gateway_secret: SecretStr | None = None


class FakeIdentity(identity_service_pb2_grpc.IdentityServiceServicer):
    def __init__(self, info: ServerInfoProvider) -> None:
        self.info = info

    async def GetServerInfo(self, request: Any, context: Any) -> common_pb2.ServerInfo:
        return await self.info.build_message()


def settings(**overrides: Any) -> HostSettings:
    return HostSettings(  # type: ignore[call-arg]
        _env_file=None, jwt_issuer=ISSUER, jwt_audience=AUDIENCE, **overrides
    )


@pytest.fixture
async def hosted(test_database_url: str) -> AsyncIterator[dict[str, Any]]:
    signer = TokenMinter()

    async def jwks() -> dict[str, Any]:
        return signer.jwks()

    host = ServiceHost(
        NAME,
        settings(
            drain_delay_s=0,
            grace_period_s=1,
            # As the image's build arguments set them (an offset is read as UTC).
            build_commit="0123456789abcdef",
            build_time="2026-12-01T11:30:00+01:00",
        ),
        test_database_url,
    )
    closed: list[str] = []

    async def failing() -> None:
        closed.append("failing")
        raise RuntimeError("this step breaks")

    host.on_close(lambda: closed.append("first registered"))
    host.on_close(failing)
    host.on_close(lambda: closed.append("last registered"))
    started: list[str] = []

    async def on_start() -> None:
        started.append("started")

    host.on_start(on_start)
    info = host.server_info(["cardinsa.identity.v1.IdentityService"])
    server = host.server(
        [
            registration(
                identity_service_pb2,
                identity_service_pb2_grpc,
                "IdentityService",
                FakeIdentity(info),
            )
        ],
        verifier=host.verifier(JwksCache(jwks)),
    )
    await server.start()
    channel = grpc.aio.insecure_channel(server.address)
    try:
        yield {
            "host": host,
            "server": server,
            "channel": channel,
            "closed": closed,
            "started": started,
        }
    finally:
        await channel.close()
        await server.stop(grace_s=1)


async def test_the_hosted_server_serves_health_reflection_and_server_info(
    hosted: dict[str, Any],
) -> None:
    server, channel = hosted["server"], hosted["channel"]
    assert hosted["started"] == ["started"]
    assert server.port != 0 and server.bound_metrics_port
    health = health_pb2_grpc.HealthStub(channel)  # type: ignore[no-untyped-call]
    for name in ("", "cardinsa.identity.v1.IdentityService"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, name

    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)  # type: ignore[no-untyped-call]
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    names = [
        service.name
        async for answer in reflection.ServerReflectionInfo(iter([request]), timeout=5)
        for service in answer.list_services_response.service
    ]
    assert "cardinsa.identity.v1.IdentityService" in names

    stub = identity_service_pb2_grpc.IdentityServiceStub(channel)  # type: ignore[no-untyped-call]
    info = await stub.GetServerInfo(identity_service_pb2.GetServerInfoRequest(), timeout=5)
    assert info.name == NAME
    # The version of the installed distribution, the build from the settings.
    assert info.version == metadata.version("cardinsa")
    assert info.build == "0123456789abcdef"
    assert info.build_time.ToDatetime(tzinfo=UTC) == datetime(2026, 12, 1, 10, 30, tzinfo=UTC)
    labels = {
        "service": NAME,
        "version": metadata.version("cardinsa"),
        "commit": "0123456789abcdef",
        "build_time": "2026-12-01T10:30:00Z",
    }
    assert metrics.REGISTRY.get_sample_value("cardinsa_build_info", labels) == 1.0
    assert [d.name for d in info.dependencies] == ["database"]
    assert info.status == common_pb2.SERVING_STATUS_SERVING
    assert metrics.REGISTRY.get_sample_value("db_pool_size", {"pool": NAME}) is not None


async def test_stopping_closes_what_the_host_opened_last_first(
    hosted: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    server, host, closed = hosted["server"], hosted["host"], hosted["closed"]
    with caplog.at_level(logging.ERROR, logger="cardinsa_foundation.host"):
        await server.stop(grace_s=1)
    assert closed == ["last registered", "failing", "first registered"]
    assert any(r.getMessage() == "shutdown step failed" for r in caplog.records)
    # The database pool is gone from the metrics, the engine disposed.
    assert metrics.REGISTRY.get_sample_value("db_pool_size", {"pool": NAME}) is None
    assert host.db.engine.pool.checkedout() == 0
    health = health_pb2_grpc.HealthStub(hosted["channel"])  # type: ignore[no-untyped-call]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_following_revocations_needs_the_service_key_in_production(
    test_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    hosts = [
        ServiceHost(NAME, settings(revocation_check=False), test_database_url),
        ServiceHost(NAME, settings(), test_database_url),
        ServiceHost(
            NAME,
            settings().model_copy(update={"environment": Environment.PRODUCTION}),
            test_database_url,
        ),
    ]
    try:
        off, development, production = hosts
        channel = off.channel("127.0.0.1:1")
        verifier = off.verifier(JwksCache(lambda: None))  # type: ignore[arg-type]
        assert off.follow_revocations(verifier, channel, SecretStr("cdk_a_b")) is None
        with caplog.at_level(logging.WARNING, logger="cardinsa_foundation.host"):
            assert development.follow_revocations(verifier, channel, None) is None
        assert any("revoked access tokens are accepted" in r.getMessage() for r in caplog.records)
        with pytest.raises(RuntimeError, match="CARDINSA_SERVICE_API_KEY"):
            production.follow_revocations(verifier, channel, None)
        following = development.follow_revocations(verifier, channel, SecretStr("cdk_a_b"))
        assert following is not None and verifier.revocations is not None
    finally:
        for host in hosts:
            await host.close()
