"""Revocations: recorded with the change that ends access, streamed to every service.

Writing (:func:`revoke_sessions`, :func:`revoke_subjects`): in the caller's
transaction, so a revocation exists exactly when the lock, logout, role removal
... it belongs to commits. Writers take one transaction-level advisory lock
before they draw the next ``seq``: revocations commit in ``seq`` order, and a
reader that has seen ``seq`` N has seen every revocation below it (a cursor
never skips a row that committed late). The lock is taken last in the
transaction, where the work left is the INSERT and the audit row.

Reading (:class:`RevocationHub`, one per identity process): loads the live
revocations at start, then follows the table -- LISTEN ``cardinsa_revocations``
(a trigger notifies on every insert, on commit) and a short poll in case a
notification is missed or the listening connection is down. Everything comes
from the table, so any number of identity replicas serve the same stream with
the same cursors. The hub feeds identity's own token check and every
``WatchRevocations`` stream of this process.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_foundation.db import Database, to_libpq_url
from cardinsa_foundation.revocation import (
    SESSION,
    SUBJECT,
    Revocation,
    RevocationBatch,
    RevocationSet,
)
from cardinsa_identity.repository.models import RevocationRow
from cardinsa_identity.settings import IdentitySettings

log = logging.getLogger(__name__)

CHANNEL: Final = "cardinsa_revocations"
# pg_advisory_xact_lock key of the writers (any constant no other code uses).
_WRITE_LOCK: Final = 0x63645F7276  # "cd_rv"
_LOCK_SQL: Final = text(f"SELECT pg_advisory_xact_lock({_WRITE_LOCK})")
# Key space (first int4 of the two-key advisory locks) of the per-subject locks.
SUBJECT_LOCK_SPACE: Final = 0x63645F73  # "cd_s"
SUBJECT_LOCK_SHARED_SQL: Final = (
    f"SELECT pg_advisory_xact_lock_shared({SUBJECT_LOCK_SPACE}, hashtext($1::text))"
)
_SUBJECT_LOCK_SHARED: Final = text(
    f"SELECT pg_advisory_xact_lock_shared({SUBJECT_LOCK_SPACE}, hashtext(:subject))"
)
_SUBJECT_LOCKS_SQL: Final = text(
    "SELECT count(pg_advisory_xact_lock(:space, k)) FROM "
    "(SELECT DISTINCT hashtext(s) AS k FROM unnest(CAST(:subjects AS text[])) AS s "
    "ORDER BY k) AS keys"
)
# Largest batch the hub reads or a stream message carries.
BATCH: Final = 1000


async def revoke_sessions(
    session: AsyncSession, session_ids: Iterable[uuid.UUID | str], reason: str
) -> int:
    """Revoke every access token of these sessions (or API keys), in the
    caller's transaction. Returns how many were recorded."""
    now = datetime.now(UTC)
    rows = [
        {"kind": SESSION, "target": str(s), "not_before": now, "reason": reason}
        for s in dict.fromkeys(str(s) for s in session_ids)
    ]
    return await _insert(session, rows)


async def revoke_subjects(
    session: AsyncSession, subjects: Iterable[uuid.UUID | str], reason: str
) -> int:
    """Revoke the tokens these subjects (users, service accounts) hold now: every
    token issued before the next whole second (``iat`` has whole seconds, so a
    token issued in the current second is refused too; the holder's next refresh
    gets one that passes). Their sessions stay open.

    ``not_before`` is drawn after each subject's lock is held exclusive: a token
    whose roles were read before this commits took its issue instant earlier
    (:func:`issue_instant`) and is refused."""
    targets = list(dict.fromkeys(str(s) for s in subjects))
    if not targets:
        return 0
    await session.execute(_SUBJECT_LOCKS_SQL, {"space": SUBJECT_LOCK_SPACE, "subjects": targets})
    not_before = datetime.fromtimestamp(math.floor(time.time()) + 1, UTC)
    rows = [
        {"kind": SUBJECT, "target": s, "not_before": not_before, "reason": reason} for s in targets
    ]
    return await _insert(session, rows)


async def issue_instant(session: AsyncSession, subject: uuid.UUID | str) -> datetime:
    """Hold ``subject``'s lock shared until the caller's transaction ends and
    return the issue instant of the token about to be signed for it; call it
    before reading the roles the token carries, and sign with this instant."""
    await session.execute(_SUBJECT_LOCK_SHARED, {"subject": str(subject)})
    return datetime.now(UTC)


async def _insert(session: AsyncSession, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    await session.execute(_LOCK_SQL)
    await session.execute(insert(RevocationRow).values(rows))
    return len(rows)


def token_lifetime_s(settings: IdentitySettings) -> float:
    """How long after its ``not_before`` a revocation can still matter: a token
    issued just before it lives the access-token lifetime plus the verifiers'
    clock-skew leeway."""
    return float(settings.access_token_ttl_s + settings.clock_skew_s)


class RevocationHub:
    """The live revocations of this identity process, followed from the table."""

    def __init__(
        self,
        db: Database,
        settings: IdentitySettings,
        *,
        poll_s: float,
        heartbeat_s: float,
        stream_max_s: float,
        name: str = "identity",
    ) -> None:
        self._db = db
        self._settings = settings
        self.lifetime_s = token_lifetime_s(settings)
        self.poll_s = poll_s
        self.heartbeat_s = heartbeat_s
        self.stream_max_s = stream_max_s
        # Identity's own token check: the same set services keep.
        self.revocations = RevocationSet(name=name)
        self._live: list[Revocation] = []
        self.head = 0
        self.sync_time = 0.0
        self._changed = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._next_cleanup = 0.0
        self._draining = False

    # ------------------------------------------------------------ following

    async def start(self) -> None:
        """Load the live revocations (so identity checks tokens from its first
        call), then follow the table in the background."""
        if self._task is not None:
            return
        connection = await self._connect()
        try:
            await self._load(connection)
        except BaseException:
            connection.terminate()
            raise
        self._task = asyncio.create_task(self._follow(connection), name="revocation-hub")

    def end_streams(self) -> None:
        """Let every open stream end now (the server is draining); subscribers
        reconnect, to another replica."""
        self._draining = True
        self._publish()

    async def stop(self) -> None:
        self._draining = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._publish()  # wake streams so they notice the end

    async def _connect(self) -> Any:
        settings = self._settings
        url = to_libpq_url(self._db.engine.url.render_as_string(hide_password=False))
        return await asyncpg.connect(
            url,
            timeout=settings.db_connect_timeout_s,
            server_settings={
                "statement_timeout": str(settings.db_statement_timeout_ms),
                "application_name": "identity-revocations",
            },
        )

    async def _load(self, connection: Any) -> None:
        cutoff = datetime.fromtimestamp(time.time() - self.lifetime_s, UTC)
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            head = await connection.fetchval(
                "SELECT coalesce(max(seq), 0) FROM identity.revocations"
            )
            records = await connection.fetch(
                "SELECT seq, kind, target, not_before, reason FROM identity.revocations "
                "WHERE not_before > $1 AND seq <= $2 ORDER BY seq",
                cutoff,
                head,
            )
        self._live = [self._revocation(r) for r in records]
        self.head = int(head)
        self._synced(self._live, caught_up=True)

    def _revocation(self, record: Any) -> Revocation:
        not_before = record["not_before"].timestamp()
        return Revocation(
            cursor=int(record["seq"]),
            kind=record["kind"],
            target=record["target"],
            not_before=not_before,
            expire_at=not_before + self.lifetime_s,
            reason=record["reason"],
        )

    def _synced(self, new: list[Revocation], *, caught_up: bool) -> None:
        self.sync_time = time.time()
        self.revocations.apply(
            RevocationBatch(
                revocations=tuple(new),
                cursor=self.head,
                caught_up=caught_up,
                sync_time=self.sync_time,
            )
        )
        if new:
            self._publish()

    def _publish(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _follow(self, connection: Any) -> None:
        backoff = 0.2
        while True:
            try:
                if connection is None:
                    connection = await self._connect()
                await connection.add_listener(CHANNEL, self._notified)
                await self._read_new(connection)  # what committed while not listening
                backoff = 0.2
                while True:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.poll_s):
                            await self._wake.wait()
                    self._wake.clear()
                    await self._read_new(connection)
                    await self._cleanup(connection)
            except asyncio.CancelledError:
                if connection is not None:
                    connection.terminate()
                raise
            except Exception as exc:
                log.warning(
                    "following the revocations table failed; retrying",
                    extra={"error": type(exc).__name__, "retry_in_s": backoff},
                )
                if connection is not None:
                    connection.terminate()
                connection = None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _notified(self, *_: Any) -> None:
        self._wake.set()

    async def _read_new(self, connection: Any) -> None:
        while True:
            records = await connection.fetch(
                "SELECT seq, kind, target, not_before, reason FROM identity.revocations "
                "WHERE seq > $1 ORDER BY seq LIMIT $2",
                self.head,
                BATCH,
            )
            new = [self._revocation(r) for r in records]
            if new:
                self.head = new[-1].cursor
                self._live.extend(new)
            self._prune_live()
            self._synced(new, caught_up=len(records) < BATCH)
            if len(records) < BATCH:
                return

    def _prune_live(self) -> None:
        now = time.time()
        if self._live and self._live[0].expire_at <= now:
            # Mostly in cursor order already: not_before follows commit order.
            self._live = [r for r in self._live if r.expire_at > now]

    async def _cleanup(self, connection: Any) -> None:
        """Delete rows no token can need any more (every replica may do it)."""
        now = time.monotonic()
        if now < self._next_cleanup:
            return
        self._next_cleanup = now + 60.0
        cutoff = datetime.fromtimestamp(time.time() - self.lifetime_s - 60.0, UTC)
        await connection.execute("DELETE FROM identity.revocations WHERE not_before < $1", cutoff)

    # ------------------------------------------------------------ streaming

    async def watch(self, after_cursor: int) -> AsyncIterator[RevocationBatch]:
        """One subscriber's stream: the live revocations after ``after_cursor``,
        then new ones as they arrive, a heartbeat every ``heartbeat_s``; ends
        after ``stream_max_s`` (the subscriber reconnects with its cursor)."""
        reset = after_cursor < 0 or after_cursor > self.head
        cursor = 0 if reset else after_cursor
        deadline = time.monotonic() + self.stream_max_s
        first = True
        while True:
            changed = self._changed
            start = bisect.bisect_right(self._live, cursor, key=lambda r: r.cursor)
            pending = self._live[start:]
            head = self.head
            for index in range(0, len(pending), BATCH):
                chunk = pending[index : index + BATCH]
                last = index + BATCH >= len(pending)
                yield RevocationBatch(
                    revocations=tuple(chunk),
                    cursor=head if last else chunk[-1].cursor,
                    caught_up=last,
                    reset=reset and first,
                    sync_time=self.sync_time,
                )
                first = False
            if first:  # nothing new: a heartbeat (and the first answer)
                yield RevocationBatch(
                    (), cursor=head, caught_up=True, reset=reset, sync_time=self.sync_time
                )
                first = False
            cursor = head
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._draining:
                return
            try:
                async with asyncio.timeout(min(self.heartbeat_s, remaining)):
                    await changed.wait()
            except TimeoutError:
                if time.monotonic() >= deadline:
                    return
                yield RevocationBatch((), cursor=cursor, caught_up=True, sync_time=self.sync_time)
