"""EventService servicer: company's outbox, streamed (cardinsa_foundation.event_watch)."""

from __future__ import annotations

from cardinsa.company.v1 import event_service_pb2_grpc
from cardinsa_foundation.event_watch import EventWatchServicer

#: company's outbox table.
OUTBOX_TABLE = "company.outbox_events"


class EventServicer(EventWatchServicer, event_service_pb2_grpc.EventServiceServicer):
    pass
