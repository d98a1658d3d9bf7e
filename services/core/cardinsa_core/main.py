"""Composition root of the core service: settings → database → use cases → server.

`python -m cardinsa_core.main` serves (``--workers N`` starts N processes, on
ports CARDINSA_WORKER_PORT_STEP apart).
`cardinsa_core.cli` has migrate and downgrade.

What is wired to other services:
- identity: access tokens are verified against identity's JWKS, fetched over
  gRPC from ``identity_address`` (always);
- company: with ``company_address`` (and ``service_api_key``, exchanged with
  identity for core's service-account token) every call's tenant must be
  ACTIVE in the company service and products default to the company's
  currency; without it the settings fallback is used (every tenant active,
  currency from ``tenant_currencies`` / ``default_currency``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import partial

import grpc

from cardinsa.core.v1 import (
    claim_service_pb2,
    claim_service_pb2_grpc,
    core_service_pb2,
    core_service_pb2_grpc,
    policy_service_pb2,
    policy_service_pb2_grpc,
    policyholder_service_pb2,
    policyholder_service_pb2_grpc,
    product_service_pb2,
    product_service_pb2_grpc,
)
from cardinsa_core.application.audit_log import AuditLogUseCases
from cardinsa_core.application.claims import ClaimUseCases
from cardinsa_core.application.context import CoreContext, utc_today
from cardinsa_core.application.policies import PolicyUseCases
from cardinsa_core.application.policyholders import PolicyholderUseCases
from cardinsa_core.application.products import ProductUseCases
from cardinsa_core.application.tenants import (
    CompanyServiceDirectory,
    SettingsTenantDirectory,
    TenantDirectory,
)
from cardinsa_core.clients.company import company_status_fetcher
from cardinsa_core.handlers.claims import ClaimServicer
from cardinsa_core.handlers.core import CoreServicer
from cardinsa_core.handlers.policies import PolicyServicer
from cardinsa_core.handlers.policyholders import PolicyholderServicer
from cardinsa_core.handlers.products import ProductServicer
from cardinsa_core.repository.models import AuditEventRow
from cardinsa_core.settings import CoreSettings
from cardinsa_foundation import __version__, metrics, tracing
from cardinsa_foundation.audit import AuditWriter
from cardinsa_foundation.auth import JwksCache, TokenVerifier, identity_jwks_fetcher
from cardinsa_foundation.config import Environment
from cardinsa_foundation.db import (
    Database,
    service_database_url,
)
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
from cardinsa_foundation.server_info import ServerInfoProvider
from cardinsa_foundation.tenancy import TenantStatusCache, api_key_credentials

log = logging.getLogger(__name__)

SERVICE_NAME = "core"
READ_POOL = f"{SERVICE_NAME}-read"
APIS = [
    "cardinsa.core.v1.CoreService",
    "cardinsa.core.v1.PolicyholderService",
    "cardinsa.core.v1.ProductService",
    "cardinsa.core.v1.PolicyService",
    "cardinsa.core.v1.ClaimService",
]


@dataclass
class CoreApp:
    ctx: CoreContext
    server: GrpcServer
    policyholders: PolicyholderUseCases
    products: ProductUseCases
    policies: PolicyUseCases
    claims: ClaimUseCases

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()


def tenant_directory(
    settings: CoreSettings, identity_channel: grpc.aio.Channel
) -> tuple[TenantDirectory, grpc.aio.Channel | None]:
    """The company service's view when it is configured, else the settings'."""
    fallback = SettingsTenantDirectory(settings)
    if not settings.company_address:
        return fallback, None
    service_api_key = settings.usable_service_api_key
    if service_api_key is None:
        # Core calls the company service as a service account; without its key
        # it cannot. Production refuses to start; elsewhere (make up) the
        # settings fallback keeps the suite usable, and says so.
        if settings.environment is Environment.PRODUCTION:
            raise RuntimeError("; ".join(message for _, message in settings.serving_problems()))
        log.warning(
            "no CARDINSA_SERVICE_API_KEY: tenant state and currency come from the settings, "
            "not from the company service"
        )
        return fallback, None
    channel = grpc.aio.insecure_channel(
        settings.company_address, interceptors=tracing.client_interceptors()
    )
    credentials = api_key_credentials(identity_channel, service_api_key)
    fetch = company_status_fetcher(channel, credentials, timeout_s=settings.company_call_timeout_s)
    cache = TenantStatusCache(fetch, ttl_s=settings.tenant_status_ttl_s)
    return CompanyServiceDirectory(cache, fallback), channel


def follow_revocations(
    settings: CoreSettings, verifier: TokenVerifier, identity_channel: grpc.aio.Channel
) -> RevocationSubscriber | None:
    """Refuse revoked tokens: follow identity's WatchRevocations as core's service
    account (``service_api_key``, permission ``revocations.watch``). Without the
    key (development only) revoked tokens work until they expire."""
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
    credentials = api_key_credentials(identity_channel, key)
    return follow_identity(verifier, identity_channel, credentials, settings, name=SERVICE_NAME)


def build(
    settings: CoreSettings,
    database_url: str,
    *,
    port: int | None = None,
    metrics_port: int | None = None,
    tenants: TenantDirectory | None = None,
    today: Callable[[], date] = utc_today,
) -> CoreApp:
    db = Database(database_url, settings, application_name=SERVICE_NAME)
    pool_stats = partial(metrics.PoolStats.from_pool, db.engine.pool)
    metrics.register_pool_collector(SERVICE_NAME, pool_stats)
    # GetPolicy's connections (Database.read), a pool of their own.
    read_pool_stats = db.read_pool_status
    metrics.register_pool_collector(READ_POOL, read_pool_stats)
    identity_channel = grpc.aio.insecure_channel(
        settings.identity_address, interceptors=tracing.client_interceptors()
    )
    company_channel: grpc.aio.Channel | None = None
    if tenants is None:
        tenants, company_channel = tenant_directory(settings, identity_channel)
    ctx = CoreContext(
        db=db,
        settings=settings,
        audit=AuditWriter(AuditEventRow),
        tenants=tenants,
        today=today,
    )
    policyholders = PolicyholderUseCases(ctx)
    products = ProductUseCases(ctx)
    policies = PolicyUseCases(ctx, products)
    claims = ClaimUseCases(ctx, policies, products)
    info = ServerInfoProvider(
        name=SERVICE_NAME,
        version=__version__,
        environment=settings.environment.value,
        apis=APIS,
        dependencies={"database": db.ping},
    )
    verifier = TokenVerifier(
        JwksCache(
            identity_jwks_fetcher(identity_channel),
            ttl_s=settings.jwks_cache_ttl_s,
            max_stale_s=settings.jwks_max_stale_s,
        ),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway_s=settings.clock_skew_s,
    )
    revocations = follow_revocations(settings, verifier, identity_channel)

    async def close() -> None:
        if revocations is not None:
            await revocations.stop()
        await identity_channel.close()
        if company_channel is not None:
            await company_channel.close()
        metrics.unregister_pool_collector(SERVICE_NAME, pool_stats)
        metrics.unregister_pool_collector(READ_POOL, read_pool_stats)
        await db.dispose()

    def registration(
        module: object, grpc_module: object, name: str, servicer: object
    ) -> ServiceRegistration:
        return ServiceRegistration(
            module.DESCRIPTOR.services_by_name[name],  # type: ignore[attr-defined]
            getattr(grpc_module, f"add_{name}Servicer_to_server"),
            servicer,
        )

    server = GrpcServer(
        name=SERVICE_NAME,
        services=[
            registration(
                core_service_pb2,
                core_service_pb2_grpc,
                "CoreService",
                CoreServicer(info, AuditLogUseCases(ctx)),
            ),
            registration(
                policyholder_service_pb2,
                policyholder_service_pb2_grpc,
                "PolicyholderService",
                PolicyholderServicer(policyholders),
            ),
            registration(
                product_service_pb2,
                product_service_pb2_grpc,
                "ProductService",
                ProductServicer(products),
            ),
            registration(
                policy_service_pb2,
                policy_service_pb2_grpc,
                "PolicyService",
                PolicyServicer(policies),
            ),
            registration(
                claim_service_pb2, claim_service_pb2_grpc, "ClaimService", ClaimServicer(claims)
            ),
        ],
        host=settings.grpc_host,
        port=settings.core_port if port is None else port,
        verifier=verifier,
        readiness=db,
        metrics_host=settings.metrics_host,
        metrics_port=settings.core_metrics_port if metrics_port is None else metrics_port,
        grace_period_s=settings.grace_period_s,
        drain_delay_s=settings.drain_delay_s,
        gateway_secret=settings.gateway_secret.get_secret_value()
        if settings.gateway_secret
        else None,
        principal_check=tenants.check_principal,
        on_start=[partial(start_following, revocations)] if revocations is not None else [],
        on_stop=[close],
    )
    return CoreApp(
        ctx=ctx,
        server=server,
        policyholders=policyholders,
        products=products,
        policies=policies,
        claims=claims,
    )


async def serve(settings: CoreSettings, index: int) -> None:
    url, embedded = service_database_url(settings)
    app = build(
        settings,
        url,
        port=settings.worker_port(settings.core_port, index),
        metrics_port=settings.worker_port(settings.core_metrics_port, index),
    )
    await app.server.serve_until_signal()
    if embedded is not None and embedded.started_here:
        embedded.stop()


def main(argv: list[str] | None = None) -> int:
    return service_main(argv, name=SERVICE_NAME, settings_cls=CoreSettings, serve=serve)


if __name__ == "__main__":
    sys.exit(main())
