"""Failover behind the gateway with PRODUCTION intervals (the gateway's health
checks, the drain delay and the grace period at their defaults).

One suite (cardinsa_tools.suite --workers 2, the default worker port spacing):

1. every RPC family answers through the gateway on every worker: identity,
   company and core, REST and gRPC, no 501 (the workers of different services
   once shared ports);
2. kill -9 of one of core's two workers under creates (CreatePolicyholder with
   a request id, the client retrying UNAVAILABLE with the same id) and reads
   (GetPolicyholder) through the gateway: reads see no error at all; creates
   see UNAVAILABLE only for the calls that were in flight on the killed worker
   (at most the number of concurrent writers), and their retries succeed;
   nothing is lost or duplicated. The supervisor restarts the worker, counts it
   in worker_restarts_total, and the gateway sends it traffic again;
3. SIGTERM of the other worker under the same load: no error at all, for reads
   and creates (NOT_SERVING first, still serving while the gateway notices,
   then stop accepting, in-flight calls finish).

Bounded: the load runs from a second before the fault until a few seconds after
it (at most MAX_CREATES creates per phase); every wait has a bound.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import signal
import time
from collections import Counter
from typing import Any

import grpc
import pytest
from fault_suite import FaultSuite, listening_pid, running_suite
from test_faults import CALL_TIMEOUT_S, Creates, check_exactly_once, holder, stored

from cardinsa.core.v1 import policyholder_service_pb2 as hs
from cardinsa.core.v1 import policyholder_service_pb2_grpc as hsg

pytestmark = pytest.mark.integration

WRITERS = 6
READERS = 2
MAX_CREATES = 3000
SERVICES = ("identity", "company", "core")


def rest(suite: FaultSuite, method: str, path: str, token: str | None = None) -> int:
    host, port = suite.gateway.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=20)
    try:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        connection.request(method, path, headers=headers)
        reply = connection.getresponse()
        reply.read()
        return reply.status
    finally:
        connection.close()


def wait_all_healthy(suite: FaultSuite, bound_s: float = 60.0) -> None:
    """Until Envoy sees both workers of every service healthy (and none ejected)."""
    deadline = time.monotonic() + bound_s
    while True:
        found = {name: suite.envoy_endpoints(name) for name in SERVICES}
        if all(
            # failed_active_health_check, failed_outlier_check, …
            len(endpoints) == 2 and all("failed" not in flags for flags in endpoints.values())
            for endpoints in found.values()
        ):
            return
        assert time.monotonic() < deadline, found
        time.sleep(0.2)


def test_failover_behind_the_gateway_costs_clients_nothing() -> None:
    with running_suite(production=True) as suite:
        token = suite.login()
        wait_all_healthy(suite)
        every_family_answers(suite, token)
        asyncio.run(_failover(suite, token))


def every_family_answers(suite: FaultSuite, token: str) -> None:
    statuses: Counter[tuple[str, int]] = Counter()
    for _ in range(10):  # the gateway balances: both workers of each service answer
        statuses["identity", rest(suite, "GET", "/.well-known/jwks.json")] += 1
        statuses["company", rest(suite, "GET", "/v1/companies", token)] += 1
        statuses["core", rest(suite, "GET", "/v1/products", token)] += 1
    assert statuses == Counter({("identity", 200): 10, ("company", 200): 10, ("core", 200): 10})
    for service in SERVICES:
        for worker in (0, 1):
            handled = suite.metrics(service, worker)
            assert "grpc_server_handled_total{" in handled, (service, worker)


async def _failover(suite: FaultSuite, token: str) -> None:
    metadata = [("authorization", f"Bearer {token}")]
    async with grpc.aio.insecure_channel(suite.gateway) as channel:
        stub = hsg.PolicyholderServiceStub(channel)
        existing = await stub.CreatePolicyholder(
            hs.CreatePolicyholderRequest(policyholder=holder("reader")),
            metadata=metadata,
            timeout=CALL_TIMEOUT_S,
        )

        # --- kill -9 of worker 1
        killed: list[int] = []

        def kill() -> None:
            killed.append(suite.kill_worker("core", 1))
            time.sleep(3)  # load continues while the worker is away and restarting

        creates, reads = await under_load(stub, metadata, existing.id, "kill9", kill)
        assert killed
        print(f"kill -9: creates {dict(creates.codes)}, reads {dict(reads)}")
        assert reads == Counter({"OK": reads["OK"]}) and reads["OK"] > 0, reads
        assert set(creates.codes) <= {"OK", "UNAVAILABLE"}, creates.codes
        # Only the calls in flight on the killed worker, once each, then retried.
        assert creates.codes["UNAVAILABLE"] <= WRITERS, creates.codes
        keys, holders = await stored(suite, "kill9")
        check_exactly_once(creates, keys, holders, len(creates.acked))
        assert len(creates.acked) > WRITERS

        # The supervisor restarted it, counted it, and the gateway uses it again.
        await asyncio.to_thread(wait_all_healthy, suite)
        restarted = suite.worker_pid("core", 1)
        assert restarted != killed[0]
        assert 'worker_restarts_total{worker="1"} 1.0' in suite.metrics("core", 1)

        # --- SIGTERM of worker 0
        def terminate() -> None:
            pid = suite.worker_pid("core", 0)
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 40  # drain 5 s + grace 10 s, with margin
            while listening_pid(suite.ports["core"]) == pid:
                assert time.monotonic() < deadline, "the stopped worker still listens"
                time.sleep(0.1)
            time.sleep(2)

        creates, reads = await under_load(stub, metadata, existing.id, "sigterm", terminate)
        print(f"SIGTERM: creates {dict(creates.codes)}, reads {dict(reads)}")
        assert reads == Counter({"OK": reads["OK"]}) and reads["OK"] > 0, reads
        assert creates.codes == Counter({"OK": len(creates.acked)}), creates.codes
        keys, holders = await stored(suite, "sigterm")
        check_exactly_once(creates, keys, holders, len(creates.acked))
        await asyncio.to_thread(wait_all_healthy, suite)


async def under_load(
    stub: Any, metadata: list[tuple[str, str]], existing: str, tag: str, fault: Any
) -> tuple[Creates, Counter[str]]:
    """Creates and reads through the gateway from a second before ``fault()``
    until it returns."""
    creates = Creates([stub], metadata, tag)
    reads: Counter[str] = Counter()
    stop = asyncio.Event()
    sent = 0

    async def writer() -> None:
        nonlocal sent
        while not stop.is_set() and sent < MAX_CREATES:
            sent += 1
            await creates.one(sent, deadline_s=30)

    async def reader() -> None:
        while not stop.is_set():
            try:
                await stub.GetPolicyholder(
                    hs.GetPolicyholderRequest(policyholder_id=existing),
                    metadata=metadata,
                    timeout=CALL_TIMEOUT_S,
                )
                reads["OK"] += 1
            except grpc.aio.AioRpcError as error:
                reads[f"{error.code().name}: {error.details()}"] += 1

    load = [asyncio.create_task(writer()) for _ in range(WRITERS)]
    load += [asyncio.create_task(reader()) for _ in range(READERS)]
    try:
        await asyncio.sleep(1.0)
        await asyncio.to_thread(fault)
    finally:
        stop.set()
        await asyncio.gather(*load)
    return creates, reads
