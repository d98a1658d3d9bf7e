"""The in-memory revocation set and its subscriber (foundation revocation.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cardinsa_foundation.context import Principal, PrincipalKind
from cardinsa_foundation.errors import Unauthenticated, Unavailable
from cardinsa_foundation.revocation import (
    SESSION,
    SUBJECT,
    TOKEN_REVOKED,
    Revocation,
    RevocationBatch,
    RevocationSet,
    RevocationSubscriber,
)

NOW = 1_800_000_000.0
LIFETIME = 930.0  # 15 min + 30 s leeway


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def session(target: str, at: float = NOW, cursor: int = 1) -> Revocation:
    return Revocation(cursor, SESSION, target, at, at + LIFETIME, "logout")


def subject(target: str, not_before: float, cursor: int = 1) -> Revocation:
    return Revocation(cursor, SUBJECT, target, not_before, not_before + LIFETIME, "role")


def user(subject_id: str = "u1", session_id: str | None = "s1") -> Principal:
    return Principal(
        subject=subject_id, kind=PrincipalKind.USER, company_id="c", session_id=session_id
    )


def synced(clock: Clock, leeway_s: float = 0.0) -> RevocationSet:
    revocations = RevocationSet(leeway_s=leeway_s, name="unit", clock=clock)
    revocations.apply(RevocationBatch((), cursor=0, caught_up=True))
    return revocations


def test_a_revoked_session_refuses_its_tokens_only() -> None:
    revocations = synced(Clock())
    revocations.add(session("s1"))
    with pytest.raises(Unauthenticated) as caught:
        revocations.check(user(session_id="s1"), issued_at=NOW - 10)
    assert caught.value.reason == TOKEN_REVOKED
    # Any token of that session, issued before or after the instant.
    with pytest.raises(Unauthenticated):
        revocations.check(user(session_id="s1"), issued_at=NOW + 10)
    revocations.check(user(session_id="s2"), issued_at=NOW - 10)  # the user's other session
    revocations.check(user("u2", session_id=None), issued_at=NOW - 10)


def test_not_before_refuses_tokens_issued_before_it_and_not_after() -> None:
    revocations = synced(Clock())
    revocations.add(subject("u1", NOW))
    with pytest.raises(Unauthenticated):
        revocations.check(user(session_id="any"), issued_at=NOW - 1)
    revocations.check(user(session_id="any"), issued_at=NOW)  # issued at the instant: fine
    revocations.check(user(session_id="any"), issued_at=NOW + 5)
    revocations.check(user("u2"), issued_at=NOW - 1)


def test_the_latest_not_before_wins_whatever_the_order() -> None:
    revocations = synced(Clock())
    revocations.add(subject("u1", NOW + 100, cursor=2))
    revocations.add(subject("u1", NOW, cursor=1))  # an older one arriving late
    with pytest.raises(Unauthenticated):
        revocations.check(user(), issued_at=NOW + 50)


def test_entries_are_dropped_after_their_expiry_plus_the_leeway() -> None:
    clock = Clock()
    revocations = synced(clock, leeway_s=30)
    revocations.add(session("s1"))
    revocations.add(subject("u9", NOW))
    assert len(revocations) == 2
    clock.now = NOW + LIFETIME + 29
    assert revocations.prune() == 0
    clock.now = NOW + LIFETIME + 30
    assert revocations.prune() == 2
    assert len(revocations) == 0
    # One already past its time is not added at all.
    assert not revocations.add(session("s2", at=NOW - 2 * LIFETIME))
    assert len(revocations) == 0


def test_before_the_first_sync_calls_pass_unless_a_sync_is_required() -> None:
    revocations = RevocationSet(name="unit", clock=Clock())
    assert not revocations.synced
    revocations.check(user(), issued_at=NOW)


def test_calls_are_refused_as_unavailable_until_the_first_sync_when_required() -> None:
    revocations = RevocationSet(name="unit", clock=Clock(), require_sync=True)
    with pytest.raises(Unavailable) as caught:
        revocations.check(user(), issued_at=NOW)
    assert caught.value.reason == "REVOCATIONS_UNAVAILABLE"
    revocations.apply(RevocationBatch((session("s1", cursor=7),), cursor=7, caught_up=False))
    with pytest.raises(Unavailable):
        revocations.check(user("u2", "s2"), issued_at=NOW)
    revocations.apply(RevocationBatch((), cursor=7, caught_up=True))
    revocations.check(user("u2", "s2"), issued_at=NOW)
    assert revocations.cursor == 7


def test_a_set_of_ten_thousand_entries_answers_by_lookup() -> None:
    revocations = synced(Clock())
    for index in range(10_000):
        revocations.add(session(f"s{index}", cursor=index))
        revocations.add(subject(f"u{index}", NOW, cursor=index))
    assert len(revocations) == 20_000
    revocations.check(user("someone", "other"), issued_at=NOW)
    with pytest.raises(Unauthenticated):
        revocations.check(user("u5000", "other"), issued_at=NOW - 1)


async def test_the_subscriber_resumes_from_its_cursor_after_a_broken_stream() -> None:
    """A stream that breaks is reopened (with backoff) after the last cursor
    received, and the set keeps what it had meanwhile."""
    revocations = RevocationSet(name="unit-subscriber")
    asked: list[int] = []
    streams = [
        [
            RevocationBatch((session("s1", cursor=1),), cursor=1, caught_up=True),
            ConnectionError("identity went away"),
        ],
        [RevocationBatch((session("s2", cursor=2),), cursor=2, caught_up=True)],
    ]

    def open_stream(cursor: int) -> AsyncIterator[RevocationBatch]:
        asked.append(cursor)
        script = streams.pop(0) if streams else []

        async def replay() -> AsyncIterator[RevocationBatch]:
            for item in script:
                if isinstance(item, Exception):
                    raise item
                yield item
            await asyncio.sleep(3600)  # an open stream with nothing new

        return replay()

    subscriber = RevocationSubscriber(
        revocations, open_stream, backoff_initial_s=0.01, backoff_max_s=0.05
    )
    subscriber.start()
    try:
        await subscriber.wait_cursor(2, timeout_s=5)
    finally:
        await subscriber.stop()
    assert asked == [0, 1]
    assert revocations.is_revoked("s1", "u", NOW) and revocations.is_revoked("s2", "u", NOW)
    assert not subscriber.connected
