"""Failures lose nothing: a killed worker, a database restart, a dead upstream.

Each test runs the whole suite as real processes (``fault_suite``: cardinsa_tools.suite,
two workers per service, behind the gateway) and breaks one thing while calls
are in flight:

- kill -9 of a core worker during a stream of CreatePolicyholder calls whose
  client retries, with the same request id, on UNAVAILABLE: every create is
  acknowledged and exists exactly once (counted by request id in the database);
- a PostgreSQL restart during creates and reads (through the ORM and through
  the read path without it): callers get OK (or NOT_FOUND for an unknown id) or
  UNAVAILABLE, never INTERNAL; health turns NOT_SERVING and back to SERVING without a
  restart of the services; every acknowledged create is still there, and the
  retried ones exist once;
- the gateway routes around a dead worker: once Envoy's health check marks the
  killed worker, every call through the gateway (writes included) succeeds
  (test_failover.py does the same with production intervals, under load).

The three tests share one suite (module-scoped, started once: the start is
most of a test's time). Each test first waits until every worker of every
service is SERVING again (``wait_settled``: a worker the previous test killed
is back from its supervisor, the database is back), and counts only what it
created (its own email tag, its own request ids, metrics read before and after
its fault). Running a test alone starts the suite for it alone.

Bounded: each test well under a minute on two cores. Everything is stopped by
PID or process group, also on failure (the suite's files are kept when a test
of the module failed).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import grpc
import pytest
from fault_suite import (
    NOT_SERVING,
    SERVING,
    FaultSuite,
    counts_by_code,
    running_suite,
    wait_health,
    wait_settled,
)

from cardinsa.core.v1 import policy_service_pb2 as ps
from cardinsa.core.v1 import policy_service_pb2_grpc as psg
from cardinsa.core.v1 import policyholder_service_pb2 as hs
from cardinsa.core.v1 import policyholder_service_pb2_grpc as hsg
from cardinsa.core.v1 import resources_pb2 as r
from cardinsa_foundation.db import to_libpq_url

pytestmark = pytest.mark.integration

RETRYABLE = {grpc.StatusCode.UNAVAILABLE}
CALL_TIMEOUT_S = 15.0


@pytest.fixture(scope="module")
def shared_suite(request: pytest.FixtureRequest) -> Iterator[FaultSuite]:
    failed_before = request.session.testsfailed
    with running_suite(failed=lambda: request.session.testsfailed > failed_before) as suite:
        yield suite


@pytest.fixture
def suite(shared_suite: FaultSuite) -> FaultSuite:
    """The module's suite, every worker SERVING (whatever the last test broke)."""
    asyncio.run(wait_settled(shared_suite))
    return shared_suite


def holder(tag: str) -> r.Policyholder:
    return r.Policyholder(
        kind=r.Policyholder.PERSON,
        given_name="Fault",
        family_name=f"Tolerant{uuid.uuid4().hex[:6]}",
        national_id=f"F{uuid.uuid4().int % 10**11:011d}",
        email=f"{tag}-{uuid.uuid4().hex[:10]}@faults.cardinsa.test",
    )


@dataclass
class Creates:
    """A stream of CreatePolicyholder calls, each retried with its request id."""

    stubs: list[Any]
    metadata: list[tuple[str, str]]
    tag: str
    acked: dict[str, str] = field(default_factory=dict)  # request id → policyholder id
    codes: Counter[str] = field(default_factory=Counter)  # every attempt's outcome
    retries: int = 0
    gave_up: list[str] = field(default_factory=list)

    async def one(self, index: int, *, deadline_s: float) -> None:
        request_id = str(uuid.uuid4())
        request = hs.CreatePolicyholderRequest(policyholder=holder(self.tag), request_id=request_id)
        attempt = 0
        give_up = time.monotonic() + deadline_s
        while True:
            stub = self.stubs[(index + attempt) % len(self.stubs)]
            try:
                reply = await stub.CreatePolicyholder(
                    request, metadata=self.metadata, timeout=CALL_TIMEOUT_S
                )
            except grpc.aio.AioRpcError as error:
                self.codes[error.code().name] += 1
                if error.code() not in RETRYABLE or time.monotonic() > give_up:
                    self.gave_up.append(f"{request_id}: {error.code().name} {error.details()}")
                    return
                attempt += 1
                self.retries += 1
                await asyncio.sleep(min(0.05 * attempt, 0.5))
                continue
            self.codes["OK"] += 1
            assert request_id not in self.acked
            self.acked[request_id] = reply.id
            return


async def in_parallel(count: int, job: Callable[[int], Awaitable[None]], width: int) -> None:
    """``job(0..count-1)``, at most ``width`` at a time."""
    gate = asyncio.Semaphore(width)

    async def run(index: int) -> None:
        async with gate:
            await job(index)

    await asyncio.gather(*(run(i) for i in range(count)))


async def stored(suite: FaultSuite, tag: str) -> tuple[dict[str, str], Counter[str]]:
    """request id → resource id (idempotency keys of CreatePolicyholder) and how
    many policyholders each email tag has, read as the owner role."""
    conn = await asyncpg.connect(to_libpq_url(suite.postgres().admin_url()))
    try:
        keys = await conn.fetch(
            "SELECT request_id, resource_id FROM core.idempotency_keys "
            "WHERE method = 'CreatePolicyholder'"
        )
        rows = await conn.fetch("SELECT id FROM core.policyholders WHERE email LIKE $1", f"{tag}-%")
    finally:
        await conn.close()
    return {k["request_id"]: k["resource_id"] for k in keys}, Counter(str(r["id"]) for r in rows)


def check_exactly_once(
    creates: Creates, keys: dict[str, str], holders: Counter[str], sent: int
) -> None:
    assert not creates.gave_up, creates.gave_up[:5]
    assert len(creates.acked) == sent
    for request_id, resource_id in creates.acked.items():
        assert keys.get(request_id) == resource_id, request_id  # one key per request id
        assert holders[resource_id] == 1, resource_id  # and its policyholder, once
    # Nothing else was created by this stream: no duplicate from a retry.
    assert sum(holders.values()) == sent


# --------------------------------------------------------------------- kill -9


def test_a_killed_worker_loses_no_acknowledged_create_and_duplicates_none(
    suite: FaultSuite,
) -> None:
    asyncio.run(_killed_worker(suite))


async def _killed_worker(suite: FaultSuite) -> None:
    token = await asyncio.to_thread(suite.login)
    metadata = [("authorization", f"Bearer {token}")]
    channels = [grpc.aio.insecure_channel(suite.address("core", w)) for w in (0, 1)]
    try:
        creates = Creates([hsg.PolicyholderServiceStub(c) for c in channels], metadata, "kill")
        total = 240
        killed: list[int] = []

        async def job(index: int) -> None:
            if index == total // 3 and not killed:
                # Mid-stream, with calls in flight on both workers.
                killed.append(await asyncio.to_thread(suite.kill_worker, "core", 1))
            await creates.one(index, deadline_s=30)

        started = time.monotonic()
        await in_parallel(total, job, width=12)
        assert killed, "the worker was not killed"
        assert time.monotonic() - started < 60
    finally:
        for channel in channels:
            await channel.close()
    # The kill was felt (calls failed over), and nothing but UNAVAILABLE was retried.
    assert creates.retries > 0, creates.codes
    assert set(creates.codes) <= {"OK", "UNAVAILABLE"}, creates.codes
    keys, holders = await stored(suite, "kill")
    check_exactly_once(creates, keys, holders, total)


# ------------------------------------------------------------- database restart


def test_a_database_restart_gives_unavailable_never_internal_and_loses_nothing(
    suite: FaultSuite,
) -> None:
    asyncio.run(_database_restart(suite))


async def _database_restart(suite: FaultSuite) -> None:
    token = await asyncio.to_thread(suite.login)
    metadata = [("authorization", f"Bearer {token}")]
    core = [suite.address("core", w) for w in (0, 1)]
    channels = [grpc.aio.insecure_channel(address) for address in core]
    stubs = [hsg.PolicyholderServiceStub(c) for c in channels]
    creates = Creates(stubs, metadata, "restart")
    reads: Counter[str] = Counter()
    existing = await stubs[0].CreatePolicyholder(
        hs.CreatePolicyholderRequest(policyholder=holder("reader")), metadata=metadata
    )
    stop = asyncio.Event()
    sent = 0

    async def writer(slot: int) -> None:
        nonlocal sent
        while not stop.is_set():
            sent += 1
            await creates.one(slot + sent, deadline_s=45)

    async def reader(slot: int) -> None:
        while not stop.is_set():
            try:
                await stubs[slot % 2].GetPolicyholder(
                    hs.GetPolicyholderRequest(policyholder_id=existing.id),
                    metadata=metadata,
                    timeout=CALL_TIMEOUT_S,
                )
                reads["OK"] += 1
            except grpc.aio.AioRpcError as error:
                reads[error.code().name] += 1
                await asyncio.sleep(0.05)

    policies = [psg.PolicyServiceStub(c) for c in channels]
    raw_reads: Counter[str] = Counter()

    async def raw_reader(slot: int) -> None:
        # GetPolicy takes the read path without the ORM (Database.read): an id
        # that does not exist is NOT_FOUND, and the outage must still be UNAVAILABLE.
        while not stop.is_set():
            try:
                await policies[slot % 2].GetPolicy(
                    ps.GetPolicyRequest(policy_id=str(uuid.uuid4())),
                    metadata=metadata,
                    timeout=CALL_TIMEOUT_S,
                )
                raw_reads["OK"] += 1
            except grpc.aio.AioRpcError as error:
                raw_reads[error.code().name] += 1
                await asyncio.sleep(0.05)

    load = [asyncio.create_task(writer(i)) for i in range(4)]
    load += [asyncio.create_task(reader(i)) for i in range(2)]
    load += [asyncio.create_task(raw_reader(i)) for i in range(2)]
    try:
        await asyncio.sleep(1.5)
        before = creates.codes["OK"]
        assert before > 0, creates.codes
        await asyncio.to_thread(suite.restart_postgres, "stop")
        down = [await wait_health(address, NOT_SERVING, 10) for address in core]
        await asyncio.sleep(1.5)  # calls keep arriving while it is down
        await asyncio.to_thread(suite.restart_postgres, "start")
        up = [await wait_health(address, SERVING, 20) for address in core]
        await asyncio.sleep(1.5)  # and after it is back
        after = creates.codes["OK"]
    finally:
        stop.set()
        await asyncio.gather(*load, return_exceptions=True)
        for channel in channels:
            await channel.close()
    assert max(down) < 10 and max(up) < 20
    # Callers saw the outage as UNAVAILABLE and nothing worse; reads and writes
    # work again without a restart of the services.
    for codes in (creates.codes, reads):
        assert codes["INTERNAL"] == 0 and codes["UNKNOWN"] == 0, codes
        assert set(codes) <= {"OK", "UNAVAILABLE"}, codes
    assert set(raw_reads) <= {"NOT_FOUND", "UNAVAILABLE"}, raw_reads
    assert raw_reads["NOT_FOUND"] > 0, raw_reads
    assert creates.codes["UNAVAILABLE"] + reads["UNAVAILABLE"] > 0, (creates.codes, reads)
    assert after > before and reads["OK"] > 0
    keys, holders = await stored(suite, "restart")
    check_exactly_once(creates, keys, holders, len(creates.acked) + len(creates.gave_up))


# ------------------------------------------------------------------ gateway


def test_the_gateway_routes_around_a_dead_worker(suite: FaultSuite) -> None:
    _dead_worker_behind_the_gateway(suite)


def _rest(
    suite: FaultSuite, method: str, path: str, token: str, body: Any = None
) -> tuple[int, Any]:
    host, port = suite.gateway.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=20)
    try:
        headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        data = None if body is None else json.dumps(body)
        connection.request(method, path, body=data, headers=headers)
        reply = connection.getresponse()
        return reply.status, json.loads(reply.read() or b"null")
    finally:
        connection.close()


def _dead_worker_behind_the_gateway(suite: FaultSuite) -> None:
    token = suite.login()
    dead = suite.address("core", 1)

    def create() -> tuple[int, Any]:
        body = {
            "kind": "PERSON",
            "given_name": "Gateway",
            "family_name": f"Routed{uuid.uuid4().hex[:6]}",
            "national_id": f"G{uuid.uuid4().int % 10**11:011d}",
            "email": f"gateway-{uuid.uuid4().hex[:10]}@faults.cardinsa.test",
        }
        return _rest(suite, "POST", f"/v1/policyholders?request_id={uuid.uuid4()}", token, body)

    deadline = time.monotonic() + 15
    while not all("failed" not in flags for flags in suite.envoy_endpoints().values()):
        assert time.monotonic() < deadline, suite.envoy_endpoints()
        time.sleep(0.2)
    assert len(suite.envoy_endpoints()) == 2
    status, first = create()
    assert status == 200, first

    suite.kill_worker("core", 1)
    # Envoy probes every 0.5 s and gives up on an endpoint after two failures.
    deadline = time.monotonic() + 10
    while "failed_active_health_check" not in suite.envoy_endpoints().get(dead, ""):
        assert time.monotonic() < deadline, suite.envoy_endpoints()
        time.sleep(0.1)

    before = counts_by_code(suite.metrics("core", 0), "CreatePolicyholder").get("OK", 0)
    statuses: Counter[int] = Counter()
    for _ in range(15):
        status, made = create()  # a POST: Envoy never retries it elsewhere
        statuses[status] += 1
        assert status == 200, made
        status, read = _rest(suite, "GET", f"/v1/policyholders/{made['id']}", token)
        statuses[status] += 1
        assert status == 200 and read["id"] == made["id"], read
    assert statuses == Counter({200: 30})
    # Every create was served once: by the surviving worker, or by the killed
    # one once its supervisor restarted it (its counters start again at 0).
    after = counts_by_code(suite.metrics("core", 0), "CreatePolicyholder").get("OK", 0)
    try:
        restarted = counts_by_code(suite.metrics("core", 1), "CreatePolicyholder").get("OK", 0)
    except OSError:  # not listening yet
        restarted = 0
    assert after - before + restarted == 15
