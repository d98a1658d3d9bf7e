"""Client-side helpers for the company tests: the harness the `company` fixture yields."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from support.identity_harness import Account, IdentityHarness

from cardinsa.company.v1 import (
    company_service_pb2,
    company_service_pb2_grpc,
    organization_service_pb2_grpc,
    resources_pb2,
    webhook_service_pb2_grpc,
)
from cardinsa_company.main import CompanyApp
from cardinsa_company.repository.models import (
    WebhookDeliveryAttemptRow,
    WebhookDeliveryRow,
    WebhookEventRow,
)

Metadata = list[tuple[str, str]]
# Tokens live 15 minutes; reuse one for at most 10.
_TOKEN_REUSE_S = 600


@dataclass
class CompanyHarness:
    app: CompanyApp
    channel: grpc.aio.Channel
    identity: IdentityHarness
    company_a: resources_pb2.Company = field(init=False)
    company_b: resources_pb2.Company = field(init=False)
    companies: Any = field(init=False)
    org: Any = field(init=False)
    webhooks: Any = field(init=False)
    _tokens: dict[str, tuple[str, float]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.companies = company_service_pb2_grpc.CompanyServiceStub(self.channel)
        self.org = organization_service_pb2_grpc.OrganizationServiceStub(self.channel)
        self.webhooks = webhook_service_pb2_grpc.WebhookServiceStub(self.channel)

    @property
    def platform_admin(self) -> Account:
        return self.identity.platform_admin

    @property
    def admin_a(self) -> Account:
        return self.identity.admin_a

    @property
    def admin_b(self) -> Account:
        return self.identity.admin_b

    async def as_(self, account: Account) -> Metadata:
        """Bearer metadata of ``account`` (a real login at identity, reused a while)."""
        cached = self._tokens.get(account.email)
        if cached is None or time.monotonic() - cached[1] > _TOKEN_REUSE_S:
            cached = (await self.identity.token(account), time.monotonic())
            self._tokens[account.email] = cached
        return self.identity.bearer(cached[0])

    async def create_company(
        self, *, company_id: str = "", request_id: str = "", **fields: Any
    ) -> resources_pb2.Company:
        """A new company created by the platform admin (valid defaults for the
        required fields, overridden by ``fields``)."""
        values: dict[str, Any] = {
            "display_name": f"Company {uuid.uuid4().hex[:8]}",
            "country": "DE",
            "default_currency": "EUR",
            "time_zone": "Europe/Berlin",
        }
        values.update(fields)
        reply: resources_pb2.Company = await self.companies.CreateCompany(
            company_service_pb2.CreateCompanyRequest(
                company=resources_pb2.Company(**values),
                company_id=company_id,
                request_id=request_id,
            ),
            metadata=await self.as_(self.platform_admin),
        )
        return reply

    async def insert_deliveries(
        self, company_id: str, subscription_id: str, states: list[str]
    ) -> list[str]:
        """Deliveries as the event dispatcher writes them (directly in the
        database): one event and delivery per state, oldest first, each with two
        failed attempts (inserted out of order), a pending one leased; their ids."""
        ids: list[str] = []
        base = datetime.now(UTC) - timedelta(hours=1)
        tenant = uuid.UUID(company_id)
        async with self.app.ctx.db.unit_of_work(company_id=tenant) as session:
            for index, state in enumerate(states):
                event = WebhookEventRow(
                    id=uuid.uuid4(),
                    company_id=tenant,
                    source="core",
                    type="cardinsa.core.claim.opened.v1",
                    subject=f"claims/{uuid.uuid4()}",
                    ordering_key=f"claims/{index}",
                    time=base,
                    body=b"{}",
                )
                session.add(event)
                await session.flush()
                finished = state != "PENDING"
                delivery = WebhookDeliveryRow(
                    id=uuid.uuid4(),
                    company_id=tenant,
                    subscription_id=uuid.UUID(subscription_id),
                    event_id=event.id,
                    event_type=event.type,
                    subject=event.subject,
                    ordering_key=event.ordering_key,
                    event_time=event.time,
                    state=state,
                    attempt_count=2 if finished else 1,
                    total_attempt_count=2 if finished else 1,
                    next_attempt_time=base,
                    lease_owner=None if finished else "worker-1",
                    lease_expire_time=None if finished else base + timedelta(hours=2),
                    last_status_code=200 if state == "DELIVERED" else 503,
                    last_error="" if state == "DELIVERED" else "HTTP 503",
                    create_time=base + timedelta(minutes=index),
                    deliver_time=base if state == "DELIVERED" else None,
                    dead_letter_time=base if state == "DEAD_LETTERED" else None,
                )
                session.add(delivery)
                await session.flush()
                for number in (2, 1):
                    session.add(
                        WebhookDeliveryAttemptRow(
                            id=uuid.uuid4(),
                            company_id=tenant,
                            delivery_id=delivery.id,
                            number=number,
                            start_time=base + timedelta(seconds=number),
                            duration_ms=12,
                            status_code=503,
                            succeeded=False,
                            error="HTTP 503",
                            response_excerpt="busy",
                        )
                    )
                ids.append(str(delivery.id))
        return ids


async def failure(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value
