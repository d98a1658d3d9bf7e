"""Login throttling that cannot lock out others, and limited password-reset requests.

Real identity servers over the real PostgreSQL. ``default_identity`` runs with the
production default of every limit (the session's ``identity`` raises the
per-address ones so the other suites can log in freely from 127.0.0.1). Client
addresses are simulated the way the gateway forwards them; each test uses
addresses of its own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from support.grpc_errors import error_info, retry_delay_seconds
from support.identity_harness import IdentityHarness, unique_email

from cardinsa.identity.v1 import auth_service_pb2
from cardinsa_foundation.metrics import REGISTRY

WRONG = "wrong password 000000"
HOUR = timedelta(hours=1)


#: Address blocks handed out once per session: two tests drawing the same random
#: block shared its failure counter (one in 250 per pair, so a flake every few runs).
_BLOCKS = itertools.count(uuid.uuid4().int % 250)


def _addresses(prefix: str) -> Iterator[str]:
    block = next(_BLOCKS) % 250
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


def _code(error: grpc.aio.AioRpcError | None) -> str:
    return "OK" if error is None else error.code().name


def _throttled(reason: str) -> float:
    found = REGISTRY.get_sample_value(
        "identity_throttled_total", {"action": "password_reset", "reason": reason}
    )
    return found or 0.0


async def test_failures_for_unknown_emails_from_one_address_leave_a_correct_login_working(
    default_identity: IdentityHarness, identity: IdentityHarness
) -> None:
    """With the production defaults: strangers filling the address's counter with
    unknown emails slow their own guesses, never another account's correct login."""
    identity_ = default_identity
    limit = identity_.settings.login_max_failures_per_address
    assert limit == 20  # the production default, not a raised test limit
    user = await identity.create_user(identity.admin_a)
    shared = next(_addresses("198.51"))
    answers = [
        await _login(identity_, unique_email("ghost"), WRONG, shared) for _ in range(limit + 5)
    ]
    codes = [_code(a) for a in answers]
    assert codes[:limit] == ["UNAUTHENTICATED"] * limit, codes
    # Past the limit, failing guesses from the address are refused, with RetryInfo.
    assert codes[limit:] == ["RESOURCE_EXHAUSTED"] * 5, codes
    last = answers[-1]
    assert last is not None and retry_delay_seconds(last) >= 1
    assert error_info(last).reason == "TOO_MANY_LOGIN_ATTEMPTS"

    # Another account's correct password from the same address still logs in ...
    assert await _login(identity_, user.email, user.password, shared) is None
    # ... while its wrong password from there is refused like the strangers' guesses.
    assert _code(await _login(identity_, user.email, WRONG, shared)) == "RESOURCE_EXHAUSTED"
    assert await _login(identity_, user.email, user.password, shared) is None


async def test_successful_logins_consume_nothing(default_identity: IdentityHarness) -> None:
    """Many correct logins from one address (more than every limit) leave every
    counter as it was: the next wrong password is an ordinary failure."""
    identity_ = default_identity
    settings = identity_.settings
    user = await identity_.create_user(identity_.admin_a)
    address = next(_addresses("198.51"))
    for _ in range(settings.login_max_failures_per_address + 1):
        assert await _login(identity_, user.email, user.password, address) is None
    assert _code(await _login(identity_, user.email, WRONG, address)) == "UNAUTHENTICATED"
    ghost = unique_email("ghost")
    assert _code(await _login(identity_, ghost, WRONG, address)) == "UNAUTHENTICATED"


async def test_a_strangers_failures_delay_the_owner_only_for_the_bounded_wait(
    identity: IdentityHarness,
) -> None:
    """The stranger's own address gets the hard lock; the owner elsewhere waits at
    most ``account_wait_max`` and then logs in while the stranger is still locked."""
    auth = identity.app.auth
    original = auth.policy
    # A long lock for (account, address), a one-second wait for the account.
    auth.policy = dataclasses.replace(
        original, lock_base=timedelta(seconds=60), account_wait_max=timedelta(seconds=1)
    )
    try:
        limit = auth.policy.max_failures_per_account
        owner = await identity.create_user(identity.admin_a)
        addresses = _addresses("198.51")
        stranger, home = next(addresses), next(addresses)
        codes = [_code(await _login(identity, owner.email, WRONG, stranger)) for _ in range(limit)]
        assert codes == ["UNAUTHENTICATED"] * limit
        refused = await _login(identity, owner.email, WRONG, stranger)
        assert _code(refused) == "RESOURCE_EXHAUSTED"

        # The owner, from home, with the right password: asked to wait, briefly.
        delayed = await _login(identity, owner.email, owner.password, home)
        assert _code(delayed) == "RESOURCE_EXHAUSTED"
        assert delayed is not None
        wait = retry_delay_seconds(delayed)
        assert 1 <= wait <= auth.policy.account_wait_max.total_seconds() + 1
        await asyncio.sleep(wait + 0.2)
        assert await _login(identity, owner.email, owner.password, home) is None

        # The stranger's address stays locked for the account, right password or not.
        hard = await _login(identity, owner.email, owner.password, stranger)
        assert _code(hard) == "RESOURCE_EXHAUSTED"
        assert hard is not None and retry_delay_seconds(hard) > wait
    finally:
        auth.policy = original


async def test_many_accounts_from_one_address_refuses_guesses_not_owners(
    identity: IdentityHarness,
) -> None:
    auth = identity.app.auth
    original = auth.policy
    limit = 6
    auth.policy = dataclasses.replace(original, max_failures_per_address=limit)
    try:
        accounts = [await identity.create_user(identity.admin_a) for _ in range(limit + 2)]
        address = next(_addresses("198.51"))
        codes = [_code(await _login(identity, a.email, WRONG, address)) for a in accounts]
        assert codes[:limit] == ["UNAUTHENTICATED"] * limit, codes
        assert codes[limit:] == ["RESOURCE_EXHAUSTED"] * 2, codes
        # One failure each: no account is locked, so every owner gets in from there.
        for account in accounts:
            assert await _login(identity, account.email, account.password, address) is None
    finally:
        auth.policy = original


async def test_unlock_clears_the_locks_of_every_address(identity: IdentityHarness) -> None:
    from cardinsa.identity.v1 import user_service_pb2

    user = await identity.create_user(identity.admin_a)
    limit = identity.settings.login_max_failures_per_account
    address = next(_addresses("198.51"))
    for _ in range(limit + 1):
        await _login(identity, user.email, WRONG, address)
    assert _code(await _login(identity, user.email, user.password, address)) == (
        "RESOURCE_EXHAUSTED"
    )
    admin = await identity.token(identity.admin_a)
    await identity.users.UnlockUser(
        user_service_pb2.UnlockUserRequest(user_id=user.user_id), metadata=identity.bearer(admin)
    )
    assert await _login(identity, user.email, user.password, address) is None


# ------------------------------------------------------------- password reset


async def _reset(identity: IdentityHarness, email: str, address: str) -> tuple[str, bytes]:
    call = identity.auth.RequestPasswordReset(
        auth_service_pb2.RequestPasswordResetRequest(email=email),
        metadata=identity.from_address(address),
    )
    reply = await call
    return (await call.code()).name, reply.SerializeToString()


async def test_password_reset_requests_are_limited_per_address(
    default_identity: IdentityHarness,
) -> None:
    identity_ = default_identity
    limit = identity_.settings.password_reset_max_per_address
    users = [await identity_.create_user(identity_.admin_a) for _ in range(limit + 3)]
    address = next(_addresses("198.51"))
    before = _throttled("address")
    answers = [await _reset(identity_, u.email, address) for u in users]
    assert set(answers) == {("OK", b"")}
    await identity_.app.auth.wait_for_background()
    sent = [len(identity_.notifier.messages_for(u.email)) for u in users]
    assert sent == [1] * limit + [0] * 3, sent
    assert _throttled("address") - before == 3
    # Another address is not affected.
    assert await _reset(identity_, users[-1].email, next(_addresses("198.51"))) == ("OK", b"")
    await identity_.app.auth.wait_for_background()
    assert len(identity_.notifier.messages_for(users[-1].email)) == 1


async def test_password_reset_requests_are_limited_per_account(
    default_identity: IdentityHarness,
) -> None:
    """An inbox cannot be bombed from many addresses, and the answer never tells."""
    identity_ = default_identity
    limit = identity_.settings.password_reset_max_per_account
    victim = await identity_.create_user(identity_.admin_a)
    addresses = _addresses("198.51")
    before = _throttled("account")
    answers = [await _reset(identity_, victim.email, next(addresses)) for _ in range(limit + 4)]
    ghost = [await _reset(identity_, unique_email("ghost"), next(addresses)) for _ in range(2)]
    assert set(answers) == set(ghost) == {("OK", b"")}
    await identity_.app.auth.wait_for_background()
    assert len(identity_.notifier.messages_for(victim.email)) == limit
    assert _throttled("account") - before == 4


async def test_password_reset_work_waits_in_a_bounded_queue(
    default_identity: IdentityHarness,
) -> None:
    """With the worker stuck (a slow mail server), requests beyond the queue are
    dropped and counted; every caller gets the same answer; nothing grows."""
    identity_ = default_identity
    auth = identity_.app.auth
    size = identity_.settings.password_reset_queue_size
    notifier = identity_.notifier
    user = await identity_.create_user(identity_.admin_a)
    stuck, release = asyncio.Event(), asyncio.Event()
    real_send = notifier.send_password_reset

    async def slow_send(*, email: str, token: str, expire_time: datetime, locale: str = "") -> None:
        stuck.set()
        await release.wait()
        await real_send(email=email, token=token, expire_time=expire_time, locale=locale)

    notifier.send_password_reset = slow_send  # type: ignore[method-assign]
    try:
        addresses = _addresses("198.18")
        assert await _reset(identity_, user.email, next(addresses)) == ("OK", b"")
        await asyncio.wait_for(stuck.wait(), 30)
        before, tasks = _throttled("queue_full"), len(asyncio.all_tasks())
        # The worker holds one request; the queue takes `size` more.
        emails = [unique_email("queued") for _ in range(size + 5)]
        answers = [await _reset(identity_, e, next(addresses)) for e in emails]
        assert set(answers) == {("OK", b"")}
        assert _throttled("queue_full") - before == 5
        # One worker, not a task per request.
        assert len(asyncio.all_tasks()) - tasks < 5
    finally:
        release.set()
        await auth.wait_for_background()
        notifier.send_password_reset = real_send  # type: ignore[method-assign]
    assert len(notifier.messages_for(user.email)) == 1


@pytest.fixture(autouse=True)
def _no_leftover_policy(identity: IdentityHarness) -> Iterator[None]:
    original = identity.app.auth.policy
    yield
    assert identity.app.auth.policy is original


async def test_stale_counters_are_purged(identity: IdentityHarness) -> None:
    """Each unknown email a stranger tries leaves counters; old ones are deleted
    (at most once per purge interval, after a failed login), live ones stay."""
    from sqlalchemy import text

    auth = identity.app.auth
    db = identity.app.ctx.db
    stale, live = unique_email("stale"), unique_email("live")
    old = datetime.now(UTC) - auth.purge_idle - timedelta(minutes=1)
    async with db.unit_of_work(company_id=None, cross_tenant=True) as session:
        await session.execute(
            text(
                "INSERT INTO identity.login_throttles"
                " (scope, key, failures, window_start, locked_until, lock_count)"
                " VALUES ('account', :stale, 3, :old, NULL, 1),"
                " ('account', :locked, 3, :old, :later, 1)"
            ),
            {"stale": stale, "locked": live, "old": old, "later": datetime.now(UTC) + HOUR},
        )
    auth._next_purge = datetime.now(UTC)
    await _login(identity, unique_email("ghost"), WRONG, next(_addresses("198.51")))
    async with db.unit_of_work(company_id=None, cross_tenant=True) as session:
        left = set(
            (
                await session.execute(
                    text("SELECT key FROM identity.login_throttles WHERE key IN (:a, :b)"),
                    {"a": stale, "b": live},
                )
            ).scalars()
        )
    assert left == {live}
    assert auth._next_purge > datetime.now(UTC)


async def test_concurrent_logins_of_one_account_from_one_address_all_succeed(
    identity: IdentityHarness,
) -> None:
    """Completing logins clear the counters that concurrent ones reserve, in the
    same row order: no deadlock, no refusal."""
    user = await identity.create_user(identity.admin_a)
    address = next(_addresses("198.51"))
    answers = await asyncio.gather(
        *(_login(identity, user.email, user.password, address) for _ in range(12))
    )
    assert [_code(a) for a in answers] == ["OK"] * 12
