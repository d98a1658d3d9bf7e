"""Brute-force protection for logins, race-safe in the database.

Only failures count, and a correct password is refused only by a lock on its
own account, never by what other accounts' traffic did:

- ``account_address`` (the account from one client address): the hard lock.
  ``max_failures_per_account`` failures from one address lock the account for
  that address only, doubling with each lock in a row up to ``lock_max``.
- ``account`` (the account from every address together): a bounded *wait*, as
  Keycloak's wait-increment. The same number of failures from anywhere makes
  the account wait before the next password check, doubling up to
  ``account_wait_max``: strangers elsewhere delay the owner, they cannot lock
  them out for longer than that.
- ``address`` (the client address over every account, unknown emails
  included): counted after a failure only. Over its limit, failing attempts
  from it are answered RESOURCE_EXHAUSTED instead of INVALID_CREDENTIALS; the
  password is still checked, so a correct one gets in.

The two account keys are *reserved* before the password is checked: one atomic
upsert increments both, so fifty concurrent wrong passwords check at most
``max_failures_per_account`` of them; a successful login clears both, and an
attempt refused by a lock gives back what it counted (it checked no password).
An administrator's unlock clears every key of the account.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, text
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_foundation.errors import ResourceExhausted
from cardinsa_identity.repository.models import LoginThrottleRow

ACCOUNT = "account"
ACCOUNT_ADDRESS = "account_address"
ADDRESS = "address"
# Password-reset requests (counted, never locked): per client address, per user id.
RESET_ADDRESS = "reset_address"
RESET_ACCOUNT = "reset_account"


def pair_key(email: str, address: str) -> str:
    """The ``account_address`` key: the address first (it holds no space), so the
    account is everything after the first space."""
    return f"{address} {email}"


def reserve_sql(values: str, now: str, window: str) -> str:
    """The reservation upsert for the rows in ``values`` (``(scope, key, 1, <now>,
    NULL, 0)`` each), with ``now`` and ``window`` (seconds) as placeholders of the
    caller's parameter style. The one definition of how a counter moves: a lock
    in force keeps it, an expired window or lock restarts it, else it counts up.
    The arguments are placeholders, never values: S608 does not apply.
    """
    return f"""
    INSERT INTO identity.login_throttles AS t
        (scope, key, failures, window_start, locked_until, lock_count)
    VALUES {values}
    ON CONFLICT (scope, key) DO UPDATE SET
        failures = CASE
            WHEN t.locked_until IS NOT NULL AND t.locked_until > {now} THEN t.failures
            WHEN t.window_start + make_interval(secs => {window}) <= {now}
                 OR (t.locked_until IS NOT NULL AND t.locked_until <= {now}) THEN 1
            ELSE t.failures + 1 END,
        window_start = CASE
            WHEN t.locked_until IS NOT NULL AND t.locked_until > {now} THEN t.window_start
            WHEN t.window_start + make_interval(secs => {window}) <= {now}
                 OR (t.locked_until IS NOT NULL AND t.locked_until <= {now}) THEN {now}
            ELSE t.window_start END,
        locked_until = CASE
            WHEN t.locked_until IS NOT NULL AND t.locked_until <= {now} THEN NULL
            ELSE t.locked_until END
    RETURNING t.scope, t.key, t.failures, t.locked_until, t.lock_count
    """  # noqa: S608


_RESERVE = text(reserve_sql("(:scope, :key, 1, :now, NULL, 0)", ":now", ":window"))


def lock_sql(scope: str, key: str, until: str, now: str) -> str:
    """Lock a key until ``until`` unless a lock is already in force (placeholders
    as for `reserve_sql`); returns a row only when this statement placed the lock."""
    return f"""
    UPDATE identity.login_throttles
       SET locked_until = {until}, lock_count = lock_count + 1
     WHERE scope = {scope} AND key = {key} AND (locked_until IS NULL OR locked_until <= {now})
    RETURNING locked_until
    """  # noqa: S608


_LOCK = text(lock_sql(":scope", ":key", ":until", ":now"))

#: ``place_lock(scope, key, until, now)``: run `lock_sql`; True if this placed the lock.
PlaceLock = Callable[[str, str, datetime, datetime], Awaitable[bool]]


def give_back_sql(scope: str, key: str) -> str:
    """Take back one reserved slot of a key (placeholders as for `reserve_sql`)."""
    return f"""
    UPDATE identity.login_throttles SET failures = GREATEST(failures - 1, 0)
     WHERE scope = {scope} AND key = {key}
    """  # noqa: S608


_GIVE_BACK = text(give_back_sql(":scope", ":key"))

#: ``give_back(scope, key)``: run `give_back_sql`.
GiveBack = Callable[[str, str], Awaitable[None]]


@dataclass(frozen=True)
class ThrottlePolicy:
    max_failures_per_account: int
    max_failures_per_address: int
    window: timedelta
    lock_base: timedelta
    lock_max: timedelta
    # The longest an account waits because of failures from every address.
    account_wait_max: timedelta

    def limit(self, scope: str) -> int:
        return self.max_failures_per_address if scope == ADDRESS else self.max_failures_per_account

    def lock_length(self, lock_count: int, scope: str = ACCOUNT_ADDRESS) -> timedelta:
        longest = self.account_wait_max if scope == ACCOUNT else self.lock_max
        seconds = self.lock_base.total_seconds() * (2 ** min(lock_count, 16))
        return timedelta(seconds=min(seconds, longest.total_seconds()))


class LockedOut(ResourceExhausted):
    pass


def _locked(until: datetime, now: datetime) -> LockedOut:
    wait = max(until - now, timedelta(seconds=1))
    return LockedOut(
        "too many failed logins; try again later",
        reason="TOO_MANY_LOGIN_ATTEMPTS",
        metadata={"retry_after_seconds": str(int(wait.total_seconds()) + 1)},
        retry_after=wait,
    )


@dataclass(frozen=True, slots=True)
class Reservation:
    """One key's counter right after an attempt reserved a slot on it."""

    scope: str
    key: str
    failures: int
    locked_until: datetime | None
    lock_count: int


async def reserve_attempt(
    session: AsyncSession, policy: ThrottlePolicy, keys: list[tuple[str, str]]
) -> tuple[datetime | None, list[tuple[str, str]]]:
    """Reserve one attempt on every key.

    Returns until when the attempt is locked out (None: go ahead and check the
    password) and the keys this attempt newly locked (for metrics and audit).
    Run it in its own short transaction, so the reservation is visible to
    concurrent attempts at once.
    """
    now = datetime.now(UTC)
    reservations = []
    for scope, key in keys:
        row = (
            await session.execute(
                _RESERVE,
                {"scope": scope, "key": key, "now": now, "window": policy.window.total_seconds()},
            )
        ).one()
        reservations.append(Reservation(scope, key, row.failures, row.locked_until, row.lock_count))

    async def place_lock(scope: str, key: str, until: datetime, now: datetime) -> bool:
        params = {"scope": scope, "key": key, "until": until, "now": now}
        return (await session.execute(_LOCK, params)).first() is not None

    async def give_back(scope: str, key: str) -> None:
        await session.execute(_GIVE_BACK, {"scope": scope, "key": key})

    return await settle(policy, reservations, now, place_lock, give_back)


async def settle(
    policy: ThrottlePolicy,
    reservations: list[Reservation],
    now: datetime,
    place_lock: PlaceLock,
    give_back: GiveBack | None = None,
) -> tuple[datetime | None, list[tuple[str, str]]]:
    """What the reservations mean (see `reserve_attempt`), in the reserving
    transaction. A lock in force on any key refuses the attempt; otherwise every
    key over its limit is locked with ``place_lock`` and refuses it. A refused
    attempt checks no password, so it is no failure: the keys it counted that
    are not locked get their slot back (``give_back``). Without that, a stranger
    whose (account, address) is locked could go on filling the account's wait."""
    newly_locked: list[tuple[str, str]] = []
    locked_until: datetime | None = None
    locked: set[tuple[str, str]] = set()
    for r in reservations:
        if r.locked_until is not None and r.locked_until > now:
            locked_until = max(locked_until or r.locked_until, r.locked_until)
            locked.add((r.scope, r.key))
    if locked_until is None:
        for r in reservations:
            if r.failures > policy.limit(r.scope):
                until = now + policy.lock_length(r.lock_count, r.scope)
                if await place_lock(r.scope, r.key, until, now):
                    newly_locked.append((r.scope, r.key))
                locked_until = max(locked_until or until, until)
                locked.add((r.scope, r.key))
    if locked_until is not None and give_back is not None:
        for r in reservations:
            if (r.scope, r.key) not in locked:
                await give_back(r.scope, r.key)
    return locked_until, newly_locked


async def count_request(session: AsyncSession, scope: str, key: str, window: timedelta) -> int:
    """Count one request on a key that is never locked (the password-reset
    limits): how many the window holds, this one included. The same upsert as
    the login counters, so a window that ran out starts again at 1."""
    params = {
        "scope": scope,
        "key": key,
        "now": datetime.now(UTC),
        "window": window.total_seconds(),
    }
    row = (await session.execute(_RESERVE, params)).one()
    return int(row.failures)


_PURGE = text(
    "DELETE FROM identity.login_throttles"
    " WHERE window_start < :before AND (locked_until IS NULL OR locked_until < :now)"
)


async def purge_stale(session: AsyncSession, idle: timedelta) -> int:
    """Delete counters whose window started longer than ``idle`` ago and that
    hold no lock: every unknown email a stranger tries leaves rows, and they
    must not pile up forever. ``idle`` exceeds every window and lock, so only
    the memory of old locks (the doubling) is lost."""
    now = datetime.now(UTC)
    result = await session.execute(_PURGE, {"before": now - idle, "now": now})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def locked_error(until: datetime) -> LockedOut:
    return _locked(until, datetime.now(UTC))


async def locked_until(session: AsyncSession, keys: list[tuple[str, str]]) -> datetime | None:
    now = datetime.now(UTC)
    found: datetime | None = None
    for scope, key in keys:
        row = await session.get(LoginThrottleRow, (scope, key))
        if row is not None and row.locked_until is not None and row.locked_until > now:
            found = max(found or row.locked_until, row.locked_until)
    return found


_CLEAR_PAIRS = text(
    "DELETE FROM identity.login_throttles"
    " WHERE scope = :scope AND substr(key, strpos(key, ' ') + 1) = :email"
)


async def clear(session: AsyncSession, scope: str, key: str) -> None:
    """Delete one key's counter; for an account (``ACCOUNT``, its email) also the
    locks of that account from every address (an administrator's unlock, a
    password change or reset)."""
    await session.execute(
        delete(LoginThrottleRow).where(LoginThrottleRow.scope == scope, LoginThrottleRow.key == key)
    )
    if scope == ACCOUNT:
        await session.execute(_CLEAR_PAIRS, {"scope": ACCOUNT_ADDRESS, "email": key})
