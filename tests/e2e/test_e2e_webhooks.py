"""Webhooks end to end: a partner's receiver on 127.0.0.1 subscribed through the
REST gateway gets exactly the events core committed, signed, in order per
resource; a receiver that keeps failing sees its delivery retried, then
dead-lettered, then redelivered through the API.

Everything runs in the e2e suite (`make up` as real processes: the services,
Envoy, the event dispatcher). The suite allows private targets and plain http
(``CARDINSA_WEBHOOK_ALLOW_PRIVATE_TARGETS`` / ``CARDINSA_WEBHOOK_ALLOW_HTTP``)
and short retry pauses; production refuses the first two. What core committed
is read back from core's own event stream (``EventService.WatchEvents``,
straight to core's port with the admin's token), independently of the
dispatcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import grpc
import pytest

from cardinsa.core.v1 import event_service_pb2_grpc
from cardinsa.events.v1 import events_pb2
from cardinsa_company.domain import webhooks
from e2e.suite_harness import (
    ADMIN_EMAIL,
    Rest,
    SuiteProcess,
    json_date,
    money,
    policyholder_body,
    product_body,
)

pytestmark = pytest.mark.integration

TODAY = date.today()
DELIVERY_TIMEOUT_S = 90.0


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def document(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST; paths listed in
    ``failing`` answer 503."""

    server: http.server.ThreadingHTTPServer
    received: dict[str, list[Received]] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return list(self.received.get(path, []))


@contextlib.contextmanager
def receiver() -> Iterator[Receiver]:
    state: dict[str, Receiver] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            found = state["receiver"]
            with found.lock:
                found.received.setdefault(self.path, []).append(
                    Received({k.lower(): v for k, v in self.headers.items()}, body)
                )
                failing = self.path in found.failing
            self.send_response(503 if failing else 204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["receiver"] = Receiver(server)
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield state["receiver"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def wait_for(condition: Any, what: str, timeout_s: float = DELIVERY_TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def committed_events(suite: SuiteProcess, token: str, subjects: set[str]) -> list[events_pb2.Event]:
    """Every event core committed for ``subjects``, from core's own stream (read
    until it says it has caught up)."""

    async def read() -> list[events_pb2.Event]:
        found: list[events_pb2.Event] = []
        async with grpc.aio.insecure_channel(suite.service_address("core")) as channel:
            stub = event_service_pb2_grpc.EventServiceStub(channel)  # type: ignore[no-untyped-call]
            stream = stub.WatchEvents(
                events_pb2.WatchEventsRequest(),
                metadata=(("authorization", f"Bearer {token}"),),
                timeout=60,
            )
            async for response in stream:
                found.extend(e for e in response.events if e.subject in subjects)
                if response.caught_up:
                    stream.cancel()
                    break
        return found

    return asyncio.run(read())


@dataclass
class Partner:
    rest: Rest
    admin: str
    company_id: str

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        return self.rest.call(method, path, body, token=self.admin).ok()

    def subscribe(self, url: str, *types: str) -> dict[str, Any]:
        created: dict[str, Any] = self.ok(
            "POST",
            f"/v1/companies/{self.company_id}/webhookSubscriptions",
            {"url": url, "event_types": list(types), "description": "e2e receiver"},
        )
        assert created["secret"].startswith("whsec_"), created
        again = self.ok(
            "GET", f"/v1/companies/{self.company_id}/webhookSubscriptions/{created['id']}"
        )
        assert not again.get("secret"), again  # shown once
        return created

    def deliveries(self, subscription: dict[str, Any]) -> list[dict[str, Any]]:
        listed = self.ok(
            "GET",
            f"/v1/companies/{self.company_id}/webhookSubscriptions/{subscription['id']}"
            "/deliveries?page_size=100",
        )
        found: list[dict[str, Any]] = listed.get("webhook_deliveries", [])
        return found

    def policy_lifecycle(self) -> dict[str, Any]:
        """A policy created, quoted and bound (in force at once: it started 20 days ago)."""
        product = self.ok(
            "POST",
            "/v1/products",
            {
                **product_body(),
                "coverages": [
                    {
                        "code": "OUTPATIENT",
                        "name": "Outpatient care",
                        "limit": money(5000),
                        "limit_period": "PER_TERM",
                        "deductible": money(0),
                        "coinsurance_basis_points": 0,
                    }
                ],
            },
        )
        product = self.ok(
            "POST", f"/v1/products/{product['id']}:activate", {"etag": product["etag"]}
        )
        holder = self.ok("POST", "/v1/policyholders", policyholder_body())
        policy = self.ok(
            "POST",
            "/v1/policies",
            {
                "policyholder_id": holder["id"],
                "product_id": product["id"],
                "effective_date": json_date(TODAY - timedelta(days=20)),
                "sum_insured": money(100000),
                "payment_frequency": "MONTHLY",
                "insured_members": [{"policyholder": True}],
            },
        )
        for verb in ("quote", "bind"):
            policy = self.ok(
                "POST", f"/v1/policies/{policy['id']}:{verb}", {"etag": policy["etag"]}
            )
        assert policy["state"] == "IN_FORCE", policy
        return policy

    def claim_lifecycle(self, policy: dict[str, Any]) -> dict[str, Any]:
        """A claim submitted, reviewed, approved, paid and closed."""
        claim = self.ok(
            "POST",
            "/v1/claims",
            {
                "policy_id": policy["id"],
                "claimant": {"policyholder": True},
                "claim_type": "MEDICAL",
                "description": "outpatient treatment",
                "coverage_code": "OUTPATIENT",
                "incident_date": json_date(TODAY - timedelta(days=2)),
                "claimed_amount": money(300),
            },
        )
        for verb, body in (
            ("submit", {}),
            ("review", {}),
            ("approve", {"approved_amount": money(300), "request_id": str(uuid.uuid4())}),
            ("pay", {"payment_reference": "E2E-WEBHOOK"}),
            ("close", {"note": "settled"}),
        ):
            claim = self.ok("POST", f"/v1/claims/{claim['id']}:{verb}", body)
        assert claim["state"] == "CLOSED", claim
        return claim


@pytest.fixture(scope="module")
def partner(suite: SuiteProcess) -> Partner:
    rest = suite.rest()
    return Partner(rest, rest.login(ADMIN_EMAIL), suite.demo_company_id)


def unique_by_id(received: list[Received]) -> dict[str, Received]:
    """The receiver's side of at-least-once: one entry per event id (first kept)."""
    found: dict[str, Received] = {}
    for item in received:
        found.setdefault(item.headers["cardinsa-event-id"], item)
    return found


def test_a_receiver_gets_exactly_the_committed_events_signed_and_in_order(
    suite: SuiteProcess, partner: Partner
) -> None:
    with receiver() as hook:
        # The billing events share the policy's subject (and ordering key).
        subscription = partner.subscribe(
            hook.url("/all"),
            "cardinsa.core.policy.*",
            "cardinsa.core.claim.*",
            "cardinsa.core.billing.*",
        )
        policy = partner.policy_lifecycle()
        claim = partner.claim_lifecycle(policy)
        subjects = {f"policies/{policy['id']}", f"claims/{claim['id']}"}
        committed = committed_events(suite, partner.admin, subjects)
        types = [e.type for e in committed]
        for expected in (
            "cardinsa.core.policy.create.v1",
            "cardinsa.core.policy.bind.v1",
            "cardinsa.core.claim.submit.v1",
            "cardinsa.core.claim.approve.v1",
            "cardinsa.core.claim.close.v1",
        ):
            assert expected in types, types
        expected_ids = [e.id for e in committed]

        def all_arrived() -> dict[str, Received] | None:
            mine = [r for r in hook.at("/all") if r.document.get("subject") in subjects]
            got = unique_by_id(mine)
            return got if set(got) >= set(expected_ids) else None

        got = wait_for(all_arrived, "every committed event at the receiver")
        assert set(got) == set(expected_ids)  # nothing extra: no rolled-back change
        now = time.time()
        for event in committed:
            item = got[event.id]
            assert webhooks.verify(
                subscription["secret"],
                item.headers["cardinsa-signature"],
                item.headers["cardinsa-timestamp"],
                item.body,
                now=now,
            ), item.headers
            assert not webhooks.verify(
                "whsec_not-the-secret",
                item.headers["cardinsa-signature"],
                item.headers["cardinsa-timestamp"],
                item.body,
                now=now,
            )
            document = item.document
            assert document["type"] == event.type == item.headers["cardinsa-event-type"]
            assert document["companyid"] == partner.company_id
        # Order per resource: the order of first arrival is the order written.
        for subject in subjects:
            written = [e.id for e in committed if e.subject == subject]
            arrived: list[str] = []
            for item in hook.at("/all"):
                event_id = item.headers["cardinsa-event-id"]
                if item.document.get("subject") == subject and event_id not in arrived:
                    arrived.append(event_id)
            assert arrived == written, subject
        deliveries = partner.deliveries(subscription)
        mine = [d for d in deliveries if d["subject"] in subjects]
        assert {d["event_id"] for d in mine} == set(expected_ids)
        assert all(d["state"] == "DELIVERED" for d in mine), mine


def test_a_failing_receiver_is_retried_dead_lettered_and_redelivered(
    suite: SuiteProcess, partner: Partner
) -> None:
    with receiver() as hook:
        hook.failing.add("/flaky")
        subscription = partner.subscribe(hook.url("/flaky"), "cardinsa.core.policy.bind.v1")
        policy = partner.policy_lifecycle()
        subject = f"policies/{policy['id']}"

        def dead_letter() -> dict[str, Any] | None:
            for delivery in partner.deliveries(subscription):
                if delivery["subject"] == subject and delivery["state"] == "DEAD_LETTERED":
                    return delivery
            return None

        delivery = wait_for(dead_letter, "the delivery to be dead-lettered")
        base = (
            f"/v1/companies/{partner.company_id}/webhookSubscriptions/{subscription['id']}"
            f"/deliveries/{delivery['id']}"
        )
        attempts = partner.ok("GET", f"{base}/attempts")["webhook_delivery_attempts"]
        assert len(attempts) == delivery["attempt_count"] >= 2, attempts
        assert all(a["status_code"] == 503 and not a.get("succeeded") for a in attempts)
        tries = [r for r in hook.at("/flaky") if r.document.get("subject") == subject]
        assert len(tries) == len(attempts)
        assert {r.headers["cardinsa-event-id"] for r in tries} == {delivery["event_id"]}

        hook.failing.discard("/flaky")
        redelivered = partner.ok("POST", f"{base}:redeliver", {})
        assert redelivered["state"] == "PENDING", redelivered

        def delivered() -> dict[str, Any] | None:
            found = partner.ok("GET", f"{base}/attempts")["webhook_delivery_attempts"]
            return found if found and found[-1].get("succeeded") else None

        attempts = wait_for(delivered, "the redelivery to succeed")
        assert attempts[-1]["status_code"] == 204
        [event_id] = {
            r.headers["cardinsa-event-id"]
            for r in hook.at("/flaky")
            if r.document.get("subject") == subject
        }
        assert event_id == delivery["event_id"]  # the same event, de-duplicable by id


@pytest.mark.skipif(
    not os.environ.get("CARDINSA_TEST_NATS_URL"),
    reason="CARDINSA_TEST_NATS_URL is not set: the suite's dispatcher publishes to no JetStream",
)
def test_the_committed_events_reach_jetstream_once_each_in_order(
    suite: SuiteProcess, partner: Partner
) -> None:
    """With a NATS server configured, the same dispatcher also publishes every
    committed event to the JetStream stream: each id once, in order per resource."""
    policy = partner.policy_lifecycle()
    claim = partner.claim_lifecycle(policy)
    subjects = {f"policies/{policy['id']}", f"claims/{claim['id']}"}
    committed = committed_events(suite, partner.admin, subjects)
    wanted = {e.id for e in committed}
    url = suite.env["CARDINSA_DISPATCHER_NATS_URL"]
    stream = suite.env["CARDINSA_DISPATCHER_NATS_STREAM"]
    prefix = suite.env["CARDINSA_DISPATCHER_NATS_SUBJECT_PREFIX"]

    async def read() -> list[events_pb2.Event]:
        import nats

        connection = await nats.connect(url, connect_timeout=5)
        try:
            js = connection.jetstream()
            subscription = await js.pull_subscribe(
                f"{prefix}.{partner.company_id}.cardinsa.core.>", stream=stream
            )
            seen: list[events_pb2.Event] = []
            deadline = time.monotonic() + DELIVERY_TIMEOUT_S
            while not wanted <= {e.id for e in seen} and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError, nats.errors.TimeoutError):
                    for message in await subscription.fetch(100, timeout=1):
                        event = events_pb2.Event.FromString(message.data)
                        assert message.headers["Nats-Msg-Id"] == event.id
                        if event.subject in subjects:
                            seen.append(event)
                        await message.ack()
            return seen
        finally:
            await connection.close()

    seen = asyncio.run(read())
    ids = [e.id for e in seen]
    assert sorted(ids) == sorted(wanted), "each committed event once, nothing else"
    for subject in subjects:
        assert [e.id for e in seen if e.subject == subject] == [
            e.id for e in committed if e.subject == subject
        ], subject
