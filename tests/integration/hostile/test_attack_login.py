"""Attack suite: brute force, lockout of others, account enumeration and e-mail
bombing against identity's login and password reset.

Client addresses are simulated the way the gateway forwards them (its secret
plus ``x-envoy-external-address``); each test uses addresses of its own. The
session's identity server allows 10 000 failures per address (so the other
suites can log in freely from 127.0.0.1); the address test lowers that limit
for its own duration. ``default_identity`` is a second server with the
production default of every limit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import grpc
import pytest
from hostile_attacks import AttackLog
from hostile_harness import Tenants
from support.grpc_errors import details, error_info, retry_delay_seconds
from support.identity_harness import IdentityHarness, unique_email

from cardinsa.identity.v1 import auth_service_pb2, user_service_pb2
from cardinsa_foundation.metrics import REGISTRY

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


async def test_attack_brute_force_many_accounts_from_one_address_refuses_the_guesses(
    identity: IdentityHarness, tenants: Tenants, attacks: AttackLog
) -> None:
    limit = 8
    accounts = [await identity.create_user(tenants.attacker.admin) for _ in range(limit + 4)]
    addresses = _addresses("198.18")
    attacker_address = next(addresses)
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
            # The guesses are refused; the owners (no account is locked) are not,
            # even from that address.
            assert (
                await _login(identity, accounts[0].email, accounts[0].password, attacker_address)
                is None
            )
    finally:
        auth.policy = original


async def test_attack_strangers_lock_everyone_out_through_one_address(
    default_identity: IdentityHarness, tenants: Tenants, attacks: AttackLog
) -> None:
    """Behind a load balancer every user may share one address: failures of
    strangers there must not refuse anybody's correct password. Production limits."""
    identity = default_identity
    limit = identity.settings.login_max_failures_per_address
    user = await identity.create_user(tenants.attacker.admin)
    shared = next(_addresses("198.18"))
    with attacks.attempt(
        "strangers lock everyone out through one address",
        f"{limit + 1} logins with unknown emails from one address (production limits), "
        "then another account's right password from it",
    ):
        answers = [
            await _login(identity, unique_email("ghost"), WRONG, shared) for _ in range(limit + 1)
        ]
        assert _locked(answers[-1]), [a.code() if a else None for a in answers]
        assert await _login(identity, user.email, user.password, shared) is None


async def test_attack_stranger_locks_the_owner_out_from_elsewhere(
    identity: IdentityHarness, tenants: Tenants, attacks: AttackLog
) -> None:
    """Wrong passwords from the stranger's address lock that address out of the
    account for long; the owner elsewhere waits at most the account's bounded wait."""
    auth = identity.app.auth
    original = auth.policy
    auth.policy = dataclasses.replace(
        original, lock_base=timedelta(seconds=60), account_wait_max=timedelta(seconds=1)
    )
    try:
        limit = auth.policy.max_failures_per_account
        owner = await identity.create_user(tenants.attacker.admin)
        addresses = _addresses("198.18")
        stranger, home = next(addresses), next(addresses)
        with attacks.attempt(
            "a stranger locks the owner out from elsewhere",
            f"{limit * 3} wrong passwords on one account from the stranger's address, "
            "then the owner's right password from home",
        ):
            answers = [
                await _login(identity, owner.email, WRONG, stranger) for _ in range(limit * 3)
            ]
            assert all(_locked(a) for a in answers[limit:])
            delayed = await _login(identity, owner.email, owner.password, home)
            if delayed is not None:
                assert _locked(delayed)
                wait = retry_delay_seconds(delayed)
                assert wait <= auth.policy.account_wait_max.total_seconds() + 1
                await asyncio.sleep(wait + 0.2)
            assert await _login(identity, owner.email, owner.password, home) is None
            assert _locked(await _login(identity, owner.email, owner.password, stranger))
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


async def _reset(identity: IdentityHarness, email: str, address: str) -> str:
    call = identity.auth.RequestPasswordReset(
        auth_service_pb2.RequestPasswordResetRequest(email=email),
        metadata=identity.from_address(address),
    )
    await call
    return (await call.code()).name


async def test_attack_email_bombing_via_password_reset(
    default_identity: IdentityHarness, tenants: Tenants, attacks: AttackLog
) -> None:
    identity = default_identity
    settings = identity.settings
    victim = await identity.create_user(tenants.attacker.admin)
    others = [await identity.create_user(tenants.attacker.admin) for _ in range(3)]
    addresses = _addresses("198.18")
    tries = settings.password_reset_max_per_account * 4
    with attacks.attempt(
        "e-mail bombing via password reset",
        f"{tries} reset requests for one inbox from {tries} addresses, and "
        f"{settings.password_reset_max_per_address + 3} for many inboxes from one address "
        "(production limits)",
    ):
        answers = [await _reset(identity, victim.email, next(addresses)) for _ in range(tries)]
        one = next(addresses)
        for _ in range(settings.password_reset_max_per_address):
            answers.append(await _reset(identity, unique_email("filler"), one))
        answers.extend([await _reset(identity, o.email, one) for o in others])
        assert set(answers) == {"OK"}
        await identity.app.auth.wait_for_background()
        assert len(identity.notifier.messages_for(victim.email)) == (
            settings.password_reset_max_per_account
        )
        assert [len(identity.notifier.messages_for(o.email)) for o in others] == [0, 0, 0]


async def test_attack_unbounded_background_work_via_password_reset(
    default_identity: IdentityHarness, tenants: Tenants, attacks: AttackLog
) -> None:
    """A stuck mail server and a flood of reset requests: the work waits in a
    bounded queue, the rest is dropped (counted), every caller gets the same answer."""
    identity = default_identity
    size = identity.settings.password_reset_queue_size
    notifier = identity.notifier
    release = asyncio.Event()
    real_send = notifier.send_password_reset

    async def stuck_send(
        *, email: str, token: str, expire_time: datetime, locale: str = ""
    ) -> None:
        await release.wait()
        await real_send(email=email, token=token, expire_time=expire_time, locale=locale)

    user = await identity.create_user(tenants.attacker.admin)
    labels = {"action": "password_reset", "reason": "queue_full"}
    notifier.send_password_reset = stuck_send  # type: ignore[method-assign]
    try:
        with attacks.attempt(
            "unbounded background work via password reset",
            f"{size + 20} reset requests from {size + 20} addresses while mail is stuck",
        ):
            before = REGISTRY.get_sample_value("identity_throttled_total", labels) or 0.0
            tasks = len(asyncio.all_tasks())
            addresses = _addresses("198.17")
            answers = {await _reset(identity, user.email, next(addresses))}
            answers |= {
                await _reset(identity, unique_email("flood"), next(addresses))
                for _ in range(size + 19)
            }
            assert answers == {"OK"}
            after = REGISTRY.get_sample_value("identity_throttled_total", labels) or 0.0
            assert after - before >= 18
            assert len(asyncio.all_tasks()) - tasks < 5
    finally:
        release.set()
        await identity.app.auth.wait_for_background()
        notifier.send_password_reset = real_send  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _no_leftover_policy(identity: IdentityHarness) -> Iterator[None]:
    """The address test restores the throttle policy; make sure of it for later tests."""
    original = identity.app.auth.policy
    yield
    assert identity.app.auth.policy is original
