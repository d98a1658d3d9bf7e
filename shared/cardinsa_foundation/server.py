"""Server bootstrap: one grpc.aio server with health, reflection and the pipeline.

What each service gets from here:
- the call pipeline (request id, auth, authorization, tenancy, errors, metrics, logs);
- ``grpc.health.v1``, overall ("") and per service name, following the
  database's reachability (probed every ``health_interval_s``);
- server reflection, so grpcurl can list and describe everything (describe:
  the whole contract; list: this server's services, or what the gateway routes);
- Prometheus metrics on a separate HTTP port;
- graceful shutdown on SIGTERM/SIGINT: report NOT_SERVING, keep serving for
  the drain delay so load balancers notice, stop accepting calls, let in-flight
  calls finish within the grace period;
- OpenTelemetry traces when ``CARDINSA_TRACING_ENABLED`` (cardinsa_foundation.tracing);
- optional worker processes (``--workers N``), each its own process on its own
  port (base port + index x ``worker_port_step``), started before any gRPC
  object exists and restarted when they exit (see :func:`run_workers`).
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
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from pydantic import ValidationError

from cardinsa_foundation import loop_lag, metrics, tracing
from cardinsa_foundation.auth import TokenVerifier
from cardinsa_foundation.authorization import rules_for
from cardinsa_foundation.config import Settings, get_settings
from cardinsa_foundation.interceptors import CallPipeline, PrincipalCheck
from cardinsa_foundation.logging import configure_logging
from cardinsa_foundation.reflection import enable_contract_reflection

log = logging.getLogger(__name__)

WORKER_INDEX_ENV = "CARDINSA_WORKER_INDEX"
# How many times the supervisor restarted this worker (its metric starts there).
WORKER_RESTARTS_ENV = "CARDINSA_WORKER_RESTARTS"
# The supervisor's process id: a worker whose supervisor is gone stops too.
SUPERVISOR_PID_ENV = "CARDINSA_SUPERVISOR_PID"
# The supervisor gave up on a worker: the others report NOT_SERVING from then on.
GIVE_UP_SIGNAL = signal.SIGUSR1
# ... sent again this often (a worker still starting has not installed its handler).
GIVE_UP_REPEAT_S = 2.0
# A worker's exit code for a configuration problem (a taken port): restarting
# it cannot help, so the supervisor gives up at once (sysexits EX_CONFIG).
EXIT_CONFIG = 78
# Health name for liveness probes: SERVING while the process runs, whatever its
# database does (a database outage must not get every pod restarted); the
# overall name "" and the per-service names follow the database (readiness).
LIVENESS_SERVICE = "cardinsa.liveness"
#: Largest request metadata (headers) a server accepts; larger calls fail with
#: RESOURCE_EXHAUSTED before any interceptor runs.
MAX_METADATA_BYTES = 16 * 1024
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class ListenError(OSError):
    """The server cannot listen on its gRPC or metrics port (taken, not local)."""


class ReadinessProbe(Protocol):
    async def ping(self, timeout_s: float = ...) -> float: ...

    def answered_within(self, seconds: float) -> bool:
        """Whether the dependency answered some request within ``seconds``
        (then no ping is needed: under load it would queue behind them)."""
        ...


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
        on_drain: Sequence[Callable[[], None]] = (),
        on_start: Sequence[Callable[[], Awaitable[None]]] = (),
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
        # Called when the drain starts: long streams end so the grace period
        # is not spent waiting for them.
        self._on_drain = list(on_drain)
        # Run before the server listens (e.g. loading token revocations).
        self._on_start = list(on_start)
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
        self._loop_lag: loop_lag.LoopLagWatch | None = None
        self._metrics_handle: Any = None
        self._stopping = False
        self._serving: bool | None = None
        self._held_down = False  # NOT_SERVING for good (the supervisor gave up)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        for prepare in self._on_start:
            await prepare()
        server = grpc.aio.server(
            interceptors=[self._pipeline],
            options=[
                # A second server on a taken port must fail, not share it.
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", 4 * 1024 * 1024),
                # One metadata limit, not gRPC's default soft 8 KiB / hard 16 KiB
                # (calls in between fail at random). The gateway's header limit
                # (gateway/cardinsa_gateway/envoy_listener.py, MAX_REQUEST_HEADERS_KB) is
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
        enable_contract_reflection(names, server)
        try:
            self.port = server.add_insecure_port(f"{self.host}:{self.requested_port}")
        except RuntimeError as exc:
            raise ListenError(
                f"cannot listen on {self.host}:{self.requested_port}: {exc}"
            ) from None
        if self.port == 0:
            raise ListenError(f"cannot listen on {self.host}:{self.requested_port} (port in use?)")
        await server.start()
        self._server = server
        if self.metrics_port is not None:
            try:
                self._metrics_handle = metrics.start_metrics_server(
                    self.metrics_host, self.metrics_port
                )
            except OSError as exc:
                await server.stop(None)
                raise ListenError(
                    f"cannot serve metrics on {self.metrics_host}:{self.metrics_port}: "
                    f"{exc.strerror or exc}"
                ) from None
        await self.health.set(LIVENESS_SERVICE, SERVING)
        await self._set_serving(await self._probe())
        self._watcher = asyncio.create_task(self._watch_readiness(), name=f"{self.name}-health")
        self._loop_lag = loop_lag.watch()
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
        # Requests are being answered: reachable. Only an idle or failing
        # service pings (which, under a burst, would wait for a pooled
        # connection behind every request and time out: a busy database
        # reported as a lost one, and the gateway would stop routing to it).
        if self._readiness.answered_within(2 * self.health_interval_s):
            return True
        try:
            await self._readiness.ping(timeout_s=max(self.health_interval_s, 0.5))
        except Exception:
            return False
        return True

    async def hold_not_serving(self) -> None:
        """NOT_SERVING from now on, whatever the database does (liveness stays
        SERVING): the supervisor gave up on another worker of this service."""
        if self._held_down:
            return
        log.error("the supervisor gave up on a worker: reporting NOT_SERVING")
        await self._set_serving(False)
        self._held_down = True

    async def _set_serving(self, serving: bool) -> None:
        if self._held_down:
            return
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
        for drain in self._on_drain:
            drain()
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
        if self._loop_lag is not None:
            self._loop_lag.close()
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
        held: list[asyncio.Task[None]] = []
        loop.add_signal_handler(
            GIVE_UP_SIGNAL, lambda: held.append(loop.create_task(self.hold_not_serving()))
        )
        try:
            await stop.wait()
        finally:
            # Handlers stay installed while stopping: a second Ctrl-C (or the
            # supervisor's SIGTERM after the terminal's SIGINT) must not kill
            # the process half-way through the drain.
            await self.stop()
            for sig in (signal.SIGTERM, signal.SIGINT, GIVE_UP_SIGNAL):
                loop.remove_signal_handler(sig)


def worker_index() -> int | None:
    value = os.environ.get(WORKER_INDEX_ENV)
    return int(value) if value is not None else None


def follow_supervisor() -> None:
    """Make this worker receive SIGTERM when its supervisor dies (Linux
    ``PR_SET_PDEATHSIG``), so a supervisor killed with SIGKILL (the OOM killer, a
    test's clean-up) leaves no orphan worker holding its ports; the worker then
    drains and stops as on any SIGTERM. A supervisor already gone before this
    call (the signal would never come) ends the worker at once."""
    supervisor = os.environ.get(SUPERVISOR_PID_ENV)
    if supervisor is None:
        return
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != int(supervisor):
        log.error("the worker supervisor (pid %s) is gone; stopping", supervisor)
        raise SystemExit(1)


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0
    due: float | None = None  # when to start it again
    backoff_s: float = 0.0


def run_workers(
    workers: int,
    argv: Sequence[str] | None = None,
    *,
    restart_limit: int = 5,
    restart_window_s: float = 60.0,
    first_backoff_s: float = 0.5,
    max_backoff_s: float = 30.0,
) -> int:
    """Start ``workers`` copies of this program, each with its worker index, and
    keep them running.

    The parent creates no gRPC object (forking after gRPC is initialised is
    unsupported); it starts the workers as fresh processes and forwards SIGTERM
    and SIGINT. A worker that exits is logged and started again after a backoff
    (``first_backoff_s`` doubling up to ``max_backoff_s``; back to the first after
    a run longer than the window); its restarts are counted in its metric
    ``worker_restarts_total``. After ``restart_limit`` restarts of one worker within
    ``restart_window_s`` (or at once when it exits with :data:`EXIT_CONFIG`), the
    supervisor gives up on it: the other workers report NOT_SERVING from then on
    (:data:`GIVE_UP_SIGNAL`), and when none is left the supervisor exits 1.
    """
    args = list(argv if argv is not None else sys.argv)
    slots = [_Worker(index, backoff_s=first_backoff_s) for index in range(workers)]
    recent: dict[int, deque[float]] = {slot.index: deque() for slot in slots}
    stop_signal: list[int] = []
    gave_up: list[int] = []
    signalled: set[int] = set()

    def launch(slot: _Worker) -> None:
        env = {
            **os.environ,
            WORKER_INDEX_ENV: str(slot.index),
            WORKER_RESTARTS_ENV: str(slot.restarts),
            SUPERVISOR_PID_ENV: str(os.getpid()),
        }
        slot.process = subprocess.Popen([sys.executable, *args], env=env)  # noqa: S603
        slot.started = time.monotonic()
        slot.due = None

    def forward(signum: int, _frame: object) -> None:
        if not stop_signal:
            stop_signal.append(signum)
        for slot in slots:
            if slot.process is not None and slot.process.poll() is None:
                signalled.add(slot.process.pid)
                slot.process.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    # Workers inherit GIVE_UP_SIGNAL ignored until they handle it themselves (its
    # default action would end one still starting); the supervisor repeats it.
    previous[GIVE_UP_SIGNAL] = signal.signal(GIVE_UP_SIGNAL, signal.SIG_IGN)
    told = 0.0
    try:
        for slot in slots:
            launch(slot)
        while not stop_signal:
            now = time.monotonic()
            if gave_up and now - told > GIVE_UP_REPEAT_S:
                told = now
                for other in slots:
                    if other.process is not None and other.process.poll() is None:
                        other.process.send_signal(GIVE_UP_SIGNAL)
            for slot in slots:
                if slot.process is not None and slot.process.poll() is not None:
                    _worker_exited(slot, now, restart_window_s, first_backoff_s)
                    code = slot.process.returncode
                    slot.process = None
                    window = recent[slot.index]
                    while window and now - window[0] > restart_window_s:
                        window.popleft()
                    if code == EXIT_CONFIG or len(window) >= restart_limit:
                        gave_up.append(slot.index)
                        log.error(
                            "giving up on a worker",
                            extra={
                                "worker": slot.index,
                                "restarts": len(window),
                                "window_s": restart_window_s,
                                "exit_code": code,
                            },
                        )
                        told = 0.0  # tell the others now
                        continue
                    slot.due = now + slot.backoff_s
                    slot.backoff_s = min(slot.backoff_s * 2, max_backoff_s)
                if slot.process is None and slot.due is not None and now >= slot.due:
                    slot.restarts += 1
                    recent[slot.index].append(now)
                    launch(slot)
                    log.warning(
                        "worker restarted",
                        extra={"worker": slot.index, "restarts": slot.restarts},
                    )
            if all(slot.process is None and slot.due is None for slot in slots):
                log.error("every worker is gone; the supervisor exits")
                return 1
            time.sleep(0.1)
        # Stopping: a worker started after the signal has not seen it.
        for slot in slots:
            process = slot.process
            if process is not None and process.poll() is None and process.pid not in signalled:
                process.send_signal(stop_signal[0])
        codes = [slot.process.wait() for slot in slots if slot.process is not None]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for slot in slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.process.kill()
                slot.process.wait()
    if gave_up:
        return 1
    return next((c for c in codes if c not in (0, -signal.SIGTERM, -signal.SIGINT)), 0)


def _worker_exited(slot: _Worker, now: float, window_s: float, first_backoff_s: float) -> None:
    assert slot.process is not None
    code = slot.process.returncode
    ran_s = now - slot.started
    if ran_s > window_s:
        slot.backoff_s = first_backoff_s  # it had been running well: start afresh
    log.error(
        "worker exited",
        extra={
            "worker": slot.index,
            "worker_pid": slot.process.pid,
            "exit_code": code if code >= 0 else None,
            "signal": signal.Signals(-code).name if code < 0 else None,
            "ran_s": round(ran_s, 1),
            "restart_in_s": slot.backoff_s,
        },
    )


SettingsT = TypeVar("SettingsT", bound=Settings)


def refused_settings(name: str, error: ValidationError) -> int:
    """Report settings the validation refused (a production secret missing or
    still its development value, a malformed URL ...) on stderr, one line each,
    naming the setting and never its value; the exit code of a configuration
    error, :data:`EXIT_CONFIG`."""
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"])
        print(f"{name} cannot start: {where}: {problem['msg']}", file=sys.stderr, flush=True)
    return EXIT_CONFIG


def service_main(
    argv: Sequence[str] | None,
    *,
    name: str,
    settings_cls: type[SettingsT],
    serve: Callable[[SettingsT, int], Coroutine[Any, Any, None]],
) -> int:
    """The ``main()`` of every service: ``--workers N``, logging, then serve.

    Without a worker index (the command an operator runs) and with ``--workers``
    on the command line or more than one worker configured, this process only
    supervises the workers (see :func:`run_workers`); worker ``i`` serves on the
    service's port plus ``i`` x ``worker_port_step``. A port that cannot be
    bound ends the worker with one line naming the settings and exit code
    :data:`EXIT_CONFIG`; so do settings the validation refuses.
    """
    parser = argparse.ArgumentParser(
        prog=f"cardinsa-{name}", description=f"Run the {name} gRPC service."
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes, each on its own port"
    )
    args = parser.parse_args(argv)
    try:
        settings = get_settings(settings_cls)
    except ValidationError as error:
        return refused_settings(name, error)
    workers = args.workers or settings.workers
    index = worker_index()
    configure_logging(settings.log_level, settings.log_json, name)
    if index is None and (workers > 1 or args.workers is not None):
        return run_workers(
            workers,
            [sys.argv[0], *(argv if argv is not None else sys.argv[1:])],
            restart_limit=settings.worker_restart_limit,
            restart_window_s=settings.worker_restart_window_s,
        )
    if index is not None:
        follow_supervisor()
        restarts = int(os.environ.get(WORKER_RESTARTS_ENV, "0") or 0)
        metrics.WORKER_RESTARTS.labels(worker=str(index)).inc(restarts)
    tracing.configure(settings, name)
    try:
        asyncio.run(serve(settings, index or 0))
    except ListenError as error:
        prefix = f"CARDINSA_{name.upper()}"
        log.error(
            "%s; the ports come from %s_PORT and %s_METRICS_PORT (worker i: + i x "
            "CARDINSA_WORKER_PORT_STEP)",
            error,
            prefix,
            prefix,
        )
        return EXIT_CONFIG
    finally:
        tracing.shutdown()  # exports the spans still buffered
    return 0
