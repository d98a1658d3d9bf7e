"""The signing-key store: which key signs now, and the JWKS that verifies.

Keys live in the database (private parts encrypted with the settings key), so
every worker process of identity signs with the same key and publishes the same
JWKS. Each worker keeps the current signer and JWKS in memory and re-reads the
table every ``signing_key_refresh_s`` and after a rotation. State changes are
decided by the domain's ``plan_rotation`` under an advisory lock, so concurrent
workers never create two keys or apply one change twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from cardinsa_foundation.db import Database
from cardinsa_identity.domain.signing_keys import (
    ALGORITHM,
    PrivateKeyCipher,
    SigningKeyPair,
    SigningKeyState,
    generate_signing_key,
    plan_rotation,
    public_jwk,
)
from cardinsa_identity.repository.idempotency import PLATFORM, claim
from cardinsa_identity.repository.models import SigningKeyRow
from cardinsa_identity.repository.signing_keys import (
    all_signing_keys,
    lock_signing_keys,
    signing_key_record,
)

log = logging.getLogger(__name__)

ROTATE = "RotateSigningKey"


class SigningKeyStore:
    def __init__(
        self,
        database: Database,
        cipher: PrivateKeyCipher,
        *,
        publish_delay: timedelta,
        token_ttl: timedelta,
        refresh_interval_s: float = 30.0,
    ) -> None:
        self._db = database
        self._cipher = cipher
        self._publish_delay = publish_delay
        self._token_ttl = token_ttl
        self._refresh_interval_s = refresh_interval_s
        self._signer: SigningKeyPair | None = None
        self._jwks: dict[str, Any] = {"keys": []}
        self._task: asyncio.Task[None] | None = None

    @property
    def signer(self) -> SigningKeyPair:
        if self._signer is None:
            raise RuntimeError("signing keys are not loaded yet")
        return self._signer

    def jwks(self) -> dict[str, Any]:
        return self._jwks

    async def fetch_jwks(self) -> dict[str, Any]:
        """JWKS source for identity's own token verifier."""
        return self._jwks

    async def start(self) -> None:
        await self.reconcile()
        self._task = asyncio.create_task(self._refresh_loop(), name="signing-key-refresh")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_interval_s)
            try:
                await self.reconcile()
            except Exception:
                log.warning(
                    "refreshing signing keys failed; keeping the current ones", exc_info=True
                )

    async def reconcile(
        self, *, publish_new: bool = False, request_id: str = ""
    ) -> SigningKeyRow | None:
        """Apply the rotation plan (creating a key when needed) and reload the cache.

        ``publish_new`` starts a rotation: a new key is published now and signs
        after the publication delay. Returns the new key's row, if one was made;
        a rotation retried with the same ``request_id`` returns the first one's key.
        """
        created: SigningKeyRow | None = None
        async with self._db.unit_of_work(company_id=None, cross_tenant=True) as session:
            await lock_signing_keys(session)
            rows = list(await all_signing_keys(session))
            now = datetime.now(UTC)
            if publish_new or not rows:
                candidate = self._new_row(active=not rows, now=now)
                seen = (
                    await claim(session, PLATFORM, ROTATE, request_id, candidate.kid)
                    if publish_new
                    else None
                )
                if seen is not None:
                    # A retried rotation: the first call's key, no second one.
                    created = next((r for r in rows if r.kid == seen), None)
                else:
                    created = candidate
                    session.add(created)
                    rows.append(created)
                    await session.flush()
            plan = plan_rotation(
                [signing_key_record(r) for r in rows], now, self._publish_delay, self._token_ttl
            )
            if plan.needs_new_key:
                # Nothing can sign (all retired): a key must sign at once.
                created = self._new_row(active=True, now=now)
                session.add(created)
                rows.append(created)
                plan = plan_rotation(
                    [signing_key_record(r) for r in rows], now, self._publish_delay, self._token_ttl
                )
            by_kid = {r.kid: r for r in rows}
            for record in plan.keys:
                row = by_kid[record.kid]
                if row.state != record.state.value:
                    row.state = record.state.value
                    row.activate_time = record.activate_time
                    row.retire_time = record.retire_time
            signer_row = by_kid[plan.signing_kid] if plan.signing_kid else None
            published = [by_kid[kid].public_jwk for kid in plan.published_kids]
        if signer_row is not None and (self._signer is None or self._signer.kid != signer_row.kid):
            self._signer = self._cipher.decrypt(signer_row.kid, signer_row.private_key_encrypted)
        self._jwks = {"keys": published}
        return created

    def _new_row(self, *, active: bool, now: datetime) -> SigningKeyRow:
        pair = generate_signing_key()
        return SigningKeyRow(
            kid=pair.kid,
            algorithm=ALGORITHM,
            state=(SigningKeyState.ACTIVE if active else SigningKeyState.PUBLISHED).value,
            public_jwk=public_jwk(pair.private_key.public_key(), pair.kid),
            private_key_encrypted=self._cipher.encrypt(pair),
            create_time=now,
            activate_time=now if active else None,
        )

    async def reencrypt(self, *, progress: Callable[[int, int], None] | None = None) -> int:
        """Rewrite every stored private key not yet under the current encryption
        secret (after a rotation of ``signing_key_encryption_key``); the number
        rewritten. Idempotent: a key already under the current secret is left as
        is, so an interrupted run is simply run again. ``progress(done, total)``
        is called after each key."""
        async with self._db.unit_of_work(company_id=None, cross_tenant=True) as session:
            await lock_signing_keys(session)
            rows = list(await all_signing_keys(session, newest_first=False))
            rewritten = 0
            for done, row in enumerate(rows, start=1):
                if self._cipher.needs_reencryption(row.private_key_encrypted):
                    pair = self._cipher.decrypt(row.kid, row.private_key_encrypted)
                    row.private_key_encrypted = self._cipher.encrypt(pair)
                    rewritten += 1
                if progress is not None:
                    progress(done, len(rows))
        return rewritten

    async def list_keys(self) -> list[SigningKeyRow]:
        async with self._db.unit_of_work(company_id=None, cross_tenant=True) as session:
            return list(await all_signing_keys(session, newest_first=True))
