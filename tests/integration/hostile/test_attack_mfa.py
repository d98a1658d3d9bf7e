"""Attack suite: the second factor (TOTP) and login challenges.

Replaying a code within its window, brute-forcing codes, reusing or forging a
challenge, an expired challenge, getting round a company's MFA policy by
refreshing a password-only session or exchanging an API key, and a
low-privilege user acting on someone else's factor.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid

import grpc
from hostile_attacks import AttackLog
from hostile_harness import Tenants
from sqlalchemy import text
from support.grpc_errors import error_info
from support.identity_harness import PASSWORD, Account, IdentityHarness, unique_email
from support.mfa_helpers import challenge, claims, code, enrol, login_with_code, respond

from cardinsa.identity.v1 import (
    access_service_pb2,
    auth_service_pb2,
    resources_pb2,
    user_service_pb2,
)
from cardinsa_identity.application.bootstrap import ensure_user_with_role


async def _answer(call: object) -> tuple[str, str]:
    """(status, ErrorInfo reason) of a call; ("OK", "") when it succeeds."""
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return error.code().name, error_info(error).reason
    return "OK", ""


async def _fresh_company_admin(identity: IdentityHarness) -> Account:
    made = await ensure_user_with_role(
        identity.app.ctx,
        email=unique_email("hostile-mfa-admin"),
        password=PASSWORD,
        company_id=uuid.uuid4(),
        role_name="company-admin",
    )
    return Account(made.email, PASSWORD, str(made.company_id), str(made.user_id))


async def test_attack_replay_a_totp_code(
    identity: IdentityHarness, tenants: Tenants, attacks: AttackLog
) -> None:
    victim = await identity.create_user(tenants.victim.admin, roles=["viewer"])
    factor = await enrol(identity, victim)
    used = code(factor.secret)
    with attacks.attempt(
        "replay a TOTP code",
        "a code accepted once, sent again on a new challenge within its 30-second window",
    ):
        first = await challenge(identity, victim)
        assert (await respond(identity, first.challenge.session, totp_code=used)).access_token
        second = await challenge(identity, victim)
        answer = await _answer(respond(identity, second.challenge.session, totp_code=used))
        assert answer == ("UNAUTHENTICATED", "INVALID_MFA_CODE"), answer
    with attacks.attempt(
        "replay a TOTP code",
        "one fresh code on two challenges at once: it gets in once",
    ):
        fresh = code(factor.secret, 1)
        pair = [await challenge(identity, victim) for _ in range(2)]
        answers = await asyncio.gather(
            *(_answer(respond(identity, p.challenge.session, totp_code=fresh)) for p in pair)
        )
        assert sorted(answers) == [("OK", ""), ("UNAUTHENTICATED", "INVALID_MFA_CODE")], answers


async def test_attack_brute_force_totp_codes(
    identity: IdentityHarness, tenants: Tenants, attacks: AttackLog
) -> None:
    victim = await identity.create_user(tenants.victim.admin, roles=["viewer"])
    factor = await enrol(identity, victim)
    limit = identity.settings.login_max_failures_per_account
    with attacks.attempt(
        "brute-force TOTP codes",
        f"wrong codes on one challenge, then on new ones: each counts as a failed "
        f"login; after {limit} the account is throttled and the challenge void",
    ):
        first = await challenge(identity, victim)
        answers = []
        right = code(factor.secret)
        for guess in range(limit + 2):
            wrong = f"{(int(right) + 1 + guess) % 10**6:06d}"
            answers.append(
                await _answer(respond(identity, first.challenge.session, totp_code=wrong))
            )
        assert answers[:limit] == [("UNAUTHENTICATED", "INVALID_MFA_CODE")] * limit, answers
        assert all(a[0] in {"RESOURCE_EXHAUSTED", "UNAUTHENTICATED"} for a in answers[limit:])
        assert all(a != ("OK", "") for a in answers)
        # The challenge is spent: not even the right code opens it now.
        late = await _answer(respond(identity, first.challenge.session, totp_code=right))
        assert late[0] in {"RESOURCE_EXHAUSTED", "UNAUTHENTICATED"}, late


async def test_attack_reuse_forge_or_outlive_a_challenge(
    identity: IdentityHarness, tenants: Tenants, attacks: AttackLog
) -> None:
    victim = await identity.create_user(tenants.victim.admin, roles=["viewer"])
    factor = await enrol(identity, victim)
    with attacks.attempt(
        "reuse a login challenge", "the session of an answered challenge, with a fresh code"
    ):
        first = await challenge(identity, victim)
        assert (
            await respond(identity, first.challenge.session, totp_code=factor.fresh_code())
        ).access_token
        answer = await _answer(
            respond(identity, first.challenge.session, recovery_code=factor.recovery_codes[0])
        )
        assert answer == ("UNAUTHENTICATED", "INVALID_CHALLENGE"), answer
    with attacks.attempt(
        "forge a login challenge",
        "made-up cdc_ sessions, a refresh token and a reset-token shape as the session",
    ):
        pair = await identity.login(tenants.attacker.admin.email, tenants.attacker.admin.password)
        for forged in (
            f"cdc_{secrets.token_urlsafe(32)}",
            pair.refresh_token,
            f"cdp_{secrets.token_urlsafe(32)}",
            "cdc_" + "A" * 43,
        ):
            answer = await _answer(respond(identity, forged, totp_code="123456"))
            assert answer == ("UNAUTHENTICATED", "INVALID_CHALLENGE"), (forged[:4], answer)
    with attacks.attempt("answer an expired login challenge", "a challenge past its expiry"):
        stale = await challenge(identity, victim)
        async with identity.app.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as s:
            await s.execute(
                text(
                    "UPDATE identity.login_challenges SET expire_time = now() - interval '1 s' "
                    "WHERE user_id = :id AND use_time IS NULL"
                ),
                {"id": uuid.UUID(victim.user_id)},
            )
        answer = await _answer(
            respond(identity, stale.challenge.session, recovery_code=factor.recovery_codes[1])
        )
        assert answer == ("UNAUTHENTICATED", "INVALID_CHALLENGE"), answer


async def test_attack_get_round_the_mfa_policy(
    identity: IdentityHarness, attacks: AttackLog
) -> None:
    admin = await _fresh_company_admin(identity)
    admin_md = identity.bearer(await identity.token(admin))
    await identity.users.UpdateMfaPolicy(
        user_service_pb2.UpdateMfaPolicyRequest(
            policy=user_service_pb2.MfaPolicy(required_roles=["company-admin"])
        ),
        metadata=admin_md,
    )
    weak = await identity.login(admin.email, admin.password)  # password only
    weak_md = identity.bearer(weak.access_token)
    with attacks.attempt(
        "MFA bypass: act with a password-only token",
        "a company admin whose role needs MFA creates a user and a service account",
    ):
        for call in (
            identity.users.CreateUser(
                user_service_pb2.CreateUserRequest(
                    user=resources_pb2.User(email=unique_email("mfa-bypass")), password=PASSWORD
                ),
                metadata=weak_md,
            ),
            identity.access.CreateServiceAccount(
                access_service_pb2.CreateServiceAccountRequest(
                    service_account=resources_pb2.ServiceAccount(name="bypass")
                ),
                metadata=weak_md,
            ),
        ):
            answer = await _answer(call)
            assert answer == ("PERMISSION_DENIED", "MFA_REQUIRED"), answer
    factor = await enrol(identity, admin)
    with attacks.attempt(
        "MFA bypass by refresh",
        "refresh a password-only session after enrolling: the new token still lacks otp",
    ):
        # Enrolling ended no session here; the weak session's refresh stays weak.
        refreshed = await identity.auth.RefreshToken(
            auth_service_pb2.RefreshTokenRequest(refresh_token=weak.refresh_token)
        )
        body = claims(refreshed.access_token)
        assert body["amr"] == ["pwd"] and "users.create" in body["mfa_perms"], body
        assert "users.create" not in body["perms"]
    strong = await login_with_code(identity, admin, factor)
    strong_md = identity.bearer(strong.access_token)
    with attacks.attempt(
        "MFA bypass by API key exchange",
        "a key issued by an admin after MFA: its tokens carry no amr, and a key "
        "cannot carry more than its issuer's token held",
    ):
        account = await identity.access.CreateServiceAccount(
            access_service_pb2.CreateServiceAccountRequest(
                service_account=resources_pb2.ServiceAccount(name=f"k-{uuid.uuid4().hex[:6]}")
            ),
            metadata=strong_md,
        )
        key = await identity.access.CreateApiKey(
            access_service_pb2.CreateApiKeyRequest(
                service_account_id=account.id,
                api_key=resources_pb2.ApiKey(permissions=["users.get"]),
            ),
            metadata=strong_md,
        )
        exchanged = await identity.auth.ExchangeApiKey(
            auth_service_pb2.ExchangeApiKeyRequest(api_key=key.secret)
        )
        assert "otp" not in claims(exchanged.access_token).get("amr", [])
        assert not exchanged.amr
        # The password-only token cannot issue a key (it holds no api_keys.create).
        answer = await _answer(
            identity.access.CreateApiKey(
                access_service_pb2.CreateApiKeyRequest(
                    service_account_id=account.id,
                    api_key=resources_pb2.ApiKey(permissions=["users.get"]),
                ),
                metadata=weak_md,
            )
        )
        assert answer[0] == "PERMISSION_DENIED", answer


async def test_attack_act_on_another_users_factor(
    identity: IdentityHarness, tenants: Tenants, attacks: AttackLog
) -> None:
    attacker = await identity.create_user(tenants.attacker.admin, roles=["viewer"])
    attacker_md = identity.bearer(await identity.token(attacker))
    peer = await identity.create_user(tenants.attacker.admin, roles=["viewer"])
    await enrol(identity, peer)
    with attacks.attempt(
        "reset another user's second factor",
        "a viewer resets a peer's and another company's admin's factor, and a made-up id",
    ):
        for user_id in (peer.user_id, tenants.victim.admin.user_id, str(uuid.uuid4())):
            answer = await _answer(
                identity.users.ResetUserMfa(
                    user_service_pb2.ResetUserMfaRequest(user_id=user_id), metadata=attacker_md
                )
            )
            assert answer[0] in {"PERMISSION_DENIED", "NOT_FOUND"}, answer
        # The peer still needs the code.
        assert (await challenge(identity, peer)).challenge.session
