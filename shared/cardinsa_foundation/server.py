"""Server bootstrap: one grpc.aio server with health, reflection and the pipeline.

What each service gets from here:
- the call pipeline (request id, auth, authorization, tenancy, errors, metrics, logs);
- ``grpc.health.v1``, overall ("") and per service name, following the
  database's reachability (probed every ``health_interval_s``);
- server reflection, so grpcurl can list and describe everything;
- Prometheus metrics on a separate HTTP port;
- graceful shutdown on SIGTERM/SIGINT: report NOT_SERVING, wait so load
  balancers notice, stop accepting calls, let in-flight calls finish within the
  grace period;
- OpenTelemetry traces when ``CARDINSA_TRACING_ENABLED`` (cardinsa_foundation.tracing);
- optional worker processes (``--workers N``), each its own process on its own
  port (base port + index), started before any gRPC object exists.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cardinsa_foundation import metrics, tracing
from cardinsa_foundation.auth import TokenVerifier
from cardinsa_foundation.authorization import rules_for
from cardinsa_foundation.config import Settings, get_settings
from cardinsa_foundation.interceptors import CallPipeline, PrincipalCheck
from cardinsa_foundation.logging import configure_logging

log = logging.getLogger(__name__)

WORKER_INDEX_ENV = "CARDINSA_WORKER_INDEX"
# Health name for liveness probes: SERVING while the process runs, whatever its
# database does (a database outage must not get every pod restarted); the
# overall name "" and the per-service names follow the database (readiness).
LIVENESS_SERVICE = "cardinsa.liveness"
#: Largest request metadata (headers) a server accepts; larger calls fail with
#: RESOURCE_EXHAUSTED before any interceptor runs.
MAX_METADATA_BYTES = 16 * 1024
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class ReadinessProbe(Protocol):
    async def ping(self, timeout_s: float = ...) -> float: ...


@dataclass(frozen=True)
class ServiceRegistration:
    """One gRPC service of a server: its descriptor, the add_* function, the servicer."""

    descriptor: ServiceDescriptor
    add_to_server: Callable[[Any, grpc.aio.Server], None]
    servicer: Any

    @property
    def name(self) -> str:
        return str(self.descriptor.full_name)


class GrpcServer:
    def __init__(
        self,
        *,
        name: str,
        services: Sequence[ServiceRegistration],
        host: str = "127.0.0.1",
        port: int = 0,
        verifier: TokenVerifier | None = None,
        readiness: ReadinessProbe | None = None,
        metrics_host: str = "127.0.0.1",
        metrics_port: int | None = None,
        grace_period_s: float = 10.0,
        drain_delay_s: float = 0.5,
        health_interval_s: float = 1.0,
        gateway_secret: str | None = None,
        principal_check: PrincipalCheck | None = None,
        on_stop: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        self.name = name
        self.services = list(services)
        self.host = host
        self.requested_port = port
        self.port = 0
        self.metrics_host = metrics_host
        self.metrics_port = metrics_port
        self.grace_period_s = grace_period_s
        self.drain_delay_s = drain_delay_s
        self.health_interval_s = health_interval_s
        self._readiness = readiness
        self._on_stop = list(on_stop)
        self._pipeline = CallPipeline(
            rules=rules_for(s.descriptor for s in self.services),
            verifier=verifier,
            service=name,
            gateway_secret=gateway_secret,
            principal_check=principal_check,
        )
        self.health = health.aio.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._metrics_handle: Any = None
        self._stopping = False
        self._serving: bool | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        server = grpc.aio.server(
            interceptors=[self._pipeline],
            options=[
                # A second server on a taken port must fail, not share it.
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", 4 * 1024 * 1024),
                # One metadata limit, not gRPC's default soft 8 KiB / hard 16 KiB
                # (calls in between fail at random). The gateway's header limit
                # (gateway/cardinsa_gateway/envoy.py, MAX_REQUEST_HEADERS_KB) is
                # below it, so REST and gRPC clients behind Envoy get Envoy's 431.
                ("grpc.max_metadata_size", MAX_METADATA_BYTES),
                ("grpc.absolute_max_metadata_size", MAX_METADATA_BYTES),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ],
        )
        for registration in self.services:
            registration.add_to_server(registration.servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = [s.name for s in self.services]
        reflection.enable_server_reflection(
            [
                *names,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            server,
        )
        try:
            self.port = server.add_insecure_port(f"{self.host}:{self.requested_port}")
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {self.host}:{self.requested_port}: {exc}") from None
        if self.port == 0:
            raise OSError(f"cannot listen on {self.host}:{self.requested_port} (port in use?)")
        await server.start()
        self._server = server
        if self.metrics_port is not None:
            self._metrics_handle = metrics.start_metrics_server(
                self.metrics_host, self.metrics_port
            )
        await self.health.set(LIVENESS_SERVICE, SERVING)
        await self._set_serving(await self._probe())
        self._watcher = asyncio.create_task(self._watch_readiness(), name=f"{self.name}-health")
        log.info(
            "serving",
            extra={
                "address": self.address,
                "services": names,
                "metrics_port": self._metrics_handle.port if self._metrics_handle else None,
            },
        )

    @property
    def bound_metrics_port(self) -> int | None:
        return int(self._metrics_handle.port) if self._metrics_handle else None

    async def _probe(self) -> bool:
        if self._readiness is None:
            return True
        try:
            await self._readiness.ping(timeout_s=max(self.health_interval_s, 0.5))
        except Exception:
            return False
        return True

    async def _set_serving(self, serving: bool) -> None:
        if self._stopping or serving == self._serving:
            return
        status = SERVING if serving else NOT_SERVING
        for name in ["", *(s.name for s in self.services)]:
            await self.health.set(name, status)
        if self._serving is not None:
            log.warning("health changed", extra={"serving": serving})
        self._serving = serving

    async def _watch_readiness(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.health_interval_s)
            await self._set_serving(await self._probe())

    async def stop(self, grace_s: float | None = None) -> None:
        """NOT_SERVING first, a short drain, then stop with grace."""
        if self._server is None or self._stopping:
            return
        self._stopping = True
        await self.health.enter_graceful_shutdown()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        grace = self.grace_period_s if grace_s is None else grace_s
        if self.drain_delay_s > 0:
            await asyncio.sleep(min(self.drain_delay_s, grace))
        await self._server.stop(grace)
        for callback in self._on_stop:
            try:
                await callback()
            except Exception:
                log.exception("shutdown step failed")
        if self._metrics_handle is not None:
            self._metrics_handle.close()
        log.info("stopped", extra={"address": self.address})

    async def wait_for_termination(self) -> None:
        assert self._server is not None
        await self._server.wait_for_termination()

    async def serve_until_signal(self) -> None:
        """Start, then run until SIGTERM or SIGINT, then stop gracefully."""
        await self.start()
        # What exists now (modules, descriptors, the mapped classes, compiled
        # queries) lives as long as the process: keep it out of the garbage
        # collector's full passes, which otherwise walk it all and stall the
        # event loop for every call in flight.
        gc.collect()
        gc.freeze()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            # Handlers stay installed while stopping: a second Ctrl-C (or the
            # supervisor's SIGTERM after the terminal's SIGINT) must not kill
            # the process half-way through the drain.
            await self.stop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)


def worker_index() -> int | None:
    value = os.environ.get(WORKER_INDEX_ENV)
    return int(value) if value is not None else None


def run_workers(workers: int, argv: Sequence[str] | None = None) -> int:
    """Start ``workers`` copies of this program, each with its worker index.

    The parent creates no gRPC object (forking after gRPC is initialised is
    unsupported); it starts the workers as fresh processes, forwards SIGTERM and
    SIGINT, and exits with the first non-zero exit code.
    """
    args = list(argv if argv is not None else sys.argv)
    children: list[subprocess.Popen[bytes]] = []
    for index in range(workers):
        env = {**os.environ, WORKER_INDEX_ENV: str(index)}
        children.append(subprocess.Popen([sys.executable, *args], env=env))  # noqa: S603

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        codes = [child.wait() for child in children]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    return next((c for c in codes if c != 0), 0)


SettingsT = TypeVar("SettingsT", bound=Settings)


def service_main(
    argv: Sequence[str] | None,
    *,
    name: str,
    settings_cls: type[SettingsT],
    serve: Callable[[SettingsT, int], Coroutine[Any, Any, None]],
) -> int:
    """The ``main()`` of every service: ``--workers N``, logging, then serve.

    Without a worker index (the command an operator runs) and with more than one
    worker, this process only supervises the workers (see :func:`run_workers`);
    each worker serves on the service's port plus its index.
    """
    parser = argparse.ArgumentParser(
        prog=f"cardinsa-{name}", description=f"Run the {name} gRPC service."
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes, each on its own port"
    )
    args = parser.parse_args(argv)
    settings = get_settings(settings_cls)
    workers = args.workers or settings.workers
    index = worker_index()
    if workers > 1 and index is None:
        return run_workers(workers, [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    configure_logging(settings.log_level, settings.log_json, name)
    tracing.configure(settings, name)
    try:
        asyncio.run(serve(settings, index or 0))
    finally:
        tracing.shutdown()  # exports the spans still buffered
    return 0
