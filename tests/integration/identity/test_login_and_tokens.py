"""Login, refresh, logout and brute-force protection over real gRPC."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from typing import Any

import grpc
import jwt
import pytest
from support.grpc_errors import error_info, retry_delay_seconds
from support.identity_harness import PASSWORD, IdentityHarness, unique_email
from support.tokens import TokenMinter

from cardinsa.identity.v1 import (
    auth_service_pb2,
    identity_service_pb2,
    user_service_pb2,
)


async def test_login_returns_a_verifiable_access_token_with_the_documented_claims(
    identity: IdentityHarness,
) -> None:
    user = await identity.create_user(identity.admin_a, roles=["underwriter"])
    pair = await identity.login(user.email.upper())  # email is case-insensitive
    assert pair.token_type == "Bearer"
    assert pair.refresh_token.startswith("cdr_")
    jwks = await identity.identity.GetJwks(identity_service_pb2.GetJwksRequest())
    header = jwt.get_unverified_header(pair.access_token)
    key = next(k for k in jwks.keys if k.kid == header["kid"])
    claims = jwt.decode(
        pair.access_token,
        jwt.PyJWK({"kty": key.kty, "crv": key.crv, "x": key.x, "kid": key.kid, "alg": key.alg}).key,
        algorithms=["EdDSA"],
        audience=identity.settings.jwt_audience,
        issuer=identity.settings.jwt_issuer,
    )
    assert claims["sub"] == user.user_id
    assert claims["cid"] == user.company_id
    assert claims["typ"] == "access"
    assert claims["sid"] == pair.session_id
    assert "underwriter" in claims["roles"]
    assert "policies.quote" in claims["perms"]
    assert claims["exp"] - claims["iat"] == identity.settings.access_token_ttl_s


async def test_unknown_email_and_wrong_password_get_the_same_answer(
    identity: IdentityHarness,
) -> None:
    user = await identity.create_user(identity.admin_a)
    answers = []
    for email, password in (
        (unique_email("nobody"), PASSWORD),
        (user.email, "wrong password 123456"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await identity.login(email, password, client_address=f"198.51.100.{len(answers) + 1}")
        error = caught.value
        info = error_info(error)
        answers.append((error.code(), error.details(), info.reason, dict(info.metadata)))
    assert answers[0] == answers[1]
    assert answers[0][0] is grpc.StatusCode.UNAUTHENTICATED
    assert answers[0][2] == "INVALID_CREDENTIALS"


async def test_unknown_email_costs_the_same_hashing_work(identity: IdentityHarness) -> None:
    """An unknown email must not answer faster than a wrong password: it runs one
    argon2 verification, against a dummy hash of the same parameters, exactly as a
    known one does. Counted as work off the event loop, not timed (timing belongs
    to the benchmark)."""
    user = await identity.create_user(identity.admin_a)
    hasher = identity.app.ctx.hasher
    real_run = hasher._run
    work: list[tuple[str, str]] = []

    async def counting(fn: Any, *args: str) -> Any:
        stored = args[1] if len(args) > 1 else hasher.dummy_hash
        work.append((fn.__name__, stored))
        return await real_run(fn, *args)

    async def hashing_work(email: str, n: int) -> list[tuple[str, str]]:
        work.clear()
        for i in range(n):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await identity.login(
                    email, "wrong password 123456", client_address=f"203.0.113.{i}"
                )
            assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
            if email == user.email:
                # Stay under the account's failure limit.
                await identity.app.users._clear_login_lock(user.email)
        return list(work)

    hasher._run = counting  # type: ignore[method-assign]
    try:
        known = await hashing_work(user.email, 3)
        unknown = await hashing_work(unique_email("ghost"), 3)
    finally:
        hasher._run = real_run  # type: ignore[method-assign]
    assert [name for name, _ in known] == ["verify_password"] * 3
    assert [name for name, _ in unknown] == ["dummy_verify"] * 3

    def parameters(stored: str) -> str:
        return stored.rsplit("$", 2)[0]  # $argon2id$v=19$m=...,t=...,p=...

    assert {parameters(h) for _, h in unknown} == {parameters(h) for _, h in known}


async def test_refresh_rotates_and_reuse_revokes_the_whole_family(
    identity: IdentityHarness,
) -> None:
    user = await identity.create_user(identity.admin_a)
    first = await identity.login(user.email)
    second = await identity.auth.RefreshToken(
        auth_service_pb2.RefreshTokenRequest(refresh_token=first.refresh_token)
    )
    assert second.refresh_token != first.refresh_token
    assert second.session_id == first.session_id
    third = await identity.auth.RefreshToken(
        auth_service_pb2.RefreshTokenRequest(refresh_token=second.refresh_token)
    )

    # The thief replays the first (rotated) token: refused, and the family dies.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.auth.RefreshToken(
            auth_service_pb2.RefreshTokenRequest(refresh_token=first.refresh_token)
        )
    assert error_info(caught.value).reason == "REFRESH_TOKEN_REUSED"
    # ... so the victim's newest token stops working too.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.auth.RefreshToken(
            auth_service_pb2.RefreshTokenRequest(refresh_token=third.refresh_token)
        )
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED

    admin = await identity.token(identity.admin_a)
    events = await identity.identity.ListAuditEvents(
        identity_service_pb2.ListAuditEventsRequest(
            filter='action = "refresh_token.reuse"', page_size=100
        ),
        metadata=identity.bearer(admin),
    )
    assert any(e.entity_id == first.session_id for e in events.audit_events)


async def test_concurrent_refreshes_with_one_token_at_most_one_succeeds(
    identity: IdentityHarness,
) -> None:
    user = await identity.create_user(identity.admin_a)
    pair = await identity.login(user.email)
    request = auth_service_pb2.RefreshTokenRequest(refresh_token=pair.refresh_token)
    results = await asyncio.gather(
        *(identity.auth.RefreshToken(request) for _ in range(8)), return_exceptions=True
    )
    successes = [r for r in results if isinstance(r, auth_service_pb2.TokenPair)]
    failures = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(successes) <= 1
    assert len(successes) + len(failures) == 8
    assert all(f.code() is grpc.StatusCode.UNAUTHENTICATED for f in failures)


async def test_logout_ends_the_session(identity: IdentityHarness) -> None:
    user = await identity.create_user(identity.admin_a)
    pair = await identity.login(user.email)
    await identity.auth.Logout(
        auth_service_pb2.LogoutRequest(), metadata=identity.bearer(pair.access_token)
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.auth.RefreshToken(
            auth_service_pb2.RefreshTokenRequest(refresh_token=pair.refresh_token)
        )
    assert error_info(caught.value).reason == "INVALID_REFRESH_TOKEN"


@pytest.mark.parametrize("kind", ["refresh", "reset", "api_key"])
async def test_opaque_tokens_are_never_accepted_as_access_tokens(
    identity: IdentityHarness, kind: str
) -> None:
    user = await identity.create_user(identity.admin_a)
    pair = await identity.login(user.email)
    material = {
        "refresh": pair.refresh_token,
        "reset": "cdp_" + "A" * 43,
        "api_key": "cdk_abcdefghij_" + "B" * 43,
    }[kind]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.users.GetUser(
            user_service_pb2.GetUserRequest(user_id=user.user_id),
            metadata=identity.bearer(material),
        )
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_token_signed_by_an_unknown_key_is_refused(identity: IdentityHarness) -> None:
    user = await identity.create_user(identity.admin_a, roles=["viewer"])
    forged = TokenMinter().token(
        sub=user.user_id,
        cid=user.company_id,
        perms=["users.get"],
        iss=identity.settings.jwt_issuer,
        aud=identity.settings.jwt_audience,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.users.GetUser(
            user_service_pb2.GetUserRequest(user_id=user.user_id), metadata=identity.bearer(forged)
        )
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_fifty_concurrent_wrong_passwords_check_at_most_the_limit(
    identity: IdentityHarness,
) -> None:
    user = await identity.create_user(identity.admin_a)
    hasher = identity.app.ctx.hasher
    checked = 0
    real_verify = hasher.verify_password_async

    async def counting(password: str, stored: str) -> tuple[bool, str | None]:
        nonlocal checked
        checked += 1
        return await real_verify(password, stored)

    hasher.verify_password_async = counting  # type: ignore[method-assign]
    # The account-wide wait (lock base, 2 s in this harness) must outlast the
    # burst, or a slow machine lets the next few checks in after it: the bound
    # is per wait, by design. The production lengths keep it for the whole run.
    auth = identity.app.auth
    policy = auth.policy
    auth.policy = dataclasses.replace(
        policy, lock_base=timedelta(seconds=60), account_wait_max=timedelta(seconds=900)
    )
    try:
        results = await asyncio.gather(
            *(
                identity.login(user.email, f"wrong password {i:04d}", client_address=f"192.0.2.{i}")
                for i in range(50)
            ),
            return_exceptions=True,
        )
    finally:
        hasher.verify_password_async = real_verify  # type: ignore[method-assign]
        auth.policy = policy
    codes = [r.code() for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(codes) == 50
    assert checked <= identity.settings.login_max_failures_per_account
    assert (
        codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
        >= 50 - identity.settings.login_max_failures_per_account
    )

    # Locked now, even with the right password, and the answer says when to retry.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.login(user.email)
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert retry_delay_seconds(caught.value) >= 1

    # An administrator's unlock opens it at once.
    admin = await identity.token(identity.admin_a)
    await identity.users.UnlockUser(
        user_service_pb2.UnlockUserRequest(user_id=user.user_id), metadata=identity.bearer(admin)
    )
    assert (await identity.login(user.email)).access_token


async def test_lock_expires_by_itself(identity: IdentityHarness) -> None:
    user = await identity.create_user(identity.admin_a)
    for i in range(identity.settings.login_max_failures_per_account + 1):
        with pytest.raises(grpc.aio.AioRpcError):
            await identity.login(
                user.email, "wrong password 123456", client_address=f"192.0.2.{100 + i}"
            )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.login(user.email)
    delay = retry_delay_seconds(caught.value)
    await asyncio.sleep(delay + 0.2)
    assert (await identity.login(user.email)).access_token


async def test_forged_client_address_header_is_not_trusted(identity: IdentityHarness) -> None:
    """Without the gateway's proof, x-envoy-external-address is ignored, so an
    attacker cannot spread attempts over made-up addresses."""
    user = await identity.create_user(identity.admin_a)
    for i in range(3):
        with pytest.raises(grpc.aio.AioRpcError):
            await identity.auth.Login(
                auth_service_pb2.LoginRequest(email=user.email, password="wrong password 123456"),
                metadata=[("x-envoy-external-address", f"10.9.9.{i}")],
            )
    admin = await identity.token(identity.admin_a)
    events = await identity.identity.ListAuditEvents(
        identity_service_pb2.ListAuditEventsRequest(
            filter=f'action = "login.failed" AND entity_id = "{user.user_id}"', page_size=10
        ),
        metadata=identity.bearer(admin),
    )
    addresses = {e.detail["client_address"] for e in events.audit_events}
    assert addresses == {"127.0.0.1"}


async def test_deleted_user_cannot_log_in_or_refresh(identity: IdentityHarness) -> None:
    user = await identity.create_user(identity.admin_a)
    pair = await identity.login(user.email)
    admin = await identity.token(identity.admin_a)
    await identity.users.DeleteUser(
        user_service_pb2.DeleteUserRequest(user_id=user.user_id), metadata=identity.bearer(admin)
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.login(user.email)
    assert error_info(caught.value).reason == "INVALID_CREDENTIALS"
    with pytest.raises(grpc.aio.AioRpcError):
        await identity.auth.RefreshToken(
            auth_service_pb2.RefreshTokenRequest(refresh_token=pair.refresh_token)
        )
