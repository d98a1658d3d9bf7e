"""Composition root of the company service: settings → database → use cases → server.

The runtime every service shares (database, channels, token verifier, revocations,
server, shutdown, workers) comes from :mod:`cardinsa_foundation.host`; this module
wires company's own use cases and servicers onto it.

`python -m cardinsa_company.main` serves (``--workers N`` starts N processes, on
ports CARDINSA_WORKER_PORT_STEP apart).
`cardinsa_company.cli` has migrate, downgrade and
register-company. Access tokens are verified locally against identity's JWKS,
fetched over gRPC from ``identity_address``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import select

from cardinsa.company.v1 import (
    company_service_pb2,
    company_service_pb2_grpc,
    event_service_pb2,
    event_service_pb2_grpc,
    organization_service_pb2,
    organization_service_pb2_grpc,
    webhook_service_pb2,
    webhook_service_pb2_grpc,
)
from cardinsa_company.application.audit_log import AuditLogUseCases
from cardinsa_company.application.companies import CompanyUseCases
from cardinsa_company.application.context import CompanyContext
from cardinsa_company.application.organization import OrganizationUseCases
from cardinsa_company.application.webhooks import WebhookUseCases
from cardinsa_company.handlers.companies import CompanyServicer
from cardinsa_company.handlers.event_service import OUTBOX_TABLE, EventServicer
from cardinsa_company.handlers.events import company_events
from cardinsa_company.handlers.organization import OrganizationServicer
from cardinsa_company.handlers.webhooks import WebhookServicer
from cardinsa_company.repository.models import AuditEventRow, CompanyRow
from cardinsa_company.settings import CompanyServiceSettings
from cardinsa_foundation.audit import AuditWriter
from cardinsa_foundation.auth import TokenVerifier
from cardinsa_foundation.db import Database
from cardinsa_foundation.errors import NotFound
from cardinsa_foundation.host import ServiceApp, ServiceHost, registration, run_service
from cardinsa_foundation.interceptors import PrincipalCheck
from cardinsa_foundation.server_info import DependencyProbe
from cardinsa_foundation.tenancy import StatusFetcher, TenantStatus, TenantStatusCache
from cardinsa_foundation.use_cases import lookup_uuid

SERVICE_NAME = "company"
APIS = [
    "cardinsa.company.v1.CompanyService",
    "cardinsa.company.v1.OrganizationService",
    "cardinsa.company.v1.WebhookService",
    "cardinsa.company.v1.EventService",
]


def identity_probe(channel: grpc.aio.Channel, timeout_s: float) -> DependencyProbe:
    """Server-info probe of identity: its gRPC health, with a deadline."""
    stub = health_pb2_grpc.HealthStub(channel)

    async def probe() -> float:
        started = time.perf_counter()
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            raise RuntimeError("identity is not serving")
        return time.perf_counter() - started

    return probe


@dataclass
class CompanyApp(ServiceApp):
    ctx: CompanyContext
    companies: CompanyUseCases
    organization: OrganizationUseCases
    webhooks: WebhookUseCases


def local_status_fetcher(db: Database) -> StatusFetcher:
    """The company service answers tenant status from its own table."""

    async def fetch(company_id: str) -> TenantStatus:
        key = lookup_uuid(company_id)
        if key is None:
            raise NotFound("no such company")
        async with db.unit_of_work(company_id=key) as session:
            row = await session.scalar(select(CompanyRow).where(CompanyRow.id == key))
        if row is None:
            raise NotFound("no such company")
        return TenantStatus(
            company_id=company_id,
            state=row.state,
            default_currency=row.default_currency,
            time_zone=row.time_zone,
            locale=row.locale,
            active=row.state == "ACTIVE" and row.delete_time is None,
        )

    return fetch


def build(
    settings: CompanyServiceSettings,
    database_url: str,
    *,
    port: int | None = None,
    metrics_port: int | None = None,
    verifier: TokenVerifier | None = None,
    principal_check: PrincipalCheck | None = None,
) -> CompanyApp:
    """Wire the service; call from inside the event loop that will serve it (the
    channel to identity binds to it). ``verifier`` replaces the JWKS-from-identity
    verifier (tests); ``principal_check`` runs after authorization on every call
    (the tenant-status check)."""
    host = ServiceHost(SERVICE_NAME, settings, database_url, port=port, metrics_port=metrics_port)
    db = host.db
    if principal_check is None and settings.tenant_status_check:
        principal_check = TenantStatusCache(
            local_status_fetcher(db), ttl_s=settings.tenant_status_ttl_s
        ).check_principal
    identity_channel = host.channel(settings.identity_address)
    timeout_s = settings.identity_timeout_s
    if verifier is None:
        verifier = host.identity_verifier(identity_channel, timeout_s=timeout_s)
    host.follow_revocations(
        verifier, identity_channel, settings.service_api_key, timeout_s=timeout_s
    )
    ctx = CompanyContext(
        db=db, settings=settings, audit=AuditWriter(AuditEventRow), events=company_events()
    )
    companies = CompanyUseCases(ctx)
    organization = OrganizationUseCases(ctx)
    webhooks = WebhookUseCases(ctx)
    events = host.event_watch(OUTBOX_TABLE)
    info = host.server_info(APIS, identity=identity_probe(identity_channel, timeout_s))
    server = host.server(
        [
            registration(
                company_service_pb2,
                company_service_pb2_grpc,
                "CompanyService",
                CompanyServicer(companies, AuditLogUseCases(ctx), info),
            ),
            registration(
                organization_service_pb2,
                organization_service_pb2_grpc,
                "OrganizationService",
                OrganizationServicer(organization),
            ),
            registration(
                webhook_service_pb2,
                webhook_service_pb2_grpc,
                "WebhookService",
                WebhookServicer(webhooks),
            ),
            registration(
                event_service_pb2, event_service_pb2_grpc, "EventService", EventServicer(events)
            ),
        ],
        verifier=verifier,
        principal_check=principal_check,
    )
    return CompanyApp(
        ctx=ctx, server=server, companies=companies, organization=organization, webhooks=webhooks
    )


def main(argv: list[str] | None = None) -> int:
    return run_service(argv, name=SERVICE_NAME, settings_cls=CompanyServiceSettings, build=build)


if __name__ == "__main__":
    sys.exit(main())
