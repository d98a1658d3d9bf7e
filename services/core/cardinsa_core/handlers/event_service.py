"""EventService servicer: core's outbox, streamed (cardinsa_foundation.event_watch)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from cardinsa.core.v1 import event_service_pb2_grpc
from cardinsa.events.v1 import events_pb2
from cardinsa_foundation.event_watch import EventWatch

#: core's outbox table.
OUTBOX_TABLE = "core.outbox_events"


class EventServicer(event_service_pb2_grpc.EventServiceServicer):
    def __init__(self, watch: EventWatch) -> None:
        self.watch = watch

    async def WatchEvents(
        self, request: events_pb2.WatchEventsRequest, context: Any
    ) -> AsyncIterator[events_pb2.WatchEventsResponse]:
        async for response in self.watch.watch(request):
            yield response
