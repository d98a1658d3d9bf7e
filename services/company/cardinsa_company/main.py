"""Composition root of the company service: settings → database → use cases → server.

`python -m cardinsa_company.main` serves (``--workers N`` starts N processes, on
ports CARDINSA_WORKER_PORT_STEP apart).
`cardinsa_company.cli` has migrate, downgrade and
register-company. Access tokens are verified locally against identity's JWKS,
fetched over gRPC from ``identity_address``.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from functools import partial

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import select

from cardinsa.company.v1 import (
    company_service_pb2,
    company_service_pb2_grpc,
    organization_service_pb2,
    organization_service_pb2_grpc,
)
from cardinsa_company.application.audit_log import AuditLogUseCases
from cardinsa_company.application.companies import CompanyUseCases
from cardinsa_company.application.context import CompanyContext
from cardinsa_company.application.organization import OrganizationUseCases
from cardinsa_company.handlers.companies import CompanyServicer
from cardinsa_company.handlers.organization import OrganizationServicer
from cardinsa_company.repository.models import AuditEventRow, CompanyRow
from cardinsa_company.settings import CompanyServiceSettings
from cardinsa_foundation import __version__, metrics, tracing
from cardinsa_foundation.audit import AuditWriter
from cardinsa_foundation.auth import JwksCache, TokenVerifier, identity_jwks_fetcher
from cardinsa_foundation.config import Environment
from cardinsa_foundation.db import (
    Database,
    service_database_url,
)
from cardinsa_foundation.errors import NotFound
from cardinsa_foundation.interceptors import PrincipalCheck
from cardinsa_foundation.revocation import (
    RevocationSubscriber,
    follow_identity,
    start_following,
    usable_api_key,
)
from cardinsa_foundation.server import (
    GrpcServer,
    ServiceRegistration,
    service_main,
)
from cardinsa_foundation.server_info import DependencyProbe, ServerInfoProvider
from cardinsa_foundation.tenancy import (
    StatusFetcher,
    TenantStatus,
    TenantStatusCache,
    api_key_credentials,
)
from cardinsa_foundation.use_cases import lookup_uuid

SERVICE_NAME = "company"
log = logging.getLogger(__name__)


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
class CompanyApp:
    ctx: CompanyContext
    server: GrpcServer
    companies: CompanyUseCases
    organization: OrganizationUseCases

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()


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


def follow_revocations(
    settings: CompanyServiceSettings, verifier: TokenVerifier, identity_channel: grpc.aio.Channel
) -> RevocationSubscriber | None:
    """Refuse revoked tokens: follow identity's WatchRevocations as company's
    service account (``service_api_key``, permission ``revocations.watch``).
    Without the key (development only) revoked tokens work until they expire."""
    if not settings.revocation_check:
        return None
    key = usable_api_key(settings.service_api_key)
    if key is None:
        if settings.environment is Environment.PRODUCTION:
            raise RuntimeError(
                "CARDINSA_SERVICE_API_KEY (cdk_..., permission revocations.watch) is needed "
                "to follow identity's token revocations"
            )
        log.warning(
            "no CARDINSA_SERVICE_API_KEY: revoked access tokens are accepted until they expire"
        )
        return None
    credentials = api_key_credentials(identity_channel, key, timeout_s=settings.identity_timeout_s)
    return follow_identity(verifier, identity_channel, credentials, settings, name=SERVICE_NAME)


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
    db = Database(database_url, settings, application_name=SERVICE_NAME)
    if principal_check is None and settings.tenant_status_check:
        principal_check = TenantStatusCache(
            local_status_fetcher(db), ttl_s=settings.tenant_status_ttl_s
        ).check_principal
    pool_stats = partial(metrics.PoolStats.from_pool, db.engine.pool)
    metrics.register_pool_collector(SERVICE_NAME, pool_stats)
    identity_channel = grpc.aio.insecure_channel(
        settings.identity_address, interceptors=tracing.client_interceptors()
    )
    if verifier is None:
        verifier = TokenVerifier(
            JwksCache(
                identity_jwks_fetcher(identity_channel, timeout_s=settings.identity_timeout_s),
                ttl_s=settings.jwks_cache_ttl_s,
                max_stale_s=settings.jwks_max_stale_s,
            ),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            leeway_s=settings.clock_skew_s,
        )
    revocations = follow_revocations(settings, verifier, identity_channel)
    ctx = CompanyContext(db=db, settings=settings, audit=AuditWriter(AuditEventRow))
    companies = CompanyUseCases(ctx)
    organization = OrganizationUseCases(ctx)
    info = ServerInfoProvider(
        name=SERVICE_NAME,
        version=__version__,
        environment=settings.environment.value,
        apis=["cardinsa.company.v1.CompanyService", "cardinsa.company.v1.OrganizationService"],
        dependencies={
            "database": db.ping,
            "identity": identity_probe(identity_channel, settings.identity_timeout_s),
        },
    )

    async def close() -> None:
        if revocations is not None:
            await revocations.stop()
        await identity_channel.close()
        metrics.unregister_pool_collector(SERVICE_NAME, pool_stats)
        await db.dispose()

    server = GrpcServer(
        name=SERVICE_NAME,
        services=[
            ServiceRegistration(
                company_service_pb2.DESCRIPTOR.services_by_name["CompanyService"],
                company_service_pb2_grpc.add_CompanyServiceServicer_to_server,
                CompanyServicer(companies, AuditLogUseCases(ctx), info),
            ),
            ServiceRegistration(
                organization_service_pb2.DESCRIPTOR.services_by_name["OrganizationService"],
                organization_service_pb2_grpc.add_OrganizationServiceServicer_to_server,
                OrganizationServicer(organization),
            ),
        ],
        host=settings.grpc_host,
        port=settings.company_port if port is None else port,
        verifier=verifier,
        readiness=db,
        metrics_host=settings.metrics_host,
        metrics_port=settings.company_metrics_port if metrics_port is None else metrics_port,
        grace_period_s=settings.grace_period_s,
        drain_delay_s=settings.drain_delay_s,
        gateway_secret=settings.gateway_secret.get_secret_value()
        if settings.gateway_secret
        else None,
        principal_check=principal_check,
        on_start=[partial(start_following, revocations)] if revocations is not None else [],
        on_stop=[close],
    )
    return CompanyApp(ctx=ctx, server=server, companies=companies, organization=organization)


async def serve(settings: CompanyServiceSettings, index: int) -> None:
    url, embedded = service_database_url(settings)
    app = build(
        settings,
        url,
        port=settings.worker_port(settings.company_port, index),
        metrics_port=settings.worker_port(settings.company_metrics_port, index),
    )
    await app.server.serve_until_signal()
    if embedded is not None and embedded.started_here:
        embedded.stop()


def main(argv: list[str] | None = None) -> int:
    return service_main(argv, name=SERVICE_NAME, settings_cls=CompanyServiceSettings, serve=serve)


if __name__ == "__main__":
    sys.exit(main())
