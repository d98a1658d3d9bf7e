"""How late the event loop runs what is due.

Every call a server handles runs on one asyncio event loop. When something
holds the loop (a long garbage collection, synchronous work, a slow log sink,
CPU starvation), every call waiting on it is delayed by as much, and the
latency tail grows without any single call being slow. This module measures
that directly: a task asks to wake up every ``interval_s`` and records how much
later than asked it actually ran, in the histogram ``event_loop_lag_seconds``.

One measuring task per event loop, however many servers share it (several
servers in one process, as in tests, count the loop once): :func:`watch`
starts it or joins the running one and returns a handle whose ``close()``
leaves it; the last to leave stops it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

from prometheus_client import Histogram

from cardinsa_foundation.metrics import REGISTRY

__all__ = ["BUCKETS", "EVENT_LOOP_LAG", "INTERVAL_S", "LoopLagWatch", "watch"]

#: How often the loop is asked to wake the measuring task.
INTERVAL_S: Final = 0.1
BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

EVENT_LOOP_LAG = Histogram(
    "event_loop_lag_seconds",
    "How much later than asked the event loop woke a task that sleeps "
    f"{INTERVAL_S} s at a time: the delay every call on the loop saw at that moment.",
    buckets=BUCKETS,
    registry=REGISTRY,
)


@dataclass
class _Monitor:
    task: asyncio.Task[None]
    users: int = 0


_monitors: dict[asyncio.AbstractEventLoop, _Monitor] = {}


async def _measure(interval_s: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + interval_s
        await asyncio.sleep(interval_s)
        EVENT_LOOP_LAG.observe(max(0.0, loop.time() - due))


class LoopLagWatch:
    """A server's share of its loop's measuring task."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._closed = False

    def close(self) -> None:
        """Leave the measurement; the last one to leave stops the task."""
        if self._closed:
            return
        self._closed = True
        monitor = _monitors.get(self._loop)
        if monitor is None:
            return
        monitor.users -= 1
        if monitor.users <= 0:
            del _monitors[self._loop]
            monitor.task.cancel()


def watch(interval_s: float = INTERVAL_S) -> LoopLagWatch:
    """Measure the running loop's lag (start the task or join the running one)."""
    loop = asyncio.get_running_loop()
    monitor = _monitors.get(loop)
    if monitor is None or monitor.task.done():
        task = loop.create_task(_measure(interval_s), name="event-loop-lag")
        monitor = _monitors[loop] = _Monitor(task)
    monitor.users += 1
    return LoopLagWatch(loop)
