"""Attack suite: brute force and account enumeration against identity's login.

Client addresses are simulated the way the gateway forwards them (its secret
plus ``x-envoy-external-address``); each test uses addresses of its own. The
session's identity server allows 10 000 failures per address (so the other
suites can log in freely from 127.0.0.1); the address test lowers that limit
for its own duration and logs in from no other address meanwhile.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from hostile_attacks import AttackLog
from hostile_harness import Tenants
from support.grpc_errors import details, error_info, retry_delay_seconds
from support.identity_harness import IdentityHarness, unique_email

from cardinsa.identity.v1 import auth_service_pb2, user_service_pb2

WRONG = "wrong password 000000"


def _addresses(prefix: str) -> Iterator[str]:
    block = uuid.uuid4().int % 250
    for i in range(1, 255):
        yield f"{prefix}.{block}.{i}"


async def _login(
    identity: IdentityHarness, email: str, password: str, address: str | None
) -> grpc.aio.AioRpcError | None:
    try:
        await identity.login(email, password, client_address=address)
    except grpc.aio.AioRpcError as error:
        return error
    return None


def _answer(error: grpc.aio.AioRpcError | None) -> tuple[Any, ...]:
    """Everything a client can compare, except the per-call request id."""
    if error is None:
        return ("OK",)
    info = error_info(error)
    return (
        error.code().name,
        error.details(),
        info.reason,
        info.domain,
        tuple(sorted(info.metadata.keys())),
        tuple(sorted(details(error))),
    )


def _locked(error: grpc.aio.AioRpcError | None) -> bool:
    return (
        error is not None
        and error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        and retry_delay_seconds(error) >= 1
    )


async def test_attack_brute_force_one_account_from_many_addresses_locks_the_account(
    identity: IdentityHarness, tenants: Tenants, attacks: AttackLog
) -> None:
    limit = identity.settings.login_max_failures_per_account
    victim = await identity.create_user(tenants.attacker.admin)
    addresses = _addresses("198.19")
    with attacks.attempt(
        "brute force: one account from many addresses",
        f"{limit + 5} wrong passwords from {limit + 5} addresses, then the right one from new ones",
    ):
        answers = [
            await _login(identity, victim.email, WRONG, next(addresses)) for _ in range(limit + 5)
        ]
        assert all(a is not None for a in answers)
        assert [a.code() for a in answers[:limit]] == [grpc.StatusCode.UNAUTHENTICATED] * limit  # type: ignore[union-attr]
        assert all(_locked(a) for a in answers[limit:]), [a.code() for a in answers]  # type: ignore[union-attr]
        # The right password, from an address never seen, and from the plain peer: still locked.
        assert _locked(await _login(identity, victim.email, victim.password, next(addresses)))
        assert _locked(await _login(identity, victim.email, victim.password, None))


async def test_attack_brute_force_many_accounts_from_one_address_locks_the_address(
    identity: IdentityHarness, tenants: Tenants, attacks: AttackLog
) -> None:
    limit = 8
    accounts = [await identity.create_user(tenants.attacker.admin) for _ in range(limit + 4)]
    addresses = _addresses("198.18")
    attacker_address, other_address = next(addresses), next(addresses)
    auth = identity.app.auth
    original = auth.policy
    auth.policy = dataclasses.replace(original, max_failures_per_address=limit)
    try:
        with attacks.attempt(
            "brute force: many accounts from one address",
            f"1 wrong password on each of {len(accounts)} accounts "
            f"from one address (limit {limit})",
        ):
            answers = [await _login(identity, a.email, WRONG, attacker_address) for a in accounts]
            codes = [a.code() if a else None for a in answers]
            assert codes[:limit] == [grpc.StatusCode.UNAUTHENTICATED] * limit, codes
            assert all(_locked(a) for a in answers[limit:]), codes
            # Even a right password is refused from that address ...
            assert _locked(
                await _login(identity, accounts[0].email, accounts[0].password, attacker_address)
            )
            # ... while the accounts themselves are not locked: from elsewhere they work.
            assert (
                await _login(identity, accounts[-1].email, accounts[-1].password, other_address)
                is None
            )
    finally:
        auth.policy = original


async def test_attack_brute_force_of_the_current_password_through_change_password_locks(
    identity: IdentityHarness, tenants: Tenants, attacks: AttackLog
) -> None:
    """A stolen access token does not buy unlimited guesses of the password."""
    limit = identity.settings.login_max_failures_per_account
    user = await identity.create_user(tenants.attacker.admin)
    stolen = identity.bearer(await identity.token(user))

    async def change(current: str) -> grpc.aio.AioRpcError | None:
        try:
            await identity.auth.ChangePassword(
                auth_service_pb2.ChangePasswordRequest(
                    current_password=current, new_password="a brand new passphrase 77"
                ),
                metadata=stolen,
            )
        except grpc.aio.AioRpcError as error:
            return error
        return None

    with attacks.attempt(
        "brute force: current password through ChangePassword",
        f"{limit + 3} wrong current passwords with a stolen access token, then the right one",
    ):
        answers = [await change(f"guess number {i:04d}") for i in range(limit + 3)]
        codes = [a.code() if a else None for a in answers]
        assert codes[:limit] == [grpc.StatusCode.INVALID_ARGUMENT] * limit, codes
        assert all(_locked(a) for a in answers[limit:]), codes
        assert _locked(await change(user.password))


async def test_attack_account_enumeration_by_login_message_gets_identical_answers(
    identity: IdentityHarness, tenants: Tenants, attacks: AttackLog
) -> None:
    admin = tenants.attacker.bearer
    existing = await identity.create_user(tenants.attacker.admin)
    locked = await identity.create_user(tenants.attacker.admin)
    deactivated = await identity.create_user(tenants.attacker.admin)
    deleted = await identity.create_user(tenants.attacker.admin)
    await identity.users.LockUser(
        user_service_pb2.LockUserRequest(user_id=locked.user_id), metadata=admin
    )
    await identity.users.DeactivateUser(
        user_service_pb2.DeactivateUserRequest(user_id=deactivated.user_id), metadata=admin
    )
    await identity.users.DeleteUser(
        user_service_pb2.DeleteUserRequest(user_id=deleted.user_id), metadata=admin
    )
    cases = {
        "unknown email": unique_email("nobody"),
        "wrong password": existing.email,
        "wrong password, other letter case": existing.email.upper(),
        "locked account, wrong password": locked.email,
        "deactivated account, wrong password": deactivated.email,
        "deleted account, wrong password": deleted.email,
        "victim company's admin, wrong password": tenants.victim.admin.email,
        "not an email": "not-an-email",
    }
    addresses = _addresses("198.51")
    with attacks.attempt("account enumeration by login message", ", ".join(cases)):
        answers = {
            name: _answer(await _login(identity, email, WRONG, next(addresses)))
            for name, email in cases.items()
        }
        reference = answers["unknown email"]
        assert reference[0] == "UNAUTHENTICATED" and reference[2] == "INVALID_CREDENTIALS", (
            reference
        )
        different = {name: a for name, a in answers.items() if a != reference}
        assert not different, f"answers that tell accounts apart: {different} (vs {reference})"


async def test_attack_account_enumeration_by_lockout_gets_identical_answers(
    identity: IdentityHarness, tenants: Tenants, attacks: AttackLog
) -> None:
    """Hammering a real and a made-up email gives the same answers, lock included."""
    limit = identity.settings.login_max_failures_per_account
    real = await identity.create_user(tenants.attacker.admin)
    ghost = unique_email("ghost")
    addresses = _addresses("203.0")
    with attacks.attempt(
        "account enumeration by lockout behaviour",
        f"{limit + 2} wrong passwords on a real and on an unknown email",
    ):
        for attempt in range(limit + 2):
            mine = _answer(await _login(identity, real.email, WRONG, next(addresses)))
            theirs = _answer(await _login(identity, ghost, WRONG, next(addresses)))
            assert mine == theirs, (attempt, mine, theirs)
        assert mine[0] == "RESOURCE_EXHAUSTED", mine
        # The right password on the locked real account answers like the ghost.
        assert _answer(await _login(identity, real.email, real.password, next(addresses))) == theirs


async def test_attack_account_enumeration_by_password_reset_gets_identical_answers(
    identity: IdentityHarness, tenants: Tenants, attacks: AttackLog
) -> None:
    admin = tenants.attacker.bearer
    active = await identity.create_user(tenants.attacker.admin)
    deactivated = await identity.create_user(tenants.attacker.admin)
    await identity.users.DeactivateUser(
        user_service_pb2.DeactivateUserRequest(user_id=deactivated.user_id), metadata=admin
    )
    cases = {
        "active account": active.email,
        "active account, other letter case": active.email.upper(),
        "unknown email": unique_email("nobody"),
        "deactivated account": deactivated.email,
        "not an email": "not-an-email",
        "victim company's admin": tenants.victim.admin.email,
    }
    before = {email: len(identity.notifier.messages_for(email.lower())) for email in cases.values()}
    with attacks.attempt("account enumeration by password-reset request", ", ".join(cases)):
        answers: dict[str, tuple[Any, ...]] = {}
        for name, email in cases.items():
            call = identity.auth.RequestPasswordReset(
                auth_service_pb2.RequestPasswordResetRequest(email=email),
                metadata=identity.from_address(next(_addresses("192.0"))),
            )
            reply = await call
            trailing = await call.trailing_metadata()
            answers[name] = (
                (await call.code()).name,
                reply.SerializeToString(),
                tuple(sorted(k for k, _ in trailing or ())),
            )
        reference = answers["unknown email"]
        assert reference[0] == "OK", reference
        assert all(a == reference for a in answers.values()), answers
        # The difference exists, but only inside: only the active account got a token.
        await identity.app.auth.wait_for_background()
        sent = {
            name: len(identity.notifier.messages_for(email.lower())) - before[email]
            for name, email in cases.items()
        }
        assert sent["active account"] >= 1, sent
        assert sent["unknown email"] == sent["deactivated account"] == sent["not an email"] == 0, (
            sent
        )


@pytest.fixture(autouse=True)
def _no_leftover_policy(identity: IdentityHarness) -> Iterator[None]:
    """The address test restores the throttle policy; make sure of it for later tests."""
    original = identity.app.auth.policy
    yield
    assert identity.app.auth.policy is original
