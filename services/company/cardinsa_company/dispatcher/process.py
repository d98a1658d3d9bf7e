"""The event dispatcher's process: ``python -m cardinsa_company.dispatcher``
(console script ``cardinsa-dispatcher``).

Runs, until SIGTERM or SIGINT:

- a follower per (source service, sink) (:mod:`.ingest`): the sources are
  ``CARDINSA_DISPATCHER_SOURCES`` (identity, company, core; at
  ``CARDINSA_DISPATCHER_<SOURCE>_ADDRESS``), the sinks the webhook deliveries
  and, when ``CARDINSA_DISPATCHER_NATS_URL`` is set, JetStream; one replica
  leads each follower;
- the delivery worker (:mod:`.delivery`), on every replica.

It calls the services as a platform service account: ``CARDINSA_SERVICE_API_KEY``
(permissions ``events.watch`` and ``events.watch_all``) exchanged with identity
(``CARDINSA_IDENTITY_ADDRESS``) for an access token. Metrics on
``CARDINSA_DISPATCHER_METRICS_PORT`` (9055; 0: none). On a stop, followers end
their streams (what is committed stays; the rest is taken again) and the
attempts in flight finish (each within its timeout) before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
import sys
from collections.abc import Sequence
from functools import partial
from typing import Any, Final

import grpc
import httpx

from cardinsa_company.dispatcher.delivery import DeliveryWorker
from cardinsa_company.dispatcher.ingest import Follower
from cardinsa_company.dispatcher.sinks import EventSink
from cardinsa_company.dispatcher.webhook_sink import WebhookSink
from cardinsa_company.dispatcher_settings import DispatcherSettings
from cardinsa_foundation import metrics, tracing
from cardinsa_foundation.config import get_settings
from cardinsa_foundation.db import Database, service_database_url
from cardinsa_foundation.logging import configure_logging
from cardinsa_foundation.tenancy import ServiceCredentials, api_key_credentials

log = logging.getLogger("cardinsa_company.dispatcher")

NAME: Final = "event-dispatcher"
EXIT_FAILED: Final = 1


def _event_stub(source: str, channel: grpc.aio.Channel) -> Any:
    """The source's ``EventService`` stub (each service has its own, generated)."""
    module = importlib.import_module(f"cardinsa.{source}.v1.event_service_pb2_grpc")
    return module.EventServiceStub(channel)


def jetstream_sink(settings: DispatcherSettings) -> Any:
    """The JetStream sink (its module is imported only when configured)."""
    jetstream = importlib.import_module("cardinsa_company.dispatcher.jetstream")

    return jetstream.JetStreamSink(
        str(settings.dispatcher_nats_url),
        stream=settings.dispatcher_nats_stream,
        subject_prefix=settings.dispatcher_nats_subject_prefix,
    )


class Dispatcher:
    """The followers and the delivery worker of one replica."""

    def __init__(
        self,
        settings: DispatcherSettings,
        url: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        extra_sinks: Sequence[EventSink] = (),
    ) -> None:
        self.settings = settings
        self.db = Database(url, settings, application_name=NAME)
        self._pool_stats = partial(metrics.PoolStats.from_pool, self.db.engine.pool)
        metrics.register_pool_collector(NAME, self._pool_stats)
        self.stopping = asyncio.Event()
        self._channels: list[grpc.aio.Channel] = []
        self.credentials: ServiceCredentials | None = None
        api_key = settings.service_api_key
        key = api_key.get_secret_value().strip() if api_key else ""
        if key:
            identity = self._channel(settings.identity_address)
            self.credentials = api_key_credentials(identity, key)
        else:
            log.warning("no CARDINSA_SERVICE_API_KEY: the watches are made without a token")
        self.sinks: list[EventSink] = [WebhookSink(), *extra_sinks]
        self._started_sinks: list[Any] = []
        self.worker = DeliveryWorker(settings, self.db, stopping=self.stopping, transport=transport)
        self.failed = False

    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(address, interceptors=tracing.client_interceptors())
        self._channels.append(channel)
        return channel

    async def _metadata(self) -> tuple[tuple[str, str], ...]:
        return await self.credentials.metadata() if self.credentials is not None else ()

    def _forget_token(self) -> None:
        if self.credentials is not None:
            self.credentials.forget()

    def followers(self) -> list[Follower]:
        url = str(self.db.engine.url.render_as_string(hide_password=False))
        found: list[Follower] = []
        for source in self.settings.dispatcher_sources:
            stub = _event_stub(source, self._channel(self.settings.source_address(source)))
            found.extend(
                Follower(
                    source=source,
                    sink=sink,
                    db=self.db,
                    lock_url=url,
                    watch=stub.WatchEvents,
                    metadata=self._metadata,
                    forget_token=self._forget_token,
                    settings=self.settings,
                    stopping=self.stopping,
                )
                for sink in self.sinks
            )
        return found

    async def _start_jetstream(self) -> None:
        if not self.settings.dispatcher_nats_url:
            return
        sink = jetstream_sink(self.settings)
        await sink.start()
        self._started_sinks.append(sink)
        self.sinks.append(sink)

    def _watch(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        log.error(
            "a part of the dispatcher failed; stopping",
            exc_info=task.exception(),
            extra={"task": task.get_name()},
        )
        self.failed = True
        self.stopping.set()

    async def run(self) -> int:
        try:
            try:
                await self._start_jetstream()
            except Exception:
                # NATS unreachable or the stream refused: exit, and be restarted.
                log.exception("cannot start the JetStream sink")
                return EXIT_FAILED
            tasks = [
                asyncio.create_task(f.run(), name=f"follow-{f.source}-{f.sink.name}")
                for f in self.followers()
            ]
            tasks.append(asyncio.create_task(self.worker.run(), name="deliveries"))
            for task in tasks:
                task.add_done_callback(self._watch)
            log.info(
                "dispatching events",
                extra={
                    "sources": self.settings.dispatcher_sources,
                    "sinks": [sink.name for sink in self.sinks],
                    "owner": self.worker.owner,
                },
            )
            await self.stopping.wait()
            await asyncio.gather(*tasks, return_exceptions=True)
            return EXIT_FAILED if self.failed else 0
        finally:
            await self.close()

    async def close(self) -> None:
        for sink in self._started_sinks:
            with contextlib.suppress(Exception):
                await sink.close()
        for channel in self._channels:
            with contextlib.suppress(Exception):
                await channel.close()
        await self.db.dispose()
        metrics.unregister_pool_collector(NAME, self._pool_stats)


def main(argv: Sequence[str] | None = None) -> int:
    del argv  # no flags: everything is a setting
    settings = get_settings(DispatcherSettings)
    configure_logging(settings.log_level, settings.log_json, NAME)
    if settings.is_production:
        problems = settings.serving_problems()
        if problems:
            for _, message in problems:
                log.error(message)
            return EXIT_FAILED
    tracing.configure(settings, NAME)
    server = (
        metrics.start_metrics_server(settings.metrics_host, settings.dispatcher_metrics_port)
        if settings.dispatcher_metrics_port
        else None
    )
    url, embedded = service_database_url(settings)

    async def run() -> int:
        dispatcher = Dispatcher(settings, url)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, dispatcher.stopping.set)
        return await dispatcher.run()

    try:
        return asyncio.run(run())
    finally:
        if server is not None:
            server.close()
        tracing.shutdown()
        if embedded is not None and embedded.started_here:
            embedded.stop()


if __name__ == "__main__":
    sys.exit(main())
