"""Client-side helpers for a service's EventService.WatchEvents, as a consumer
uses it: read a stream until the events expected arrived and it is caught up,
resume with the cursor it returned."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from google.protobuf.message import Message

from cardinsa.events.v1 import events_pb2
from cardinsa.identity.v1 import auth_service_pb2
from cardinsa_foundation.db import to_libpq_url

#: Guards against a stream that never delivers (the test fails, never hangs).
HANG_GUARD_S = 60.0


def request(
    cursor: str = "", *, company_id: str = "", types: Sequence[str] = ()
) -> events_pb2.WatchEventsRequest:
    return events_pb2.WatchEventsRequest(cursor=cursor, company_id=company_id, types=list(types))


async def watch_until(
    stub: Any,
    metadata: Sequence[tuple[str, str]],
    count: int,
    *,
    cursor: str = "",
    company_id: str = "",
    types: Sequence[str] = (),
) -> tuple[list[events_pb2.Event], str]:
    """The events of one stream until at least ``count`` arrived and a message
    said it was caught up; with the last cursor received. More events than
    ``count`` are returned too (the caller asserts there are none)."""
    call = stub.WatchEvents(
        request(cursor, company_id=company_id, types=types), metadata=list(metadata)
    )
    events: list[events_pb2.Event] = []
    last = cursor
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            async for response in call:
                events.extend(response.events)
                last = response.cursor
                if len(events) >= count and response.caught_up:
                    break
    finally:
        call.cancel()
    return events, last


async def first_response(
    stub: Any, metadata: Sequence[tuple[str, str]], **kwargs: Any
) -> events_pb2.WatchEventsResponse:
    """The first message of a new stream (it comes at once), or the call's error."""
    call = stub.WatchEvents(request(**kwargs), metadata=list(metadata))
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            response: events_pb2.WatchEventsResponse = await call.read()
            return response
    finally:
        call.cancel()


async def service_token(identity: Any, company_id: str, name: str, *permissions: str) -> str:
    """An access token of service account ``name`` of ``company_id`` whose key
    holds ``permissions`` (issued as `create-service-key` does)."""
    from cardinsa_identity.application.bootstrap import issue_service_key

    key = await issue_service_key(
        identity.app.ctx,
        company_id=uuid.UUID(company_id),
        name=name,
        permissions=list(permissions),
    )
    reply = await identity.auth.ExchangeApiKey(auth_service_pb2.ExchangeApiKeyRequest(api_key=key))
    return str(reply.access_token)


INSERT_EVENT = (
    "INSERT INTO {table} (id, company_id, source, type, subject, ordering_key, time, "
    "data_schema, data) VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8) RETURNING sequence"
)


async def insert_event(
    connection: asyncpg.Connection,
    table: str,
    *,
    company_id: str,
    source: str,
    type: str,
    subject: str,
    payload: Message,
) -> tuple[uuid.UUID, int]:
    """Write one outbox row on ``connection`` (in its transaction, if one is
    open), as a service's Outbox.add would; returns its id and sequence."""
    event_id = uuid.uuid4()
    sequence = await connection.fetchval(
        INSERT_EVENT.format(table=table),
        event_id,
        uuid.UUID(company_id),
        source,
        type,
        subject,
        datetime.now(UTC),
        payload.DESCRIPTOR.full_name,
        payload.SerializeToString(),
    )
    return event_id, int(sequence)


async def connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(to_libpq_url(url))
