"""Metrics: counters move, the HTTP endpoint serves them, pools are collected."""

from __future__ import annotations

import sqlite3
import urllib.error
import urllib.request
from collections.abc import Iterator

import grpc
import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.pool import QueuePool

from cardinsa_foundation import metrics
from cardinsa_foundation.metrics import (
    IDENTITY_LOCKOUTS,
    IDENTITY_LOGIN_FAILURES,
    IDENTITY_REFRESH_TOKEN_REUSE,
    REGISTRY,
    PoolStats,
    observe_rpc,
    register_pool_collector,
    rpc_in_flight,
    start_metrics_server,
    unregister_pool_collector,
)

METHOD = "/cardinsa.test.v1.MetricsTestService/DoThing"
LABELS = {"grpc_service": "cardinsa.test.v1.MetricsTestService", "grpc_method": "DoThing"}


def value(name: str, labels: dict[str, str] | None = None) -> float:
    found = REGISTRY.get_sample_value(name, labels or {})
    return 0.0 if found is None else found


@pytest.fixture
def server() -> Iterator[metrics.MetricsServer]:
    with start_metrics_server("127.0.0.1", 0) as running:
        yield running


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        body: bytes = response.read()
    return body.decode()


# -------------------------------------------------------------------- RPCs


def test_observe_rpc_counts_by_code_and_times_by_method() -> None:
    ok = {**LABELS, "grpc_code": "OK"}
    not_found = {**LABELS, "grpc_code": "NOT_FOUND"}
    handled_ok = value("grpc_server_handled_total", ok)
    handled_nf = value("grpc_server_handled_total", not_found)
    count = value("grpc_server_handling_seconds_count", LABELS)
    total = value("grpc_server_handling_seconds_sum", LABELS)
    fast = value("grpc_server_handling_seconds_bucket", {**LABELS, "le": "0.001"})
    small = value("grpc_server_handling_seconds_bucket", {**LABELS, "le": "0.0025"})

    observe_rpc(METHOD, "OK", 0.002)
    observe_rpc(METHOD, grpc.StatusCode.NOT_FOUND, 0.004)

    assert value("grpc_server_handled_total", ok) == handled_ok + 1
    assert value("grpc_server_handled_total", not_found) == handled_nf + 1
    assert value("grpc_server_handling_seconds_count", LABELS) == count + 2
    assert value("grpc_server_handling_seconds_sum", LABELS) == pytest.approx(total + 0.006)
    # 2 ms lands in the 2.5 ms bucket, not in the 1 ms one.
    assert value("grpc_server_handling_seconds_bucket", {**LABELS, "le": "0.001"}) == fast
    assert value("grpc_server_handling_seconds_bucket", {**LABELS, "le": "0.0025"}) == small + 1


def test_latency_buckets_span_1ms_to_5s() -> None:
    observe_rpc(METHOD, "OK", 0.0001)
    bounds = {
        float(s.labels["le"])
        for metric in REGISTRY.collect()
        if metric.name == "grpc_server_handling_seconds"
        for s in metric.samples
        if s.name.endswith("_bucket")
    }
    assert min(bounds) == 0.001
    assert max(b for b in bounds if b != float("inf")) == 5.0
    assert float("inf") in bounds


def test_in_flight_and_started() -> None:
    started = value("grpc_server_started_total", LABELS)
    before = value("grpc_server_in_flight", LABELS)
    with rpc_in_flight(METHOD):
        assert value("grpc_server_in_flight", LABELS) == before + 1
        assert value("grpc_server_started_total", LABELS) == started + 1
    assert value("grpc_server_in_flight", LABELS) == before
    with pytest.raises(RuntimeError), rpc_in_flight(METHOD):
        raise RuntimeError("handler failed")
    assert value("grpc_server_in_flight", LABELS) == before
    assert value("grpc_server_started_total", LABELS) == started + 2


def test_client_chosen_method_names_cannot_grow_labels_without_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(metrics, "_methods", {})
    monkeypatch.setattr(metrics, "MAX_METHODS", 2)
    observe_rpc("/a.S/One", "OK", 0.01)
    observe_rpc("/a.S/Two", "OK", 0.01)
    other = {"grpc_service": "other", "grpc_method": "other", "grpc_code": "UNIMPLEMENTED"}
    before = value("grpc_server_handled_total", other)
    observe_rpc("/evil.S/Random123", "UNIMPLEMENTED", 0.01)
    observe_rpc("/evil.S/Random456", "UNIMPLEMENTED", 0.01)
    assert value("grpc_server_handled_total", other) == before + 2
    assert (
        REGISTRY.get_sample_value(
            "grpc_server_handled_total",
            {"grpc_service": "evil.S", "grpc_method": "Random123", "grpc_code": "UNIMPLEMENTED"},
        )
        is None
    )


def test_malformed_method_is_labelled_unknown() -> None:
    labels = {"grpc_service": "unknown", "grpc_method": "unknown", "grpc_code": "OK"}
    before = value("grpc_server_handled_total", labels)
    observe_rpc("not-a-grpc-path", "OK", 0.001)
    assert value("grpc_server_handled_total", labels) == before + 1


def test_identity_counters() -> None:
    for counter, name in (
        (IDENTITY_LOGIN_FAILURES, "identity_login_failures_total"),
        (IDENTITY_LOCKOUTS, "identity_lockouts_total"),
        (IDENTITY_REFRESH_TOKEN_REUSE, "identity_refresh_token_reuse_total"),
    ):
        before = value(name)
        counter.inc()
        assert value(name) == before + 1


def test_metrics_are_not_in_the_global_default_registry() -> None:
    observe_rpc(METHOD, "OK", 0.001)
    assert (
        prometheus_client.REGISTRY.get_sample_value(
            "grpc_server_handled_total", {**LABELS, "grpc_code": "OK"}
        )
        is None
    )


# ---------------------------------------------------------------- db pool


def test_pool_collector_reports_registered_pools() -> None:
    register_pool_collector("unit-a", lambda: PoolStats(size=5, checked_out=3, overflow=1))
    register_pool_collector(
        "unit-b",
        lambda: {"size": 2, "checked_out": 0, "overflow": 0, "checked_in": 2, "opened": 7},
    )
    try:
        assert value("db_pool_size", {"pool": "unit-a"}) == 5
        assert value("db_pool_checked_out", {"pool": "unit-a"}) == 3
        assert value("db_pool_overflow", {"pool": "unit-a"}) == 1
        assert value("db_pool_checked_in", {"pool": "unit-b"}) == 2
        assert value("db_pool_connections_opened_total", {"pool": "unit-b"}) == 7
        assert (
            REGISTRY.get_sample_value("db_pool_connections_opened_total", {"pool": "unit-a"})
            is None
        )
        # the callback runs at each scrape
        register_pool_collector("unit-a", lambda: PoolStats(size=5, checked_out=4, overflow=2))
        assert value("db_pool_checked_out", {"pool": "unit-a"}) == 4
    finally:
        unregister_pool_collector("unit-a")
        unregister_pool_collector("unit-b")
    assert REGISTRY.get_sample_value("db_pool_size", {"pool": "unit-a"}) is None


def test_broken_pool_callback_does_not_break_the_scrape() -> None:
    def broken() -> PoolStats:
        raise RuntimeError("engine disposed")

    register_pool_collector("unit-broken", broken)
    register_pool_collector("unit-fine", lambda: PoolStats(size=1, checked_out=1, overflow=0))
    try:
        assert value("db_pool_size", {"pool": "unit-fine"}) == 1
        assert REGISTRY.get_sample_value("db_pool_size", {"pool": "unit-broken"}) is None
        observe_rpc(METHOD, "OK", 0.001)
        assert value("grpc_server_handled_total", {**LABELS, "grpc_code": "OK"}) > 0
    finally:
        unregister_pool_collector("unit-broken")
        unregister_pool_collector("unit-fine")


def test_pool_stats_from_a_real_sqlalchemy_pool() -> None:
    pool = QueuePool(lambda: sqlite3.connect(":memory:"), pool_size=2, max_overflow=3)
    assert PoolStats.from_pool(pool) == PoolStats(size=2, checked_out=0, overflow=0)
    held = [pool.connect() for _ in range(3)]
    assert PoolStats.from_pool(pool) == PoolStats(size=2, checked_out=3, overflow=1)
    # A returned overflow connection stays open, idle, until the pool has room.
    held.pop().close()
    assert PoolStats.from_pool(pool) == PoolStats(size=2, checked_out=2, overflow=1, checked_in=1)
    for conn in held:
        conn.close()
    assert PoolStats.from_pool(pool) == PoolStats(size=2, checked_out=0, overflow=0, checked_in=2)
    pool.dispose()


# ------------------------------------------------------------------- HTTP


def test_http_endpoint_serves_the_registry(server: metrics.MetricsServer) -> None:
    assert server.port > 0
    observe_rpc(METHOD, "ALREADY_EXISTS", 0.003)
    IDENTITY_LOGIN_FAILURES.inc()
    register_pool_collector("unit-http", lambda: PoolStats(size=7, checked_out=2, overflow=0))
    try:
        body = scrape(server.port)
    finally:
        unregister_pool_collector("unit-http")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }
    handled = (
        "grpc_server_handled_total",
        tuple(sorted({**LABELS, "grpc_code": "ALREADY_EXISTS"}.items())),
    )
    assert samples[handled] >= 1
    assert samples[("db_pool_size", (("pool", "unit-http"),))] == 7
    assert samples[("identity_login_failures_total", ())] >= 1
    assert ("identity_lockouts_total", ()) in samples
    assert ("identity_refresh_token_reuse_total", ()) in samples
    assert any(name == "grpc_server_handling_seconds_bucket" for name, _ in samples)
    assert any(name == "process_cpu_seconds_total" for name, _ in samples)


def test_close_releases_the_port() -> None:
    running = start_metrics_server("127.0.0.1", 0)
    port = running.port
    assert "# TYPE grpc_server_started_total counter" in scrape(port)
    running.close()
    running.close()  # idempotent
    with pytest.raises(urllib.error.URLError):
        scrape(port)


def test_a_second_pool_of_the_same_name_neither_hides_nor_removes_the_first() -> None:
    from prometheus_client import generate_latest

    from cardinsa_foundation import metrics as m

    def first() -> m.PoolStats:
        return m.PoolStats(size=7, checked_out=1, overflow=0)

    def second() -> m.PoolStats:
        return m.PoolStats(size=3, checked_out=0, overflow=0)

    def size() -> str:
        lines = generate_latest(m.REGISTRY).decode().splitlines()
        return next((ln for ln in lines if ln.startswith('db_pool_size{pool="twice"}')), "")

    m.register_pool_collector("twice", first)
    m.register_pool_collector("twice", second)
    try:
        assert size().endswith(" 3.0")
        m.unregister_pool_collector("twice", second)
        assert size().endswith(" 7.0")
    finally:
        m.unregister_pool_collector("twice")
    assert size() == ""
