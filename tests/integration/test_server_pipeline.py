"""A real foundation server on 127.0.0.1, called over gRPC (and by grpcurl).

The servicers here are small test doubles of identity's RPCs; everything else
(server bootstrap, health, reflection, the call pipeline, token verification,
error details) is the real foundation code that every service runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import jwt
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from support.tokens import AUDIENCE, ISSUER, TokenMinter, unsigned_token
from support.tools import venv_tool

from cardinsa.common.v1 import common_pb2
from cardinsa.identity.v1 import (
    identity_service_pb2,
    identity_service_pb2_grpc,
    resources_pb2,
    user_service_pb2,
    user_service_pb2_grpc,
)
from cardinsa_foundation import auth as auth_module
from cardinsa_foundation import loop_lag, metrics
from cardinsa_foundation.auth import JwksCache, TokenVerifier
from cardinsa_foundation.build import BuildInfo
from cardinsa_foundation.context import current_principal
from cardinsa_foundation.errors import NotFound
from cardinsa_foundation.interceptors import CallPipeline
from cardinsa_foundation.paging import normalize_page_size
from cardinsa_foundation.server import GrpcServer, ServiceRegistration
from cardinsa_foundation.server_info import ServerInfoProvider

USERS = "/cardinsa.identity.v1.UserService/"
KNOWN_USER = str(uuid.uuid4())


class FakeUsers(user_service_pb2_grpc.UserServiceServicer):
    """Answers from memory; the point is what happens around it."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = asyncio.Event()

    async def GetUser(self, request: Any, context: Any) -> resources_pb2.User:
        principal = current_principal()
        assert principal is not None
        if request.user_id != KNOWN_USER:
            raise NotFound(
                "user not found", reason="USER_NOT_FOUND", metadata={"user_id": request.user_id}
            )
        # The tenant comes from the token: echo it so the test can check.
        return resources_pb2.User(
            id=KNOWN_USER, company_id=principal.company_id or "", email="a@b.example"
        )

    async def ListUsers(self, request: Any, context: Any) -> user_service_pb2.ListUsersResponse:
        normalize_page_size(request.page_size)
        return user_service_pb2.ListUsersResponse()

    async def DeleteUser(self, request: Any, context: Any) -> resources_pb2.User:
        raise RuntimeError("connection to db-7.internal failed: password=hunter2")

    async def LockUser(self, request: Any, context: Any) -> resources_pb2.User:
        # A slow call, to prove in-flight calls finish during graceful shutdown.
        self.entered.set()
        await self.release.wait()
        return resources_pb2.User(id=request.user_id, state=resources_pb2.User.LOCKED)


class FakeIdentity(identity_service_pb2_grpc.IdentityServiceServicer):
    def __init__(self, info: ServerInfoProvider) -> None:
        self.info = info

    async def GetServerInfo(self, request: Any, context: Any) -> common_pb2.ServerInfo:
        return await self.info.build_message()

    async def ListPermissions(
        self, request: Any, context: Any
    ) -> identity_service_pb2.ListPermissionsResponse:
        return identity_service_pb2.ListPermissionsResponse()


class SwitchableDatabase:
    def __init__(self) -> None:
        self.up = True

    def answered_within(self, seconds: float) -> bool:
        return False  # answers no requests: every probe pings

    async def ping(self, timeout_s: float = 1.0) -> float:
        if not self.up:
            raise ConnectionRefusedError("database down")
        return 0.001


@pytest.fixture
def signer() -> TokenMinter:
    return TokenMinter()


@pytest.fixture
async def running(signer: TokenMinter) -> AsyncIterator[dict[str, Any]]:
    database = SwitchableDatabase()
    fetches: list[int] = []

    async def fetch_jwks() -> dict[str, Any]:
        fetches.append(1)
        return signer.jwks()

    verifier = TokenVerifier(JwksCache(fetch_jwks), issuer=ISSUER, audience=AUDIENCE, leeway_s=5)
    users = FakeUsers()
    info = ServerInfoProvider(
        build=BuildInfo(service="identity", version="0.1.0"),
        environment="test",
        apis=["cardinsa.identity.v1.UserService"],
        dependencies={"database": database.ping},
    )
    server = GrpcServer(
        name="identity",
        services=[
            ServiceRegistration(
                user_service_pb2.DESCRIPTOR.services_by_name["UserService"],
                user_service_pb2_grpc.add_UserServiceServicer_to_server,
                users,
            ),
            ServiceRegistration(
                identity_service_pb2.DESCRIPTOR.services_by_name["IdentityService"],
                identity_service_pb2_grpc.add_IdentityServiceServicer_to_server,
                FakeIdentity(info),
            ),
        ],
        port=0,
        verifier=verifier,
        readiness=database,
        metrics_port=0,
        health_interval_s=0.1,
        drain_delay_s=0.3,
        grace_period_s=5,
    )
    await server.start()
    channel = grpc.aio.insecure_channel(server.address)
    try:
        yield {
            "server": server,
            "channel": channel,
            "users": users,
            "database": database,
            "fetches": fetches,
            "signer": signer,
        }
    finally:
        await channel.close()
        users.release.set()
        await server.stop(grace_s=1)


def bearer(token: str, request_id: str | None = None) -> list[tuple[str, str]]:
    metadata = [("authorization", f"Bearer {token}")]
    if request_id:
        metadata.append(("x-request-id", request_id))
    return metadata


def details_of(error: grpc.aio.AioRpcError) -> dict[str, Any]:
    status = rpc_status.from_call(error)
    assert status is not None, "the error carries no google.rpc.Status"
    found: dict[str, Any] = {}
    for any_msg in status.details:
        for cls in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.BadRequest,
            error_details_pb2.RequestInfo,
            error_details_pb2.RetryInfo,
        ):
            if any_msg.Is(cls.DESCRIPTOR):
                msg = cls()
                any_msg.Unpack(msg)
                assert cls.__name__ not in found, f"two {cls.__name__} details"
                found[cls.__name__] = msg
    return found


async def test_health_overall_and_per_service(running: dict[str, Any]) -> None:
    stub = health_pb2_grpc.HealthStub(running["channel"])
    for service in ("", "cardinsa.identity.v1.UserService", "cardinsa.identity.v1.IdentityService"):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def test_health_follows_database_reachability(running: dict[str, Any]) -> None:
    stub = health_pb2_grpc.HealthStub(running["channel"])
    running["database"].up = False

    async def status() -> int:
        return (await stub.Check(health_pb2.HealthCheckRequest(service=""))).status  # type: ignore[no-any-return]

    for _ in range(50):
        if await status() == health_pb2.HealthCheckResponse.NOT_SERVING:
            break
        await asyncio.sleep(0.05)
    assert await status() == health_pb2.HealthCheckResponse.NOT_SERVING
    # Liveness stays SERVING: the process is fine, only its database is not.
    live = await stub.Check(health_pb2.HealthCheckRequest(service="cardinsa.liveness"))
    assert live.status == health_pb2.HealthCheckResponse.SERVING
    running["database"].up = True
    for _ in range(50):
        if await status() == health_pb2.HealthCheckResponse.SERVING:
            break
        await asyncio.sleep(0.05)
    assert await status() == health_pb2.HealthCheckResponse.SERVING


async def test_held_not_serving_when_the_supervisor_gave_up(running: dict[str, Any]) -> None:
    """The supervisor gave up on another worker: this one reports NOT_SERVING for
    good (overall and every service name), whatever its database does; liveness
    stays SERVING."""
    stub = health_pb2_grpc.HealthStub(running["channel"])
    names = ["", "cardinsa.identity.v1.UserService", "cardinsa.identity.v1.IdentityService"]
    await running["server"].hold_not_serving()
    await asyncio.sleep(0.5)  # several readiness probes, the database being up
    for name in names:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=name))
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING, name
    live = await stub.Check(health_pb2.HealthCheckRequest(service="cardinsa.liveness"))
    assert live.status == health_pb2.HealthCheckResponse.SERVING


async def test_grpcurl_lists_and_describes_through_reflection(running: dict[str, Any]) -> None:
    grpcurl = venv_tool("grpcurl")
    address = running["server"].address

    def run(*args: str) -> str:
        done = subprocess.run(
            [grpcurl, "-plaintext", *args], capture_output=True, text=True, timeout=30, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    listed = await asyncio.to_thread(run, address, "list")
    assert "cardinsa.identity.v1.UserService" in listed
    assert "grpc.health.v1.Health" in listed
    described = await asyncio.to_thread(
        run, address, "describe", "cardinsa.identity.v1.UserService"
    )
    for rpc in user_service_pb2.DESCRIPTOR.services_by_name["UserService"].methods:
        assert f"rpc {rpc.name} (" in described
    info = json.loads(
        await asyncio.to_thread(run, address, "cardinsa.identity.v1.IdentityService/GetServerInfo")
    )
    assert info["name"] == "identity"
    assert info["dependencies"][0]["name"] == "database"


async def test_public_method_needs_no_token(running: dict[str, Any]) -> None:
    stub = identity_service_pb2_grpc.IdentityServiceStub(running["channel"])
    info = await stub.GetServerInfo(identity_service_pb2.GetServerInfoRequest())
    assert info.status == common_pb2.SERVING_STATUS_SERVING
    assert info.version == "0.1.0"


async def test_call_without_token_is_refused(running: dict[str, Any]) -> None:
    stub = user_service_pb2_grpc.UserServiceStub(running["channel"])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetUser(
            user_service_pb2.GetUserRequest(user_id=KNOWN_USER),
            metadata=[("x-request-id", "req-1")],
        )
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    details = details_of(caught.value)
    assert details["ErrorInfo"].reason == "MISSING_TOKEN"
    assert details["RequestInfo"].request_id == "req-1"
    assert dict(caught.value.trailing_metadata())["x-request-id"] == "req-1"


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"typ": "refresh"}, "NOT_AN_ACCESS_TOKEN"),
        ({"typ": "reset"}, "NOT_AN_ACCESS_TOKEN"),
        ({"typ": None}, "INVALID_TOKEN"),
        ({"iss": "https://evil.example"}, "WRONG_ISSUER"),
        ({"aud": "another-api"}, "WRONG_AUDIENCE"),
        ({"exp": 1_000_000}, "TOKEN_EXPIRED"),
        ({"nbf": 4_000_000_000}, "TOKEN_NOT_YET_VALID"),
        ({"kind": "robot"}, "INVALID_TOKEN"),
    ],
)
async def test_tokens_that_are_not_valid_access_tokens_are_refused(
    running: dict[str, Any], claims: dict[str, Any], reason: str
) -> None:
    token = running["signer"].token(perms=["users.get"], **claims)
    stub = user_service_pb2_grpc.UserServiceStub(running["channel"])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetUser(
            user_service_pb2.GetUserRequest(user_id=KNOWN_USER), metadata=bearer(token)
        )
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert details_of(caught.value)["ErrorInfo"].reason == reason


async def test_forged_tokens_are_refused(running: dict[str, Any]) -> None:
    signer: TokenMinter = running["signer"]
    stub = user_service_pb2_grpc.UserServiceStub(running["channel"])
    claims = signer.claims(perms=["users.get"])
    stranger = TokenMinter()  # same kid, different key: a bad signature
    stranger.kid = signer.kid
    forged = [
        unsigned_token(claims, signer.kid),
        jwt.encode(claims, "x" * 32, algorithm="HS256", headers={"kid": signer.kid}),
        stranger.token(perms=["users.get"]),
        TokenMinter().token(perms=["users.get"]),  # unknown kid
        "not-a-jwt",
    ]
    for token in forged:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetUser(
                user_service_pb2.GetUserRequest(user_id=KNOWN_USER), metadata=bearer(token)
            )
        assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED, token


async def test_permission_from_the_contract_is_enforced(running: dict[str, Any]) -> None:
    stub = user_service_pb2_grpc.UserServiceStub(running["channel"])
    token = running["signer"].token(perms=["users.list"])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetUser(
            user_service_pb2.GetUserRequest(user_id=KNOWN_USER), metadata=bearer(token)
        )
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    info = details_of(caught.value)["ErrorInfo"]
    assert info.reason == "PERMISSION_MISSING"
    assert info.metadata["permission"] == "users.get"


async def test_allowed_call_sees_tenant_from_token_and_returns_request_id(
    running: dict[str, Any],
) -> None:
    stub = user_service_pb2_grpc.UserServiceStub(running["channel"])
    company = str(uuid.uuid4())
    token = running["signer"].token(perms=["users.get"], cid=company)
    call = stub.GetUser(
        user_service_pb2.GetUserRequest(user_id=KNOWN_USER),
        metadata=[*bearer(token, "trace-42"), ("x-company-id", str(uuid.uuid4()))],
    )
    user = await call
    assert user.company_id == company  # never the header's
    trailing = dict(await call.trailing_metadata())
    assert trailing["x-request-id"] == "trace-42"

    generated = stub.GetUser(
        user_service_pb2.GetUserRequest(user_id=KNOWN_USER), metadata=bearer(token)
    )
    await generated
    assert uuid.UUID(dict(await generated.trailing_metadata())["x-request-id"])

    malformed = stub.GetUser(
        user_service_pb2.GetUserRequest(user_id=KNOWN_USER),
        metadata=bearer(token, "bad id with spaces"),
    )
    await malformed
    assert dict(await malformed.trailing_metadata())["x-request-id"] != "bad id with spaces"


async def test_error_details_arrive_intact(running: dict[str, Any]) -> None:
    stub = user_service_pb2_grpc.UserServiceStub(running["channel"])
    token = running["signer"].token(perms=["users.list", "users.get"])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListUsers(
            user_service_pb2.ListUsersRequest(page_size=-1), metadata=bearer(token, "req-77")
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    details = details_of(caught.value)
    assert [v.field for v in details["BadRequest"].field_violations] == ["page_size"]
    assert details["ErrorInfo"].domain == "cardinsa.io"
    assert details["RequestInfo"].request_id == "req-77"

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetUser(user_service_pb2.GetUserRequest(user_id="nope"), metadata=bearer(token))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert details_of(caught.value)["ErrorInfo"].metadata["user_id"] == "nope"


async def test_unexpected_error_is_internal_with_request_id_only(
    running: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    stub = user_service_pb2_grpc.UserServiceStub(running["channel"])
    token = running["signer"].token(perms=["users.delete"])
    with (
        caplog.at_level(logging.ERROR, logger="cardinsa.errors"),
        pytest.raises(grpc.aio.AioRpcError) as caught,
    ):
        await stub.DeleteUser(
            user_service_pb2.DeleteUserRequest(user_id=KNOWN_USER), metadata=bearer(token, "req-9")
        )
    error = caught.value
    assert error.code() is grpc.StatusCode.INTERNAL
    assert "db-7" not in (error.details() or "") and "hunter2" not in (error.details() or "")
    assert "db-7" not in str(rpc_status.from_call(error))
    assert details_of(error)["RequestInfo"].request_id == "req-9"
    # The traceback went to the log instead.
    assert any(r.exc_info for r in caplog.records), "the traceback was not logged"


async def test_verified_tokens_are_cached(
    running: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    decodes: list[str] = []
    real_decode = jwt.decode

    def counting_decode(token: str, *args: Any, **kwargs: Any) -> Any:
        decodes.append(token)
        return real_decode(token, *args, **kwargs)

    monkeypatch.setattr(auth_module.jwt, "decode", counting_decode)
    stub = user_service_pb2_grpc.UserServiceStub(running["channel"])
    token = running["signer"].token(perms=["users.get"])
    for _ in range(5):
        await stub.GetUser(
            user_service_pb2.GetUserRequest(user_id=KNOWN_USER), metadata=bearer(token)
        )
    assert decodes == [token]
    assert len(running["fetches"]) == 1, "the JWKS is fetched once, then cached"


async def test_unknown_kid_refetches_the_jwks_once(running: dict[str, Any]) -> None:
    stub = user_service_pb2_grpc.UserServiceStub(running["channel"])
    fetches = running["fetches"]
    await stub.GetUser(
        user_service_pb2.GetUserRequest(user_id=KNOWN_USER),
        metadata=bearer(running["signer"].token(perms=["users.get"])),
    )
    before = len(fetches)
    for _ in range(10):
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.GetUser(
                user_service_pb2.GetUserRequest(user_id=KNOWN_USER),
                metadata=bearer(TokenMinter().token(perms=["users.get"])),
            )
    # Refetched for the unknown kid, but not once per bogus token.
    assert len(fetches) - before <= 1


async def test_access_log_line_per_call(
    running: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    stub = user_service_pb2_grpc.UserServiceStub(running["channel"])
    company = str(uuid.uuid4())
    token = running["signer"].token(perms=["users.get"], cid=company, sub="user-123")
    with caplog.at_level(logging.INFO, logger="cardinsa.access"):
        await stub.GetUser(
            user_service_pb2.GetUserRequest(user_id=KNOWN_USER), metadata=bearer(token, "log-1")
        )
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.GetUser(
                user_service_pb2.GetUserRequest(user_id="x"), metadata=bearer(token, "log-2")
            )
    lines = [r for r in caplog.records if r.name == "cardinsa.access"]
    assert [getattr(r, "code", None) for r in lines] == ["OK", "NOT_FOUND"]
    assert all(getattr(r, "duration_ms", -1) >= 0 for r in lines)


async def test_metrics_move_after_calls(running: dict[str, Any]) -> None:
    stub = user_service_pb2_grpc.UserServiceStub(running["channel"])
    token = running["signer"].token(perms=["users.get"])
    port = running["server"].bound_metrics_port
    assert port

    def scrape() -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return response.read().decode()

    def handled(text: str, code: str) -> float:
        total = 0.0
        for line in text.splitlines():
            if (
                line.startswith("grpc_server_handled_total{")
                and 'grpc_service="cardinsa.identity.v1.UserService"' in line
                and 'grpc_method="GetUser"' in line
                and f'grpc_code="{code}"' in line
            ):
                total += float(line.rsplit(" ", 1)[1])
        return total

    before = await asyncio.to_thread(scrape)
    await stub.GetUser(user_service_pb2.GetUserRequest(user_id=KNOWN_USER), metadata=bearer(token))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetUser(user_service_pb2.GetUserRequest(user_id=KNOWN_USER))
    after = await asyncio.to_thread(scrape)
    assert handled(after, "OK") == handled(before, "OK") + 1
    assert handled(after, "UNAUTHENTICATED") == handled(before, "UNAUTHENTICATED") + 1
    assert metrics is not None

    # A running server measures its event loop's lag (cardinsa_foundation.loop_lag).
    def lag_count(text: str) -> float:
        found = [ln for ln in text.splitlines() if ln.startswith("event_loop_lag_seconds_count ")]
        return float(found[0].rsplit(" ", 1)[1]) if found else 0.0

    first = lag_count(after)
    await asyncio.sleep(loop_lag.INTERVAL_S * 3)
    assert lag_count(await asyncio.to_thread(scrape)) > first


async def test_graceful_shutdown_reports_not_serving_and_finishes_in_flight_calls(
    running: dict[str, Any],
) -> None:
    server: GrpcServer = running["server"]
    users: FakeUsers = running["users"]
    token = running["signer"].token(perms=["users.lock"])
    stub = user_service_pb2_grpc.UserServiceStub(running["channel"])
    in_flight = asyncio.ensure_future(
        stub.LockUser(user_service_pb2.LockUserRequest(user_id=KNOWN_USER), metadata=bearer(token))
    )
    await asyncio.wait_for(users.entered.wait(), 5)
    stopping = asyncio.ensure_future(server.stop(grace_s=5))
    # During the drain delay the server still answers health, now NOT_SERVING.
    await asyncio.sleep(0.1)
    health = health_pb2_grpc.HealthStub(running["channel"])
    reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    users.release.set()
    locked = await asyncio.wait_for(in_flight, 5)
    assert locked.state == resources_pb2.User.LOCKED
    await asyncio.wait_for(stopping, 10)


async def test_method_without_declaration_is_denied(signer: TokenMinter) -> None:
    """Default deny: a method the contract does not declare is refused even
    for a caller holding every permission."""

    async def handler(request: bytes, context: Any) -> bytes:
        return b"should never run"

    pipeline = CallPipeline(
        rules={},
        verifier=TokenVerifier(JwksCache(_static(signer.jwks())), issuer=ISSUER, audience=AUDIENCE),
        service="test",
    )
    server = grpc.aio.server(interceptors=[pipeline], options=[("grpc.so_reuseport", 0)])
    generic = grpc.method_handlers_generic_handler(
        "cardinsa.test.v1.Undeclared",
        {"Do": grpc.unary_unary_rpc_method_handler(handler)},
    )
    server.add_generic_rpc_handlers((generic,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/cardinsa.test.v1.Undeclared/Do")
            token = signer.token(
                perms=["users.get", "users.list", "users.delete"], roles=["platform-admin"]
            )
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call(b"", metadata=bearer(token))
            assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
            assert details_of(caught.value)["ErrorInfo"].reason == "METHOD_NOT_AUTHORIZED"
    finally:
        await server.stop(None)


def _static(document: dict[str, Any]) -> Any:
    async def fetch() -> dict[str, Any]:
        return document

    return fetch


async def test_second_server_on_a_taken_port_fails(running: dict[str, Any]) -> None:
    taken = running["server"].port
    other = GrpcServer(name="dup", services=[], port=taken)
    with pytest.raises(OSError, match="cannot listen"):
        await other.start()
