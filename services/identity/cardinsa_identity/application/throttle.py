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
upsert counts the attempt as pending on both, and no more attempts are checked
at once than failures are still allowed, so fifty concurrent wrong passwords
check at most ``max_failures_per_account`` of them. Attempts beyond that wait a
moment (nothing is locked: the ones being checked may succeed). After the
check, a failure moves from pending to failures; a success clears both keys.
An attempt refused by a lock gives back what it counted (it checked no
password). An administrator's unlock clears every key of the account.
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


def _counter_sql(values: str, now: str, window: str, column: str) -> str:
    """The upsert that counts ``column`` (``failures`` or ``pending``) up by one
    for the rows in ``values``; ``now`` and ``window`` (seconds) are
    placeholders of the caller's parameter style. The one definition of how a
    counter moves: a lock in force keeps it, an expired window or lock restarts
    it (failures 0, nothing pending), else it counts up. The arguments are
    placeholders and constant names, never values: S608 does not apply."""
    restart = (
        f"t.window_start + make_interval(secs => {window}) <= {now}"
        f" OR (t.locked_until IS NOT NULL AND t.locked_until <= {now})"
    )
    in_force = f"t.locked_until IS NOT NULL AND t.locked_until > {now}"
    counted = {"failures": "failures", "pending": "pending"}[column]
    other = "pending" if counted == "failures" else "failures"
    return f"""
    INSERT INTO identity.login_throttles AS t
        (scope, key, failures, window_start, locked_until, lock_count, pending)
    VALUES {values}
    ON CONFLICT (scope, key) DO UPDATE SET
        {counted} = CASE
            WHEN {in_force} THEN t.{counted}
            WHEN {restart} THEN 1
            ELSE t.{counted} + 1 END,
        {other} = CASE
            WHEN {in_force} THEN t.{other}
            WHEN {restart} THEN 0
            ELSE t.{other} END,
        window_start = CASE
            WHEN {in_force} THEN t.window_start
            WHEN {restart} THEN {now}
            ELSE t.window_start END,
        locked_until = CASE
            WHEN t.locked_until IS NOT NULL AND t.locked_until <= {now} THEN NULL
            ELSE t.locked_until END
    RETURNING t.scope, t.key, t.failures, t.pending, t.locked_until, t.lock_count
    """  # noqa: S608


def reserve_sql(values: str, now: str, window: str) -> str:
    """Reserve an attempt (count ``pending`` up) on the rows in ``values``
    (``(scope, key, 0, <now>, NULL, 0, 1)`` each); see `_counter_sql`."""
    return _counter_sql(values, now, window, "pending")


def count_sql(values: str, now: str, window: str) -> str:
    """Count a failure or a request (``failures`` up) on the rows in ``values``
    (``(scope, key, 1, <now>, NULL, 0, 0)`` each); see `_counter_sql`."""
    return _counter_sql(values, now, window, "failures")


_RESERVE = text(reserve_sql("(:scope, :key, 0, :now, NULL, 0, 1)", ":now", ":window"))
_COUNT = text(count_sql("(:scope, :key, 1, :now, NULL, 0, 0)", ":now", ":window"))


def lock_sql(scope: str, key: str, until: str, now: str) -> str:
    """Lock a key until ``until`` unless a lock is already in force (placeholders
    of the caller's parameter style); returns a row only when this statement
    placed the lock."""
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
    """Take back one reserved attempt of a key (placeholders as for `lock_sql`)."""
    return f"""
    UPDATE identity.login_throttles SET pending = GREATEST(pending - 1, 0)
     WHERE scope = {scope} AND key = {key}
    """  # noqa: S608


def fail_sql(scope: str, key: str) -> str:
    """A reserved attempt failed: one failure more, one attempt less pending."""
    return f"""
    UPDATE identity.login_throttles
       SET failures = failures + 1, pending = GREATEST(pending - 1, 0)
     WHERE scope = {scope} AND key = {key}
    """  # noqa: S608


_GIVE_BACK = text(give_back_sql(":scope", ":key"))
_FAIL = text(fail_sql(":scope", ":key"))

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
    pending: int
    locked_until: datetime | None
    lock_count: int


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a reservation means: refused until ``locked_until`` (None: not
    locked), the keys it newly locked (metrics, audit), and ``busy``: not locked,
    but as many attempts as the limit allows are being checked right now (the
    attempt reserved nothing; try again in a moment)."""

    locked_until: datetime | None
    newly_locked: list[tuple[str, str]]
    busy: bool = False

    @property
    def go(self) -> bool:
        return self.locked_until is None and not self.busy


async def reserve_attempt(
    session: AsyncSession, policy: ThrottlePolicy, keys: list[tuple[str, str]]
) -> Verdict:
    """Reserve one attempt on every key (see `settle`). Run it in its own short
    transaction, so the reservation is visible to concurrent attempts at once;
    after the check, `record_failure` or `clear` (or `give_back`)."""
    now = datetime.now(UTC)
    reservations = []
    for scope, key in keys:
        params = {"scope": scope, "key": key, "now": now, "window": policy.window.total_seconds()}
        row = (await session.execute(_RESERVE, params)).one()
        reservations.append(
            Reservation(scope, key, row.failures, row.pending, row.locked_until, row.lock_count)
        )

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
    give_back: GiveBack,
) -> Verdict:
    """What the reservations mean, in the reserving transaction:

    - a lock in force on any key refuses the attempt;
    - a key whose failures reached its limit is locked (``place_lock``) and
      refuses it;
    - a key whose failures plus attempts being checked exceed the limit makes
      the attempt *busy*: its password is not checked now (so no more than the
      limit are ever checked at once), but nothing is locked, since those
      attempts may well succeed;
    - otherwise the password may be checked.

    An attempt that does not go ahead checked no password, so it is no failure:
    the keys it counted get their slot back (``give_back``). Without that, a
    stranger whose (account, address) is locked could go on filling the
    account's wait."""
    newly_locked: list[tuple[str, str]] = []
    locked_until: datetime | None = None
    locked: set[tuple[str, str]] = set()
    for r in reservations:
        if r.locked_until is not None and r.locked_until > now:
            locked_until = max(locked_until or r.locked_until, r.locked_until)
            locked.add((r.scope, r.key))
    if locked_until is None:
        for r in reservations:
            if r.failures >= policy.limit(r.scope):
                until = now + policy.lock_length(r.lock_count, r.scope)
                if await place_lock(r.scope, r.key, until, now):
                    newly_locked.append((r.scope, r.key))
                locked_until = max(locked_until or until, until)
    busy = locked_until is None and any(
        r.failures + r.pending > policy.limit(r.scope) for r in reservations
    )
    if locked_until is not None or busy:
        for r in reservations:
            if (r.scope, r.key) not in locked:
                await give_back(r.scope, r.key)
    return Verdict(locked_until, newly_locked, busy)


async def record_failure(session: AsyncSession, keys: list[tuple[str, str]]) -> None:
    """The password of a reserved attempt was wrong: count it on every key."""
    for scope, key in keys:
        await session.execute(_FAIL, {"scope": scope, "key": key})


async def give_back(session: AsyncSession, keys: list[tuple[str, str]]) -> None:
    """A reserved attempt ended without a verdict on the password (an error)."""
    for scope, key in keys:
        await session.execute(_GIVE_BACK, {"scope": scope, "key": key})


async def count_failure(
    session: AsyncSession, policy: ThrottlePolicy, scope: str, key: str
) -> Verdict:
    """Count a failure on a key that is counted only after the fact (the client
    address): locked once over its limit, as `settle` would."""
    now = datetime.now(UTC)
    params = {"scope": scope, "key": key, "now": now, "window": policy.window.total_seconds()}
    row = (await session.execute(_COUNT, params)).one()
    if row.locked_until is not None and row.locked_until > now:
        return Verdict(row.locked_until, [])
    if row.failures > policy.limit(scope):
        until = now + policy.lock_length(row.lock_count, scope)
        params = {"scope": scope, "key": key, "until": until, "now": now}
        placed = (await session.execute(_LOCK, params)).first() is not None
        return Verdict(until, [(scope, key)] if placed else [])
    return Verdict(None, [])


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
    row = (await session.execute(_COUNT, params)).one()
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


def busy_error() -> LockedOut:
    """As many attempts on the account as its limit allows are being checked
    right now; the same answer as a lock (an unknown email can be busy too)."""
    return _locked(datetime.now(UTC), datetime.now(UTC))


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
