"""The lifecycle scheduler: the process that moves policies on their dates.

``python -m cardinsa_core.scheduler`` (console script ``cardinsa-core-scheduler``)
runs a pass of :class:`cardinsa_core.application.lifecycle.LifecycleRunner`
every ``--interval`` seconds (``--once``: one pass, then exit), so a policy's
cover follows its state and dates, never whether someone called an RPC.

Flags (settings in brackets):

- ``--once``: one pass (after becoming the leader), then exit 0; exit 1 when
  a transition failed;
- ``--interval SECONDS`` [``CARDINSA_SCHEDULER_INTERVAL_S``, 60];
- ``--batch-size N`` [``CARDINSA_SCHEDULER_BATCH_SIZE``, 100];
- ``--company ID`` (repeatable): only these companies; the pass then makes no
  cross-tenant read (an operator's catch-up of one tenant);
- ``--now ISO-8601``: run as of that instant (an aware timestamp, or a date:
  its midnight UTC); the clock then advances from it with real time. An
  instant after the real clock is refused unless
  ``CARDINSA_SCHEDULER_ALLOW_FUTURE_CLOCK`` is true (never in production):
  it would move policies before their dates -- expire them or complete
  cancellations early, taking the cover away -- and that cannot be undone.
  An instant in the past is safe: "due up to then" is a subset of "due now".

Replicas: one leader at a time, through a PostgreSQL advisory lock
(``pg_try_advisory_lock``) held on a dedicated connection for as long as it
leads; the others retry every ``CARDINSA_SCHEDULER_LOCK_RETRY_S``. When the
leader dies (even ``kill -9``) its connection closes and PostgreSQL releases
the lock. Before each transition the leader checks its connection; a lost lock
ends the pass. A second scheduler acting anyway (the moment between losing a
connection and noticing) does no harm: the request ids are deterministic and
every transition locks the row and checks its etag.

Metrics (``CARDINSA_SCHEDULER_METRICS_PORT``, 9054; 0: none):
``lifecycle_scheduler_transitions_total{kind}``,
``lifecycle_scheduler_failures_total{kind,reason}``,
``lifecycle_scheduler_skipped_total{kind}``,
``lifecycle_scheduler_oldest_due_lag_seconds``,
``lifecycle_scheduler_leader`` and ``lifecycle_scheduler_last_pass_timestamp_seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import logging
import signal
import sys
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Final

import asyncpg
import grpc
from prometheus_client import Counter, Gauge
from pydantic import ValidationError

from cardinsa_core.application.context import CoreContext
from cardinsa_core.application.lifecycle import LifecycleRunner, PassReport
from cardinsa_core.application.policies import PolicyUseCases
from cardinsa_core.handlers.events import core_events
from cardinsa_core.main import tenant_directory
from cardinsa_core.repository import personal_data
from cardinsa_core.repository.lifecycle import DueKind
from cardinsa_core.repository.models import AuditEventRow
from cardinsa_core.scheduler_settings import SchedulerSettings
from cardinsa_foundation import metrics, tracing
from cardinsa_foundation.audit import AuditWriter
from cardinsa_foundation.config import get_settings
from cardinsa_foundation.db import Database, service_database_url
from cardinsa_foundation.leadership import Leadership
from cardinsa_foundation.logging import configure_logging
from cardinsa_foundation.server import refused_settings

log = logging.getLogger("cardinsa_core.scheduler")

NAME: Final = "core-scheduler"
#: The settings this process reads (deployment checks look for it here).
SETTINGS_CLASS: Final = SchedulerSettings
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
#: The advisory lock of the leader (a bigint derived from a fixed name).
LOCK_KEY: Final = int.from_bytes(
    hashlib.sha256(b"cardinsa.core.lifecycle-scheduler").digest()[:8], "big", signed=True
)
#: A --now this close after the real clock still counts as "now" (clock skew
#: between the operator's machine and the scheduler's).
FUTURE_TOLERANCE: Final = timedelta(seconds=5)

TRANSITIONS = Counter(
    "lifecycle_scheduler_transitions",
    "Dated policy transitions the lifecycle scheduler made, by kind.",
    ["kind"],
    registry=metrics.REGISTRY,
)
FAILURES = Counter(
    "lifecycle_scheduler_failures",
    "Dated policy transitions that failed (tried again next pass), by kind and reason.",
    ["kind", "reason"],
    registry=metrics.REGISTRY,
)
SKIPPED = Counter(
    "lifecycle_scheduler_skipped",
    "Due transitions whose call changed nothing (an earlier call with the same "
    "request id answered), by kind.",
    ["kind"],
    registry=metrics.REGISTRY,
)
OLDEST_DUE_LAG = Gauge(
    "lifecycle_scheduler_oldest_due_lag_seconds",
    "How late the oldest transition still due after the last pass is: the "
    "clock minus the start of its due date in its company's time zone (0: none).",
    registry=metrics.REGISTRY,
)
LEADER = Gauge(
    "lifecycle_scheduler_leader",
    "1 while this replica holds the scheduler's leader lock.",
    registry=metrics.REGISTRY,
)
LAST_PASS = Gauge(
    "lifecycle_scheduler_last_pass_timestamp_seconds",
    "When the last complete pass ended (Unix time, real clock).",
    registry=metrics.REGISTRY,
)


def _observe(kind: DueKind, outcome: str, reason: str) -> None:
    if outcome == "transition":
        TRANSITIONS.labels(kind=kind.value).inc()
    elif outcome == "failure":
        FAILURES.labels(kind=kind.value, reason=reason).inc()
    else:
        SKIPPED.labels(kind=kind.value).inc()


# ------------------------------------------------------------------ clock


class UsageError(Exception):
    """A flag or setting the operator must fix (said in one line)."""


def parse_now(value: str) -> datetime:
    """``--now``: an ISO-8601 instant with an offset (or ``Z``), or a date (its
    midnight UTC). A naive date-time is refused: whose midnight would it be?"""
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), tzinfo=UTC)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"--now {value!r} is not an ISO-8601 date or timestamp") from None
    if moment.tzinfo is None:
        raise UsageError(f"--now {value!r} needs a UTC offset (e.g. Z or +02:00)")
    return moment.astimezone(UTC)


def make_clock(
    now: datetime | None,
    *,
    allow_future: bool,
    real: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Callable[[], datetime]:
    """The scheduler's clock: the real one, or one started at ``now`` that
    advances with real time (refused in the future unless ``allow_future``)."""
    if now is None:
        return real
    started = real()
    if now > started + FUTURE_TOLERANCE and not allow_future:
        raise UsageError(
            f"--now {now.isoformat()} is in the future; policies would move before their "
            "dates (set CARDINSA_SCHEDULER_ALLOW_FUTURE_CLOCK=true only for tests and "
            "rehearsals on a copy of the data)"
        )
    offset = now - started
    return lambda: real() + offset


# ------------------------------------------------------------------ leadership


# ------------------------------------------------------------------ the process


class Scheduler:
    """The loop: lead, pass, wait; until stopped (or after one pass with --once)."""

    def __init__(
        self,
        settings: SchedulerSettings,
        url: str,
        *,
        clock: Callable[[], datetime],
        batch_size: int,
        interval_s: float,
        companies: Sequence[uuid.UUID] = (),
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.interval_s = interval_s
        # Personal data read or written on the way is encrypted with these keys.
        personal_data.use_settings(settings)
        self.db = Database(url, settings, application_name=NAME)
        self._pool_stats = partial(metrics.PoolStats.from_pool, self.db.engine.pool)
        metrics.register_pool_collector(NAME, self._pool_stats)
        self.leadership = Leadership(
            url,
            LOCK_KEY,
            connect_timeout_s=settings.db_connect_timeout_s,
            name=f"{NAME}-leader",
            on_change=lambda leading: LEADER.set(1 if leading else 0),
        )
        self.stopping = asyncio.Event()
        self._channels: list[grpc.aio.Channel] = []
        identity = grpc.aio.insecure_channel(
            settings.identity_address, interceptors=tracing.client_interceptors()
        )
        self._channels.append(identity)
        tenants, company_channel = tenant_directory(settings, identity)
        if company_channel is not None:
            self._channels.append(company_channel)
        self.ctx = CoreContext(
            db=self.db,
            settings=settings,
            audit=AuditWriter(AuditEventRow),
            tenants=tenants,
            events=core_events(),
            clock=clock,
        )
        self.runner = LifecycleRunner(
            self.ctx,
            PolicyUseCases(self.ctx),
            batch_size=batch_size,
            observe=_observe,
            only_companies=companies,
        )

    async def _keep_going(self) -> bool:
        if self.stopping.is_set():
            return False
        if await self.leadership.still_leading():
            return True
        log.warning("lost the leader lock's connection; stopping the pass")
        return False

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)

    async def lead(self) -> bool:
        """Wait until this replica leads (False: asked to stop first)."""
        waited = False
        while not self.stopping.is_set():
            try:
                if await self.leadership.try_acquire():
                    log.info("leading: this replica runs the passes", extra={"lock": LOCK_KEY})
                    return True
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("cannot reach the database to lead", extra={"error": str(error)})
            if not waited:
                log.info("another replica leads; waiting", extra={"lock": LOCK_KEY})
                waited = True
            await self._wait(self.settings.scheduler_lock_retry_s)
        return False

    async def one_pass(self) -> PassReport:
        now = self.clock()
        log.info("pass starting", extra={"as_of": now.isoformat()})
        report = await self.runner.run_pass(self._keep_going)
        left = report.oldest_left
        OLDEST_DUE_LAG.set(max(0.0, (self.clock() - left).total_seconds()) if left else 0.0)
        if not report.interrupted:
            LAST_PASS.set(datetime.now(UTC).timestamp())
        log.info(
            "pass finished" if not report.interrupted else "pass interrupted",
            extra={
                "as_of": now.isoformat(),
                "companies": report.companies,
                "transitions": dict(report.transitions),
                "skipped": dict(report.skipped),
                "failures": {f"{k}/{r}": n for (k, r), n in report.failures.items()},
                "companies_failed": report.companies_failed,
                "oldest_due": report.oldest_due.isoformat() if report.oldest_due else None,
            },
        )
        return report

    async def run(self, *, once: bool) -> int:
        try:
            while not self.stopping.is_set():
                if not await self.lead():
                    return 0
                try:
                    report = await self.one_pass()
                except Exception:
                    # The database or the company service gone mid-pass, say: what
                    # was committed stays, the rest is due again next pass.
                    log.exception("pass failed; the next one catches up")
                    if once:
                        return EXIT_FAILED
                    await self._wait(self.interval_s)
                    continue
                if once and not report.interrupted:
                    return EXIT_FAILED if report.failures or report.companies_failed else 0
                await self._wait(self.interval_s)
            return 0
        finally:
            await self.close()

    async def close(self) -> None:
        await self.leadership.release()
        for channel in self._channels:
            with contextlib.suppress(Exception):
                await channel.close()
        await self.db.dispose()
        metrics.unregister_pool_collector(NAME, self._pool_stats)


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="cardinsa-core-scheduler",
        description="Move policies on their dates (activation, scheduled cancellation, "
        "renewal offer, expiry).",
    )
    parser.add_argument("--once", action="store_true", help="one pass, then exit")
    parser.add_argument(
        "--interval", type=float, default=None, help="seconds between passes (default 60)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="policies per batch (default 100)"
    )
    parser.add_argument(
        "--now",
        default=None,
        help="run as of this ISO-8601 instant (e.g. 2027-01-01T00:30:00Z) or date",
    )
    parser.add_argument(
        "--company",
        action="append",
        default=[],
        metavar="COMPANY_ID",
        help="only this company (repeatable); no cross-tenant read is made",
    )
    return parser.parse_args(argv)


def _company_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise UsageError(f"--company {value!r} is not a company id (UUID)") from None


async def _serve(scheduler: Scheduler, *, once: bool) -> int:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, scheduler.stopping.set)
    return await scheduler.run(once=once)


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    try:
        settings = get_settings(SchedulerSettings)
    except ValidationError as error:
        return refused_settings(NAME, error)
    configure_logging(settings.log_level, settings.log_json, NAME)
    try:
        interval = args.interval if args.interval is not None else settings.scheduler_interval_s
        batch = args.batch_size if args.batch_size is not None else settings.scheduler_batch_size
        if interval <= 0 or batch < 1:
            raise UsageError("--interval must be positive and --batch-size at least 1")
        companies = [_company_id(value) for value in args.company]
        clock = make_clock(
            parse_now(args.now) if args.now else None,
            allow_future=settings.scheduler_allow_future_clock,
        )
    except UsageError as error:
        log.error(str(error))
        return EXIT_USAGE
    tracing.configure(settings, NAME)
    server = (
        metrics.start_metrics_server(settings.metrics_host, settings.scheduler_metrics_port)
        if settings.scheduler_metrics_port
        else None
    )
    url, embedded = service_database_url(settings)

    async def run() -> int:
        scheduler = Scheduler(
            settings,
            url,
            clock=clock,
            batch_size=batch,
            interval_s=interval,
            companies=companies,
        )
        return await _serve(scheduler, once=args.once)

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
