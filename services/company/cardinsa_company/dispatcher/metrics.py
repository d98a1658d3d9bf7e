"""The dispatcher's metrics (in the foundation's registry, served on
``CARDINSA_DISPATCHER_METRICS_PORT``)."""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram

from cardinsa_foundation import metrics

EVENTS_TAKEN = Counter(
    "event_dispatcher_events_taken",
    "Events a sink took (committed with its cursor), by source service and sink.",
    ["source", "sink"],
    registry=metrics.REGISTRY,
)
DELIVERIES_QUEUED = Counter(
    "event_dispatcher_deliveries_queued",
    "Webhook deliveries created (one per matching subscription and event).",
    registry=metrics.REGISTRY,
)
ATTEMPTS = Counter(
    "event_dispatcher_delivery_attempts",
    "Webhook delivery attempts made (HTTP POSTs, or refusals before one).",
    registry=metrics.REGISTRY,
)
DELIVERED = Counter(
    "event_dispatcher_deliveries_delivered",
    "Webhook deliveries answered with a 2xx.",
    registry=metrics.REGISTRY,
)
FAILED = Counter(
    "event_dispatcher_delivery_failures",
    "Webhook delivery attempts that failed (retried or dead-lettered).",
    registry=metrics.REGISTRY,
)
DEAD_LETTERED = Counter(
    "event_dispatcher_deliveries_dead_lettered",
    "Webhook deliveries dead-lettered, by reason (attempts, subscription_deleted).",
    ["reason"],
    registry=metrics.REGISTRY,
)
ATTEMPT_SECONDS = Histogram(
    "event_dispatcher_attempt_duration_seconds",
    "Duration of one webhook delivery attempt (connection, redirects and answer).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=metrics.REGISTRY,
)
OLDEST_DUE_LAG = Gauge(
    "event_dispatcher_oldest_due_delivery_lag_seconds",
    "How long the oldest due pending delivery (of an active subscription) has "
    "been due, at this replica's last look (0: none).",
    registry=metrics.REGISTRY,
)
IN_FLIGHT = Gauge(
    "event_dispatcher_deliveries_in_flight",
    "Webhook deliveries this replica is attempting right now.",
    registry=metrics.REGISTRY,
)
LEADER = Gauge(
    "event_dispatcher_leader",
    "1 while this replica follows the source's events for the sink.",
    ["source", "sink"],
    registry=metrics.REGISTRY,
)
SINCE_LAST_EVENT = Gauge(
    "event_dispatcher_seconds_since_last_event",
    "Seconds since this replica last took an event of the source (since it "
    "started, when none yet).",
    ["source"],
    registry=metrics.REGISTRY,
)

_started = time.monotonic()
_last_event: dict[str, float] = {}


def watch_source(source: str) -> None:
    """Start reporting the source's idle time (its gauge is computed at scrape)."""
    SINCE_LAST_EVENT.labels(source=source).set_function(
        lambda: time.monotonic() - _last_event.get(source, _started)
    )


def took_events(source: str, sink: str, count: int) -> None:
    EVENTS_TAKEN.labels(source=source, sink=sink).inc(count)
    _last_event[source] = time.monotonic()
