"""A user's TOTP factor in tests: enrol and confirm through MeService, codes
computed with pyotp from the secret (as an authenticator app would), logins
that answer the MFA challenge."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any

import pyotp

from cardinsa.identity.v1 import auth_service_pb2, me_service_pb2, me_service_pb2_grpc
from support.identity_harness import Account, IdentityHarness

STEP_S = 30


def me_stub(identity: IdentityHarness) -> me_service_pb2_grpc.MeServiceStub:
    return me_service_pb2_grpc.MeServiceStub(identity.channel)


def code(secret: str, steps: int = 0) -> str:
    """The code of ``steps`` time-steps from now (the server accepts one either side)."""
    return pyotp.TOTP(secret).at(time.time() + STEP_S * steps)


def claims(token: str) -> dict[str, Any]:
    """The JWT's claims, unverified (the servers verify; the test reads)."""
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


@dataclass
class Factor:
    secret: str
    recovery_codes: list[str]
    #: Time-steps from now whose code is not used yet (the next one to use first).
    next_step: int = 0

    def fresh_code(self) -> str:
        """A code no earlier login used (each call moves one step on; at most
        two calls per factor right after enrolment stay within the window)."""
        value = code(self.secret, self.next_step)
        self.next_step += 1
        return value


async def enrol(identity: IdentityHarness, account: Account) -> Factor:
    """Enrol and confirm a factor for ``account`` (its confirming code is the
    previous step's, so the current and next step stay free for logins)."""
    me = me_stub(identity)
    md = identity.bearer((await identity.login(account.email, account.password)).access_token)
    enrolment = await me.EnrollMyMfa(me_service_pb2.EnrollMyMfaRequest(), metadata=md)
    confirmed = await me.ConfirmMyMfa(
        me_service_pb2.ConfirmMyMfaRequest(totp_code=code(enrolment.secret, -1)), metadata=md
    )
    return Factor(enrolment.secret, list(confirmed.recovery_codes))


async def challenge(
    identity: IdentityHarness, account: Account, password: str | None = None
) -> auth_service_pb2.TokenPair:
    return await identity.login(account.email, password or account.password)


async def respond(
    identity: IdentityHarness,
    session: str,
    *,
    totp_code: str = "",
    recovery_code: str = "",
    new_password: str = "",
) -> auth_service_pb2.TokenPair:
    return await identity.auth.RespondToAuthChallenge(
        auth_service_pb2.RespondToAuthChallengeRequest(
            session=session,
            totp_code=totp_code,
            recovery_code=recovery_code,
            new_password=new_password,
        )
    )


async def login_with_code(
    identity: IdentityHarness, account: Account, factor: Factor
) -> auth_service_pb2.TokenPair:
    first = await challenge(identity, account)
    assert first.challenge.kind == auth_service_pb2.AuthChallenge.MFA_TOTP, first
    return await respond(identity, first.challenge.session, totp_code=factor.fresh_code())
