"""The webhook sink: events become deliveries, in the batch's transaction.

For each event some ACTIVE, non-deleted subscription of its company wants
(:func:`cardinsa_company.domain.webhooks.matches`), one ``webhook_events`` row
(with the exact body that is POSTed) and one ``webhook_deliveries`` row per
such subscription. Both inserts ignore what exists (``ON CONFLICT DO
NOTHING``): the watch is at least once, so a batch taken again after a crash
adds nothing -- exactly one delivery per (subscription, event). Deliveries are
inserted in the batch's order, so their ``sequence`` follows the order the
events of each resource were written.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC
from typing import Final

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa.events.v1 import events_pb2
from cardinsa_company.dispatcher import metrics
from cardinsa_company.domain.webhooks import cloud_event_body, matches
from cardinsa_company.repository.models import WebhookDeliveryRow, WebhookEventRow

log = logging.getLogger("cardinsa_company.dispatcher")

__all__ = ["WebhookSink"]

_SUBSCRIPTIONS: Final = text(
    "SELECT id, company_id, event_types FROM company.webhook_subscriptions "
    "WHERE company_id = ANY(:companies) AND state = 'ACTIVE' AND delete_time IS NULL"
)


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


class WebhookSink:
    """Turns a batch of events into webhook deliveries (see the module)."""

    name = "webhooks"

    async def take(
        self, session: AsyncSession, source: str, events: Sequence[events_pb2.Event]
    ) -> None:
        wanted: list[tuple[events_pb2.Event, uuid.UUID, uuid.UUID]] = []
        for event in events:
            event_id, company_id = _uuid(event.id), _uuid(event.company_id)
            if event_id is None:
                log.warning("event without a UUID id skipped", extra={"source": source})
                continue
            if company_id is not None:  # platform-wide events have no subscribers
                wanted.append((event, event_id, company_id))
        if not wanted:
            return
        companies = list({company_id for _, _, company_id in wanted})
        rows = (await session.execute(_SUBSCRIPTIONS, {"companies": companies})).all()
        subscriptions: dict[uuid.UUID, list[tuple[uuid.UUID, list[str]]]] = {}
        for row in rows:
            subscriptions.setdefault(row.company_id, []).append((row.id, list(row.event_types)))
        event_rows: list[dict[str, object]] = []
        delivery_rows: list[dict[str, object]] = []
        for event, event_id, company_id in wanted:
            takers = [
                sid
                for sid, types in subscriptions.get(company_id, [])
                if matches(types, event.type)
            ]
            if not takers:
                continue
            time = event.time.ToDatetime(tzinfo=UTC)
            ordering_key = event.ordering_key or event.subject
            event_rows.append(
                {
                    "id": event_id,
                    "company_id": company_id,
                    "source": event.source or source,
                    "type": event.type,
                    "subject": event.subject,
                    "ordering_key": ordering_key,
                    "time": time,
                    "body": cloud_event_body(event),
                }
            )
            delivery_rows.extend(
                {
                    "id": uuid.uuid4(),
                    "company_id": company_id,
                    "subscription_id": sid,
                    "event_id": event_id,
                    "event_type": event.type,
                    "subject": event.subject,
                    "ordering_key": ordering_key,
                    "event_time": time,
                }
                for sid in takers
            )
        if not event_rows:
            return
        await session.execute(
            insert(WebhookEventRow).values(event_rows).on_conflict_do_nothing(index_elements=["id"])
        )
        # One multi-row INSERT: the identity (sequence) is drawn row by row, in
        # the batch's order.
        result = await session.execute(
            insert(WebhookDeliveryRow)
            .values(delivery_rows)
            .on_conflict_do_nothing(index_elements=["subscription_id", "event_id"])
            .returning(WebhookDeliveryRow.id)
        )
        metrics.DELIVERIES_QUEUED.inc(len(result.all()))
