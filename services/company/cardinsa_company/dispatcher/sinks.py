"""What the dispatcher hands events to: a sink takes a batch of one source's events."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa.events.v1 import events_pb2

__all__ = ["EventSink"]


class EventSink(Protocol):
    """Takes events at least once; the dispatcher stores the sink's cursor after
    :meth:`take` returns, in the same transaction as ``session``.

    A sink that writes to the company database (the webhook deliveries) writes
    through ``session``, so its rows and the cursor commit together; one that
    writes elsewhere (JetStream) must make a repeat harmless (de-duplication by
    the event id) since a crash between its write and the commit repeats the
    batch. Raising refuses the batch: nothing is committed and the dispatcher
    tries it again after a pause.
    """

    #: The cursor's key in ``company.event_cursors.sink``: ``webhooks``, ``jetstream``.
    name: str

    async def take(
        self, session: AsyncSession, source: str, events: Sequence[events_pb2.Event]
    ) -> None: ...
