"""The throttle's rules, without a database: lock lengths and what a reservation means."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cardinsa_identity.application import throttle
from cardinsa_identity.application.throttle import Reservation, ThrottlePolicy

POLICY = ThrottlePolicy(
    max_failures_per_account=5,
    max_failures_per_address=20,
    window=timedelta(minutes=15),
    lock_base=timedelta(seconds=60),
    lock_max=timedelta(hours=1),
    account_wait_max=timedelta(minutes=15),
)
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_the_account_wait_is_bounded_while_the_address_lock_grows() -> None:
    waits = [POLICY.lock_length(n, throttle.ACCOUNT) for n in range(40)]
    locks = [POLICY.lock_length(n, throttle.ACCOUNT_ADDRESS) for n in range(40)]
    assert waits[0] == timedelta(seconds=60) and max(waits) == timedelta(minutes=15)
    assert locks[-1] == timedelta(hours=1)
    assert waits == sorted(waits) and locks == sorted(locks)


def test_the_address_has_its_own_limit() -> None:
    assert POLICY.limit(throttle.ADDRESS) == 20
    assert POLICY.limit(throttle.ACCOUNT) == POLICY.limit(throttle.ACCOUNT_ADDRESS) == 5


class Calls:
    def __init__(self) -> None:
        self.locked: list[tuple[str, str]] = []
        self.given_back: list[tuple[str, str]] = []

    async def place_lock(self, scope: str, key: str, until: datetime, now: datetime) -> bool:
        self.locked.append((scope, key))
        return True

    async def give_back(self, scope: str, key: str) -> None:
        self.given_back.append((scope, key))


def _r(scope: str, failures: int, pending: int = 1, until: datetime | None = None) -> Reservation:
    return Reservation(scope, f"{scope}-key", failures, pending, until, 0)


async def _settle(*reservations: Reservation) -> tuple[throttle.Verdict, Calls]:
    calls = Calls()
    verdict = await throttle.settle(
        POLICY, list(reservations), NOW, calls.place_lock, calls.give_back
    )
    return verdict, calls


async def test_below_the_limit_the_password_is_checked() -> None:
    verdict, calls = await _settle(_r(throttle.ACCOUNT, 4), _r(throttle.ACCOUNT_ADDRESS, 0))
    assert verdict.go and not calls.locked and not calls.given_back


async def test_failures_at_the_limit_lock_and_the_other_key_gets_its_slot_back() -> None:
    verdict, calls = await _settle(_r(throttle.ACCOUNT, 2), _r(throttle.ACCOUNT_ADDRESS, 5))
    assert verdict.locked_until == NOW + timedelta(seconds=60)
    assert calls.locked == verdict.newly_locked == [("account_address", "account_address-key")]
    assert set(calls.given_back) == {
        ("account", "account-key"),
        ("account_address", "account_address-key"),
    }


async def test_a_lock_in_force_counts_nothing_elsewhere() -> None:
    """A stranger locked on (account, address) cannot fill the account's wait."""
    later = NOW + timedelta(minutes=5)
    verdict, calls = await _settle(
        _r(throttle.ACCOUNT, 4), _r(throttle.ACCOUNT_ADDRESS, 5, pending=0, until=later)
    )
    assert verdict.locked_until == later and not verdict.newly_locked
    assert not calls.locked
    assert calls.given_back == [("account", "account-key")]


async def test_attempts_being_checked_make_the_next_one_wait_without_a_lock() -> None:
    verdict, calls = await _settle(
        _r(throttle.ACCOUNT, 0, pending=6), _r(throttle.ACCOUNT_ADDRESS, 0)
    )
    assert verdict.busy and verdict.locked_until is None and not verdict.go
    assert not calls.locked and len(calls.given_back) == 2
