"""Composition root of the identity service: settings → database → use cases → server.

The runtime every service shares (database, channels, token verifier, revocations,
server, shutdown, workers) comes from :mod:`cardinsa_foundation.host`; this module
wires identity's own use cases and servicers onto it.

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

from pydantic import ValidationError

from cardinsa.identity.v1 import (
    access_service_pb2,
    access_service_pb2_grpc,
    auth_service_pb2,
    auth_service_pb2_grpc,
    event_service_pb2,
    event_service_pb2_grpc,
    identity_service_pb2,
    identity_service_pb2_grpc,
    me_service_pb2,
    me_service_pb2_grpc,
    user_service_pb2,
    user_service_pb2_grpc,
)
from cardinsa_foundation.audit import AuditWriter
from cardinsa_foundation.auth import JwksCache
from cardinsa_foundation.config import get_settings
from cardinsa_foundation.context import PrincipalKind
from cardinsa_foundation.host import ServiceApp, ServiceHost, registration, run_service
from cardinsa_foundation.server import EXIT_CONFIG, refused_settings
from cardinsa_foundation.tenancy import (
    ServiceCredentials,
    TenantStatusCache,
    company_status_fetcher,
)
from cardinsa_identity.application.access import AccessUseCases
from cardinsa_identity.application.audit_log import AuditLogUseCases
from cardinsa_identity.application.auth import AuthUseCases
from cardinsa_identity.application.context import IdentityContext
from cardinsa_identity.application.email_change import EmailChangeUseCases
from cardinsa_identity.application.invitations import InvitationUseCases
from cardinsa_identity.application.mail import SmtpNotifier
from cardinsa_identity.application.me import MeUseCases
from cardinsa_identity.application.mfa import MfaUseCases
from cardinsa_identity.application.notifier import FileNotifier, Notifier
from cardinsa_identity.application.revocations import RevocationHub
from cardinsa_identity.application.signing_keys import SigningKeyStore
from cardinsa_identity.application.users import UserUseCases
from cardinsa_identity.domain.passwords import PasswordHasher
from cardinsa_identity.domain.signing_keys import PrivateKeyCipher
from cardinsa_identity.domain.tokens import build_access_claims, sign_access_token
from cardinsa_identity.handlers.access import AccessServicer
from cardinsa_identity.handlers.auth import AuthServicer, UserServicer
from cardinsa_identity.handlers.event_service import OUTBOX_TABLE, EventServicer
from cardinsa_identity.handlers.events import identity_events
from cardinsa_identity.handlers.identity import IdentityServicer
from cardinsa_identity.handlers.me import MeServicer
from cardinsa_identity.repository.models import AuditEventRow
from cardinsa_identity.settings import IdentitySettings, NotifierKind

SERVICE_NAME = "identity"
IDENTITY_SERVICE_SUBJECT = "service:identity"


APIS = [
    "cardinsa.identity.v1.IdentityService",
    "cardinsa.identity.v1.AuthService",
    "cardinsa.identity.v1.UserService",
    "cardinsa.identity.v1.MeService",
    "cardinsa.identity.v1.AccessService",
    "cardinsa.identity.v1.EventService",
]


@dataclass
class IdentityApp(ServiceApp):
    ctx: IdentityContext
    auth: AuthUseCases
    users: UserUseCases
    access: AccessUseCases

    async def prepare(self) -> None:
        """Load (or create) the signing keys and the built-in roles."""
        await self.ctx.keys.start()
        await self.access.ensure_built_in_roles()


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


def _notifier(settings: IdentitySettings, host: ServiceHost) -> Notifier:
    """The notifier the settings name. The SMTP notifier's sender task starts with
    the server and stops after the password-reset worker (registered first, so it
    runs last): resets queued at shutdown still reach the mail queue, which gets
    ``mail_shutdown_timeout_s`` to drain."""
    if settings.notifier == NotifierKind.SMTP:
        smtp = SmtpNotifier.from_settings(settings)
        host.on_start(smtp.start)
        host.on_close(smtp.stop)
        return smtp
    return FileNotifier(settings.notification_dir)


def signing_key_cipher(settings: IdentitySettings) -> PrivateKeyCipher:
    """The cipher of the stored private keys: the current encryption secret, and
    the previous ones still accepted while a rotation runs."""
    return PrivateKeyCipher(
        settings.signing_key_encryption_key.get_secret_value(),
        previous_secrets=[
            s.get_secret_value() for s in settings.signing_key_encryption_previous_keys
        ],
    )


def build(
    settings: IdentitySettings,
    database_url: str,
    *,
    port: int | None = None,
    metrics_port: int | None = None,
    notifier: Notifier | None = None,
) -> IdentityApp:
    if settings.is_production and (problems := settings.serving_problems()):
        raise RuntimeError("; ".join(message for _, message in problems))
    host = ServiceHost(SERVICE_NAME, settings, database_url, port=port, metrics_port=metrics_port)
    db = host.db
    hasher = PasswordHasher()
    host.on_close(hasher.close)
    cipher = signing_key_cipher(settings)
    keys = SigningKeyStore(
        db,
        cipher,
        publish_delay=timedelta(seconds=settings.signing_key_publish_delay_s),
        token_ttl=timedelta(seconds=settings.access_token_ttl_s + settings.clock_skew_s),
        refresh_interval_s=settings.signing_key_refresh_s,
    )
    host.on_close(keys.stop)
    if notifier is None:
        notifier = _notifier(settings, host)
    ctx = IdentityContext(
        db=db,
        settings=settings,
        hasher=hasher,
        keys=keys,
        notifier=notifier,
        audit=AuditWriter(AuditEventRow),
        events=identity_events(),
        cipher=cipher,
    )
    if settings.company_address:
        ctx.tenants = TenantStatusCache(
            company_status_fetcher(
                host.channel(settings.company_address),
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
    host.on_start(hub.start)
    host.on_drain(hub.end_streams)
    auth = AuthUseCases(ctx)
    users = UserUseCases(ctx)
    access = AccessUseCases(ctx)
    invitations = InvitationUseCases(ctx, users)
    email_changes = EmailChangeUseCases(ctx, auth)
    mfa = MfaUseCases(ctx, users, auth)
    host.on_close(auth.wait_for_background)
    host.on_close(hub.stop)
    info = host.server_info(APIS)
    events = host.event_watch(OUTBOX_TABLE)
    # Identity verifies its own tokens against the keys it holds in memory;
    # the short TTL makes a rotation visible here within seconds.
    verifier = host.verifier(
        JwksCache(
            keys.fetch_jwks,
            ttl_s=5.0,
            min_refetch_interval_s=1.0,
            max_stale_s=settings.jwks_max_stale_s,
        )
    )
    if settings.revocation_check:
        verifier.revocations = hub.revocations
    server = host.server(
        [
            registration(
                identity_service_pb2,
                identity_service_pb2_grpc,
                "IdentityService",
                IdentityServicer(ctx, info, AuditLogUseCases(ctx)),
            ),
            registration(
                auth_service_pb2,
                auth_service_pb2_grpc,
                "AuthService",
                AuthServicer(auth, invitations, email_changes),
            ),
            registration(
                user_service_pb2,
                user_service_pb2_grpc,
                "UserService",
                UserServicer(users, invitations, mfa),
            ),
            registration(
                me_service_pb2,
                me_service_pb2_grpc,
                "MeService",
                MeServicer(MeUseCases(users, auth, email_changes), mfa),
            ),
            registration(
                access_service_pb2,
                access_service_pb2_grpc,
                "AccessService",
                AccessServicer(access),
            ),
            registration(
                event_service_pb2, event_service_pb2_grpc, "EventService", EventServicer(events)
            ),
        ],
        verifier=verifier,
        principal_check=ctx.tenants.check_principal if ctx.tenants is not None else None,
    )
    return IdentityApp(ctx=ctx, server=server, auth=auth, users=users, access=access)


def main(argv: list[str] | None = None) -> int:
    try:
        settings = get_settings(IdentitySettings)
    except ValidationError as error:
        return refused_settings(SERVICE_NAME, error)
    if settings.is_production and (problems := settings.serving_problems()):
        # Before any worker starts: one line, the exit code of a configuration error.
        for _, message in problems:
            print(f"identity cannot serve: {message}", file=sys.stderr, flush=True)
        return EXIT_CONFIG
    return run_service(argv, name=SERVICE_NAME, settings_cls=IdentitySettings, build=build)


if __name__ == "__main__":
    sys.exit(main())
