"""Revoked access tokens, known to every service without a database round trip.

Identity records each revocation in its table (a session ended, an API key
revoked, or a subject whose tokens issued before an instant stop) and streams
them (``IdentityService/WatchRevocations``). Every service keeps the live ones
in a :class:`RevocationSet` in memory, fed by a :class:`RevocationSubscriber`,
and :class:`~cardinsa_foundation.auth.TokenVerifier` consults it on every call,
after its verified-token cache: two dictionary lookups.

What a revocation matches:
- ``session``: every token whose ``sid`` is the target (a user's login session,
  or the API key a service-account token was exchanged from);
- ``subject``: every token of that ``sub`` issued before ``not_before`` (whole
  seconds, as ``iat``): a user who lost a role keeps their session, and the
  token they get at the next refresh carries what they hold now.

An entry matters only while a token it covers can still be accepted: until
``not_before`` + access-token lifetime + clock skew (its ``expire_at``); then it
is dropped.

While identity cannot be reached the subscriber keeps the last known set and
retries with exponential backoff, resuming from its cursor. Until the first
sync after start a service knows no revocation: it starts following at once
and does not refuse calls meanwhile (``require_sync`` would: UNAVAILABLE,
``REVOCATIONS_UNAVAILABLE``). Refusing them would deadlock a start: identity
asks company whether the platform company is active when company exchanges the
API key its watch needs. With identity up the first sync takes milliseconds;
with identity down no token verifies at a fresh start anyway (no JWKS).
Metrics (label ``subscriber``): ``revocations_received``,
``revocation_watch_connected``, ``revocation_watch_last_message_age_seconds``
(heartbeats arrive every few seconds, so a growing age means a broken stream),
``revocation_watch_lag_seconds`` (since identity last read its table: a growing
lag with fresh heartbeats means identity lost its database) and
``revocation_entries``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from prometheus_client import Counter, Gauge

from cardinsa_foundation.context import Principal
from cardinsa_foundation.errors import Unauthenticated, Unavailable
from cardinsa_foundation.metrics import REGISTRY

log = logging.getLogger(__name__)

SESSION: Final = "session"
SUBJECT: Final = "subject"
TOKEN_REVOKED: Final = "TOKEN_REVOKED"  # noqa: S105 - an error reason, not a secret

REVOCATIONS_RECEIVED = Counter(
    "revocations_received",
    "Revocations received from identity's watch (or loaded by identity itself).",
    ["subscriber"],
    registry=REGISTRY,
)
SUBSCRIPTION_CONNECTED = Gauge(
    "revocation_watch_connected",
    "1 while the revocation watch is connected and caught up, else 0.",
    ["subscriber"],
    registry=REGISTRY,
)
LAST_MESSAGE_AGE = Gauge(
    "revocation_watch_last_message_age_seconds",
    "Seconds since the last message (event or heartbeat) of the revocation watch.",
    ["subscriber"],
    registry=REGISTRY,
)
LAG = Gauge(
    "revocation_watch_lag_seconds",
    "Seconds since identity last read its revocations table, as its last message said.",
    ["subscriber"],
    registry=REGISTRY,
)
ENTRIES = Gauge(
    "revocation_entries",
    "Live revocations held in memory.",
    ["subscriber"],
    registry=REGISTRY,
)


@dataclass(frozen=True, slots=True)
class Revocation:
    """One revocation as the watch delivers it (times in epoch seconds)."""

    cursor: int
    kind: str
    target: str
    not_before: float
    expire_at: float
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RevocationBatch:
    """One message of the watch: new revocations (possibly none: a heartbeat)."""

    revocations: tuple[Revocation, ...]
    cursor: int
    caught_up: bool
    reset: bool = False
    sync_time: float = 0.0


def _revoked() -> Unauthenticated:
    return Unauthenticated("the access token was revoked; log in again", reason=TOKEN_REVOKED)


@dataclass
class RevocationSet:
    """The live revocations of one process.

    ``check`` is what the token verifier calls; ``add`` and ``prune`` are the
    subscriber's (or identity's own watch). Entries are kept ``leeway_s``
    beyond their ``expire_at`` (this process's own clock-skew allowance).
    """

    leeway_s: float = 0.0
    name: str = "revocations"
    clock: Callable[[], float] = time.time
    #: Refuse calls (UNAVAILABLE) until the first complete sync.
    require_sync: bool = False
    synced: bool = False
    cursor: int = 0
    #: When identity last read its table (epoch seconds), per its last message.
    sync_time: float = 0.0
    _sessions: dict[str, float] = field(default_factory=dict)
    _subjects: dict[str, tuple[float, float]] = field(default_factory=dict)
    _next_prune: float = 0.0

    def __post_init__(self) -> None:
        ENTRIES.labels(self.name).set_function(lambda: len(self))
        LAG.labels(self.name).set_function(
            lambda: max(0.0, self.clock() - self.sync_time) if self.sync_time else float("inf")
        )

    def __len__(self) -> int:
        return len(self._sessions) + len(self._subjects)

    def add(self, revocation: Revocation) -> bool:
        """Record one revocation; False when it no longer matters (expired)."""
        drop_at = revocation.expire_at + self.leeway_s
        if drop_at <= self.clock():
            return False
        if revocation.kind == SESSION:
            self._sessions[revocation.target] = max(
                drop_at, self._sessions.get(revocation.target, 0.0)
            )
        elif revocation.kind == SUBJECT:
            known = self._subjects.get(revocation.target)
            if known is not None:
                not_before = max(known[0], revocation.not_before)
                drop_at = max(known[1], drop_at)
            else:
                not_before = revocation.not_before
            self._subjects[revocation.target] = (not_before, drop_at)
        else:
            log.warning("ignoring a revocation of an unknown kind", extra={"kind": revocation.kind})
            return False
        return True

    def is_revoked(self, session_id: str | None, subject: str, issued_at: float) -> bool:
        if session_id is not None and session_id in self._sessions:
            return True
        entry = self._subjects.get(subject)
        return entry is not None and issued_at < entry[0]

    def check(self, principal: Principal, issued_at: float) -> None:
        """Raise UNAUTHENTICATED (TOKEN_REVOKED) for a revoked token.

        No expiry test per call: an entry past its ``expire_at`` only covers
        tokens that have expired themselves (their own check refuses them).
        """
        if not self.synced and self.require_sync:
            raise Unavailable(
                "token revocations are not known yet, retry later",
                reason="REVOCATIONS_UNAVAILABLE",
            )
        if self.is_revoked(principal.session_id, principal.subject, issued_at):
            raise _revoked()

    def prune(self, now: float | None = None) -> int:
        """Drop entries past their time; returns how many."""
        now = self.clock() if now is None else now
        stale_sessions = [k for k, drop_at in self._sessions.items() if drop_at <= now]
        for key in stale_sessions:
            del self._sessions[key]
        stale_subjects = [k for k, (_, drop_at) in self._subjects.items() if drop_at <= now]
        for key in stale_subjects:
            del self._subjects[key]
        return len(stale_sessions) + len(stale_subjects)

    def prune_now_and_then(self, interval_s: float = 30.0) -> None:
        now = self.clock()
        if now >= self._next_prune:
            self.prune(now)
            self._next_prune = now + interval_s

    def apply(self, batch: RevocationBatch) -> int:
        """Apply one watch message; returns how many revocations it added."""
        added = sum(1 for revocation in batch.revocations if self.add(revocation))
        self.cursor = max(self.cursor, batch.cursor) if not batch.reset else batch.cursor
        if batch.caught_up:
            self.synced = True
        if batch.sync_time:
            self.sync_time = max(self.sync_time, batch.sync_time)
        self.prune_now_and_then()
        REVOCATIONS_RECEIVED.labels(self.name).inc(len(batch.revocations))
        return added


#: Opens the watch after a cursor (0: from the start) and yields its messages.
StreamOpener = Callable[[int], AsyncIterator[RevocationBatch]]


class RevocationSubscriber:
    """Keeps a :class:`RevocationSet` current from identity's watch.

    Reconnects with exponential backoff (with jitter) up to ``backoff_max_s``
    and resumes from the last cursor, so nothing committed in between is
    missed. A stream that stays silent for ``idle_timeout_s`` (identity sends
    a heartbeat every few seconds) is given up and reopened.
    """

    def __init__(
        self,
        revocations: RevocationSet,
        open_stream: StreamOpener,
        *,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 5.0,
        idle_timeout_s: float = 15.0,
    ) -> None:
        self.revocations = revocations
        self._open = open_stream
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._idle_timeout_s = idle_timeout_s
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.connected = False
        self.last_message_at: float | None = None
        self.reconnects = 0
        name = revocations.name
        SUBSCRIPTION_CONNECTED.labels(name).set(0)
        LAST_MESSAGE_AGE.labels(name).set_function(self._last_message_age)

    def _last_message_age(self) -> float:
        if self.last_message_at is None:
            return float("inf")
        return max(0.0, time.monotonic() - self.last_message_at)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"{self.revocations.name}-watch")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._set_connected(False)

    async def wait_synced(self, timeout_s: float) -> None:
        """Until the first complete sync (for start-up and tests)."""
        async with asyncio.timeout(timeout_s):
            while not self.revocations.synced:
                self._changed.clear()
                await self._changed.wait()

    async def wait_cursor(self, cursor: int, timeout_s: float) -> None:
        """Until the set has everything up to ``cursor`` (tests)."""
        async with asyncio.timeout(timeout_s):
            while self.revocations.cursor < cursor:
                self._changed.clear()
                await self._changed.wait()

    def _set_connected(self, connected: bool) -> None:
        self.connected = connected
        SUBSCRIPTION_CONNECTED.labels(self.revocations.name).set(1 if connected else 0)

    async def _run(self) -> None:
        backoff = self._backoff_initial_s
        failures = 0
        while True:
            try:
                await self._follow()
                # A clean end (identity bounds each stream): reopen at once.
                backoff = self._backoff_initial_s
                failures = 0
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self._set_connected(False)
                level = logging.WARNING if failures == 1 or failures % 20 == 0 else logging.DEBUG
                log.log(
                    level,
                    "the revocation watch is down; keeping the last known set and retrying",
                    extra={
                        "subscriber": self.revocations.name,
                        "failures": failures,
                        "retry_in_s": round(backoff, 2),
                        "cursor": self.revocations.cursor,
                        "error": _describe(exc),
                    },
                )
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))  # noqa: S311 - jitter
            backoff = min(backoff * 2, self._backoff_max_s)

    async def _follow(self) -> None:
        stream = self._open(self.revocations.cursor)
        self.reconnects += 1
        try:
            while True:
                try:
                    async with asyncio.timeout(self._idle_timeout_s):
                        batch = await anext(stream)
                except StopAsyncIteration:
                    return
                self.last_message_at = time.monotonic()
                self.revocations.apply(batch)
                if batch.caught_up and not self.connected:
                    self._set_connected(True)
                    log.info(
                        "revocation watch connected",
                        extra={
                            "subscriber": self.revocations.name,
                            "cursor": self.revocations.cursor,
                            "entries": len(self.revocations),
                        },
                    )
                self._changed.set()
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()


def _describe(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if callable(code):
        with contextlib.suppress(Exception):
            return f"{type(exc).__name__}: {code()}"
    return type(exc).__name__


def identity_revocation_stream(
    channel: Any,
    metadata: Callable[[], Any],
    *,
    on_unauthenticated: Callable[[], None] | None = None,
) -> StreamOpener:
    """Open ``IdentityService/WatchRevocations`` on ``channel`` (a
    ``grpc.aio.Channel`` to identity), authenticated with ``await metadata()``
    (a service account's token: ``ServiceCredentials.metadata``)."""
    import grpc

    from cardinsa.identity.v1 import identity_service_pb2, identity_service_pb2_grpc

    stub = identity_service_pb2_grpc.IdentityServiceStub(channel)  # type: ignore[no-untyped-call]

    async def open_stream(cursor: int) -> AsyncIterator[RevocationBatch]:
        call = stub.WatchRevocations(
            identity_service_pb2.WatchRevocationsRequest(after_cursor=cursor),
            metadata=await metadata(),
        )
        try:
            async for reply in call:
                yield RevocationBatch(
                    revocations=tuple(
                        Revocation(
                            cursor=r.cursor,
                            kind=SESSION if r.HasField("session_id") else SUBJECT,
                            target=r.session_id if r.HasField("session_id") else r.subject,
                            not_before=r.not_before.seconds + r.not_before.nanos / 1e9,
                            expire_at=r.expire_time.seconds + r.expire_time.nanos / 1e9,
                            reason=r.reason,
                        )
                        for r in reply.revocations
                    ),
                    cursor=reply.cursor,
                    caught_up=reply.caught_up,
                    reset=reply.reset,
                    sync_time=reply.sync_time.seconds + reply.sync_time.nanos / 1e9,
                )
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.UNAUTHENTICATED and on_unauthenticated is not None:
                on_unauthenticated()
            raise
        finally:
            call.cancel()

    return open_stream


def usable_api_key(secret: Any) -> str | None:
    """The service API key when it has the shape identity issues (``cdk_...``); none,
    an empty value or a placeholder (the development env files') count as none."""
    if secret is None:
        return None
    key = str(secret.get_secret_value()).strip()
    return key if key.startswith("cdk_") else None


def follow_identity(
    verifier: Any,
    identity_channel: Any,
    credentials: Any,
    settings: Any,
    *,
    name: str,
) -> RevocationSubscriber:
    """Wire a service's token verifier to identity's revocations.

    ``credentials`` is the service account's ``ServiceCredentials`` (an API key
    with ``revocations.watch``); a refused token is dropped and obtained anew.
    Returns the subscriber: start it with :func:`start_following` (the
    server's ``on_start``) and stop it on shutdown.
    """
    revocations = RevocationSet(leeway_s=float(settings.clock_skew_s), name=name)
    subscriber = RevocationSubscriber(
        revocations,
        identity_revocation_stream(
            identity_channel, credentials.metadata, on_unauthenticated=credentials.forget
        ),
        backoff_max_s=settings.revocation_backoff_max_s,
        idle_timeout_s=settings.revocation_idle_timeout_s,
    )
    verifier.revocations = revocations
    return subscriber


async def start_following(subscriber: RevocationSubscriber) -> None:
    """Start following (the server's ``on_start``); the first sync arrives in
    the background, it does not hold up the start."""
    subscriber.start()
