"""Brute-force protection for logins, race-safe in the database.

Every attempt first *reserves* a slot: one atomic upsert increments the
failure counter of the account and of the client address before any password
is checked. Only attempts that got a slot within the limit reach the password
hash, so fifty concurrent wrong passwords check at most ``limit`` of them; a
successful login gives its slot back (the account counter is cleared). Going
over the limit locks the key for a while, doubling with each lock in a row up
to a maximum; an administrator's unlock clears it.
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
ADDRESS = "address"


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


@dataclass(frozen=True)
class ThrottlePolicy:
    max_failures_per_account: int
    max_failures_per_address: int
    window: timedelta
    lock_base: timedelta
    lock_max: timedelta

    def limit(self, scope: str) -> int:
        return self.max_failures_per_account if scope == ACCOUNT else self.max_failures_per_address

    def lock_length(self, lock_count: int) -> timedelta:
        seconds = self.lock_base.total_seconds() * (2 ** min(lock_count, 16))
        return timedelta(seconds=min(seconds, self.lock_max.total_seconds()))


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

    return await settle(policy, reservations, now, place_lock)


async def settle(
    policy: ThrottlePolicy,
    reservations: list[Reservation],
    now: datetime,
    place_lock: PlaceLock,
) -> tuple[datetime | None, list[tuple[str, str]]]:
    """What the reservations mean (see `reserve_attempt`): a key over its limit is
    locked with ``place_lock``, in the reserving transaction."""
    newly_locked: list[tuple[str, str]] = []
    locked_until: datetime | None = None
    for r in reservations:
        if r.locked_until is not None and r.locked_until > now:
            locked_until = max(locked_until or r.locked_until, r.locked_until)
            continue
        if r.failures > policy.limit(r.scope):
            until = now + policy.lock_length(r.lock_count)
            if await place_lock(r.scope, r.key, until, now):
                newly_locked.append((r.scope, r.key))
            locked_until = max(locked_until or until, until)
    return locked_until, newly_locked


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


async def clear(session: AsyncSession, scope: str, key: str) -> None:
    await session.execute(
        delete(LoginThrottleRow).where(LoginThrottleRow.scope == scope, LoginThrottleRow.key == key)
    )
