"""Attack suite: secrets that outlive their purpose or leak through the logs.

- "secrets in logs": an attacker with log access (a log pipeline, a support
  dump) harvests what identity logged while it served logins, refreshes, resets
  and API-key exchanges -- including failures where the secret sits in the wrong
  field. Every line goes through the process's own JSON log handler at DEBUG.
- "stale JWKS trusted forever": identity retires a key while a verifier cannot
  reach it; the verifier must stop trusting its cached keys after the maximum
  staleness instead of serving the retired key for as long as the outage lasts.
- "API key that never expires": a key asked for without an expiry, or for ten
  years, must not outlive the maximum lifetime.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from hostile_attacks import AttackLog
from hostile_harness import Tenants
from support.identity_harness import IdentityHarness, unique_email

from cardinsa.identity.v1 import (
    access_service_pb2,
    auth_service_pb2,
    resources_pb2,
)
from cardinsa_foundation.auth import JwksCache, TokenVerifier, identity_jwks_fetcher
from cardinsa_foundation.errors import Unavailable
from cardinsa_foundation.logging import configure_logging
from cardinsa_identity.application.bootstrap import generate_password

_M = TypeVar("_M", bound=Message)


@contextlib.contextmanager
def process_log() -> Iterator[io.StringIO]:
    """The process's own log handler (as a service installs it), at DEBUG, into a
    buffer; the previous logging set-up is restored afterwards."""
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    buffer = io.StringIO()
    configure_logging("DEBUG", True, "identity", stream=buffer)
    try:
        yield buffer
    finally:
        for handler in list(root.handlers):
            if handler not in saved_handlers:
                root.removeHandler(handler)
                handler.close()
        for handler in saved_handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(saved_level)
        logging.captureWarnings(False)


async def _fails(call: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError):
        await call


async def test_attack_secrets_in_logs(
    identity: IdentityHarness, tenants: Tenants, attacks: AttackLog
) -> None:
    admin = identity.bearer(tenants.attacker.token)
    with attacks.attempt("secrets in logs (tokens, keys, passwords)", "identity log lines"):
        password = generate_password() + "-Aa1"
        user = await identity.create_user(
            tenants.attacker.admin, email=unique_email("logs"), password=password
        )
        secrets_seen = [password, tenants.attacker.token]
        sent: list[Message] = []

        def req(message: _M) -> _M:
            sent.append(message)
            return message

        with process_log() as log:
            pair = await identity.login(user.email, password)
            secrets_seen += [pair.access_token, pair.refresh_token]
            refreshed = await identity.auth.RefreshToken(
                req(auth_service_pb2.RefreshTokenRequest(refresh_token=pair.refresh_token))
            )
            secrets_seen += [refreshed.access_token, refreshed.refresh_token]
            # Secrets in the wrong fields: a refresh token as an email, a password
            # as a refresh token, an access token as an API key.
            await _fails(
                identity.auth.Login(
                    req(
                        auth_service_pb2.LoginRequest(
                            email=refreshed.refresh_token, password=password
                        )
                    )
                )
            )
            await _fails(
                identity.auth.RefreshToken(
                    req(auth_service_pb2.RefreshTokenRequest(refresh_token=password))
                )
            )
            await _fails(
                identity.auth.ExchangeApiKey(
                    req(auth_service_pb2.ExchangeApiKeyRequest(api_key=refreshed.access_token))
                )
            )
            await _fails(
                identity.auth.RefreshToken(
                    req(auth_service_pb2.RefreshTokenRequest(refresh_token=pair.refresh_token))
                )
            )  # a replay
            # Password reset.
            await identity.auth.RequestPasswordReset(
                req(auth_service_pb2.RequestPasswordResetRequest(email=user.email))
            )
            for _ in range(100):
                messages = identity.notifier.messages_for(user.email)
                if messages:
                    break
                await asyncio.sleep(0.05)
            reset_token = messages[-1]["token"]
            new_password = generate_password() + "-Bb2"
            secrets_seen += [reset_token, new_password]
            await identity.auth.ConfirmPasswordReset(
                req(
                    auth_service_pb2.ConfirmPasswordResetRequest(
                        reset_token=reset_token, new_password=new_password
                    )
                )
            )
            await _fails(
                identity.auth.ConfirmPasswordReset(
                    req(
                        auth_service_pb2.ConfirmPasswordResetRequest(
                            reset_token=reset_token, new_password=new_password
                        )
                    )
                )
            )
            # An API key, exchanged, and presented mangled.
            account = await identity.access.CreateServiceAccount(
                access_service_pb2.CreateServiceAccountRequest(
                    service_account=resources_pb2.ServiceAccount(
                        name=f"svc-{uuid.uuid4().hex[:10]}"
                    )
                ),
                metadata=admin,
            )
            created = await identity.access.CreateApiKey(
                access_service_pb2.CreateApiKeyRequest(
                    service_account_id=account.id,
                    api_key=resources_pb2.ApiKey(display_name="logs", permissions=["users.get"]),
                ),
                metadata=admin,
            )
            exchanged = await identity.auth.ExchangeApiKey(
                req(auth_service_pb2.ExchangeApiKeyRequest(api_key=created.secret))
            )
            secrets_seen += [created.secret, exchanged.access_token]
            await _fails(
                identity.auth.ExchangeApiKey(
                    req(auth_service_pb2.ExchangeApiKeyRequest(api_key=created.secret[:-1] + "!"))
                )
            )
            # A careless debug line (an interceptor or a developer logging what came
            # in) must not undo it: the requests above, as text and as fields.
            careless = logging.getLogger("cardinsa_identity.debugging")
            for request in sent:
                careless.debug("received %s", request)
                careless.debug("received", extra={"request": MessageToDict(request)})
        lines = log.getvalue().splitlines()
        assert any("AuthService/Login" in line for line in lines), "nothing was logged"
        leaked = [s[:8] for s in secrets_seen if any(s in line for line in lines)]
        assert not leaked, f"secrets in the log: {leaked}"


async def test_attack_stale_jwks_trusted_forever(
    identity: IdentityHarness, tenants: Tenants, attacks: AttackLog
) -> None:
    """identity's real JWKS and a real token; the outage is a cut in the fetch and
    the hour passes on a fake clock."""
    max_stale_s = 3600.0
    with attacks.attempt("stale JWKS trusted forever (identity outage)", "foundation verifier"):
        async with grpc.aio.insecure_channel(identity.app.server.address) as channel:
            real_fetch = identity_jwks_fetcher(channel)
            cut = False
            now = 1000.0

            async def fetch() -> Mapping[str, Any]:
                if cut:
                    raise ConnectionError("identity unreachable")
                return await real_fetch()

            verifier = TokenVerifier(
                JwksCache(fetch, ttl_s=300, max_stale_s=max_stale_s, clock=lambda: now),
                issuer=identity.settings.jwt_issuer,
                audience=identity.settings.jwt_audience,
            )
            token = tenants.attacker.token
            await verifier.verify(token)
            cut = True
            now += max_stale_s / 2
            await verifier.verify(token)  # within the bound: still served
            now += max_stale_s
            with pytest.raises(Unavailable) as caught:
                await verifier.verify(token)
            assert caught.value.reason == "JWKS_STALE"


async def test_attack_api_key_that_never_expires(
    identity: IdentityHarness, tenants: Tenants, attacks: AttackLog
) -> None:
    admin = identity.bearer(tenants.attacker.token)
    maximum = timedelta(seconds=identity.settings.api_key_max_lifetime_s)
    with attacks.attempt("API key that never expires", "identity AccessService/CreateApiKey"):
        account = await identity.access.CreateServiceAccount(
            access_service_pb2.CreateServiceAccountRequest(
                service_account=resources_pb2.ServiceAccount(name=f"svc-{uuid.uuid4().hex[:10]}")
            ),
            metadata=admin,
        )
        unlimited = await identity.access.CreateApiKey(
            access_service_pb2.CreateApiKeyRequest(
                service_account_id=account.id,
                api_key=resources_pb2.ApiKey(display_name="forever", permissions=["users.get"]),
            ),
            metadata=admin,
        )
        assert unlimited.api_key.HasField("expire_time")
        assert unlimited.api_key.expire_time.ToDatetime(UTC) <= datetime.now(UTC) + maximum
        ten_years = timestamp_pb2.Timestamp()
        ten_years.FromDatetime(datetime.now(UTC) + timedelta(days=3650))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await identity.access.CreateApiKey(
                access_service_pb2.CreateApiKeyRequest(
                    service_account_id=account.id,
                    api_key=resources_pb2.ApiKey(
                        display_name="ten years", permissions=["users.get"], expire_time=ten_years
                    ),
                ),
                metadata=admin,
            )
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
