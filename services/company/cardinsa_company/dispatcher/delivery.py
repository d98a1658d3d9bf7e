"""Delivery workers: due deliveries POSTed to their receivers (every replica).

A worker claims due deliveries with a lease (``lease_owner``,
``lease_expire_time``): ``FOR UPDATE SKIP LOCKED`` keeps replicas apart, and a
replica that dies mid-attempt only delays its deliveries until the lease
expires -- then any replica attempts them again (at least once; receivers
de-duplicate by the event id). A delivery is due when its
``next_attempt_time`` has come, its subscription is ACTIVE, and no earlier
delivery of the same resource (``ordering_key``) to the same subscription is
still pending: a receiver gets each resource's events in the order they were
written, a failing one holding back the later ones until it is delivered or
dead-lettered.

Each attempt is recorded (``webhook_delivery_attempts``). A 2xx answer
delivers; anything else -- another status, a timeout, a refused connection or
target -- schedules the next attempt after an exponential backoff with jitter,
and the ``dispatcher_max_attempts``-th failure dead-letters the delivery.
Pending deliveries of a deleted subscription are dead-lettered ("subscription
deleted").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urljoin

import httpx

from cardinsa_company.dispatcher import metrics
from cardinsa_company.dispatcher.network import TargetNotAllowed, guarded_transport
from cardinsa_company.dispatcher_settings import DispatcherSettings
from cardinsa_company.domain.webhooks import (
    CONTENT_TYPE,
    DELIVERY_ATTEMPT_HEADER,
    DELIVERY_ID_HEADER,
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SecretCipher,
    SecretDecryptionError,
    check_url,
    signature_header,
)
from cardinsa_foundation.db import Database

log = logging.getLogger("cardinsa_company.dispatcher")

__all__ = ["Attempt", "DeliveryWorker", "backoff_s"]

USER_AGENT: Final = "Cardinsa-Webhooks/1.0"
MAX_REDIRECTS: Final = 3
EXCERPT_BYTES: Final = 1024
REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})

# Claims up to $3 due deliveries for $1 for $2 seconds; with what an attempt needs.
_CLAIM: Final = """
WITH claimed AS (
    UPDATE company.webhook_deliveries d
    SET lease_owner = $1,
        lease_expire_time = now() + make_interval(secs => $2),
        update_time = now()
    WHERE d.id IN (
        SELECT c.id
        FROM company.webhook_deliveries c
        JOIN company.webhook_subscriptions s
          ON s.company_id = c.company_id AND s.id = c.subscription_id
        WHERE c.state = 'PENDING'
          AND c.next_attempt_time <= now()
          AND (c.lease_expire_time IS NULL OR c.lease_expire_time < now())
          AND s.state = 'ACTIVE' AND s.delete_time IS NULL
          AND NOT EXISTS (
              SELECT 1 FROM company.webhook_deliveries e
              WHERE e.subscription_id = c.subscription_id
                AND e.ordering_key = c.ordering_key
                AND e.state = 'PENDING'
                AND e.sequence < c.sequence
          )
        ORDER BY c.next_attempt_time, c.sequence
        LIMIT $3
        FOR UPDATE OF c SKIP LOCKED
    )
    RETURNING d.id, d.company_id, d.subscription_id, d.event_id, d.event_type,
              d.attempt_count, d.total_attempt_count
)
SELECT claimed.*, ev.body, s.url, s.secret_ciphertext, s.previous_secret_ciphertext,
       coalesce(s.previous_secret_expire_time > now(), false) AS previous_in_use
FROM claimed
JOIN company.webhook_events ev ON ev.id = claimed.event_id
JOIN company.webhook_subscriptions s
  ON s.company_id = claimed.company_id AND s.id = claimed.subscription_id
"""

_DEAD_LETTER_DELETED: Final = """
UPDATE company.webhook_deliveries d
SET state = 'DEAD_LETTERED', last_error = 'subscription deleted', dead_letter_time = now(),
    lease_owner = NULL, lease_expire_time = NULL, update_time = now()
FROM company.webhook_subscriptions s
WHERE s.company_id = d.company_id AND s.id = d.subscription_id
  AND s.delete_time IS NOT NULL
  AND d.state = 'PENDING'
  AND (d.lease_expire_time IS NULL OR d.lease_expire_time < now())
"""

_OLDEST_DUE: Final = """
SELECT extract(epoch FROM now() - min(d.next_attempt_time))
FROM company.webhook_deliveries d
JOIN company.webhook_subscriptions s ON s.company_id = d.company_id AND s.id = d.subscription_id
WHERE d.state = 'PENDING' AND d.next_attempt_time <= now()
  AND s.state = 'ACTIVE' AND s.delete_time IS NULL
"""

# The outcome of an attempt, only while this replica still holds the lease.
_RECORD: Final = """
UPDATE company.webhook_deliveries
SET state = $3,
    attempt_count = attempt_count + 1,
    total_attempt_count = total_attempt_count + 1,
    last_status_code = $4,
    last_error = $5,
    next_attempt_time = CASE WHEN $3 = 'PENDING'
        THEN now() + make_interval(secs => $6) ELSE next_attempt_time END,
    deliver_time = CASE WHEN $3 = 'DELIVERED' THEN now() ELSE deliver_time END,
    dead_letter_time = CASE WHEN $3 = 'DEAD_LETTERED' THEN now() ELSE dead_letter_time END,
    lease_owner = NULL,
    lease_expire_time = NULL,
    update_time = now()
WHERE id = $1 AND lease_owner = $2 AND state = 'PENDING'
RETURNING total_attempt_count
"""

_ATTEMPT: Final = """
INSERT INTO company.webhook_delivery_attempts
    (id, company_id, delivery_id, number, start_time, duration_ms, status_code,
     succeeded, error, response_excerpt)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (delivery_id, number) DO NOTHING
"""


def backoff_s(
    attempt: int, *, base_s: float, max_s: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds before the attempt after failed ``attempt`` (from 1): base x
    2^(attempt-1), at most ``max_s``; half of it fixed, the other half random
    (receivers that failed together do not all come back at once)."""
    delay = min(max_s, base_s * 2 ** min(attempt - 1, 62))
    return float(delay / 2 + rand() * delay / 2)


@dataclass(frozen=True)
class Attempt:
    """What one attempt found."""

    status_code: int = 0
    error: str = ""
    excerpt: str = ""

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status_code < 300


@dataclass(frozen=True)
class Claimed:
    id: uuid.UUID
    company_id: uuid.UUID
    subscription_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    attempt_count: int
    total_attempt_count: int
    body: bytes
    url: str
    secret_ciphertext: bytes
    previous_secret_ciphertext: bytes | None
    previous_in_use: bool


class DeliveryWorker:
    """Claims due deliveries and attempts them, ``dispatcher_concurrency`` at a time."""

    def __init__(
        self,
        settings: DispatcherSettings,
        db: Database,
        *,
        stopping: asyncio.Event,
        owner: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.db = db
        self.stopping = stopping
        self.owner = owner or f"dispatcher-{uuid.uuid4().hex[:12]}"
        self.cipher = SecretCipher(
            settings.webhook_secret_encryption_key.get_secret_value(),
            previous_keys=[k.get_secret_value() for k in settings.webhook_secret_previous_keys],
        )
        self._now = now
        self._client = httpx.AsyncClient(
            transport=transport
            or guarded_transport(
                allow_private=settings.webhook_allow_private_targets,
                max_connections=settings.dispatcher_concurrency,
            ),
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(settings.dispatcher_delivery_timeout_s),
        )
        self._in_flight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._next_housekeeping = 0.0

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Until stopped: claim what is due, attempt it; in-flight attempts are
        awaited (each bounded by its timeout) before returning."""
        try:
            while not self.stopping.is_set():
                claimed = 0
                try:
                    if time.monotonic() >= self._next_housekeeping:
                        await self.housekeeping()
                        self._next_housekeeping = (
                            time.monotonic() + self.settings.dispatcher_poll_interval_s
                        )
                    free = self.settings.dispatcher_concurrency - len(self._in_flight)
                    if free > 0:
                        for delivery in await self.claim(free):
                            claimed += 1
                            self._start(delivery)
                except Exception as error:
                    log.warning("cannot claim deliveries", extra={"error": str(error)})
                if claimed and len(self._in_flight) < self.settings.dispatcher_concurrency:
                    continue  # there may be more due
                await self._idle()
        finally:
            if self._in_flight:
                await asyncio.gather(*self._in_flight, return_exceptions=True)
            await self._client.aclose()

    async def _idle(self) -> None:
        """Until an attempt ends (its resource's next event may be due), the
        poll interval passes, or a stop."""
        self._wake.clear()
        waits = [
            asyncio.ensure_future(self._wake.wait()),
            asyncio.ensure_future(self.stopping.wait()),
        ]
        try:
            await asyncio.wait(
                waits,
                timeout=self.settings.dispatcher_poll_interval_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for wait in waits:
                wait.cancel()

    def _start(self, delivery: Claimed) -> None:
        task = asyncio.create_task(self.deliver(delivery), name=f"delivery-{delivery.id}")
        self._in_flight.add(task)
        metrics.IN_FLIGHT.set(len(self._in_flight))

        def done(finished: asyncio.Task[None]) -> None:
            self._in_flight.discard(finished)
            metrics.IN_FLIGHT.set(len(self._in_flight))
            self._wake.set()
            if not finished.cancelled() and finished.exception() is not None:
                log.error(
                    "a delivery attempt failed unexpectedly",
                    exc_info=finished.exception(),
                    extra={"delivery_id": str(delivery.id)},
                )

        task.add_done_callback(done)

    # ------------------------------------------------------------------ database

    async def housekeeping(self) -> None:
        """Dead-letter the deleted subscriptions' deliveries; measure the lag."""
        async with self.db.transaction(company_id=None, cross_tenant=True) as connection:
            status = await connection.execute(_DEAD_LETTER_DELETED)
            lag = await connection.fetchval(_OLDEST_DUE)
        count = int(status.split()[-1]) if status.startswith("UPDATE") else 0
        if count:
            metrics.DEAD_LETTERED.labels(reason="subscription_deleted").inc(count)
            log.info("deliveries of deleted subscriptions dead-lettered", extra={"count": count})
        metrics.OLDEST_DUE_LAG.set(float(lag) if lag is not None else 0.0)

    async def claim(self, limit: int, *, lease_s: float | None = None) -> list[Claimed]:
        """Lease up to ``limit`` due deliveries to this worker's owner."""
        lease = lease_s if lease_s is not None else self.settings.dispatcher_lease_s
        async with self.db.transaction(company_id=None, cross_tenant=True) as connection:
            rows = await connection.fetch(_CLAIM, self.owner, lease, limit)
        return [Claimed(**dict(row)) for row in rows]

    async def record(self, delivery: Claimed, attempt: Attempt, started: datetime, ms: int) -> str:
        """Store the attempt and the delivery's new state; the state ('' when
        the lease was lost: another replica owns the delivery now)."""
        if attempt.succeeded:
            state, delay = "DELIVERED", 0.0
        elif delivery.attempt_count + 1 >= self.settings.dispatcher_max_attempts:
            state, delay = "DEAD_LETTERED", 0.0
        else:
            state = "PENDING"
            delay = backoff_s(
                delivery.attempt_count + 1,
                base_s=self.settings.dispatcher_retry_base_s,
                max_s=self.settings.dispatcher_retry_max_s,
            )
        async with self.db.transaction(company_id=None, cross_tenant=True) as connection:
            number = await connection.fetchval(
                _RECORD,
                delivery.id,
                self.owner,
                state,
                attempt.status_code,
                attempt.error,
                delay,
            )
            if number is None:
                return ""
            await connection.execute(
                _ATTEMPT,
                uuid.uuid4(),
                delivery.company_id,
                delivery.id,
                number,
                started,
                ms,
                attempt.status_code,
                attempt.succeeded,
                attempt.error,
                attempt.excerpt,
            )
        return state

    # ------------------------------------------------------------------ an attempt

    async def deliver(self, delivery: Claimed) -> None:
        metrics.ATTEMPTS.inc()
        started = datetime.fromtimestamp(self._now(), UTC)
        clock = time.perf_counter()
        attempt = await self.attempt(delivery)
        seconds = time.perf_counter() - clock
        metrics.ATTEMPT_SECONDS.observe(seconds)
        state = await self.record(delivery, attempt, started, int(seconds * 1000))
        extra: dict[str, Any] = {
            "delivery_id": str(delivery.id),
            "event_id": str(delivery.event_id),
            "subscription_id": str(delivery.subscription_id),
            "company_id": str(delivery.company_id),
            "status_code": attempt.status_code,
            "state": state,
        }
        if attempt.succeeded:
            metrics.DELIVERED.inc()
        else:
            metrics.FAILED.inc()
            extra["error"] = attempt.error
            if state == "DEAD_LETTERED":
                metrics.DEAD_LETTERED.labels(reason="attempts").inc()
        if not state:
            log.warning("the delivery's lease expired during the attempt", extra=extra)
        elif attempt.succeeded:
            log.info("delivered", extra=extra)
        else:
            log.info("delivery attempt failed", extra=extra)

    def _secrets(self, delivery: Claimed) -> list[str]:
        current = self.cipher.decrypt(str(delivery.subscription_id), delivery.secret_ciphertext)
        found = [current]
        if delivery.previous_in_use and delivery.previous_secret_ciphertext:
            with contextlib.suppress(SecretDecryptionError):
                found.append(
                    self.cipher.decrypt(
                        str(delivery.subscription_id), delivery.previous_secret_ciphertext
                    )
                )
        return found

    async def attempt(self, delivery: Claimed) -> Attempt:
        """POST the event; never raises (the failure is the attempt's error)."""
        try:
            secrets = self._secrets(delivery)
        except SecretDecryptionError:
            return Attempt(error="the signing secret cannot be decrypted (encryption key?)")
        timestamp = int(self._now())
        headers = {
            "Content-Type": CONTENT_TYPE,
            "User-Agent": USER_AGENT,
            # The excerpt is the answer's first bytes as sent: nothing to inflate.
            "Accept-Encoding": "identity",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: signature_header(secrets, timestamp, delivery.body),
            EVENT_ID_HEADER: str(delivery.event_id),
            EVENT_TYPE_HEADER: delivery.event_type,
            DELIVERY_ID_HEADER: str(delivery.id),
            DELIVERY_ATTEMPT_HEADER: str(delivery.total_attempt_count + 1),
        }
        timeout = self.settings.dispatcher_delivery_timeout_s
        try:
            async with asyncio.timeout(timeout):
                return await self._post(delivery.url, headers, delivery.body)
        except TimeoutError:
            return Attempt(error=f"timed out after {timeout:g} s")
        except TargetNotAllowed as error:
            return Attempt(error=str(error))
        except httpx.TimeoutException:
            return Attempt(error=f"timed out after {timeout:g} s")
        except httpx.HTTPError as error:
            return Attempt(error=f"{type(error).__name__}: {error}"[:500])
        except OSError as error:
            return Attempt(error=f"connection failed: {error}"[:500])

    async def _post(self, url: str, headers: dict[str, str], body: bytes) -> Attempt:
        allow_http = self.settings.webhook_allow_http
        for hop in range(MAX_REDIRECTS + 1):
            parts, why = check_url(url, allow_http=allow_http)
            if parts is None:
                what = "the URL" if hop == 0 else "the redirect target"
                return Attempt(error=f"{what} {why}")
            request = self._client.build_request("POST", url, headers=headers, content=body)
            response = await self._client.send(request, stream=True)
            try:
                excerpt = await _excerpt(response)
            finally:
                await response.aclose()
            location = response.headers.get("location")
            if response.status_code in REDIRECT_STATUSES and location:
                if hop == MAX_REDIRECTS:
                    return Attempt(
                        status_code=response.status_code,
                        error=f"more than {MAX_REDIRECTS} redirects",
                        excerpt=excerpt,
                    )
                # The same POST (body and signature) to the new location.
                url = urljoin(url, location)
                continue
            if 200 <= response.status_code < 300:
                return Attempt(status_code=response.status_code, excerpt=excerpt)
            return Attempt(
                status_code=response.status_code,
                error=f"HTTP {response.status_code}",
                excerpt=excerpt,
            )
        raise AssertionError("unreachable")  # pragma: no cover


async def _excerpt(response: httpx.Response) -> str:
    """The first KiB of the answer's body, as text (the rest is not read)."""
    read = bytearray()
    async for chunk in response.aiter_raw():
        read += chunk
        if len(read) >= EXCERPT_BYTES:
            break
    return bytes(read[:EXCERPT_BYTES]).decode("utf-8", errors="replace").replace("\x00", "")
