"""What the event dispatcher's tests run it against: a real HTTP receiver on a
loopback address (a thread of ``http.server``), an ``EventService`` on a real
gRPC server on 127.0.0.1 that serves the events a test chooses (the services'
own WatchEvents is a separate piece of work; the dispatcher only needs the
contract), and subscriptions written straight into the database (as the
platform role; the subscription API is not what is tested here).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import grpc
from google.protobuf import any_pb2, timestamp_pb2, wrappers_pb2

from cardinsa.company.v1 import event_service_pb2_grpc
from cardinsa.events.v1 import events_pb2
from cardinsa_company.domain.webhooks import SecretCipher, new_secret
from cardinsa_foundation.db import platform_role_url, to_libpq_url

#: Generous: only a hung dispatcher reaches it (the test then fails, it does not hang).
DEADLINE_S = 60.0
EVENT_TYPE = "cardinsa.company.company.updated.v1"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    arrived: float = field(default_factory=time.monotonic)
    #: When its answer was written (0 until then).
    answered: float = 0.0


Behaviour = Callable[["Received"], tuple[int, dict[str, str], bytes]]


def ok(_: Received) -> tuple[int, dict[str, str], bytes]:
    return 200, {}, b"thanks"


class Receiver:
    """A webhook receiver: records every POST, answers as ``behaviour`` says.

    ``hold`` (cleared: the next requests wait until it is set) lets a test
    catch the dispatcher in the middle of a delivery.
    """

    def __init__(self, host: str = "127.0.0.1", behaviour: Behaviour = ok) -> None:
        self.behaviour = behaviour
        self.requests: list[Received] = []
        self.hold = threading.Event()
        self.hold.set()
        self.held = threading.Event()  # set when a request waits on `hold`
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                got = Received(
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )
                with receiver._lock:
                    receiver.requests.append(got)
                if not receiver.hold.is_set():
                    receiver.held.set()
                    receiver.hold.wait(DEADLINE_S)
                status, headers, body = receiver.behaviour(got)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(body)
                    self.wfile.flush()
                got.answered = time.monotonic()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.host = host
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str = "/hook", host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"

    def received(self) -> list[Received]:
        with self._lock:
            return list(self.requests)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)


def make_event(
    company_id: str, subject: str, sequence: int, *, type_: str = EVENT_TYPE
) -> events_pb2.Event:
    data = any_pb2.Any()
    data.Pack(wrappers_pb2.StringValue(value=f"{subject}#{sequence}"))
    now = timestamp_pb2.Timestamp()
    now.FromDatetime(datetime.now(UTC))
    return events_pb2.Event(
        id=str(uuid.uuid4()),
        source="company",
        type=type_,
        subject=subject,
        time=now,
        company_id=company_id,
        ordering_key=subject,
        sequence=sequence,
        data=data,
        data_schema="google.protobuf.StringValue",
    )


class FakeEvents(event_service_pb2_grpc.EventServiceServicer):
    """``EventService.WatchEvents`` over a list the test appends to: the cursor
    is the position in it, two events per response, a heartbeat when none.

    ``end_after``: end each stream after that many responses with events (as
    the services end streams now and then); ``rewind``: resume that many events
    before the cursor (at least once: events sent again).
    """

    def __init__(self, *, end_after: int | None = None, rewind: int = 0) -> None:
        self.end_after = end_after
        self.rewind = rewind
        self.events: list[events_pb2.Event] = []
        self.cursors: list[str] = []  # every request's cursor
        self.tokens: list[str] = []

    async def WatchEvents(
        self, request: events_pb2.WatchEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[events_pb2.WatchEventsResponse]:
        metadata = dict(context.invocation_metadata() or ())
        authorization = str(metadata.get("authorization", ""))
        if not authorization.startswith("Bearer ") or len(authorization) < 20:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a bearer token is required")
        self.tokens.append(authorization)
        self.cursors.append(request.cursor)
        position = max(0, int(request.cursor or 0) - (self.rewind if request.cursor else 0))
        sent = 0
        while True:
            if self.end_after is not None and sent >= self.end_after:
                return
            if position < len(self.events):
                sent += 1
                batch = self.events[position : position + 2]
                position += len(batch)
                yield events_pb2.WatchEventsResponse(
                    events=batch, cursor=str(position), caught_up=position == len(self.events)
                )
            else:
                yield events_pb2.WatchEventsResponse(cursor=str(position), caught_up=True)
                await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def event_server(fake: FakeEvents, port: int = 0) -> AsyncIterator[str]:
    server = grpc.aio.server()
    event_service_pb2_grpc.add_EventServiceServicer_to_server(fake, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


@dataclass
class Store:
    """The dispatcher's tables, read and written as the platform role."""

    url: str
    cipher: SecretCipher
    secrets: dict[str, str] = field(default_factory=dict)

    @classmethod
    def for_database(cls, database_url: str, key: str) -> Store:
        return cls(to_libpq_url(platform_role_url(database_url)), SecretCipher(key))

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        connection = await asyncpg.connect(self.url)
        try:
            return list(await connection.fetch(query, *args))
        finally:
            await connection.close()

    async def execute(self, query: str, *args: Any) -> None:
        connection = await asyncpg.connect(self.url)
        try:
            await connection.execute(query, *args)
        finally:
            await connection.close()

    async def subscribe(
        self, company_id: str, url: str, event_types: list[str] | None = None
    ) -> str:
        subscription_id = str(uuid.uuid4())
        secret = new_secret()
        self.secrets[subscription_id] = secret
        await self.execute(
            "INSERT INTO company.webhook_subscriptions (id, company_id, url, event_types, "
            "secret_ciphertext, secret_hint, version) VALUES ($1, $2, $3, $4, $5, $6, 1)",
            uuid.UUID(subscription_id),
            uuid.UUID(company_id),
            url,
            event_types or ["cardinsa.company.*"],
            self.cipher.encrypt(subscription_id, secret),
            secret[-4:],
        )
        return subscription_id

    async def deliveries(self, subscription_id: str) -> list[asyncpg.Record]:
        return await self.fetch(
            "SELECT * FROM company.webhook_deliveries WHERE subscription_id = $1 ORDER BY sequence",
            uuid.UUID(subscription_id),
        )

    async def attempts(self, delivery_id: uuid.UUID) -> list[asyncpg.Record]:
        return await self.fetch(
            "SELECT * FROM company.webhook_delivery_attempts WHERE delivery_id = $1 "
            "ORDER BY number",
            delivery_id,
        )

    async def settle(self) -> None:
        """Forget the cursors and retire what earlier tests left pending, so a
        test's dispatcher sees only its own events and deliveries."""
        await self.execute("DELETE FROM company.event_cursors")
        await self.execute(
            "UPDATE company.webhook_deliveries SET state = 'DEAD_LETTERED', "
            "last_error = 'left by an earlier test', dead_letter_time = now(), "
            "lease_owner = NULL, lease_expire_time = NULL WHERE state = 'PENDING'"
        )


async def eventually(check: Callable[[], Any], what: str, *, deadline_s: float = DEADLINE_S) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    end = time.monotonic() + deadline_s
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)
