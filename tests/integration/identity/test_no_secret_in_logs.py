"""No secret identity issues or receives reaches its log.

A real identity process (``python -m cardinsa_identity.main``: the logging set-up
an operator gets, JSON lines on stderr, at DEBUG) serves the flows that handle
secrets -- login, refresh, logout, password change, password reset, API-key
creation and exchange -- and the failures of each (wrong password, replayed
refresh token, used reset token, revoked key, malformed values). Every password
sent and every token and key received is then looked for in every log line.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.identity_harness import GATEWAY_SECRET, IdentityHarness, unique_email

from cardinsa.identity.v1 import (
    access_service_pb2,
    access_service_pb2_grpc,
    auth_service_pb2,
    auth_service_pb2_grpc,
    me_service_pb2,
    me_service_pb2_grpc,
    resources_pb2,
    user_service_pb2,
    user_service_pb2_grpc,
)
from cardinsa_foundation.db import app_role_url
from cardinsa_identity.application.bootstrap import ensure_user_with_role, generate_password
from cardinsa_identity.application.notifier import FileNotifier


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _serving(address: str, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while asyncio.get_running_loop().time() < deadline:
            assert process.poll() is None, "identity exited before serving"
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("identity did not start serving")


@dataclass
class IdentityProcess:
    address: str
    log_path: Path
    notifier: FileNotifier
    process: subprocess.Popen[bytes]

    async def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.process.wait, 30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait)


@pytest_asyncio.fixture
async def identity_process(
    identity_database: str, tmp_path: Path
) -> AsyncIterator[IdentityProcess]:
    port = _free_port()
    log_path = tmp_path / "identity.log"
    notifications = tmp_path / "notifications"
    env = {
        **os.environ,
        "CARDINSA_DATABASE_URL": app_role_url(identity_database),
        "CARDINSA_ENVIRONMENT": "test",
        "CARDINSA_IDENTITY_PORT": str(port),
        "CARDINSA_IDENTITY_METRICS_PORT": str(_free_port()),
        "CARDINSA_LOG_LEVEL": "DEBUG",
        "CARDINSA_LOG_JSON": "true",
        "CARDINSA_NOTIFICATION_DIR": str(notifications),
        "CARDINSA_GATEWAY_SECRET": GATEWAY_SECRET,
        "CARDINSA_SIGNING_KEY_PUBLISH_DELAY_S": "0",
        # The stop (and its log lines) still goes through the drain, briefly.
        "CARDINSA_DRAIN_DELAY_S": "0.2",
        "PYTHONASYNCIODEBUG": "1",  # asyncio's own debug logging too
    }
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(  # noqa: ASYNC220 - spawning does not block
            [sys.executable, "-m", "cardinsa_identity.main"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    running = IdentityProcess(f"127.0.0.1:{port}", log_path, FileNotifier(notifications), process)
    try:
        await _serving(running.address, process)
        yield running
    finally:
        await running.stop()


def _bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


async def _expect_error(call: object) -> None:
    with pytest.raises(grpc.aio.AioRpcError):
        await call  # type: ignore[misc]


async def test_no_issued_or_received_secret_appears_in_identity_logs(
    identity: IdentityHarness, identity_process: IdentityProcess
) -> None:
    # An admin with a generated password (the bootstrap generator), created in the
    # shared database through the in-process server's application layer.
    password = generate_password() + "-Aa1"
    email = unique_email("logs")
    await ensure_user_with_role(
        identity.app.ctx,
        email=email,
        password=password,
        company_id=uuid.uuid4(),
        role_name="company-admin",
    )
    seen: list[str] = [password, GATEWAY_SECRET]

    async with grpc.aio.insecure_channel(identity_process.address) as channel:
        auth = auth_service_pb2_grpc.AuthServiceStub(channel)
        access = access_service_pb2_grpc.AccessServiceStub(channel)
        users = user_service_pb2_grpc.UserServiceStub(channel)
        via_gateway = [("x-cardinsa-gateway-auth", GATEWAY_SECRET)]

        # Login, a failed login, refresh, a replayed refresh token.
        wrong = generate_password()
        seen.append(wrong)
        await _expect_error(auth.Login(auth_service_pb2.LoginRequest(email=email, password=wrong)))
        pair = await auth.Login(
            auth_service_pb2.LoginRequest(email=email, password=password), metadata=via_gateway
        )
        seen += [pair.access_token, pair.refresh_token]
        refreshed = await auth.RefreshToken(
            auth_service_pb2.RefreshTokenRequest(refresh_token=pair.refresh_token)
        )
        seen += [refreshed.access_token, refreshed.refresh_token]
        await _expect_error(
            auth.RefreshToken(
                auth_service_pb2.RefreshTokenRequest(refresh_token=pair.refresh_token)
            )
        )  # reuse: the whole family is revoked
        pair = await auth.Login(auth_service_pb2.LoginRequest(email=email, password=password))
        seen += [pair.access_token, pair.refresh_token]
        await users.ListUsers(
            user_service_pb2.ListUsersRequest(page_size=5), metadata=_bearer(pair.access_token)
        )

        # Password change (and a wrong current password).
        changed = generate_password() + "-Bb2"
        seen.append(changed)
        await _expect_error(
            auth.ChangePassword(
                auth_service_pb2.ChangePasswordRequest(
                    current_password=wrong, new_password=changed
                ),
                metadata=_bearer(pair.access_token),
            )
        )
        await auth.ChangePassword(
            auth_service_pb2.ChangePasswordRequest(current_password=password, new_password=changed),
            metadata=_bearer(pair.access_token),
        )

        # The same through self-service (MeService), a wrong current password too.
        me = me_service_pb2_grpc.MeServiceStub(channel)
        pair = await auth.Login(auth_service_pb2.LoginRequest(email=email, password=changed))
        seen += [pair.access_token, pair.refresh_token]
        self_changed = generate_password() + "-Ee5"
        seen.append(self_changed)
        await _expect_error(
            me.ChangeMyPassword(
                me_service_pb2.ChangeMyPasswordRequest(
                    current_password=wrong, new_password=self_changed
                ),
                metadata=_bearer(pair.access_token),
            )
        )
        await me.ChangeMyPassword(
            me_service_pb2.ChangeMyPasswordRequest(
                current_password=changed, new_password=self_changed
            ),
            metadata=_bearer(pair.access_token),
        )

        # Password reset: request, confirm, the used token again, a too-short password.
        # From an address of its own: the session's other tests fill 127.0.0.1's
        # reset allowance in the shared database (10 an hour).
        await auth.RequestPasswordReset(
            auth_service_pb2.RequestPasswordResetRequest(email=email),
            metadata=[
                ("x-cardinsa-gateway-auth", GATEWAY_SECRET),
                ("x-envoy-external-address", f"198.51.100.{secrets.randbelow(250) + 1}"),
            ],
        )
        for _ in range(100):
            messages = identity_process.notifier.messages_for(email)
            if messages:
                break
            await asyncio.sleep(0.1)
        (message,) = messages
        reset_token = message["token"]
        assert reset_token.startswith("cdp_")
        seen.append(reset_token)
        await _expect_error(
            auth.ConfirmPasswordReset(
                auth_service_pb2.ConfirmPasswordResetRequest(
                    reset_token=reset_token, new_password="short"
                )
            )
        )
        after_reset = generate_password() + "-Cc3"
        seen.append(after_reset)
        await auth.ConfirmPasswordReset(
            auth_service_pb2.ConfirmPasswordResetRequest(
                reset_token=reset_token, new_password=after_reset
            )
        )
        await _expect_error(
            auth.ConfirmPasswordReset(
                auth_service_pb2.ConfirmPasswordResetRequest(
                    reset_token=reset_token, new_password=generate_password() + "-Dd4"
                )
            )
        )
        pair = await auth.Login(auth_service_pb2.LoginRequest(email=email, password=after_reset))
        seen += [pair.access_token, pair.refresh_token]

        # API key: create, exchange, revoke, exchange again; a malformed key.
        admin = _bearer(pair.access_token)
        account = await access.CreateServiceAccount(
            access_service_pb2.CreateServiceAccountRequest(
                service_account=resources_pb2.ServiceAccount(name=f"svc-{uuid.uuid4().hex[:10]}")
            ),
            metadata=admin,
        )
        created = await access.CreateApiKey(
            access_service_pb2.CreateApiKeyRequest(
                service_account_id=account.id,
                api_key=resources_pb2.ApiKey(display_name="logs", permissions=["users.get"]),
            ),
            metadata=admin,
        )
        seen.append(created.secret)
        exchanged = await auth.ExchangeApiKey(
            auth_service_pb2.ExchangeApiKeyRequest(api_key=created.secret)
        )
        seen.append(exchanged.access_token)
        await access.RevokeApiKey(
            access_service_pb2.RevokeApiKeyRequest(
                service_account_id=account.id, api_key_id=created.api_key.id
            ),
            metadata=admin,
        )
        await _expect_error(
            auth.ExchangeApiKey(auth_service_pb2.ExchangeApiKeyRequest(api_key=created.secret))
        )
        await _expect_error(
            auth.ExchangeApiKey(
                auth_service_pb2.ExchangeApiKeyRequest(api_key=created.secret + "x")
            )
        )
        await auth.Logout(
            auth_service_pb2.LogoutRequest(refresh_token=pair.refresh_token),
            metadata=_bearer(pair.access_token),
        )

    await identity_process.stop()
    log = identity_process.log_path.read_text(errors="replace")
    lines = log.splitlines()
    # The log did capture these calls (so "absent" means redacted, not unlogged).
    for method in (
        "AuthService/Login",
        "AuthService/RefreshToken",
        "AccessService/CreateApiKey",
        "MeService/ChangeMyPassword",
    ):
        assert any(method in line for line in lines), method
    leaks = [(secret[:6], line) for secret in seen if secret for line in lines if secret in line]
    assert not leaks, leaks[:3]
