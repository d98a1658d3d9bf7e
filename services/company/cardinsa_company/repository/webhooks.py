"""Webhook subscriptions, deliveries and attempts in the database, as the API
reads and changes them. Every query filters by the company as well as relying on
row-level security; deliveries and attempts also by their subscription and
delivery, so an id under another parent finds nothing."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Final

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_company.repository.models import (
    WebhookDeliveryAttemptRow,
    WebhookDeliveryRow,
    WebhookSubscriptionRow,
)
from cardinsa_company.repository.queries import listing
from cardinsa_foundation.filtering import FieldType, FilterField, FilterSpec
from cardinsa_foundation.paging import OrderTerm

DELIVERY_FILTER: Final = FilterSpec(
    {
        "state": FilterField(
            WebhookDeliveryRow.state,
            FieldType.ENUM,
            values=("PENDING", "DELIVERED", "DEAD_LETTERED"),
        ),
        "event_type": FilterField(WebhookDeliveryRow.event_type, FieldType.STRING),
        "event_id": FilterField(WebhookDeliveryRow.event_id, FieldType.UUID),
        "subject": FilterField(WebhookDeliveryRow.subject, FieldType.STRING),
        "create_time": FilterField(WebhookDeliveryRow.create_time, FieldType.TIMESTAMP),
    }
)
#: Newest first (the primary key, appended by the pager, breaks ties the same way).
SUBSCRIPTION_ORDER: Final = (OrderTerm(WebhookSubscriptionRow.create_time, descending=True),)
DELIVERY_ORDER: Final = (OrderTerm(WebhookDeliveryRow.create_time, descending=True),)
#: Oldest first: attempt numbers only grow.
ATTEMPT_ORDER: Final = (OrderTerm(WebhookDeliveryAttemptRow.number),)


async def find_subscription(
    session: AsyncSession, company_id: uuid.UUID, subscription_id: uuid.UUID, *, lock: bool = False
) -> WebhookSubscriptionRow | None:
    """The company's subscription, deleted or not (locked when ``lock``)."""
    stmt = select(WebhookSubscriptionRow).where(
        WebhookSubscriptionRow.company_id == company_id,
        WebhookSubscriptionRow.id == subscription_id,
    )
    return await session.scalar(stmt.with_for_update() if lock else stmt)


def subscriptions_listing(
    company_id: uuid.UUID, *, show_deleted: bool
) -> Select[WebhookSubscriptionRow]:
    return listing(
        WebhookSubscriptionRow,
        WebhookSubscriptionRow.company_id == company_id,
        show_deleted=show_deleted,
        condition=None,
    )


async def find_delivery(
    session: AsyncSession,
    company_id: uuid.UUID,
    subscription_id: uuid.UUID,
    delivery_id: uuid.UUID,
    *,
    lock: bool = False,
) -> WebhookDeliveryRow | None:
    """The subscription's delivery (locked when ``lock``)."""
    stmt = select(WebhookDeliveryRow).where(
        WebhookDeliveryRow.company_id == company_id,
        WebhookDeliveryRow.subscription_id == subscription_id,
        WebhookDeliveryRow.id == delivery_id,
    )
    return await session.scalar(stmt.with_for_update() if lock else stmt)


def deliveries_listing(
    company_id: uuid.UUID, subscription_id: uuid.UUID, condition: ColumnElement[bool] | None
) -> Select[WebhookDeliveryRow]:
    stmt = select(WebhookDeliveryRow).where(
        WebhookDeliveryRow.company_id == company_id,
        WebhookDeliveryRow.subscription_id == subscription_id,
    )
    return stmt if condition is None else stmt.where(condition)


def attempts_listing(
    company_id: uuid.UUID, delivery_id: uuid.UUID
) -> Select[WebhookDeliveryAttemptRow]:
    return select(WebhookDeliveryAttemptRow).where(
        WebhookDeliveryAttemptRow.company_id == company_id,
        WebhookDeliveryAttemptRow.delivery_id == delivery_id,
    )


async def database_now(session: AsyncSession) -> datetime:
    """The transaction's time on the database clock (the clock the dispatcher's
    queries compare with)."""
    now: datetime | None = await session.scalar(select(func.now()))
    assert now is not None  # now() is never NULL
    return now


async def requeue(session: AsyncSession, delivery: WebhookDeliveryRow) -> None:
    """Send a finished delivery again: pending, due now, a fresh attempt budget
    (``total_attempt_count`` keeps counting, so attempt numbers stay unique), no
    lease; the last error and status stay until an attempt replaces them."""
    now = await database_now(session)
    delivery.state = "PENDING"
    delivery.attempt_count = 0
    delivery.next_attempt_time = now
    delivery.lease_owner = None
    delivery.lease_expire_time = None
    delivery.deliver_time = None
    delivery.dead_letter_time = None
    delivery.update_time = now
    await session.flush()


def new_subscription(
    subscription_id: uuid.UUID,
    company_id: uuid.UUID,
    *,
    url: str,
    event_types: list[str],
    description: str,
    state: str,
    secret_ciphertext: bytes,
    secret_hint: str,
) -> WebhookSubscriptionRow:
    return WebhookSubscriptionRow(
        id=subscription_id,
        company_id=company_id,
        url=url,
        event_types=event_types,
        description=description,
        state=state,
        secret_ciphertext=secret_ciphertext,
        secret_hint=secret_hint,
    )
