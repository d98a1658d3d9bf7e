"""The service host: what every service's composition root builds, built once.

A service's ``main.build()`` makes a :class:`ServiceHost` and wires only its own
use cases and servicers; the host owns the rest:

- the :class:`~cardinsa_foundation.db.Database` (``application_name`` = the
  service's name) and its pool metrics;
- outgoing channels (with the tracing/request-id client interceptors);
- the token verifier, against identity's JWKS or any other key source;
- following identity's token revocations as the service's own account
  (``service_api_key``, permission ``revocations.watch``);
- the outbox watch (``EventService.WatchEvents``) over the service's outbox
  table, its streams ended when the server drains;
- the server-info provider, and the :class:`~cardinsa_foundation.server.GrpcServer`
  (health, reflection, metrics, tracing, drain and grace period) on the
  service's ports: ``<name>_port`` and ``<name>_metrics_port`` of its settings;
- shutdown: what was opened is closed in reverse order, each step on its own
  (a failing step is logged, the next ones still run).

:func:`run_service` is a service's ``main()``: ``--workers``, the embedded
database, serve until SIGTERM/SIGINT (see :func:`cardinsa_foundation.server.service_main`).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import grpc

from cardinsa_foundation import metrics, tracing
from cardinsa_foundation.auth import JwksCache, TokenVerifier, identity_jwks_fetcher
from cardinsa_foundation.build import BuildInfo
from cardinsa_foundation.config import Environment, Settings
from cardinsa_foundation.db import Database, service_database_url
from cardinsa_foundation.event_watch import EventWatch
from cardinsa_foundation.interceptors import PrincipalCheck
from cardinsa_foundation.revocation import (
    RevocationSubscriber,
    follow_identity,
    start_following,
    usable_api_key,
)
from cardinsa_foundation.server import GrpcServer, ServiceRegistration, service_main
from cardinsa_foundation.server_info import DependencyProbe, ServerInfoProvider
from cardinsa_foundation.tenancy import api_key_credentials

log = logging.getLogger(__name__)

SettingsT = TypeVar("SettingsT", bound=Settings)
ShutdownStep = Callable[[], Awaitable[None] | None]


def registration(module: Any, grpc_module: Any, name: str, servicer: object) -> ServiceRegistration:
    """``name`` (e.g. "PolicyService") of a generated ``*_pb2`` module, served by
    ``servicer`` through the ``*_pb2_grpc`` module's ``add_<name>Servicer_to_server``."""
    return ServiceRegistration(
        module.DESCRIPTOR.services_by_name[name],
        getattr(grpc_module, f"add_{name}Servicer_to_server"),
        servicer,
    )


class ServiceHost:
    """The shared runtime of one service process (see the module docstring).

    ``port`` / ``metrics_port`` default to the settings' ``<name>_port`` and
    ``<name>_metrics_port`` (the names every service's settings use). Create it
    inside the event loop that will serve (channels bind to it).
    """

    def __init__(
        self,
        name: str,
        settings: Settings,
        database_url: str,
        *,
        port: int | None = None,
        metrics_port: int | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.port: int = getattr(settings, f"{name}_port") if port is None else port
        self.metrics_port: int | None = (
            getattr(settings, f"{name}_metrics_port") if metrics_port is None else metrics_port
        )
        self._shutdown: list[ShutdownStep] = []
        self._on_start: list[Callable[[], Awaitable[None]]] = []
        self._on_drain: list[Callable[[], None]] = []
        self.db = Database(database_url, settings, application_name=name)
        self.on_close(self.db.dispose)
        self.watch_pool(name, self.db.pool_status)

    # ------------------------------------------------------------ lifecycle

    def on_close(self, step: ShutdownStep) -> None:
        """Run ``step`` when the server stops; steps run last-registered first."""
        self._shutdown.append(step)

    def on_start(self, step: Callable[[], Awaitable[None]]) -> None:
        """Run ``step`` before the server listens (register before :meth:`server`)."""
        self._on_start.append(step)

    def on_drain(self, step: Callable[[], None]) -> None:
        """Run ``step`` when the drain starts (register before :meth:`server`)."""
        self._on_drain.append(step)

    async def close(self) -> None:
        for step in reversed(self._shutdown):
            try:
                result = step()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("shutdown step failed")
        self._shutdown.clear()

    # ------------------------------------------------------------ resources

    def watch_pool(self, pool: str, stats: Callable[[], Any]) -> None:
        """Export a connection pool's gauges under ``pool`` while the service runs."""
        metrics.register_pool_collector(pool, stats)
        self.on_close(partial(metrics.unregister_pool_collector, pool, stats))

    def channel(self, address: str) -> grpc.aio.Channel:
        """A channel to another service, closed on shutdown."""
        channel = grpc.aio.insecure_channel(address, interceptors=tracing.client_interceptors())
        self.on_close(channel.close)
        return channel

    def verifier(self, jwks: JwksCache) -> TokenVerifier:
        """Access tokens checked against ``jwks`` with the settings' issuer, audience, skew."""
        settings = self.settings
        return TokenVerifier(
            jwks,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            leeway_s=settings.clock_skew_s,
        )

    def identity_verifier(
        self, identity_channel: grpc.aio.Channel, *, timeout_s: float = 2.0
    ) -> TokenVerifier:
        """Access tokens checked against identity's JWKS, fetched over gRPC."""
        return self.verifier(
            JwksCache(
                identity_jwks_fetcher(identity_channel, timeout_s=timeout_s),
                ttl_s=self.settings.jwks_cache_ttl_s,
                max_stale_s=self.settings.jwks_max_stale_s,
            )
        )

    def follow_revocations(
        self,
        verifier: TokenVerifier,
        identity_channel: grpc.aio.Channel,
        service_api_key: Any,
        *,
        timeout_s: float = 3.0,
    ) -> RevocationSubscriber | None:
        """Refuse revoked tokens: follow identity's WatchRevocations as this
        service's account (``service_api_key``, permission ``revocations.watch``),
        from the server's start to its stop. Without the key (development only)
        revoked tokens work until they expire; production refuses to start."""
        if not self.settings.revocation_check:
            return None
        key = usable_api_key(service_api_key)
        if key is None:
            if self.settings.environment is Environment.PRODUCTION:
                raise RuntimeError(
                    "CARDINSA_SERVICE_API_KEY (cdk_..., permission revocations.watch) is needed "
                    "to follow identity's token revocations"
                )
            log.warning(
                "no CARDINSA_SERVICE_API_KEY: revoked access tokens are accepted until they expire"
            )
            return None
        credentials = api_key_credentials(identity_channel, key, timeout_s=timeout_s)
        subscriber = follow_identity(
            verifier, identity_channel, credentials, self.settings, name=self.name
        )
        self.on_start(partial(start_following, subscriber))
        self.on_close(subscriber.stop)
        return subscriber

    def event_watch(self, table: str) -> EventWatch:
        """``EventService.WatchEvents`` over the outbox ``table`` (``<schema>.<table>``),
        with the settings' poll, heartbeat and stream length; its streams end
        when the server drains (register before :meth:`server`)."""
        settings = self.settings
        watch = EventWatch(
            self.db,
            table,
            poll_s=settings.event_watch_poll_s,
            heartbeat_s=settings.event_watch_heartbeat_s,
            stream_max_s=settings.event_watch_stream_max_s,
        )
        self.on_drain(watch.end_streams)
        return watch

    # ------------------------------------------------------------ serving

    def server_info(
        self, apis: Iterable[str], *, package: str | None = None, **dependencies: DependencyProbe
    ) -> ServerInfoProvider:
        """What GetServerInfo answers: this service (its version is that of the
        distribution shipping ``package``, by default ``cardinsa_<name>``), its
        build, its APIs, the database and ``dependencies`` probed. Publishes
        ``cardinsa_build_info`` too."""
        build = BuildInfo.of(
            self.name,
            package or f"cardinsa_{self.name}",
            commit=self.settings.build_commit,
            build_time=self.settings.build_time,
        )
        metrics.set_build_info(build)
        return ServerInfoProvider(
            build=build,
            environment=self.settings.environment.value,
            apis=list(apis),
            dependencies={"database": self.db.ping, **dependencies},
        )

    def server(
        self,
        services: Sequence[ServiceRegistration],
        *,
        verifier: TokenVerifier | None,
        principal_check: PrincipalCheck | None = None,
    ) -> GrpcServer:
        """The gRPC server of these services; its stop closes the host."""
        settings = self.settings
        # Every service's settings have it (CARDINSA_GATEWAY_SECRET); not the base's.
        secret = getattr(settings, "gateway_secret", None)
        return GrpcServer(
            name=self.name,
            services=services,
            host=settings.grpc_host,
            port=self.port,
            verifier=verifier,
            readiness=self.db,
            metrics_host=settings.metrics_host,
            metrics_port=self.metrics_port,
            grace_period_s=settings.grace_period_s,
            drain_delay_s=settings.drain_delay_s,
            gateway_secret=secret.get_secret_value() if secret else None,
            principal_check=principal_check,
            on_start=self._on_start,
            on_drain=self._on_drain,
            on_stop=[self.close],
        )


@dataclass
class ServiceApp:
    """A built service: its server (and, in subclasses, its use cases)."""

    server: GrpcServer

    async def prepare(self) -> None:
        """Work before serving (loading keys, say); nothing by default."""

    async def start(self) -> None:
        await self.prepare()
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()


def run_service(
    argv: Sequence[str] | None,
    *,
    name: str,
    settings_cls: type[SettingsT],
    build: Callable[..., ServiceApp],
) -> int:
    """A service's ``main()``: ``build(settings, database_url, port=, metrics_port=)``
    for this worker's ports, prepared, served until SIGTERM/SIGINT; an embedded
    database started here is stopped afterwards."""

    async def serve(settings: SettingsT, index: int) -> None:
        url, embedded = service_database_url(settings)
        app = build(
            settings,
            url,
            port=settings.worker_port(getattr(settings, f"{name}_port"), index),
            metrics_port=settings.worker_port(getattr(settings, f"{name}_metrics_port"), index),
        )
        await app.prepare()
        await app.server.serve_until_signal()
        if embedded is not None and embedded.started_here:
            embedded.stop()

    return service_main(argv, name=name, settings_cls=settings_cls, serve=serve)
