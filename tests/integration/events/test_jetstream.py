"""The JetStream sink against a real NATS server with JetStream.

Runs when ``CARDINSA_TEST_NATS_URL`` names one (``.ci/run`` sets it); then an
unreachable server is a failure, not a skip. Every test uses its own stream
name and subject prefix and deletes its streams, so runs never see each other.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import nats
import nats.js.errors
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa.core.v1 import events_pb2 as core_events_pb2
from cardinsa.core.v1 import resources_pb2 as core_pb2
from cardinsa.events.v1 import events_pb2
from cardinsa_company.dispatcher.jetstream import JetStreamConfigError, JetStreamSink

#: The JetStream sink writes nothing to the database: it never uses the session.
NO_SESSION = cast(AsyncSession, None)

NATS_URL = os.environ.get("CARDINSA_TEST_NATS_URL", "")

pytestmark = pytest.mark.skipif(
    not NATS_URL,
    reason="CARDINSA_TEST_NATS_URL is not set (a NATS server with JetStream, "
    "for example nats://127.0.0.1:4222; .ci/run sets it)",
)


@dataclass(frozen=True)
class Names:
    stream: str
    prefix: str


@pytest_asyncio.fixture
async def admin() -> AsyncIterator[JetStreamContext]:
    """A connection of the test's own, to inspect and clean up streams."""
    try:
        nc: Client = await nats.connect(NATS_URL, allow_reconnect=False, connect_timeout=5)
    except Exception as exc:
        pytest.fail(f"CARDINSA_TEST_NATS_URL is set but NATS is unreachable: {exc!r}")
    try:
        yield nc.jetstream(timeout=5)
    finally:
        await nc.close()


@pytest_asyncio.fixture
async def names(admin: JetStreamContext) -> AsyncIterator[Names]:
    run = uuid.uuid4().hex[:12]
    made = Names(stream=f"CARDINSA_TEST_{run.upper()}", prefix=f"cardinsa.test{run}")
    yield made
    # Every stream this test created (its own name, or one named after it).
    for stream in await admin.streams_info():
        if stream.config.name and stream.config.name.startswith(made.stream):
            await admin.delete_stream(stream.config.name)


@pytest_asyncio.fixture
async def sink(names: Names) -> AsyncIterator[JetStreamSink]:
    one = JetStreamSink(NATS_URL, stream=names.stream, subject_prefix=names.prefix)
    await one.start()
    try:
        yield one
    finally:
        await one.close()


def _policy_event(company: str, policy: str, seq: int, transition: str) -> events_pb2.Event:
    payload = core_events_pb2.PolicyEvent(
        policy=core_pb2.Policy(id=policy, policy_number=f"P-{seq:06d}"),
        transition=transition,
    )
    event = events_pb2.Event(
        id=str(uuid.uuid4()),
        source="core",
        type=f"cardinsa.core.policy.{transition}.v1",
        subject=f"policies/{policy}",
        company_id=company,
        ordering_key=f"policies/{policy}",
        sequence=seq,
        data_schema="cardinsa.core.v1.PolicyEvent",
    )
    event.time.FromDatetime(datetime(2026, 12, 7, 9, 0, seq % 60, tzinfo=UTC))
    event.data.Pack(payload)
    return event


def _batch() -> list[events_pb2.Event]:
    """Two companies, several events on the same subjects, one platform event."""
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    pa, pb = str(uuid.uuid4()), str(uuid.uuid4())
    events = [
        _policy_event(a, pa, 1, "create"),
        _policy_event(b, pb, 2, "create"),
        _policy_event(a, pa, 3, "update"),
        _policy_event(a, pa, 4, "update"),
        _policy_event(b, pb, 5, "update"),
        _policy_event(a, pa, 6, "update"),
        _policy_event(a, pa, 7, "bind"),
    ]
    platform = _policy_event("", str(uuid.uuid4()), 8, "update")
    return [*events, platform]


async def _read_all(
    js: JetStreamContext, names: Names
) -> list[tuple[str, dict[str, str], events_pb2.Event]]:
    """Every message of the stream in stream order, through a real consumer."""
    info = await js.stream_info(names.stream)
    count = info.state.messages
    consumer = await js.pull_subscribe(
        f"{names.prefix}.>",
        durable=None,
        stream=names.stream,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.EXPLICIT),
    )
    out: list[tuple[str, dict[str, str], events_pb2.Event]] = []
    try:
        while len(out) < count:
            for msg in await consumer.fetch(count - len(out), timeout=5):
                out.append(
                    (msg.subject, dict(msg.headers or {}), events_pb2.Event.FromString(msg.data))
                )
                await msg.ack()
    finally:
        await consumer.unsubscribe()
    return out


async def test_start_creates_the_stream(
    sink: JetStreamSink, names: Names, admin: JetStreamContext
) -> None:
    info = await admin.stream_info(names.stream)
    assert info.config.subjects == [f"{names.prefix}.>"]
    assert info.config.duplicate_window == pytest.approx(120.0)
    # A second dispatcher (or a restart) uses the stream as it is.
    again = JetStreamSink(NATS_URL, stream=names.stream, subject_prefix=names.prefix)
    await again.start()
    await again.close()


async def test_a_repeated_batch_is_stored_once_in_order(
    sink: JetStreamSink, names: Names, admin: JetStreamContext
) -> None:
    batch = _batch()
    await sink.take(NO_SESSION, "core", batch)
    # The dispatcher crashed before committing its cursor: the same batch again.
    await sink.take(NO_SESSION, "core", batch)

    info = await admin.stream_info(names.stream)
    assert info.state.messages == len(batch)

    stored = await _read_all(admin, names)
    assert [event for _, _, event in stored] == batch  # equal messages, in the order sent
    for (subject, headers, event), sent in zip(stored, batch, strict=True):
        company = sent.company_id or "platform"
        assert subject == f"{names.prefix}.{company}.{sent.type}"
        assert headers["Nats-Msg-Id"] == sent.id
        assert headers["Content-Type"] == "application/protobuf"
        assert headers["Cardinsa-Event-Type"] == sent.type
        if sent.company_id:
            assert headers["Cardinsa-Company-Id"] == sent.company_id
        else:
            assert "Cardinsa-Company-Id" not in headers
        payload = core_events_pb2.PolicyEvent()
        assert event.data.Unpack(payload)
        assert payload.transition == sent.type.split(".")[3]

    # Order per subject: within one subject the stream order is the write order.
    by_subject: dict[str, list[int]] = {}
    for subject, _, event in stored:
        by_subject.setdefault(subject, []).append(event.sequence)
    assert any(len(seqs) > 1 for seqs in by_subject.values())
    for seqs in by_subject.values():
        assert seqs == sorted(seqs)


async def test_a_repeat_mixed_with_new_events_adds_only_the_new_ones(
    sink: JetStreamSink, names: Names, admin: JetStreamContext
) -> None:
    first = _batch()
    await sink.take(NO_SESSION, "core", first[:5])
    # The next attempt starts over from the last cursor and reaches further.
    await sink.take(NO_SESSION, "core", first)
    stored = await _read_all(admin, names)
    assert [event for _, _, event in stored] == first


async def test_a_stream_with_other_subjects_is_refused(
    names: Names, admin: JetStreamContext
) -> None:
    await admin.add_stream(StreamConfig(name=names.stream, subjects=[f"{names.prefix}x.>"]))
    sink = JetStreamSink(NATS_URL, stream=names.stream, subject_prefix=names.prefix)
    with pytest.raises(JetStreamConfigError) as refused:
        await sink.start()
    message = str(refused.value)
    assert names.stream in message
    assert f"{names.prefix}x.>" in message and f"{names.prefix}.>" in message
    await sink.close()
    # Nothing was changed on the operator's stream.
    info = await admin.stream_info(names.stream)
    assert info.config.subjects == [f"{names.prefix}x.>"]


async def test_subjects_taken_by_another_stream_are_refused(
    names: Names, admin: JetStreamContext
) -> None:
    await admin.add_stream(
        StreamConfig(name=f"{names.stream}_OTHER", subjects=[f"{names.prefix}.>"])
    )
    sink = JetStreamSink(NATS_URL, stream=names.stream, subject_prefix=names.prefix)
    with pytest.raises(JetStreamConfigError, match="overlap"):
        await sink.start()
    await sink.close()
    with pytest.raises(nats.js.errors.NotFoundError):
        await admin.stream_info(names.stream)


def _with_credentials(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    if parts.username is not None:
        pytest.skip("CARDINSA_TEST_NATS_URL already carries credentials")
    netloc = f"{user}:{password}@{parts.netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@pytest.fixture
def free_port() -> Iterator[int]:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    yield port


async def test_an_unreachable_server_fails_start_without_the_password(
    free_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    password = "s3cret-Pa55-" + uuid.uuid4().hex
    sink = JetStreamSink(f"nats://dispatcher:{password}@127.0.0.1:{free_port}")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConnectionError) as failed:
        await sink.start()
    assert f"nats://***@127.0.0.1:{free_port}" in str(failed.value)
    assert "ConnectionRefusedError" in str(failed.value)  # why, not just "no servers"
    assert password not in str(failed.value)
    # No chained client exception in a logged traceback (it could quote the URL).
    assert failed.value.__cause__ is None and failed.value.__suppress_context__
    assert password not in caplog.text
    assert password not in repr(sink)


async def test_credentials_never_reach_the_log(
    names: Names, admin: JetStreamContext, caplog: pytest.LogCaptureFixture
) -> None:
    # A server without authorization ignores the credentials; one with it
    # would refuse them -- either way they must not be logged.
    password = "s3cret-Pa55-" + uuid.uuid4().hex
    url = _with_credentials(NATS_URL, "dispatcher", password)
    caplog.set_level(logging.DEBUG)
    sink = JetStreamSink(url, stream=names.stream, subject_prefix=names.prefix)
    try:
        await sink.start()
        await sink.take(NO_SESSION, "core", _batch()[:2])
    except ConnectionError as exc:
        assert password not in str(exc)
    finally:
        await sink.close()
    assert password not in caplog.text
    assert password not in repr(sink)
    assert "***@" in repr(sink)


async def test_take_reconnects_after_the_connection_was_lost(
    sink: JetStreamSink, names: Names, admin: JetStreamContext
) -> None:
    batch = _batch()
    await sink.take(NO_SESSION, "core", batch[:3])
    # The connection drops (a server restart): the client does not reconnect
    # by itself; the next batch connects afresh.
    assert sink._nc is not None
    await sink._nc.close()
    await sink.take(NO_SESSION, "core", batch)
    stored = await _read_all(admin, names)
    assert [event for _, _, event in stored] == batch


async def test_an_invalid_subject_refuses_the_batch(sink: JetStreamSink, names: Names) -> None:
    bad = _policy_event(str(uuid.uuid4()), str(uuid.uuid4()), 1, "create")
    bad.type = "cardinsa.core.policy.with space.v1"
    with pytest.raises(ValueError, match="valid NATS subject"):
        await sink.take(NO_SESSION, "core", [bad])


EVENT_STREAM_DOC = Path(__file__).resolve().parents[3] / "docs" / "event-stream.md"


class _Done(Exception):
    """Stops the documented consumer loop once every event was handled."""


async def test_the_documented_python_consumer_reads_the_events(
    sink: JetStreamSink, names: Names
) -> None:
    found = re.search(
        r"<!-- example: consume-python -->\s*\n```python\n(.*?)\n```",
        EVENT_STREAM_DOC.read_text(encoding="utf-8"),
        re.DOTALL,
    )
    assert found, "docs/event-stream.md lost its consume-python example"
    batch = _batch()
    await sink.take(NO_SESSION, "core", batch)
    handled: list[events_pb2.Event] = []

    async def handle(event: events_pb2.Event) -> None:
        handled.append(event)
        if len(handled) == len(batch):
            raise _Done

    namespace: dict[str, Any] = {"handle": handle}
    exec(compile(found.group(1), "docs/event-stream.md", "exec"), namespace)  # noqa: S102
    consume = namespace["consume"](
        NATS_URL, subjects=f"{names.prefix}.>", durable="doc-example", stream=names.stream
    )
    with pytest.raises(_Done):
        # A guard against a hang, not a speed check: the events are stored already.
        await asyncio.wait_for(consume, timeout=60)
    assert handled == batch
