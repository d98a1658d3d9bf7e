"""Prometheus metrics: RPCs, the database pool, identity security events.

All metrics live in `REGISTRY`, this package's own registry rather than
prometheus_client's global default: libraries that register on the default
cannot collide with ours, and what a scrape shows is exactly what is defined
here. There is one registry per process on purpose — several servers in one
process (tests, a dev runner) share the counters and tell their RPCs apart by the
``grpc_service`` label; each worker process has its own registry and serves it on
its own port. Tests read values with ``REGISTRY.get_sample_value`` and compare
before/after, since counters never reset.

Label names follow the de-facto gRPC convention (``grpc_service``,
``grpc_method``, ``grpc_code``, as in go-grpc-prometheus / py-grpc-prometheus)
instead of bare ``service`` / ``method`` / ``code``: Prometheus' Kubernetes
service discovery attaches its own ``service`` target label, which would rename
ours to ``exported_service``, and existing gRPC dashboards expect these names.

What the other modules call:
- the metrics interceptor: ``with rpc_in_flight(method): ...`` around the call,
  then ``observe_rpc(method, code, seconds)``;
- the db layer: ``register_pool_collector(name, lambda: PoolStats.from_pool(pool))``;
- identity: ``IDENTITY_LOGIN_FAILURES.inc()`` and the other two counters;
- the server bootstrap: ``start_metrics_server(host, port)``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from cardinsa_foundation.build import BuildInfo

__all__ = [
    "BUILD_INFO",
    "GRPC_SERVER_HANDLED",
    "GRPC_SERVER_HANDLING_SECONDS",
    "GRPC_SERVER_IN_FLIGHT",
    "GRPC_SERVER_STARTED",
    "IDENTITY_LOCKOUTS",
    "IDENTITY_LOGIN_FAILURES",
    "IDENTITY_MAIL",
    "IDENTITY_REFRESH_TOKEN_REUSE",
    "IDENTITY_THROTTLED",
    "LATENCY_BUCKETS",
    "REGISTRY",
    "WORKER_RESTARTS",
    "MetricsServer",
    "PoolStats",
    "observe_rpc",
    "register_pool_collector",
    "rpc_in_flight",
    "set_build_info",
    "start_metrics_server",
    "unregister_pool_collector",
]

_log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

#: 1 ms … 5 s: from a call that reads one row to one that is already an
#: incident (the +Inf bucket still counts longer ones).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

BUILD_INFO = Gauge(
    "cardinsa_build_info",
    "Always 1: the service's version (package metadata), commit and build time (image build)",
    ["service", "version", "commit", "build_time"],
    registry=REGISTRY,
)


def set_build_info(info: BuildInfo) -> None:
    """Publish ``cardinsa_build_info{service,version,commit,build_time} 1``."""
    BUILD_INFO.labels(info.service, info.version, info.commit, info.build_time_text).set(1)


GRPC_SERVER_STARTED = Counter(
    "grpc_server_started",
    "RPCs started on the server.",
    ["grpc_service", "grpc_method"],
    registry=REGISTRY,
)
GRPC_SERVER_HANDLED = Counter(
    "grpc_server_handled",
    "RPCs completed on the server, by status code.",
    ["grpc_service", "grpc_method", "grpc_code"],
    registry=REGISTRY,
)
GRPC_SERVER_HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time from receiving an RPC to sending its status, in seconds.",
    ["grpc_service", "grpc_method"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
GRPC_SERVER_IN_FLIGHT = Gauge(
    "grpc_server_in_flight",
    "RPCs being handled right now.",
    ["grpc_service", "grpc_method"],
    registry=REGISTRY,
)

WORKER_RESTARTS = Counter(
    "worker_restarts",
    "Times the service's supervisor restarted this worker after it exited "
    "(every exit is also logged by the supervisor).",
    ["worker"],
    registry=REGISTRY,
)

IDENTITY_LOGIN_FAILURES = Counter(
    "identity_login_failures",
    "Failed login attempts (wrong credentials, unknown account, locked or disabled).",
    registry=REGISTRY,
)
IDENTITY_LOCKOUTS = Counter(
    "identity_lockouts",
    "Accounts locked after too many failed logins.",
    registry=REGISTRY,
)
IDENTITY_REFRESH_TOKEN_REUSE = Counter(
    "identity_refresh_token_reuse",
    "Rotated refresh tokens presented again (each revokes its whole family).",
    registry=REGISTRY,
)
IDENTITY_MAIL = Counter(
    "identity_mail",
    "E-mail messages of identity's SMTP notifier by kind and result: sent, retried "
    "(an attempt failed, another follows), failed (given up after the retries), "
    "dropped (queue full or shutdown).",
    ["kind", "result"],
    registry=REGISTRY,
)
IDENTITY_THROTTLED = Counter(
    "identity_throttled",
    "Public requests dropped by a limit, answered as usual (action, which limit).",
    ["action", "reason"],
    registry=REGISTRY,
)


# --------------------------------------------------------------------- RPCs

#: Distinct methods tracked before new ones are folded into "other": the method
#: name comes from the client, and an unbounded label would let it grow memory.
MAX_METHODS = 1000


class _MethodMetrics:
    """The labelled children of one method, looked up once (``labels()`` takes a
    lock and builds a key on every call)."""

    __slots__ = ("handled", "in_flight", "labels", "latency", "started")

    def __init__(self, service: str, method: str) -> None:
        self.labels = (service, method)
        self.started = GRPC_SERVER_STARTED.labels(service, method)
        self.in_flight = GRPC_SERVER_IN_FLIGHT.labels(service, method)
        self.latency = GRPC_SERVER_HANDLING_SECONDS.labels(service, method)
        self.handled: dict[str, Any] = {}

    def handled_for(self, code: str) -> Any:
        child = self.handled.get(code)
        if child is None:
            child = GRPC_SERVER_HANDLED.labels(*self.labels, code)
            self.handled[code] = child
        return child


_methods: dict[str, _MethodMetrics] = {}
_methods_lock = threading.Lock()


def _metrics_for(full_method: str) -> _MethodMetrics:
    """``/cardinsa.core.v1.PolicyService/GetPolicy`` → its children, cached."""
    found = _methods.get(full_method)
    if found is not None:
        return found
    with _methods_lock:
        found = _methods.get(full_method)
        if found is not None:
            return found
        if len(_methods) >= MAX_METHODS:
            key, service, method = "", "other", "other"
        else:
            key = full_method
            service, sep, method = full_method.lstrip("/").rpartition("/")
            if not (sep and service and method):
                service, method = "unknown", "unknown"
        found = _methods.get(key) or _MethodMetrics(service, method)
        _methods[key] = found
        return found


def observe_rpc(method: str, code: str | Any, seconds: float) -> None:
    """Count one finished RPC and its duration. `method` is the full gRPC path
    (``/pkg.Service/Method``); `code` a status code name (``"OK"``) or a
    ``grpc.StatusCode``."""
    metrics = _metrics_for(method)
    metrics.handled_for(code if isinstance(code, str) else code.name).inc()
    metrics.latency.observe(seconds)


class rpc_in_flight:  # used like a function: `with rpc_in_flight(method):`
    """Counts an RPC as started and in flight for the duration of the block.

    Kept apart from `observe_rpc` so that neither can unbalance the other: the
    gauge goes down on exit whatever the call did."""

    __slots__ = ("_gauge",)

    def __init__(self, method: str) -> None:
        metrics = _metrics_for(method)
        metrics.started.inc()
        self._gauge = metrics.in_flight

    def __enter__(self) -> rpc_in_flight:
        self._gauge.inc()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._gauge.dec()


# ----------------------------------------------------------------- db pool


@dataclass(frozen=True)
class PoolStats:
    """A database pool's state at scrape time."""

    size: int
    checked_out: int
    overflow: int
    checked_in: int = 0

    @classmethod
    def from_pool(cls, pool: Any) -> PoolStats:
        """Read a SQLAlchemy ``QueuePool`` (``engine.pool`` / ``async_engine.pool``).
        Its ``overflow()`` counts from ``-size``; only connections above the size
        are reported."""
        return cls(
            size=int(pool.size()),
            checked_out=int(pool.checkedout()),
            overflow=max(0, int(pool.overflow())),
            checked_in=int(pool.checkedin()),
        )


# Per name, the callbacks registered and not yet unregistered, newest last; the
# newest one is reported (a second server of a service in one process — tests,
# tools — neither hides nor removes the first one's pool for good).
_pools: dict[str, list[Callable[[], PoolStats | Mapping[str, float]]]] = {}
_pools_lock = threading.Lock()

_POOL_GAUGES = (
    ("db_pool_size", "Connections the pool keeps (its configured size).", "size"),
    ("db_pool_checked_out", "Connections lent out to requests right now.", "checked_out"),
    ("db_pool_overflow", "Connections open above the pool size right now.", "overflow"),
    ("db_pool_checked_in", "Idle connections in the pool.", "checked_in"),
)


def _as_mapping(stats: PoolStats | Mapping[str, float]) -> Mapping[str, float]:
    if isinstance(stats, PoolStats):
        return {
            "size": stats.size,
            "checked_out": stats.checked_out,
            "overflow": stats.overflow,
            "checked_in": stats.checked_in,
        }
    return stats


class _PoolCollector(Collector):
    """Asks every registered pool for its numbers when Prometheus scrapes."""

    def describe(self) -> Iterable[Metric]:
        return list(self._families().values())

    @staticmethod
    def _families() -> dict[str, GaugeMetricFamily | CounterMetricFamily]:
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            key: GaugeMetricFamily(name, doc, labels=["pool"]) for name, doc, key in _POOL_GAUGES
        }
        families["opened"] = CounterMetricFamily(
            "db_pool_connections_opened",
            "Connections the pool has opened. Rising under steady load means churn: "
            "connections above the pool size are closed when they come back.",
            labels=["pool"],
        )
        return families

    def collect(self) -> Iterable[Metric]:
        families = self._families()
        with _pools_lock:
            sources = [(name, stack[-1]) for name, stack in _pools.items() if stack]
        for pool_name, source in sources:
            try:
                stats = _as_mapping(source())
            except Exception:  # a broken callback must not break the whole scrape
                _log.warning("pool stats callback failed", extra={"pool": pool_name}, exc_info=True)
                continue
            for key, family in families.items():
                if key in stats:
                    family.add_metric([pool_name], float(stats[key]))
        return list(families.values())


REGISTRY.register(_PoolCollector())


def register_pool_collector(
    name: str, stats: Callable[[], PoolStats | Mapping[str, float]]
) -> None:
    """Report pool `name` through ``db_pool_*{pool=name}``; `stats` is called at each
    scrape, from the metrics server's thread, and may return a `PoolStats` or a
    mapping with the keys size / checked_out / overflow / checked_in. Registering
    the same name again reports the new callback until it is unregistered."""
    with _pools_lock:
        _pools.setdefault(name, []).append(stats)


def unregister_pool_collector(
    name: str, stats: Callable[[], PoolStats | Mapping[str, float]] | None = None
) -> None:
    """Stop reporting pool `name` (engine disposed). With `stats`, only if that is
    still the registered callback: a second server of the same service in one
    process (tests, tools) must not remove the first one's pool."""
    with _pools_lock:
        stack = _pools.get(name, [])
        if stats is None:
            stack.clear()
        elif stats in stack:
            stack.remove(stats)
        if not stack:
            _pools.pop(name, None)


# ------------------------------------------------------------------ server


class MetricsServer:
    """The running /metrics HTTP endpoint; `port` is the bound port (useful with 0)."""

    def __init__(self, httpd: Any, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread
        self.host: str = httpd.server_address[0]
        self.port: int = int(httpd.server_address[1])
        self._closed = False

    def close(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def start_metrics_server(host: str, port: int) -> MetricsServer:
    """Serve `REGISTRY` over HTTP (``GET /metrics``) on a daemon thread, apart from
    the gRPC port so that scrapes need no gRPC client and no token. Port 0 picks a
    free port: read it back from ``.port``."""
    httpd, thread = start_http_server(port, addr=host, registry=REGISTRY)
    return MetricsServer(httpd, thread)
