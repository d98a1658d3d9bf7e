"""The event loop's lag as a metric: a loop held by synchronous work shows up in
``event_loop_lag_seconds``; one measuring task per loop, gone with the last user.

Each test runs on an event loop of its own (``asyncio.run``): a server of
another test still running on a shared loop would already measure it, at its
own interval."""

from __future__ import annotations

import asyncio
import time

from cardinsa_foundation import loop_lag
from cardinsa_foundation.metrics import REGISTRY


def count_at_least(seconds: float) -> float:
    """Observations of at least ``seconds`` so far (all minus those below)."""
    total = REGISTRY.get_sample_value("event_loop_lag_seconds_count") or 0.0
    below = 0.0
    for bucket in loop_lag.EVENT_LOOP_LAG._upper_bounds:
        if bucket < seconds:
            below = (
                REGISTRY.get_sample_value("event_loop_lag_seconds_bucket", {"le": str(bucket)})
                or 0.0
            )
    return total - below


def lag_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "event-loop-lag" and not t.done()]


async def _test_a_blocked_loop_is_measured() -> None:
    before = count_at_least(0.25)
    handle = loop_lag.watch(interval_s=0.02)
    try:
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # noqa: ASYNC251 - the point: synchronous work holding the loop
        await asyncio.sleep(0.1)
    finally:
        handle.close()
    assert count_at_least(0.25) - before >= 1


async def _test_the_loop_is_measured_at_its_interval() -> None:
    before = REGISTRY.get_sample_value("event_loop_lag_seconds_count") or 0.0
    handle = loop_lag.watch(interval_s=0.01)
    try:
        deadline = time.monotonic() + 10
        while (REGISTRY.get_sample_value("event_loop_lag_seconds_count") or 0.0) - before < 5:
            assert time.monotonic() < deadline, "no lag measured within 10 s"
            await asyncio.sleep(0.02)
    finally:
        handle.close()


async def _test_one_task_per_loop_until_the_last_user_leaves() -> None:
    first, second = loop_lag.watch(), loop_lag.watch()
    await asyncio.sleep(0)
    assert len(lag_tasks()) == 1
    first.close()
    first.close()  # twice: still one user left
    await asyncio.sleep(0)
    assert len(lag_tasks()) == 1
    second.close()
    await asyncio.sleep(0)
    assert lag_tasks() == []


def test_a_blocked_loop_is_measured() -> None:
    asyncio.run(_test_a_blocked_loop_is_measured())


def test_the_loop_is_measured_at_its_interval() -> None:
    asyncio.run(_test_the_loop_is_measured_at_its_interval())


def test_one_task_per_loop_until_the_last_user_leaves() -> None:
    asyncio.run(_test_one_task_per_loop_until_the_last_user_leaves())
