"""The JetStream sink: every event also goes to a NATS JetStream stream.

Each event is published as the serialized ``cardinsa.events.v1.Event``
protobuf on ``<prefix>.<company id or "platform">.<event type>``, for example
``cardinsa.events.3f0c….cardinsa.core.policy.bind.v1``, so a consumer can
filter by tenant and by type with the usual subject wildcards.

The dispatcher stores its cursor only after :meth:`JetStreamSink.take`
returns, so a crash between a publish and that commit repeats the batch. The
repeat is harmless: every message carries ``Nats-Msg-Id`` = the event id and
the stream drops a message whose id it saw within its duplicate window. A
repeat after a longer outage than the window can still reach consumers twice;
they de-duplicate by the event id, as webhook receivers do.

Events are published one at a time, each PubAck awaited before the next, so
the stream keeps the dispatcher's order (per ordering key, the write order).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Final
from urllib.parse import unquote, urlsplit, urlunsplit

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa.events.v1 import events_pb2

__all__ = [
    "COMPANY_ID_HEADER",
    "CONTENT_TYPE",
    "EVENT_TYPE_HEADER",
    "PLATFORM_SUBJECT_PART",
    "JetStreamConfigError",
    "JetStreamSink",
    "redact_url",
    "subject_for",
]

_log = logging.getLogger(__name__)

CONTENT_TYPE: Final = "application/protobuf"
EVENT_TYPE_HEADER: Final = "Cardinsa-Event-Type"
COMPANY_ID_HEADER: Final = "Cardinsa-Company-Id"
#: The subject part of an event without a company (a platform-wide event).
PLATFORM_SUBJECT_PART: Final = "platform"
#: How long the stream remembers message ids: a repeat within it is dropped.
DEFAULT_DUPLICATE_WINDOW_S: Final = 120.0

# A subject token: no whitespace, no wildcard, no empty token.
_TOKENS = re.compile(r"[^\s.*>]+(\.[^\s.*>]+)*")


class JetStreamConfigError(RuntimeError):
    """The stream cannot be used as configured (it takes other subjects, or its
    subjects overlap another stream's): an operator has to decide."""


def redact_url(url: str) -> str:
    """``url`` without a user name, password or token: safe for a log line."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparsable NATS URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    if parts.username is not None or parts.password is not None:
        netloc = f"***@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _secrets_of(url: str) -> tuple[str, ...]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return (url,)
    found = [parts.username, parts.password]
    return tuple(s for raw in found if raw for s in {raw, unquote(raw)})


def subject_for(prefix: str, event: events_pb2.Event) -> str:
    """``<prefix>.<company id or platform>.<event type>``."""
    subject = f"{prefix}.{event.company_id or PLATFORM_SUBJECT_PART}.{event.type}"
    if not _TOKENS.fullmatch(subject):
        raise ValueError(
            f"event {event.id}: type {event.type!r} / company {event.company_id!r} "
            "do not make a valid NATS subject"
        )
    return subject


class JetStreamSink:
    """Publishes each batch to a JetStream stream (see the module docstring)."""

    name = "jetstream"

    def __init__(
        self,
        url: str,
        *,
        stream: str = "CARDINSA_EVENTS",
        subject_prefix: str = "cardinsa.events",
        ack_timeout_s: float = 5.0,
        duplicate_window_s: float = DEFAULT_DUPLICATE_WINDOW_S,
    ) -> None:
        if not _TOKENS.fullmatch(subject_prefix):
            raise ValueError(f"subject prefix {subject_prefix!r} is not a valid NATS subject")
        if not stream or any(c in stream for c in " \t.*>/\\"):
            raise ValueError(f"stream name {stream!r} is not a valid JetStream stream name")
        self._url = url
        self._secrets = _secrets_of(url)
        self.redacted_url = redact_url(url)
        self.stream = stream
        self.subject_prefix = subject_prefix
        self.subjects = f"{subject_prefix}.>"
        self.ack_timeout_s = ack_timeout_s
        self.duplicate_window_s = duplicate_window_s
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._closing = False
        self._last_error = ""

    def __repr__(self) -> str:
        return f"JetStreamSink({self.redacted_url!r}, stream={self.stream!r})"

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    async def _on_error(self, error: Exception) -> None:
        # The client's default callback logs the exception with its traceback;
        # this one names the server without credentials and scrubs the message.
        self._last_error = f"{type(error).__name__}: {self._scrub(str(error))}"
        _log.warning("NATS %s: %s", self.redacted_url, self._last_error)

    async def _on_disconnected(self) -> None:
        if not self._closing:
            _log.warning("NATS %s: disconnected", self.redacted_url)

    async def _connect(self) -> JetStreamContext:
        self._last_error = ""
        try:
            nc = await nats.connect(
                self._url,
                name="cardinsa-dispatcher",
                connect_timeout=max(1, round(self.ack_timeout_s)),
                # Two attempts, no background reconnection: a lost connection
                # fails the batch in flight, the dispatcher retries it after a
                # pause and take() connects again -- so start() fails fast and
                # clearly, and there is one retry loop, the dispatcher's.
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=1,
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
            )
        except Exception as exc:
            # "No servers available" says little: the last attempt's error says why.
            why = self._last_error or f"{type(exc).__name__}: {self._scrub(str(exc))}"
            # Re-raised without the chain: a client error could quote the URL.
            raise ConnectionError(f"cannot connect to NATS at {self.redacted_url}: {why}") from None
        self._nc = nc
        self._js = nc.jetstream(timeout=self.ack_timeout_s)
        return self._js

    async def start(self) -> None:
        """Connect and make sure the stream exists and takes our subjects."""
        js = await self._connect()
        try:
            await self._ensure_stream(js)
        except BaseException:
            await self.close()
            raise
        _log.info(
            "JetStream sink: stream %s (subjects %s) at %s",
            self.stream,
            self.subjects,
            self.redacted_url,
        )

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        try:
            info = await js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            pass
        else:
            self._check_subjects(info.config.subjects or [])
            return
        config = StreamConfig(
            name=self.stream,
            description="Cardinsa events (the dispatcher's JetStream sink)",
            subjects=[self.subjects],
            duplicate_window=self.duplicate_window_s,
        )
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError as exc:
            # Another dispatcher may have created it in between: judge that one.
            try:
                info = await js.stream_info(self.stream)
            except nats.js.errors.NotFoundError:
                raise JetStreamConfigError(
                    f"cannot create JetStream stream {self.stream} with subjects "
                    f"{self.subjects}: {exc.description} (do another stream's subjects "
                    "overlap them? choose another subject prefix or remove that stream)"
                ) from None
            self._check_subjects(info.config.subjects or [])

    def _check_subjects(self, subjects: Sequence[str]) -> None:
        if self.subjects not in subjects:
            raise JetStreamConfigError(
                f"JetStream stream {self.stream} exists with subjects {list(subjects)}, "
                f"not {self.subjects}: point the dispatcher at another stream name or "
                "subject prefix, or change that stream's subjects"
            )

    async def close(self) -> None:
        """Flush and close the connection (idempotent)."""
        nc, self._nc, self._js = self._nc, None, None
        if nc is None or nc.is_closed:
            return
        self._closing = True
        try:
            await nc.drain()
        except Exception as exc:  # closing anyway: drain is a courtesy
            _log.warning("NATS %s: drain failed: %s", self.redacted_url, type(exc).__name__)
            await nc.close()
        finally:
            self._closing = False

    async def take(
        self, session: AsyncSession, source: str, events: Sequence[events_pb2.Event]
    ) -> None:
        """Publish ``events`` in order, each acknowledged by the stream before the
        next; raises (the dispatcher retries the batch) on any failure."""
        del session, source  # nothing of the batch goes to the database
        if self._nc is None or self._js is None:
            raise RuntimeError("JetStreamSink.take() before start()")
        js = self._js
        if self._nc.is_closed:
            # The connection was lost (a failed batch before this one): connect afresh.
            js = await self._connect()
        for event in events:
            subject = subject_for(self.subject_prefix, event)
            headers = {
                "Content-Type": CONTENT_TYPE,
                "Nats-Msg-Id": event.id,
                EVENT_TYPE_HEADER: event.type,
            }
            if event.company_id:
                headers[COMPANY_ID_HEADER] = event.company_id
            ack = await js.publish(
                subject,
                event.SerializeToString(),
                timeout=self.ack_timeout_s,
                stream=self.stream,
                headers=headers,
            )
            if ack.duplicate:
                _log.debug("event %s was already in stream %s", event.id, self.stream)
