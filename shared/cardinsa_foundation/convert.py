"""Protobuf values every service's handlers share (the service-specific ones stay there)."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import struct_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from cardinsa.common.v1 import common_pb2
from cardinsa_foundation.audit import AuditLogMixin

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)


def timestamp(value: datetime | None) -> Timestamp | None:
    """A Timestamp, or None (the field stays unset) for a missing time.

    The same value as ``Timestamp.FromDatetime`` (a naive time is UTC), at a
    fraction of its cost (every resource converts several per call): a
    timedelta is already normalised as a Timestamp is, whole seconds rounded
    down and a non-negative fraction.
    """
    if value is None:
        return None
    delta = value - (_NAIVE_EPOCH if value.tzinfo is None else _EPOCH)
    return Timestamp(seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000)


def audit_event_to_proto(row: AuditLogMixin) -> common_pb2.AuditEvent:
    """One row of a service's audit table as the common AuditEvent message."""
    detail = struct_pb2.Struct()
    detail.update(row.detail or {})
    return common_pb2.AuditEvent(
        id=str(row.id),
        create_time=timestamp(row.create_time),
        company_id=str(row.company_id) if row.company_id else "",
        actor_id=row.actor_id or "",
        on_behalf_of_id=row.on_behalf_of_id or "",
        action=row.action,
        entity_type=row.entity_type,
        entity_id=row.entity_id or "",
        changed_fields=row.changed_fields,
        request_id=row.request_id or "",
        detail=detail,
    )
