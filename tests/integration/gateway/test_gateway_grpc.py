"""Native gRPC and grpcurl through the gateway's one port (the same listener as REST).

Native calls keep gRPC semantics end to end: Envoy's own refusals arrive as
gRPC status (not JSON), the services' rich details pass through untouched, the
request id comes back in the trailers, and the stricter login limit applies to
gRPC logins as well. grpcurl works through the gateway with server reflection
(routed to the upstream named in ``x-cardinsa-upstream``, identity by default)
or with the descriptor set the gateway itself uses (every service at once).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.gateway_harness import LOGIN_LIMIT, Gateway
from support.grpc_errors import error_info, field_violations
from support.identity_harness import IdentityHarness
from support.tools import venv_tool

from cardinsa.identity.v1 import (
    auth_service_pb2,
    auth_service_pb2_grpc,
    resources_pb2,
    user_service_pb2,
    user_service_pb2_grpc,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

DESCRIPTOR_SET = Path(__file__).resolve().parents[3] / "gen" / "descriptor.binpb"
IDENTITY_SERVICES = {
    "cardinsa.identity.v1.AccessService",
    "cardinsa.identity.v1.AuthService",
    "cardinsa.identity.v1.IdentityService",
    "cardinsa.identity.v1.UserService",
}
COMPANY_SERVICES = {
    "cardinsa.company.v1.CompanyService",
    "cardinsa.company.v1.OrganizationService",
    "cardinsa.company.v1.WebhookService",
}
INFRASTRUCTURE = {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}
TIMEOUT_S = 30.0


@pytest_asyncio.fixture(loop_scope="session")
async def channel(gateway: Gateway) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(gateway.address) as opened:
        yield opened


async def test_health_and_login_over_native_grpc(
    channel: grpc.aio.Channel, identity: IdentityHarness
) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING

    auth = auth_service_pb2_grpc.AuthServiceStub(channel)
    request_id = f"grpc-{uuid.uuid4().hex}"
    call = auth.Login(
        auth_service_pb2.LoginRequest(
            email=identity.admin_a.email, password=identity.admin_a.password
        ),
        metadata=[("x-request-id", request_id), ("x-forwarded-for", "192.0.2.41")],
        timeout=10,
    )
    tokens = await call
    assert tokens.access_token and tokens.token_type == "Bearer"
    trailers = dict(await call.trailing_metadata() or ())
    assert trailers.get("x-request-id") == request_id

    users = user_service_pb2_grpc.UserServiceStub(channel)
    user = await users.GetUser(
        user_service_pb2.GetUserRequest(user_id=identity.admin_a.user_id),
        metadata=[("authorization", f"Bearer {tokens.access_token}")],
        timeout=5,
    )
    assert user.email == identity.admin_a.email


async def test_envoy_refusals_stay_grpc_status(
    channel: grpc.aio.Channel, identity: IdentityHarness
) -> None:
    users = user_service_pb2_grpc.UserServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await users.ListUsers(user_service_pb2.ListUsersRequest(), timeout=5)
    assert missing.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "Jwt" in (missing.value.details() or "")

    token = await identity.token(identity.admin_a)
    unknown = channel.unary_unary(
        "/cardinsa.identity.v1.UserService/NoSuchMethod",
        request_serializer=lambda raw: raw,
        response_deserializer=lambda raw: raw,
    )
    with pytest.raises(grpc.aio.AioRpcError) as nope:
        await unknown(b"", metadata=[("authorization", f"Bearer {token}")], timeout=5)
    assert nope.value.code() is grpc.StatusCode.UNIMPLEMENTED

    # A service with no healthy worker: UNAVAILABLE at once (panic threshold 0).
    company = channel.unary_unary(
        "/cardinsa.company.v1.CompanyService/GetServerInfo",
        request_serializer=lambda raw: raw,
        response_deserializer=lambda raw: raw,
    )
    with pytest.raises(grpc.aio.AioRpcError) as down:
        await company(b"", timeout=5)
    assert down.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_rich_service_errors_pass_through(
    channel: grpc.aio.Channel, identity: IdentityHarness
) -> None:
    token = await identity.token(identity.admin_a)
    users = user_service_pb2_grpc.UserServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await users.CreateUser(
            user_service_pb2.CreateUserRequest(
                user=resources_pb2.User(email="not-an-email", given_name="A", family_name="B"),
                password="correct horse battery staple 42",
            ),
            metadata=[("authorization", f"Bearer {token}")],
            timeout=5,
        )
    assert invalid.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert any(name.endswith("email") for name in field_violations(invalid.value))
    assert error_info(invalid.value).domain == "cardinsa.io"


async def test_login_limit_applies_to_grpc_logins(channel: grpc.aio.Channel) -> None:
    auth = auth_service_pb2_grpc.AuthServiceStub(channel)
    metadata = [("x-forwarded-for", "192.0.2.99")]
    request = auth_service_pb2.LoginRequest(
        email=f"nobody-{uuid.uuid4().hex[:8]}@example.com", password="wrong" * 3
    )
    codes = []
    for _ in range(LOGIN_LIMIT + 1):
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await auth.Login(request, metadata=metadata, timeout=5)
        codes.append(failed.value.code())
    assert codes[:LOGIN_LIMIT] == [grpc.StatusCode.UNAUTHENTICATED] * LOGIN_LIMIT
    assert codes[-1] is grpc.StatusCode.RESOURCE_EXHAUSTED


async def grpcurl(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        venv_tool("grpcurl"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_grpcurl_through_the_gateway(gateway: Gateway, identity: IdentityHarness) -> None:
    address = gateway.address
    # Reflection reaches identity (the default upstream for operator services),
    # which lists every service the gateway routes (identity and company here)
    # and describes the whole contract.
    code, listed, err = await grpcurl("-plaintext", address, "list")
    assert code == 0, err
    assert {*IDENTITY_SERVICES, *COMPANY_SERVICES, *INFRASTRUCTURE} <= set(listed.split())
    assert not any(name.startswith("cardinsa.core.") for name in listed.split())  # not routed

    code, described, err = await grpcurl(
        "-plaintext", address, "describe", "cardinsa.identity.v1.AuthService"
    )
    assert code == 0, err
    assert "rpc Login" in described
    # company is down in this test: identity describes it all the same.
    code, described, err = await grpcurl(
        "-plaintext", address, "describe", "cardinsa.company.v1.CompanyService"
    )
    assert code == 0, err
    assert "rpc GetCompany" in described

    # A client cannot widen or narrow the list through the gateway: the header is
    # the gateway's. Named upstream: that upstream's own services.
    code, listed, err = await grpcurl(
        "-plaintext", "-H", "x-cardinsa-routed-packages: cardinsa.core.v1", address, "list"
    )
    assert code == 0, err
    assert "cardinsa.company.v1.CompanyService" in listed.split()
    assert "cardinsa.core.v1.PolicyService" not in listed.split()
    code, listed, err = await grpcurl(
        "-plaintext", "-H", "x-cardinsa-upstream: identity", address, "list"
    )
    assert code == 0, err
    assert {*IDENTITY_SERVICES, *INFRASTRUCTURE} <= set(listed.split())
    assert not any(name.startswith("cardinsa.company.") for name in listed.split())
    # Straight to the service: its own services.
    code, listed, err = await grpcurl("-plaintext", identity.app.server.address, "list")
    assert code == 0, err
    assert "cardinsa.company.v1.CompanyService" not in listed.split()

    code, out, err = await grpcurl("-plaintext", address, "grpc.health.v1.Health/Check")
    assert code == 0, err
    assert json.loads(out)["status"] == "SERVING"

    login = json.dumps({"email": identity.admin_a.email, "password": identity.admin_a.password})
    code, out, err = await grpcurl(
        "-plaintext",
        "-H",
        "x-forwarded-for: 192.0.2.7",
        "-d",
        login,
        address,
        "cardinsa.identity.v1.AuthService/Login",
    )
    assert code == 0, err
    assert json.loads(out)["access_token"]

    # With the gateway's own descriptor set: every service, no reflection needed.
    code, listed, err = await grpcurl(
        "-plaintext", "-protoset", str(DESCRIPTOR_SET), address, "list"
    )
    assert code == 0, err
    assert {"cardinsa.identity.v1.UserService", "cardinsa.company.v1.CompanyService"} <= set(
        listed.split()
    )

    # The operator picks the upstream by header: company is down in this test.
    code, _, err = await grpcurl(
        "-plaintext", "-H", "x-cardinsa-upstream: company", address, "grpc.health.v1.Health/Check"
    )
    assert code != 0
    assert "Unavailable" in err


async def test_envoy_statistics_for_prometheus_on_their_own_port(gateway: Gateway) -> None:
    """GET /metrics on the stats listener is the admin's /stats/prometheus; nothing
    else of the admin interface (which can stop Envoy) is reachable through it."""
    port = gateway.settings.gateway_metrics_port
    assert port and port not in (gateway.port, gateway.admin_port)
    scraped = await gateway.request("GET", "/metrics", port=port)
    assert scraped.status == 200, scraped.body[:300]
    assert scraped.header("content-type").startswith("text/plain")
    text = scraped.body.decode()
    assert "# TYPE envoy_cluster_upstream_rq_total counter" in text
    assert 'envoy_cluster_upstream_rq_total{envoy_cluster_name="identity"}' in text
    assert re.search(r"^envoy_server_live(\{\})? 1$", text, flags=re.MULTILINE)
    # the families docs/runbook.md queries
    assert "# TYPE envoy_cluster_upstream_rq_xx counter" in text
    assert 'envoy_cluster_membership_healthy{envoy_cluster_name="identity"} 1' in text

    for method, path in (
        ("GET", "/stats/prometheus"),
        ("GET", "/stats"),
        ("GET", "/ready"),
        ("GET", "/config_dump"),
        ("POST", "/quitquitquit"),
        ("POST", "/healthcheck/fail"),
        ("POST", "/metrics"),
        ("GET", "/metrics?filter=.*"),
        ("GET", "/metrics/../config_dump"),
        ("GET", "/metrics/%2e%2e/ready"),
        ("GET", "//metrics/../quitquitquit"),
    ):
        reply = await gateway.request(method, path, port=port)
        assert reply.status in (400, 404), (method, path, reply.status, reply.body[:200])
        assert b"envoy_" not in reply.body, (method, path)
    # The admin interface itself is untouched (and still on 127.0.0.1 only).
    assert (await gateway.admin("/ready")).status == 200
    config = json.loads(gateway.config.read_text())
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
