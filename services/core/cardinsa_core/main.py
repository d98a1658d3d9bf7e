"""Composition root of the core service: settings → database → use cases → server.

The runtime every service shares (database, channels, token verifier, revocations,
server, shutdown, workers) comes from :mod:`cardinsa_foundation.host`; this module
wires core's own use cases and servicers onto it.

`python -m cardinsa_core.main` serves (``--workers N`` starts N processes, on
ports CARDINSA_WORKER_PORT_STEP apart).
`cardinsa_core.cli` has migrate and downgrade.

What is wired to other services:
- identity: access tokens are verified against identity's JWKS, fetched over
  gRPC from ``identity_address`` (always);
- company: with ``company_address`` (and ``service_api_key``, exchanged with
  identity for core's service-account token) every call's tenant must be
  ACTIVE in the company service, products default to the company's currency
  and the business rules use its time zone, feature flags and limits; without
  it the settings fallback is used (every tenant active, currency from
  ``tenant_currencies`` / ``default_currency``, time zone from
  ``tenant_time_zones`` / ``default_time_zone``, flags from
  ``tenant_feature_flags``, limits from ``max_backdate_days`` /
  ``renewal_offer_days``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import grpc

from cardinsa.core.v1 import (
    billing_service_pb2,
    billing_service_pb2_grpc,
    claim_service_pb2,
    claim_service_pb2_grpc,
    core_service_pb2,
    core_service_pb2_grpc,
    document_service_pb2,
    document_service_pb2_grpc,
    event_service_pb2,
    event_service_pb2_grpc,
    payment_provider_service_pb2,
    payment_provider_service_pb2_grpc,
    policy_service_pb2,
    policy_service_pb2_grpc,
    policyholder_service_pb2,
    policyholder_service_pb2_grpc,
    product_service_pb2,
    product_service_pb2_grpc,
)
from cardinsa_core.application.audit_log import AuditLogUseCases
from cardinsa_core.application.billing import Billing
from cardinsa_core.application.claims import ClaimUseCases
from cardinsa_core.application.context import CoreContext, utc_now
from cardinsa_core.application.documents import DocumentUseCases
from cardinsa_core.application.payment_providers import ProviderEvents, providers_from_settings
from cardinsa_core.application.personal_data import DataSubjectRequests
from cardinsa_core.application.policies import PolicyUseCases
from cardinsa_core.application.policyholders import PolicyholderUseCases
from cardinsa_core.application.products import ProductUseCases
from cardinsa_core.application.tenants import (
    CompanyServiceDirectory,
    SettingsTenantDirectory,
    TenantDirectory,
)
from cardinsa_core.handlers.billing import BillingServicer
from cardinsa_core.handlers.claims import ClaimServicer
from cardinsa_core.handlers.core import CoreServicer
from cardinsa_core.handlers.documents import DocumentServicer
from cardinsa_core.handlers.event_service import OUTBOX_TABLE, EventServicer
from cardinsa_core.handlers.events import core_events
from cardinsa_core.handlers.payment_providers import PaymentProviderServicer
from cardinsa_core.handlers.policies import PolicyServicer
from cardinsa_core.handlers.policyholders import PolicyholderServicer
from cardinsa_core.handlers.products import ProductServicer
from cardinsa_core.repository import personal_data
from cardinsa_core.repository.models import AuditEventRow
from cardinsa_core.settings import CoreSettings
from cardinsa_foundation import tracing
from cardinsa_foundation.audit import AuditWriter
from cardinsa_foundation.config import Environment
from cardinsa_foundation.host import ServiceApp, ServiceHost, registration, run_service
from cardinsa_foundation.tenancy import (
    TenantStatusCache,
    api_key_credentials,
    company_status_fetcher,
)

log = logging.getLogger(__name__)

SERVICE_NAME = "core"
READ_POOL = f"{SERVICE_NAME}-read"
APIS = [
    "cardinsa.core.v1.CoreService",
    "cardinsa.core.v1.PolicyholderService",
    "cardinsa.core.v1.ProductService",
    "cardinsa.core.v1.PolicyService",
    "cardinsa.core.v1.ClaimService",
    "cardinsa.core.v1.BillingService",
    "cardinsa.core.v1.EventService",
    "cardinsa.core.v1.DocumentService",
    "cardinsa.core.v1.PaymentProviderService",
]


@dataclass
class CoreApp(ServiceApp):
    ctx: CoreContext
    policyholders: PolicyholderUseCases
    products: ProductUseCases
    policies: PolicyUseCases
    claims: ClaimUseCases
    documents: DocumentUseCases


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


def build(
    settings: CoreSettings,
    database_url: str,
    *,
    port: int | None = None,
    metrics_port: int | None = None,
    tenants: TenantDirectory | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> CoreApp:
    # Personal data at rest is encrypted with the keys of these settings.
    personal_data.use_settings(settings)
    host = ServiceHost(SERVICE_NAME, settings, database_url, port=port, metrics_port=metrics_port)
    db = host.db
    # GetPolicy's connections (Database.read), a pool of their own.
    host.watch_pool(READ_POOL, db.read_pool_status)
    identity_channel = host.channel(settings.identity_address)
    if tenants is None:
        tenants, company_channel = tenant_directory(settings, identity_channel)
        if company_channel is not None:
            host.on_close(company_channel.close)
    ctx = CoreContext(
        db=db,
        settings=settings,
        audit=AuditWriter(AuditEventRow),
        tenants=tenants,
        events=core_events(),
        clock=clock,
    )
    policyholders = PolicyholderUseCases(ctx)
    products = ProductUseCases(ctx)
    policies = PolicyUseCases(ctx)
    claims = ClaimUseCases(ctx)
    documents = DocumentUseCases(ctx)
    billing = Billing(ctx)
    provider_events = ProviderEvents(ctx, billing, providers_from_settings(settings))
    info = host.server_info(APIS)
    events = host.event_watch(OUTBOX_TABLE)
    verifier = host.identity_verifier(identity_channel)
    host.follow_revocations(verifier, identity_channel, settings.service_api_key)
    server = host.server(
        [
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
                PolicyholderServicer(policyholders, DataSubjectRequests(ctx)),
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
            registration(
                billing_service_pb2,
                billing_service_pb2_grpc,
                "BillingService",
                BillingServicer(billing),
            ),
            registration(
                event_service_pb2, event_service_pb2_grpc, "EventService", EventServicer(events)
            ),
            registration(
                document_service_pb2,
                document_service_pb2_grpc,
                "DocumentService",
                DocumentServicer(documents),
            ),
            registration(
                payment_provider_service_pb2,
                payment_provider_service_pb2_grpc,
                "PaymentProviderService",
                PaymentProviderServicer(provider_events),
            ),
        ],
        verifier=verifier,
        principal_check=tenants.check_principal,
    )
    return CoreApp(
        ctx=ctx,
        server=server,
        policyholders=policyholders,
        products=products,
        policies=policies,
        claims=claims,
        documents=documents,
    )


def main(argv: list[str] | None = None) -> int:
    return run_service(argv, name=SERVICE_NAME, settings_cls=CoreSettings, build=build)


if __name__ == "__main__":
    sys.exit(main())
