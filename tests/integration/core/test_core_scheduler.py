"""The lifecycle scheduler as its own process (``python -m cardinsa_core.scheduler``)
against the real database a real core server serves: policies move on their
dates with no RPC call from anyone, exactly once, also after ``kill -9`` and
with two schedulers at once.

Every scheduler process a test starts is stopped by its pid (also when the test
fails). Policies are created through the core server; what moved is read back
through it and from the status log (as the platform role, every row).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from core_harness import CoreHarness, Tenant, gdate, mask, policy_service_pb2

from cardinsa.core.v1 import resources_pb2
from cardinsa_core.application.context import CoreContext
from cardinsa_core.application.lifecycle import SYSTEM_SUBJECT, LifecycleRunner, request_id_for
from cardinsa_core.application.policies import PolicyUseCases
from cardinsa_core.application.tenants import SettingsTenantDirectory, TenantFacts
from cardinsa_core.repository.lifecycle import DueKind
from cardinsa_core.scheduler import LOCK_KEY
from cardinsa_foundation.db import app_role_url, platform_role_url, to_libpq_url
from cardinsa_foundation.local_postgres import find_free_port

P = resources_pb2.Policy
TODAY = datetime.now(UTC).date()
TOMORROW = TODAY + timedelta(days=1)
#: Half past midnight UTC tomorrow: "today" is tomorrow for a UTC company.
AS_OF_TOMORROW = datetime.combine(TOMORROW, time(0, 30), tzinfo=UTC).isoformat()
#: Generous: only a hung process reaches it (then the test fails, it does not wait forever).
PROCESS_TIMEOUT_S = 120.0


class Scheduler:
    """One scheduler process (stdout and stderr in a file)."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    async def wait(self) -> int:
        try:
            return await asyncio.wait_for(self.process.wait(), PROCESS_TIMEOUT_S)
        except TimeoutError:
            raise AssertionError(f"the scheduler did not finish:\n{self.output()}") from None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def stop(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            await self.process.wait()


@pytest.fixture
def scheduler_env(core_database: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDINSA_")}
    env.update(
        CARDINSA_ENVIRONMENT="test",
        CARDINSA_DATABASE_URL=app_role_url(core_database),
        CARDINSA_DATABASE_PLATFORM_URL=platform_role_url(core_database),
        CARDINSA_SCHEDULER_METRICS_PORT="0",
        CARDINSA_SCHEDULER_ALLOW_FUTURE_CLOCK="true",
        CARDINSA_SCHEDULER_LOCK_RETRY_S="0.2",
        CARDINSA_LOG_JSON="true",
    )
    return env


@asynccontextmanager
async def started(
    env: dict[str, str], tmp_path: Path, *args: str, name: str = "scheduler"
) -> AsyncIterator[Scheduler]:
    log = tmp_path / f"{name}-{uuid.uuid4().hex[:6]}.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cardinsa_core.scheduler",
            *args,
            env=env,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    scheduler = Scheduler(process, log)
    try:
        yield scheduler
    finally:
        await scheduler.stop()


async def run_once(
    env: dict[str, str], tmp_path: Path, *args: str, expect: int | tuple[int, ...] = 0
) -> Scheduler:
    async with started(env, tmp_path, "--once", *args) as scheduler:
        code = await scheduler.wait()
        assert code in (expect if isinstance(expect, tuple) else (expect,)), scheduler.output()
    return scheduler


def for_company(tenant: Tenant, *args: str) -> list[str]:
    return ["--company", tenant.company_id, *args]


async def get(tenant: Tenant, policy: Any) -> Any:
    return await get_id(tenant, policy.id)


async def get_id(tenant: Tenant, policy_id: str) -> Any:
    return await tenant.harness.policies.GetPolicy(
        policy_service_pb2.GetPolicyRequest(policy_id=policy_id), metadata=await tenant.md()
    )


async def bound(
    tenant: Tenant,
    *,
    effective: date,
    expiry: date | None = None,
    holder: Any = None,
    product: Any = None,
) -> Any:
    return await tenant.in_force(
        holder or await tenant.holder(dependents=0),
        product or await tenant.product(),
        effective=effective,
        expiry=expiry,
        with_dependents=False,
    )


class StatusLog:
    """The status log of every company, read as the platform role."""

    def __init__(self, url: str) -> None:
        self.url = to_libpq_url(platform_role_url(url))

    async def rows(self, company_id: str, transition: str) -> list[asyncpg.Record]:
        connection = await asyncpg.connect(self.url)
        try:
            return list(
                await connection.fetch(
                    "SELECT policy_id, from_state, to_state, actor_id, request_id, "
                    "effective_date FROM core.policy_status_changes "
                    "WHERE company_id = $1 AND transition = $2",
                    uuid.UUID(company_id),
                    transition,
                )
            )
        finally:
            await connection.close()

    async def audit_actors(self, company_id: str, entity_id: str, action: str) -> list[str]:
        connection = await asyncpg.connect(self.url)
        try:
            return [
                row["actor_id"]
                for row in await connection.fetch(
                    "SELECT actor_id FROM core.audit_events "
                    "WHERE company_id = $1 AND entity_id = $2 AND action = $3",
                    uuid.UUID(company_id),
                    entity_id,
                    action,
                )
            ]
        finally:
            await connection.close()

    async def counts(self, company_id: str, transition: str) -> dict[str, int]:
        counted: dict[str, int] = {}
        for row in await self.rows(company_id, transition):
            key = str(row["policy_id"])
            counted[key] = counted.get(key, 0) + 1
        return counted


@pytest.fixture
def status_log(core_database: str) -> StatusLog:
    return StatusLog(core_database)


async def many_bound(tenant: Tenant, count: int, effective: date) -> list[str]:
    holder = await tenant.holder(dependents=0)
    product = await tenant.product()
    ids: list[str] = []
    for start in range(0, count, 25):
        chunk = await asyncio.gather(
            *(
                bound(tenant, effective=effective, holder=holder, product=product)
                for _ in range(min(25, count - start))
            )
        )
        ids += [p.id for p in chunk]
    return ids


# ------------------------------------------------------------------ activation


async def test_a_policy_bound_for_tomorrow_is_in_force_after_a_run_as_of_tomorrow(
    tenant: Tenant, scheduler_env: dict[str, str], tmp_path: Path, status_log: StatusLog
) -> None:
    policy = await bound(tenant, effective=TOMORROW)
    later = await bound(tenant, effective=TOMORROW + timedelta(days=1))
    assert policy.state == P.BOUND and later.state == P.BOUND

    await run_once(scheduler_env, tmp_path, *for_company(tenant, "--now", AS_OF_TOMORROW))

    assert (await get(tenant, policy)).state == P.IN_FORCE
    assert (await get(tenant, later)).state == P.BOUND  # due only the day after
    [logged] = [r for r in await status_log.rows(tenant.company_id, "activate")]
    assert str(logged["policy_id"]) == policy.id
    assert (logged["from_state"], logged["to_state"]) == ("BOUND", "IN_FORCE")
    assert logged["actor_id"] == SYSTEM_SUBJECT
    assert logged["request_id"] == request_id_for(
        DueKind.ACTIVATE, uuid.UUID(policy.id), TOMORROW, policy.etag
    )
    # The audit trail names the system actor too.
    assert await status_log.audit_actors(tenant.company_id, policy.id, "policy.activate") == [
        SYSTEM_SUBJECT
    ]

    # A second run as of the same instant does nothing.
    etag = (await get(tenant, policy)).etag
    await run_once(scheduler_env, tmp_path, *for_company(tenant, "--now", AS_OF_TOMORROW))
    assert (await get(tenant, policy)).etag == etag
    assert await status_log.counts(tenant.company_id, "activate") == {policy.id: 1}


async def test_a_run_as_of_now_moves_nothing_before_its_date(
    tenant: Tenant, scheduler_env: dict[str, str], tmp_path: Path
) -> None:
    policy = await bound(tenant, effective=TOMORROW)
    await run_once(scheduler_env, tmp_path, *for_company(tenant))
    assert (await get(tenant, policy)).state == P.BOUND


# ------------------------------------------------------------------ expiry and renewal


async def test_expiry_and_the_renewal_offer_across_companies_as_of_now(
    core: CoreHarness, scheduler_env: dict[str, str], tmp_path: Path, status_log: StatusLog
) -> None:
    """No --company: the companies are found across tenants (the platform role);
    each policy past its expiry date gets its renewal offer, then expires."""
    tenants = [await core.tenant(), await core.tenant()]
    policies = [
        await bound(t, effective=TODAY - timedelta(days=20), expiry=TODAY - timedelta(days=1))
        for t in tenants
    ]
    assert all(p.state == P.IN_FORCE for p in policies)
    env = {**scheduler_env, "CARDINSA_SCHEDULER_ALLOW_FUTURE_CLOCK": "false"}

    # Every company of the shared test database is looked at: another module's
    # policy may fail its due transition (exit 1, e.g. a renewal of a retired
    # product); only these two companies' outcome is asserted.
    for _ in range(2):  # and again: nothing twice
        ran = await run_once(env, tmp_path, expect=(0, 1))
        assert '"companies_failed": 0' in ran.output()

    for tenant, policy in zip(tenants, policies, strict=True):
        now = await get(tenant, policy)
        assert now.state == P.EXPIRED
        assert now.successor_policy_id
        assert await status_log.counts(tenant.company_id, "expire") == {policy.id: 1}
        renewals = await status_log.rows(tenant.company_id, "renew")
        # The policy's own row and its successor's creation, once each.
        assert sorted(str(r["policy_id"]) for r in renewals) == sorted(
            [policy.id, now.successor_policy_id]
        )
        assert all(r["actor_id"] == SYSTEM_SUBJECT for r in renewals)
        successor = await tenant.harness.policies.GetPolicy(
            policy_service_pb2.GetPolicyRequest(policy_id=now.successor_policy_id),
            metadata=await tenant.md(),
        )
        assert successor.state == P.QUOTED
        assert successor.effective_date == gdate(TODAY)


async def test_the_renewal_offer_is_made_once_and_never_twice(
    tenant: Tenant, scheduler_env: dict[str, str], tmp_path: Path, status_log: StatusLog
) -> None:
    # 30 days (the default renewal_offer_days) before an expiry 40 days away:
    # due in ten days, not today.
    expiry = TODAY + timedelta(days=40)
    policy = await bound(tenant, effective=TODAY - timedelta(days=10), expiry=expiry)
    kept = await bound(tenant, effective=TODAY - timedelta(days=10), expiry=expiry)
    kept = await tenant.harness.policies.UpdatePolicy(
        policy_service_pb2.UpdatePolicyRequest(
            policy=P(id=kept.id, etag=kept.etag, do_not_renew=True),
            update_mask=mask("do_not_renew"),
        ),
        metadata=await tenant.md(),
    )
    offer_day = expiry - timedelta(days=30)
    await run_once(scheduler_env, tmp_path, *for_company(tenant))
    assert not (await get(tenant, policy)).successor_policy_id

    as_of = datetime.combine(offer_day, time(1), tzinfo=UTC).isoformat()
    for _ in range(2):
        await run_once(scheduler_env, tmp_path, *for_company(tenant, "--now", as_of))
    later = datetime.combine(offer_day + timedelta(days=5), time(1), tzinfo=UTC).isoformat()
    await run_once(scheduler_env, tmp_path, *for_company(tenant, "--now", later))

    now = await get(tenant, policy)
    assert now.state == P.IN_FORCE and now.successor_policy_id
    assert await status_log.counts(tenant.company_id, "renew") == {
        policy.id: 1,
        now.successor_policy_id: 1,
    }
    listed = await tenant.harness.policies.ListPolicies(
        policy_service_pb2.ListPoliciesRequest(page_size=50), metadata=await tenant.md()
    )
    # The policy, its one successor, and the do-not-renew policy without one.
    assert len(listed.policies) == 3
    assert not (await get(tenant, kept)).successor_policy_id


# ------------------------------------------------------------------ scheduled cancellation


async def test_a_scheduled_cancellation_is_completed_on_its_date(
    tenant: Tenant, scheduler_env: dict[str, str], tmp_path: Path, status_log: StatusLog
) -> None:
    policy = await bound(tenant, effective=TODAY - timedelta(days=10))
    cancel_on = TODAY + timedelta(days=3)
    pending = await tenant.harness.policies.CancelPolicy(
        policy_service_pb2.CancelPolicyRequest(
            policy_id=policy.id,
            etag=policy.etag,
            reason=P.MEMBER_REQUEST,
            effective_date=gdate(cancel_on),
            scheduled=True,
        ),
        metadata=await tenant.md(),
    )
    assert pending.state == P.CANCEL_PENDING

    before = datetime.combine(cancel_on - timedelta(days=1), time(12), tzinfo=UTC).isoformat()
    await run_once(scheduler_env, tmp_path, *for_company(tenant, "--now", before))
    assert (await get(tenant, policy)).state == P.CANCEL_PENDING

    on_the_day = datetime.combine(cancel_on, time(0, 5), tzinfo=UTC).isoformat()
    await run_once(scheduler_env, tmp_path, *for_company(tenant, "--now", on_the_day))
    await run_once(scheduler_env, tmp_path, *for_company(tenant, "--now", on_the_day))
    assert (await get(tenant, policy)).state == P.CANCELLED
    rows = [
        r
        for r in await status_log.rows(tenant.company_id, "cancel")
        if r["from_state"] == "CANCEL_PENDING"
    ]
    assert [(str(r["policy_id"]), r["to_state"]) for r in rows] == [(policy.id, "CANCELLED")]
    assert rows[0]["actor_id"] == SYSTEM_SUBJECT
    assert rows[0]["request_id"] == request_id_for(
        DueKind.COMPLETE_CANCELLATION, uuid.UUID(policy.id), cancel_on, pending.etag
    )
    # Reinstated and scheduled again for the same day: completed again (a fresh id).
    md = await tenant.md()
    await tenant.harness.policies.ReinstatePolicy(
        policy_service_pb2.ReinstatePolicyRequest(policy_id=policy.id), metadata=md
    )
    again = await tenant.harness.policies.CancelPolicy(
        policy_service_pb2.CancelPolicyRequest(
            policy_id=policy.id,
            reason=P.MEMBER_REQUEST,
            effective_date=gdate(cancel_on),
            scheduled=True,
        ),
        metadata=md,
    )
    assert again.state == P.CANCEL_PENDING
    await run_once(scheduler_env, tmp_path, *for_company(tenant, "--now", on_the_day))
    assert (await get(tenant, policy)).state == P.CANCELLED


# ------------------------------------------------------------------ company time zones


class ZonedTenants(SettingsTenantDirectory):
    """The settings fallback, with a time zone per company."""

    def __init__(self, core: CoreHarness, zones: dict[str, str]) -> None:
        super().__init__(core.app.ctx.settings)
        self.zones = zones

    async def facts(self, company_id: uuid.UUID) -> TenantFacts:
        return TenantFacts(time_zone=self.zones.get(str(company_id), "UTC"))


async def test_today_is_each_company_s_own_date_in_its_time_zone(
    core: CoreHarness, status_log: StatusLog
) -> None:
    """23:00 UTC today is already tomorrow at UTC+14 and still today at UTC-11:
    the pass (in this process, the same runner the scheduler runs) activates the
    policy bound for tomorrow in the first company only."""
    ahead, behind = await core.tenant(), await core.tenant()
    early = await bound(ahead, effective=TOMORROW)
    late = await bound(behind, effective=TOMORROW)
    base = core.app.ctx
    ctx = CoreContext(
        db=base.db,
        settings=base.settings,
        audit=base.audit,
        events=base.events,
        tenants=ZonedTenants(
            core, {ahead.company_id: "Pacific/Kiritimati", behind.company_id: "Pacific/Pago_Pago"}
        ),
        clock=lambda: datetime.combine(TODAY, time(23), tzinfo=UTC),
    )
    runner = LifecycleRunner(
        ctx,
        PolicyUseCases(ctx),
        only_companies=[uuid.UUID(ahead.company_id), uuid.UUID(behind.company_id)],
    )
    report = await runner.run_pass()

    assert dict(report.transitions) == {"activate": 1} and not report.failures
    assert (await get(ahead, early)).state == P.IN_FORCE
    assert (await get(behind, late)).state == P.BOUND
    [logged] = await status_log.rows(ahead.company_id, "activate")
    assert logged["request_id"] == request_id_for(
        DueKind.ACTIVATE, uuid.UUID(early.id), TOMORROW, early.etag
    )


# ------------------------------------------------------------------ crashes and replicas


async def test_kill_9_mid_run_then_a_restart_makes_every_transition_exactly_once(
    tenant: Tenant, scheduler_env: dict[str, str], tmp_path: Path, status_log: StatusLog
) -> None:
    """The test holds the row lock of the 60th due policy (due order: date, then
    id), so the scheduler stops there mid-run, inside that policy's transaction,
    with 59 transitions committed; it is killed there, the lock released, and a
    restarted scheduler makes the other 91."""
    ids = await many_bound(tenant, 150, TOMORROW)
    blocker = sorted(ids, key=uuid.UUID)[59]
    args = for_company(tenant, "--batch-size", "5", "--now", AS_OF_TOMORROW)
    locker = await asyncpg.connect(status_log.url)
    try:
        lock = locker.transaction()
        await lock.start()
        await locker.execute(
            "SELECT 1 FROM core.policies WHERE id = $1 FOR UPDATE", uuid.UUID(blocker)
        )
        async with started(scheduler_env, tmp_path, "--once", *args, name="killed") as first:
            while len(await status_log.counts(tenant.company_id, "activate")) < 59:
                assert first.running, first.output()
                await asyncio.sleep(0.02)
            os.kill(first.pid, signal.SIGKILL)
            assert await first.wait() == -signal.SIGKILL
        moved = await status_log.counts(tenant.company_id, "activate")
        assert len(moved) == 59 and blocker not in moved
        await lock.rollback()
    finally:
        await locker.close()

    await run_once(scheduler_env, tmp_path, *args)

    counts = await status_log.counts(tenant.company_id, "activate")
    assert counts == dict.fromkeys(ids, 1)
    states = await asyncio.gather(*(get_id(tenant, i) for i in ids))
    assert {s.state for s in states} == {P.IN_FORCE}


async def test_two_schedulers_started_at_once_do_not_double_anything(
    tenant: Tenant,
    scheduler_env: dict[str, str],
    tmp_path: Path,
    status_log: StatusLog,
    core_database: str,
) -> None:
    """Both wait while the test holds the leader lock; released, they race for it:
    one leads and moves everything, the other leads after it and finds nothing."""
    ids = await many_bound(tenant, 40, TOMORROW)
    args = for_company(tenant, "--once", "--batch-size", "3", "--now", AS_OF_TOMORROW)
    holder = await asyncpg.connect(to_libpq_url(app_role_url(core_database)))
    try:
        await holder.fetchval("SELECT pg_advisory_lock($1)", LOCK_KEY)
        async with (
            started(scheduler_env, tmp_path, *args, name="one") as one,
            started(scheduler_env, tmp_path, *args, name="two") as two,
        ):
            while not all("another replica leads; waiting" in s.output() for s in (one, two)):
                assert one.running and two.running, one.output() + two.output()
                await asyncio.sleep(0.05)
            await holder.close()  # releases the lock: both try to take it
            codes = await asyncio.gather(one.wait(), two.wait())
            assert codes == [0, 0], one.output() + two.output()
    finally:
        if not holder.is_closed():
            await holder.close()
    assert await status_log.counts(tenant.company_id, "activate") == dict.fromkeys(ids, 1)


async def test_two_passes_racing_without_the_lock_still_move_each_policy_once(
    core: CoreHarness, tenant: Tenant, status_log: StatusLog
) -> None:
    """Safety does not rest on the leader lock: two runners that read the same
    due policies at once (same etags, same request ids) make each transition once
    (the second call of each is a replay or fails its etag check)."""
    ids = await many_bound(tenant, 30, TOMORROW)
    base = core.app.ctx
    ctx = CoreContext(
        db=base.db,
        settings=base.settings,
        audit=base.audit,
        tenants=base.tenants,
        events=base.events,
        clock=lambda: datetime.fromisoformat(AS_OF_TOMORROW),
    )
    runners = [
        LifecycleRunner(
            ctx, PolicyUseCases(ctx), batch_size=7, only_companies=[uuid.UUID(tenant.company_id)]
        )
        for _ in range(2)
    ]
    reports = await asyncio.gather(*(r.run_pass() for r in runners))

    assert await status_log.counts(tenant.company_id, "activate") == dict.fromkeys(ids, 1)
    assert {s.state for s in await asyncio.gather(*(get_id(tenant, i) for i in ids))} == {
        P.IN_FORCE
    }
    failures = sum((r.failures for r in reports), Counter())
    assert set(failures) <= {("activate", "ETAG_MISMATCH")}, failures


# ------------------------------------------------------------------ the running process


async def test_the_long_running_process_exports_its_metrics_and_stops_on_sigterm(
    tenant: Tenant, scheduler_env: dict[str, str], tmp_path: Path
) -> None:
    policy = await bound(tenant, effective=TOMORROW)
    port = find_free_port()
    env = {**scheduler_env, "CARDINSA_SCHEDULER_METRICS_PORT": str(port)}
    args = for_company(tenant, "--interval", "3600", "--now", AS_OF_TOMORROW)
    async with started(env, tmp_path, *args, name="serving") as scheduler:
        while "pass finished" not in scheduler.output():
            assert scheduler.running, scheduler.output()
            await asyncio.sleep(0.05)
        page = await asyncio.to_thread(_scrape, f"http://127.0.0.1:{port}/metrics")
        assert 'lifecycle_scheduler_transitions_total{kind="activate"} 1.0' in page
        assert "lifecycle_scheduler_leader 1.0" in page
        assert "lifecycle_scheduler_oldest_due_lag_seconds 0.0" in page
        assert 'db_pool_size{pool="core-scheduler"}' in page
        os.kill(scheduler.pid, signal.SIGTERM)
        assert await scheduler.wait() == 0, scheduler.output()
    assert (await get(tenant, policy)).state == P.IN_FORCE


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:  # noqa: S310 - loopback
        return str(reply.read().decode())


# ------------------------------------------------------------------ the clock


async def test_a_future_clock_is_refused_unless_allowed(
    scheduler_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**scheduler_env, "CARDINSA_SCHEDULER_ALLOW_FUTURE_CLOCK": "false"}
    refused = await run_once(env, tmp_path, "--now", AS_OF_TOMORROW, expect=2)
    assert "CARDINSA_SCHEDULER_ALLOW_FUTURE_CLOCK" in refused.output()
