"""Composition root of the identity service: settings → database → use cases → server.

`python -m cardinsa_identity.main` serves (``--workers N`` starts N processes, on
ports CARDINSA_WORKER_PORT_STEP apart).
`cardinsa_identity.cli` has migrate, create-platform-admin
and seed-demo.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

import grpc

from cardinsa.identity.v1 import (
    access_service_pb2,
    access_service_pb2_grpc,
    auth_service_pb2,
    auth_service_pb2_grpc,
    identity_service_pb2,
    identity_service_pb2_grpc,
    user_service_pb2,
    user_service_pb2_grpc,
)
from cardinsa_foundation import __version__, metrics, tracing
from cardinsa_foundation.audit import AuditWriter
from cardinsa_foundation.auth import JwksCache, TokenVerifier
from cardinsa_foundation.context import PrincipalKind
from cardinsa_foundation.db import (
    Database,
    service_database_url,
)
from cardinsa_foundation.server import (
    GrpcServer,
    ServiceRegistration,
    service_main,
)
from cardinsa_foundation.server_info import ServerInfoProvider
from cardinsa_foundation.tenancy import (
    ServiceCredentials,
    TenantStatusCache,
    company_status_fetcher,
)
from cardinsa_identity.application.access import AccessUseCases
from cardinsa_identity.application.audit_log import AuditLogUseCases
from cardinsa_identity.application.auth import AuthUseCases
from cardinsa_identity.application.context import IdentityContext
from cardinsa_identity.application.notifier import FileNotifier, Notifier
from cardinsa_identity.application.revocations import RevocationHub
from cardinsa_identity.application.signing_keys import SigningKeyStore
from cardinsa_identity.application.users import UserUseCases
from cardinsa_identity.domain.passwords import PasswordHasher
from cardinsa_identity.domain.signing_keys import PrivateKeyCipher
from cardinsa_identity.domain.tokens import build_access_claims, sign_access_token
from cardinsa_identity.handlers.access import AccessServicer
from cardinsa_identity.handlers.auth import AuthServicer, UserServicer
from cardinsa_identity.handlers.identity import IdentityServicer
from cardinsa_identity.repository.models import AuditEventRow
from cardinsa_identity.settings import IdentitySettings

SERVICE_NAME = "identity"
IDENTITY_SERVICE_SUBJECT = "service:identity"


@dataclass
class IdentityApp:
    ctx: IdentityContext
    server: GrpcServer
    auth: AuthUseCases
    users: UserUseCases
    access: AccessUseCases

    async def prepare(self) -> None:
        """Load (or create) the signing keys and the built-in roles."""
        await self.ctx.keys.start()
        await self.access.ensure_built_in_roles()

    async def start(self) -> None:
        await self.prepare()
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()


def _self_signed_service_token(
    ctx: IdentityContext,
) -> Callable[[], Awaitable[tuple[str, float]]]:
    """Identity's own service token (it holds the signing key, so it needs no API
    key): a platform service account with only the permissions identity uses."""

    async def obtain() -> tuple[str, float]:
        claims = build_access_claims(
            issuer=ctx.settings.jwt_issuer,
            audience=ctx.settings.jwt_audience,
            subject=IDENTITY_SERVICE_SUBJECT,
            kind=PrincipalKind.SERVICE_ACCOUNT,
            company_id=None,
            roles=[],
            permissions=["companies.get_status"],
            ttl=timedelta(seconds=ctx.settings.access_token_ttl_s),
        )
        return sign_access_token(claims, ctx.keys.signer), float(claims["exp"])

    return obtain


def build(
    settings: IdentitySettings,
    database_url: str,
    *,
    port: int | None = None,
    metrics_port: int | None = None,
    notifier: Notifier | None = None,
) -> IdentityApp:
    db = Database(database_url, settings, application_name=SERVICE_NAME)
    pool_stats = partial(metrics.PoolStats.from_pool, db.engine.pool)
    metrics.register_pool_collector(SERVICE_NAME, pool_stats)
    hasher = PasswordHasher()
    keys = SigningKeyStore(
        db,
        PrivateKeyCipher(settings.signing_key_encryption_key.get_secret_value()),
        publish_delay=timedelta(seconds=settings.signing_key_publish_delay_s),
        token_ttl=timedelta(seconds=settings.access_token_ttl_s + settings.clock_skew_s),
        refresh_interval_s=settings.signing_key_refresh_s,
    )
    ctx = IdentityContext(
        db=db,
        settings=settings,
        hasher=hasher,
        keys=keys,
        notifier=notifier or FileNotifier(settings.notification_dir),
        audit=AuditWriter(AuditEventRow),
    )
    company_channel: grpc.aio.Channel | None = None
    if settings.company_address:
        company_channel = grpc.aio.insecure_channel(
            settings.company_address, interceptors=tracing.client_interceptors()
        )
        ctx.tenants = TenantStatusCache(
            company_status_fetcher(
                company_channel,
                ServiceCredentials(_self_signed_service_token(ctx)),
                timeout_s=settings.company_timeout_s,
            ),
            ttl_s=settings.tenant_status_ttl_s,
        )
    # Revoked tokens: followed from the table, checked here, streamed to the
    # other services (WatchRevocations).
    ctx.revocations = hub = RevocationHub(
        db,
        settings,
        poll_s=settings.revocation_poll_s,
        heartbeat_s=settings.revocation_heartbeat_s,
        stream_max_s=settings.revocation_stream_max_s,
    )
    auth = AuthUseCases(ctx)
    users = UserUseCases(ctx)
    access = AccessUseCases(ctx)
    info = ServerInfoProvider(
        name=SERVICE_NAME,
        version=__version__,
        environment=settings.environment.value,
        apis=[
            "cardinsa.identity.v1.IdentityService",
            "cardinsa.identity.v1.AuthService",
            "cardinsa.identity.v1.UserService",
            "cardinsa.identity.v1.AccessService",
        ],
        dependencies={"database": db.ping},
    )
    # Identity verifies its own tokens against the keys it holds in memory;
    # the short TTL makes a rotation visible here within seconds.
    verifier = TokenVerifier(
        JwksCache(
            keys.fetch_jwks,
            ttl_s=5.0,
            min_refetch_interval_s=1.0,
            max_stale_s=settings.jwks_max_stale_s,
        ),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway_s=settings.clock_skew_s,
    )
    if settings.revocation_check:
        verifier.revocations = hub.revocations

    async def close() -> None:
        await hub.stop()
        await auth.wait_for_background()
        if company_channel is not None:
            await company_channel.close()
        await keys.stop()
        hasher.close()
        metrics.unregister_pool_collector(SERVICE_NAME, pool_stats)
        await db.dispose()

    server = GrpcServer(
        name=SERVICE_NAME,
        services=[
            ServiceRegistration(
                identity_service_pb2.DESCRIPTOR.services_by_name["IdentityService"],
                identity_service_pb2_grpc.add_IdentityServiceServicer_to_server,
                IdentityServicer(ctx, info, AuditLogUseCases(ctx)),
            ),
            ServiceRegistration(
                auth_service_pb2.DESCRIPTOR.services_by_name["AuthService"],
                auth_service_pb2_grpc.add_AuthServiceServicer_to_server,
                AuthServicer(auth),
            ),
            ServiceRegistration(
                user_service_pb2.DESCRIPTOR.services_by_name["UserService"],
                user_service_pb2_grpc.add_UserServiceServicer_to_server,
                UserServicer(users),
            ),
            ServiceRegistration(
                access_service_pb2.DESCRIPTOR.services_by_name["AccessService"],
                access_service_pb2_grpc.add_AccessServiceServicer_to_server,
                AccessServicer(access),
            ),
        ],
        host=settings.grpc_host,
        port=settings.identity_port if port is None else port,
        verifier=verifier,
        readiness=db,
        metrics_host=settings.metrics_host,
        metrics_port=settings.identity_metrics_port if metrics_port is None else metrics_port,
        grace_period_s=settings.grace_period_s,
        drain_delay_s=settings.drain_delay_s,
        gateway_secret=settings.gateway_secret.get_secret_value()
        if settings.gateway_secret
        else None,
        principal_check=ctx.tenants.check_principal if ctx.tenants is not None else None,
        on_start=[hub.start],
        on_drain=[hub.end_streams],
        on_stop=[close],
    )
    return IdentityApp(ctx=ctx, server=server, auth=auth, users=users, access=access)


async def serve(settings: IdentitySettings, index: int) -> None:
    url, embedded = service_database_url(settings)
    app = build(
        settings,
        url,
        port=settings.worker_port(settings.identity_port, index),
        metrics_port=settings.worker_port(settings.identity_metrics_port, index),
    )
    await app.prepare()
    await app.server.serve_until_signal()
    if embedded is not None and embedded.started_here:
        embedded.stop()


def main(argv: list[str] | None = None) -> int:
    return service_main(argv, name=SERVICE_NAME, settings_cls=IdentitySettings, serve=serve)


if __name__ == "__main__":
    sys.exit(main())
