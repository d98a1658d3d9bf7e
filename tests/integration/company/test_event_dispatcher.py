"""The event dispatcher against a real database, real HTTP receivers and a real
gRPC EventService: events become signed deliveries, in order per resource
across replicas; failures are retried with backoff and dead-lettered; a lease
that expires is taken over; targets that resolve or redirect to internal
addresses are refused at connection time; and ``kill -9`` in the middle of a
delivery loses nothing.

Every dispatcher (in-process task or subprocess) and server a test starts is
stopped by it, also when it fails (the subprocess by its pid).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from company_harness import CompanyHarness, failure
from dispatcher_harness import (
    FakeEvents,
    Received,
    Receiver,
    Store,
    event_server,
    eventually,
    make_event,
)
from support.event_watch import watch_until
from support.identity_harness import IdentityHarness

from cardinsa.company.v1 import company_service_pb2 as pb
from cardinsa.company.v1 import event_service_pb2_grpc
from cardinsa_company.dispatcher.delivery import Attempt, DeliveryWorker
from cardinsa_company.dispatcher.network import guarded_transport
from cardinsa_company.dispatcher.process import Dispatcher
from cardinsa_company.dispatcher.webhook_sink import WebhookSink
from cardinsa_company.dispatcher_settings import DispatcherSettings
from cardinsa_company.domain.webhooks import address_allowed, verify
from cardinsa_company.settings import DEV_WEBHOOK_SECRET_ENCRYPTION_KEY
from cardinsa_foundation.db import Database, app_role_url, platform_role_url

KEY = DEV_WEBHOOK_SECRET_ENCRYPTION_KEY


@pytest_asyncio.fixture(scope="session")
async def dispatcher_key(identity: IdentityHarness) -> str:
    return await identity.service_key("event-dispatcher", "events.watch")


@pytest_asyncio.fixture
async def store(company_database: str) -> Store:
    store = Store.for_database(company_database, KEY)
    await store.settle()
    return store


@pytest.fixture
def settings(identity: IdentityHarness, dispatcher_key: str) -> DispatcherSettings:
    return DispatcherSettings(
        _env_file=None,
        environment="test",
        identity_address=identity.app.server.address,
        service_api_key=dispatcher_key,
        dispatcher_sources=["company"],
        dispatcher_company_address="127.0.0.1:1",  # each test names its fake server
        dispatcher_metrics_port=0,
        dispatcher_lock_retry_s=0.1,
        dispatcher_reconnect_base_s=0.05,
        dispatcher_reconnect_max_s=0.5,
        dispatcher_poll_interval_s=0.1,
        dispatcher_delivery_timeout_s=2.0,
        dispatcher_lease_s=10.0,
        dispatcher_retry_base_s=0.05,
        dispatcher_max_attempts=3,
        webhook_allow_private_targets=True,
        webhook_allow_http=True,
        db_pool_size=4,
        db_max_overflow=4,
    )


@contextlib.asynccontextmanager
async def running(dispatcher: Dispatcher) -> AsyncIterator[Dispatcher]:
    task = asyncio.create_task(dispatcher.run())
    try:
        yield dispatcher
    finally:
        dispatcher.stopping.set()
        code = await asyncio.wait_for(task, 30)
        assert code == 0


@contextlib.asynccontextmanager
async def worker(
    settings: DispatcherSettings, database: str, **kwargs: Any
) -> AsyncIterator[DeliveryWorker]:
    """A delivery worker alone (no ingestion), running until the block ends."""
    db = Database(app_role_url(database), settings)
    stopping = asyncio.Event()
    delivery = DeliveryWorker(settings, db, stopping=stopping, **kwargs)
    task = asyncio.create_task(delivery.run())
    try:
        yield delivery
    finally:
        stopping.set()
        await asyncio.wait_for(task, 30)
        await db.dispose()


def check_signed(store: Store, subscription_id: str, request: Received) -> dict[str, Any]:
    headers = request.headers
    assert headers["content-type"] == "application/cloudevents+json"
    assert headers["user-agent"].startswith("Cardinsa-Webhooks/")
    assert verify(
        store.secrets[subscription_id],
        headers["cardinsa-signature"],
        headers["cardinsa-timestamp"],
        request.body,
        now=time.time(),
    ), headers
    # Signed with this subscription's secret, not any other.
    assert not verify(
        "whsec_another",
        headers["cardinsa-signature"],
        headers["cardinsa-timestamp"],
        request.body,
        now=time.time(),
    )
    document: dict[str, Any] = json.loads(request.body)
    assert headers["cardinsa-event-id"] == document["id"]
    assert headers["cardinsa-event-type"] == document["type"]
    return document


def slow_ok(_: Received) -> tuple[int, dict[str, str], bytes]:
    """200 after a random pause: deliveries made at once would finish out of order."""
    time.sleep(random.uniform(0, 0.05))
    return 200, {}, b"ok"


async def test_events_are_delivered_signed_and_in_order_per_resource_across_two_replicas(
    settings: DispatcherSettings, store: Store, company_database: str
) -> None:
    company, other_company = str(uuid.uuid4()), str(uuid.uuid4())
    fake = FakeEvents()
    resources = [f"companies/{uuid.uuid4()}" for _ in range(3)]
    wanted = [make_event(company, resources[n % 3], n) for n in range(12)]
    # Not delivered: a type nobody wants, another company's event, a platform event.
    fake.events += [
        *wanted[:6],
        make_event(company, resources[0], 100, type_="cardinsa.core.policy.bound.v1"),
        make_event(other_company, resources[1], 101),
        make_event("", "users/x", 102),
        *wanted[6:],
    ]
    with Receiver(behaviour=slow_ok) as receiver:
        subscription = await store.subscribe(company, receiver.url())
        async with event_server(fake) as address:
            settings = settings.model_copy(update={"dispatcher_company_address": address})
            url = app_role_url(company_database)
            async with running(Dispatcher(settings, url)), running(Dispatcher(settings, url)):
                await eventually(lambda: len(receiver.received()) >= 12, "12 deliveries")
                deliveries = await eventually(
                    lambda: _all_settled(store, subscription, 12), "12 delivered rows"
                )
        got = receiver.received()
    assert len(got) == 12, "no double delivery in the normal case"
    documents = [check_signed(store, subscription, request) for request in got]
    assert sorted(d["id"] for d in documents) == sorted(e.id for e in wanted)
    for resource in resources:
        sent = [e.id for e in wanted if e.subject == resource]
        mine = [(d, r) for d, r in zip(documents, got, strict=True) if d["subject"] == resource]
        assert [d["id"] for d, _ in mine] == sent
        # One at a time: each was sent only after the previous one was answered.
        for (_, before), (_, after) in itertools.pairwise(mine):
            assert 0 < before.answered <= after.arrived
    for document, request in zip(documents, got, strict=True):
        assert document["companyid"] == company
        assert document["data"] == f"{document['subject']}#{document['sequence']}"
        assert request.headers["cardinsa-delivery-attempt"] == "1"
    assert {row["state"] for row in deliveries} == {"DELIVERED"}
    assert all(row["attempt_count"] == 1 and row["lease_owner"] is None for row in deliveries)
    assert {request.headers["cardinsa-delivery-id"] for request in got} == {
        str(row["id"]) for row in deliveries
    }
    stored = await store.fetch(
        "SELECT id FROM company.webhook_events WHERE company_id = ANY($1)",
        [uuid.UUID(company), uuid.UUID(other_company)],
    )
    assert {str(row["id"]) for row in stored} == {e.id for e in wanted}
    cursor = await store.fetch(
        "SELECT cursor FROM company.event_cursors WHERE sink = 'webhooks' AND source = 'company'"
    )
    assert cursor[0]["cursor"] == str(len(fake.events))
    assert all(token.startswith("Bearer ") for token in fake.tokens)


async def test_the_watch_resumes_from_its_cursor_and_events_sent_again_are_delivered_once(
    settings: DispatcherSettings, store: Store, company_database: str
) -> None:
    """Streams that end, a source that sends events again on resumption (at
    least once), and a source that goes away and comes back on its address."""
    company = str(uuid.uuid4())
    fake = FakeEvents(end_after=2, rewind=3)
    events = [make_event(company, f"companies/{n % 4}", n) for n in range(10)]
    fake.events += events
    with Receiver() as receiver:
        subscription = await store.subscribe(company, receiver.url())
        async with event_server(fake) as address:
            settings = settings.model_copy(update={"dispatcher_company_address": address})
            async with running(Dispatcher(settings, app_role_url(company_database))):
                await eventually(lambda: _all_settled(store, subscription, 10), "10 deliveries")
                # The source goes away; meanwhile two more events are written.
        more = [make_event(company, "companies/0", n) for n in (10, 11)]
        fake.events += more
        port = int(address.rsplit(":", 1)[1])
        settings = settings.model_copy(update={"dispatcher_company_address": address})
        async with running(Dispatcher(settings, app_role_url(company_database))) as dispatcher:
            await asyncio.sleep(0.3)  # let it fail to connect at least once
            async with event_server(fake, port):
                rows = await eventually(
                    lambda: _all_settled(store, subscription, 12), "12 deliveries"
                )
            assert dispatcher.failed is False
        got = receiver.received()
    assert {row["state"] for row in rows} == {"DELIVERED"}
    ids = [request.headers["cardinsa-event-id"] for request in got]
    assert sorted(ids) == sorted(e.id for e in [*events, *more]), "each event exactly once"
    # Only the very first watch started from the beginning; every later one
    # resumed from a stored cursor (the second dispatcher too).
    assert fake.cursors[0] == "" and len(fake.cursors) > 3, fake.cursors
    assert all(cursor for cursor in fake.cursors[1:]), fake.cursors


class RecordingSink:
    """A second sink (where JetStream goes): refuses its first batch, then
    records what it takes."""

    name = "jetstream"

    def __init__(self) -> None:
        self.taken: list[str] = []
        self.refused = 0

    async def take(self, session: Any, source: str, events: Any) -> None:
        if not self.refused:
            self.refused += 1
            raise RuntimeError("the stream is not there yet")
        self.taken += [event.id for event in events]


async def test_each_sink_follows_with_its_own_cursor(
    settings: DispatcherSettings, store: Store, company_database: str
) -> None:
    company = str(uuid.uuid4())
    fake = FakeEvents()
    events = [make_event(company, "companies/x", n) for n in range(5)]
    fake.events += events
    sink = RecordingSink()
    with Receiver() as receiver:
        subscription = await store.subscribe(company, receiver.url())
        async with event_server(fake) as address:
            settings = settings.model_copy(update={"dispatcher_company_address": address})
            dispatcher = Dispatcher(settings, app_role_url(company_database), extra_sinks=[sink])
            async with running(dispatcher):
                await eventually(lambda: _all_settled(store, subscription, 5), "5 deliveries")
                await eventually(lambda: len(sink.taken) >= 5, "the second sink's events")
    assert sink.refused == 1
    assert sink.taken == [e.id for e in events]  # the refused batch came again, in order
    assert len(receiver.received()) == 5
    cursors = await store.fetch(
        "SELECT sink, cursor FROM company.event_cursors WHERE source = 'company' ORDER BY sink"
    )
    assert [(row["sink"], row["cursor"]) for row in cursors] == [
        ("jetstream", "5"),
        ("webhooks", "5"),
    ]


async def _all_settled(store: Store, subscription: str, count: int) -> list[Any] | None:
    rows = await store.deliveries(subscription)
    if len(rows) == count and all(row["state"] != "PENDING" for row in rows):
        return rows
    return None


async def test_a_failing_receiver_is_retried_with_backoff_then_dead_lettered(
    settings: DispatcherSettings, store: Store, company_database: str
) -> None:
    company = str(uuid.uuid4())
    fake = FakeEvents()
    fake.events.append(make_event(company, "companies/failing", 1))
    base = 0.2
    with Receiver(behaviour=lambda _: (500, {}, b"x" * 5000)) as receiver:
        subscription = await store.subscribe(company, receiver.url())
        async with event_server(fake) as address:
            settings = settings.model_copy(
                update={"dispatcher_company_address": address, "dispatcher_retry_base_s": base}
            )
            async with running(Dispatcher(settings, app_role_url(company_database))):
                (delivery,) = await eventually(
                    lambda: _all_settled(store, subscription, 1), "the dead letter"
                )
        assert len(receiver.received()) == 3
    assert delivery["state"] == "DEAD_LETTERED"
    assert delivery["attempt_count"] == delivery["total_attempt_count"] == 3
    assert delivery["last_status_code"] == 500
    assert delivery["last_error"] == "HTTP 500"
    assert delivery["dead_letter_time"] is not None and delivery["deliver_time"] is None
    attempts = await store.attempts(delivery["id"])
    assert [a["number"] for a in attempts] == [1, 2, 3]
    assert all(a["status_code"] == 500 and not a["succeeded"] for a in attempts)
    assert all(a["response_excerpt"] == "x" * 1024 for a in attempts)  # capped at 1 KiB
    # Backoff: at least half of base x 2^(n-1) between attempts n and n+1.
    starts = [a["start_time"] for a in attempts]
    for n in (1, 2):
        gap = (starts[n] - starts[n - 1]).total_seconds()
        assert gap >= base * 2 ** (n - 1) / 2, (n, gap)


async def test_an_expired_lease_is_taken_over_and_the_late_owner_cannot_record(
    settings: DispatcherSettings, store: Store, company_database: str
) -> None:
    company = str(uuid.uuid4())
    event = make_event(company, "companies/leased", 1)
    with Receiver() as receiver:
        subscription = await store.subscribe(company, receiver.url())
        db = Database(app_role_url(company_database), settings)
        try:
            async with db.unit_of_work(company_id=None, cross_tenant=True) as session:
                await WebhookSink().take(session, "company", [event])
            # A replica claims it with a short lease and dies before attempting it.
            ghost = DeliveryWorker(settings, db, stopping=asyncio.Event(), owner="ghost")
            (claimed,) = await ghost.claim(10, lease_s=1.0)
            (row,) = await store.deliveries(subscription)
            assert row["lease_owner"] == "ghost" and row["state"] == "PENDING"
            async with worker(settings, company_database) as live:
                (row,) = await eventually(
                    lambda: _all_settled(store, subscription, 1), "the takeover"
                )
            assert row["state"] == "DELIVERED"
            (request,) = receiver.received()
            assert request.headers["cardinsa-delivery-attempt"] == "1"
            check_signed(store, subscription, request)
            attempts = await store.attempts(row["id"])
            assert len(attempts) == 1 and attempts[0]["succeeded"]
            assert live.owner != "ghost"
            # The ghost coming back late changes nothing.
            late = await ghost.record(claimed, Attempt(status_code=500), datetime.now(UTC), 1)
            assert late == ""
            assert len(await store.attempts(row["id"])) == 1
            (row,) = await store.deliveries(subscription)
            assert row["state"] == "DELIVERED"
        finally:
            await db.dispose()


async def test_a_host_resolving_to_loopback_is_refused_at_connection_time(
    settings: DispatcherSettings, store: Store, company_database: str
) -> None:
    company = str(uuid.uuid4())
    settings = settings.model_copy(
        update={"webhook_allow_private_targets": False, "dispatcher_max_attempts": 1}
    )
    with Receiver() as receiver:
        # As if created while "localhost" resolved elsewhere: stored as is.
        by_name = await store.subscribe(company, receiver.url(host="localhost"))
        by_address = await store.subscribe(company, receiver.url())
        db = Database(app_role_url(company_database), settings)
        try:
            async with db.unit_of_work(company_id=None, cross_tenant=True) as session:
                await WebhookSink().take(session, "company", [make_event(company, "c/1", 1)])
        finally:
            await db.dispose()
        async with worker(settings, company_database):
            (first,) = await eventually(lambda: _all_settled(store, by_name, 1), "a refusal")
            (second,) = await eventually(lambda: _all_settled(store, by_address, 1), "a refusal")
        assert receiver.received() == []
    for row in (first, second):
        assert row["state"] == "DEAD_LETTERED"
        assert "is not allowed" in row["last_error"], row["last_error"]
        assert "127.0.0.1" in row["last_error"] or "::1" in row["last_error"]
        (attempt,) = await store.attempts(row["id"])
        assert attempt["status_code"] == 0 and "not allowed" in attempt["error"]


async def test_deleted_subscriptions_are_dead_lettered_and_paused_ones_wait(
    settings: DispatcherSettings, store: Store, company_database: str
) -> None:
    company = str(uuid.uuid4())
    with Receiver() as receiver:
        active = await store.subscribe(company, receiver.url("/active"))
        paused = await store.subscribe(company, receiver.url("/paused"))
        deleted = await store.subscribe(company, receiver.url("/deleted"))
        db = Database(app_role_url(company_database), settings)
        try:
            async with db.unit_of_work(company_id=None, cross_tenant=True) as session:
                await WebhookSink().take(session, "company", [make_event(company, "c/1", 1)])
        finally:
            await db.dispose()
        await store.execute(
            "UPDATE company.webhook_subscriptions SET state = 'PAUSED' WHERE id = $1",
            uuid.UUID(paused),
        )
        await store.execute(
            "UPDATE company.webhook_subscriptions SET delete_time = now() WHERE id = $1",
            uuid.UUID(deleted),
        )
        async with worker(settings, company_database):
            (gone,) = await eventually(lambda: _all_settled(store, deleted, 1), "the dead letter")
            (done,) = await eventually(lambda: _all_settled(store, active, 1), "the delivery")
        (waiting,) = await store.deliveries(paused)
        paths = [r.path for r in receiver.received()]
    assert gone["state"] == "DEAD_LETTERED" and gone["last_error"] == "subscription deleted"
    assert await store.attempts(gone["id"]) == []
    assert done["state"] == "DELIVERED"
    assert waiting["state"] == "PENDING" and waiting["attempt_count"] == 0
    assert paths == ["/active"]


def public_stand_in(address: str) -> bool:
    """The address check with 127.0.0.2 standing in for a public address (a
    test cannot reach the internet); every other address judged for real."""
    return address == "127.0.0.2" or address_allowed(address, allow_private=False)


async def test_a_redirect_to_an_internal_address_is_refused(
    settings: DispatcherSettings, store: Store, company_database: str
) -> None:
    company = str(uuid.uuid4())
    with Receiver() as internal:
        target = internal.url("/internal")

        def redirect(request: Received) -> tuple[int, dict[str, str], bytes]:
            if request.path == "/to-internal":
                return 307, {"Location": target}, b""
            if request.path == "/to-public":
                return 308, {"Location": "/final"}, b""
            return 200, {}, b"ok"

        with Receiver(host="127.0.0.2", behaviour=redirect) as public:
            refused = await store.subscribe(company, public.url("/to-internal"))
            followed = await store.subscribe(company, public.url("/to-public"))
            db = Database(app_role_url(company_database), settings)
            try:
                async with db.unit_of_work(company_id=None, cross_tenant=True) as session:
                    await WebhookSink().take(session, "company", [make_event(company, "c/1", 1)])
            finally:
                await db.dispose()
            transport = guarded_transport(
                allow_private=False, max_connections=4, allowed=public_stand_in
            )
            strict = settings.model_copy(update={"dispatcher_max_attempts": 1})
            async with worker(strict, company_database, transport=transport):
                (bad,) = await eventually(lambda: _all_settled(store, refused, 1), "a refusal")
                (good,) = await eventually(lambda: _all_settled(store, followed, 1), "delivery")
            paths = sorted(r.path for r in public.received())
        assert internal.received() == [], "the internal receiver was reached"
    assert paths == ["/final", "/to-internal", "/to-public"]
    assert bad["state"] == "DEAD_LETTERED"
    assert "127.0.0.1" in bad["last_error"] and "not allowed" in bad["last_error"]
    assert good["state"] == "DELIVERED"


# ------------------------------------------------------------------ kill -9


class Process:
    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
            await self.process.wait()

    async def terminate(self) -> int:
        if self.process.returncode is None:
            os.kill(self.process.pid, signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), 30)


@contextlib.asynccontextmanager
async def subprocess_dispatcher(env: dict[str, str], log: Path) -> AsyncIterator[Process]:
    with log.open("ab") as out:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cardinsa_company.dispatcher",
            env=env,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    process = Process(child, log)
    try:
        yield process
    finally:
        await process.kill()


async def test_kill_9_in_the_middle_of_a_delivery_loses_no_event(
    store: Store,
    company_database: str,
    identity: IdentityHarness,
    company: CompanyHarness,
    tmp_path: Path,
) -> None:
    """The real chain: the company server writes its events (a refused change
    writes none) and serves them with WatchEvents; the dispatcher, a process of
    its own following that stream, is killed with SIGKILL while the receiver
    holds its first request, and started again: every committed event arrives."""
    key = await identity.service_key("event-dispatcher-kill", "events.watch", "events.watch_all")
    # The key's account belongs to the platform's company, which (as `make up`
    # does) must be registered and active for its calls to be accepted.
    with contextlib.suppress(grpc.aio.AioRpcError):
        await company.create_company(company_id=company.platform_admin.company_id)
    tenant = await company.create_company()
    md = await company.as_(company.platform_admin)
    calls = company.companies
    await calls.SuspendCompany(
        pb.SuspendCompanyRequest(company_id=tenant.id, reason="audit"), metadata=md
    )
    refused = await failure(
        calls.SuspendCompany(
            pb.SuspendCompanyRequest(company_id=tenant.id, reason="again"), metadata=md
        )
    )
    assert refused.code() is grpc.StatusCode.FAILED_PRECONDITION  # rolled back: no event
    await calls.ReactivateCompany(pb.ReactivateCompanyRequest(company_id=tenant.id), metadata=md)
    await calls.DeleteCompany(pb.DeleteCompanyRequest(company_id=tenant.id), metadata=md)
    await calls.UndeleteCompany(pb.UndeleteCompanyRequest(company_id=tenant.id), metadata=md)
    events, _ = await watch_until(
        event_service_pb2_grpc.EventServiceStub(company.channel), md, 5, company_id=tenant.id
    )
    assert [e.type.split(".")[3] for e in events] == [
        "created",
        "suspended",
        "reactivated",
        "deleted",
        "undeleted",
    ]
    log = tmp_path / "dispatcher.log"
    with Receiver() as receiver:
        subscription = await store.subscribe(tenant.id, receiver.url())
        env = {k: v for k, v in os.environ.items() if not k.startswith("CARDINSA_")}
        env.update(
            CARDINSA_ENVIRONMENT="test",
            CARDINSA_LOG_JSON="true",
            CARDINSA_DATABASE_URL=app_role_url(company_database),
            CARDINSA_DATABASE_PLATFORM_URL=platform_role_url(company_database),
            CARDINSA_IDENTITY_ADDRESS=identity.app.server.address,
            CARDINSA_SERVICE_API_KEY=key,
            CARDINSA_DISPATCHER_SOURCES="company",
            CARDINSA_DISPATCHER_COMPANY_ADDRESS=company.app.server.address,
            CARDINSA_DISPATCHER_METRICS_PORT="0",
            CARDINSA_DISPATCHER_LOCK_RETRY_S="0.2",
            CARDINSA_DISPATCHER_POLL_INTERVAL_S="0.1",
            CARDINSA_DISPATCHER_DELIVERY_TIMEOUT_S="2",
            CARDINSA_DISPATCHER_LEASE_S="9",
            CARDINSA_DISPATCHER_RETRY_BASE_S="0.05",
            CARDINSA_WEBHOOK_ALLOW_PRIVATE_TARGETS="true",
            CARDINSA_WEBHOOK_ALLOW_HTTP="true",
        )
        receiver.hold.clear()  # the first request waits
        async with subprocess_dispatcher(env, log) as first:
            await eventually(
                lambda: receiver.held.is_set() or first.process.returncode is not None,
                "a delivery in flight",
            )
            assert receiver.held.is_set(), first.output()
            await first.kill()
        receiver.hold.set()
        assert first.process.returncode == -signal.SIGKILL
        async with subprocess_dispatcher(env, log) as second:
            await eventually(
                lambda: (
                    {r.headers["cardinsa-event-id"] for r in receiver.received()}
                    >= {e.id for e in events}
                    or second.process.returncode is not None
                ),
                "every event delivered after the restart",
            )
            assert second.process.returncode is None, second.output()
            rows = await eventually(
                lambda: _all_settled(store, subscription, len(events)), "every row settled"
            )
            assert await second.terminate() == 0, second.output()
    assert {row["state"] for row in rows} == {"DELIVERED"}
    got = receiver.received()
    for request in got:
        check_signed(store, subscription, request)
    # Per resource, the first delivery of each event came in the order written.
    # Exactly the committed events (the refused change has none), each first
    # delivered in the order written.
    firsts = list(dict.fromkeys(r.headers["cardinsa-event-id"] for r in got))
    assert firsts == [e.id for e in events]
    assert {json.loads(r.body)["subject"] for r in got} == {f"companies/{tenant.id}"}
