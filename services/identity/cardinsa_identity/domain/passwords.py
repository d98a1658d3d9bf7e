"""Password hashing: argon2id through libpass's CryptContext, bcrypt still verified.

Why these choices:
- argon2id is the default scheme (memory-hard, OWASP's first choice). Its cost is
  tuned to tens of milliseconds per hash (docs/performance.md); the
  parameters are configurable so production can raise them.
- bcrypt is *deprecated*, not removed: hashes imported from the original system
  still verify, and a successful verify hands back an argon2id hash to store
  instead. Argon2 hashes made with older parameters are upgraded the same way.
- Unknown emails must cost what a wrong password costs (docs/architecture.md,
  "Security model"): `dummy_verify` runs a real argon2 verification against a hash
  made with the current parameters. Known limit: a wrong password for an account
  still on a bcrypt hash costs bcrypt's work factor, not argon2's, so such
  accounts can be told apart by timing until their first successful login
  upgrades them (wrapping legacy hashes at import time would close that gap).
- Hashing is CPU-bound and takes tens of milliseconds, so the async wrappers run
  it in a small bounded thread pool: the event loop keeps serving, and a burst of
  logins queues instead of starting dozens of 32 MiB hashes at once (argon2-cffi
  releases the GIL, so the threads really run in parallel).

Passwords are NFKC-normalised before hashing (NIST SP 800-63B), so the same
password typed on different keyboards or input methods verifies; passwords longer
than `MAX_PASSWORD_BYTES` never reach a hash function.
"""

from __future__ import annotations

import asyncio
import threading
import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final, TypeVar

from passlib.context import CryptContext
from passlib.exc import UnknownHashError

_T = TypeVar("_T")

__all__ = [
    "DEFAULT_ARGON2_PARAMETERS",
    "MAX_PASSWORD_BYTES",
    "Argon2Parameters",
    "PasswordHasher",
    "default_hasher",
    "dummy_verify",
    "dummy_verify_async",
    "hash_password",
    "hash_password_async",
    "normalize_password",
    "verify_password",
    "verify_password_async",
]

#: Longest password (UTF-8 bytes) that is ever hashed. The policy refuses longer
#: ones on create/change; verify treats them as wrong without hashing them, so a
#: multi-megabyte "password" cannot buy more CPU than a normal login.
MAX_PASSWORD_BYTES: Final = 1024

# bcrypt only ever looked at the first 72 bytes; bcrypt 5 raises instead of
# truncating, so legacy hashes are verified against the same 72 bytes they were
# made from.
_BCRYPT_MAX_BYTES: Final = 72


@dataclass(frozen=True, slots=True)
class Argon2Parameters:
    """argon2id cost. The defaults (32 MiB, 2 passes, 1 lane) are above OWASP's
    minimum (19 MiB, t=2, p=1); their time per hash is in docs/performance.md."""

    memory_cost_kib: int = 32 * 1024
    time_cost: int = 2
    parallelism: int = 1

    def __post_init__(self) -> None:
        if self.parallelism < 1 or self.time_cost < 1:
            raise ValueError("argon2 time_cost and parallelism must be at least 1")
        if self.memory_cost_kib < 8 * self.parallelism:
            raise ValueError("argon2 memory_cost_kib must be at least 8 x parallelism")


DEFAULT_ARGON2_PARAMETERS: Final = Argon2Parameters()


def normalize_password(password: str) -> str:
    """The form that is hashed: NFKC, so visually identical input verifies alike."""
    return unicodedata.normalize("NFKC", password)


def _too_long(password: str) -> bool:
    # Checked on the raw input: NFKC can expand a string (up to 18x per character).
    return len(password) > MAX_PASSWORD_BYTES or len(password.encode()) > MAX_PASSWORD_BYTES


class PasswordHasher:
    """Hashes and verifies passwords with one CryptContext; build one per process from
    settings (`default_hasher()` is the one with default parameters)."""

    def __init__(
        self,
        parameters: Argon2Parameters = DEFAULT_ARGON2_PARAMETERS,
        *,
        max_concurrency: int = 2,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.parameters = parameters
        self._context = CryptContext(
            schemes=["argon2", "bcrypt"],
            default="argon2",
            deprecated=["bcrypt"],
            argon2__type="ID",
            argon2__memory_cost=parameters.memory_cost_kib,
            argon2__rounds=parameters.time_cost,
            argon2__parallelism=parameters.parallelism,
        )
        self._max_concurrency = max_concurrency
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        # Made now, not on the first unknown email: that login would otherwise pay
        # for a hash on top of the verification and stand out.
        self._dummy_hash: str = self._context.hash("cardinsa-dummy-password")

    # ------------------------------------------------------------------ sync API

    def hash_password(self, password: str) -> str:
        """An argon2id hash of `password` (PHC string, `$argon2id$v=19$m=...`)."""
        if _too_long(password):
            raise ValueError(f"passwords longer than {MAX_PASSWORD_BYTES} bytes are not hashed")
        result: str = self._context.hash(normalize_password(password))
        return result

    def verify_password(self, password: str, stored_hash: str) -> tuple[bool, str | None]:
        """Check `password` against `stored_hash`.

        Returns ``(ok, new_hash)``: `new_hash` is set only when `ok` and the stored
        hash should be replaced (bcrypt, or argon2 with other parameters). A stored
        value that is not a hash we know, and an over-long password, count as a
        mismatch and cost the same as a real verification, so neither can be told
        apart from a wrong password.
        """
        if _too_long(password) or not self._is_known_hash(stored_hash):
            self.dummy_verify(password)
            return False, None
        normalized = normalize_password(password)
        try:
            if self._context.identify(stored_hash) == "bcrypt":
                return self._verify_bcrypt(password, normalized, stored_hash)
            ok, new_hash = self._context.verify_and_update(normalized, stored_hash)
        except ValueError:  # recognised scheme, malformed hash (passlib's MalformedHashError)
            self.dummy_verify(password)
            return False, None
        return bool(ok), new_hash if ok else None

    def dummy_verify(self, password: str) -> None:
        """Spend what a real verification against an argon2id hash costs, and learn
        nothing: for logins with an unknown email."""
        # argon2's cost does not depend on the password's length, so an over-long
        # one is swapped for a fixed text rather than hashed.
        candidate = "" if _too_long(password) else normalize_password(password)
        self._context.verify(candidate, self.dummy_hash)

    def needs_rehash(self, stored_hash: str) -> bool:
        """Whether a stored hash is of a deprecated scheme or outdated parameters."""
        if not self._is_known_hash(stored_hash):
            return False
        try:
            return bool(self._context.needs_update(stored_hash))
        except ValueError:  # malformed: nothing to upgrade, it does not verify anyway
            return False

    @property
    def dummy_hash(self) -> str:
        """The argon2id hash (current parameters) that `dummy_verify` checks against."""
        return self._dummy_hash

    # ----------------------------------------------------------------- async API

    async def hash_password_async(self, password: str) -> str:
        """`hash_password` off the event loop."""
        return await self._run(self.hash_password, password)

    async def verify_password_async(
        self, password: str, stored_hash: str
    ) -> tuple[bool, str | None]:
        """`verify_password` off the event loop."""
        return await self._run(self.verify_password, password, stored_hash)

    async def dummy_verify_async(self, password: str) -> None:
        """`dummy_verify` off the event loop."""
        await self._run(self.dummy_verify, password)

    def close(self) -> None:
        """Stop the hashing threads (at shutdown); later async calls start new ones."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    # ------------------------------------------------------------------ internals

    async def _run(self, fn: Callable[..., _T], *args: str) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool(), fn, *args)

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self._max_concurrency, thread_name_prefix="password-hash"
                )
            return self._executor

    def _is_known_hash(self, stored_hash: str) -> bool:
        if not stored_hash:
            return False
        try:
            return self._context.identify(stored_hash) is not None
        except (UnknownHashError, ValueError, TypeError):
            return False

    def _verify_bcrypt(
        self, raw: str, normalized: str, stored_hash: str
    ) -> tuple[bool, str | None]:
        # Legacy hashes were made from the raw (unnormalised) text, truncated to 72
        # bytes by the old bcrypt; try the normalised form first, then the raw one.
        candidates = [normalized] if normalized == raw else [normalized, raw]
        for candidate in candidates:
            secret = candidate.encode()[:_BCRYPT_MAX_BYTES]
            if self._context.verify(secret, stored_hash):
                # Re-hash what the user typed, in full: the new hash no longer
                # silently ignores everything after byte 72.
                return True, self.hash_password(raw)
        return False, None


_default: PasswordHasher | None = None
_default_lock = threading.Lock()


def default_hasher() -> PasswordHasher:
    """The process-wide hasher with default parameters (built on first use)."""
    global _default  # noqa: PLW0603 - one lazily built instance per process
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = PasswordHasher()
    return _default


def hash_password(password: str) -> str:
    """`PasswordHasher.hash_password` with the default parameters."""
    return default_hasher().hash_password(password)


def verify_password(password: str, stored_hash: str) -> tuple[bool, str | None]:
    """`PasswordHasher.verify_password` with the default parameters."""
    return default_hasher().verify_password(password, stored_hash)


def dummy_verify(password: str) -> None:
    """`PasswordHasher.dummy_verify` with the default parameters."""
    default_hasher().dummy_verify(password)


async def hash_password_async(password: str) -> str:
    """`hash_password` off the event loop."""
    return await default_hasher().hash_password_async(password)


async def verify_password_async(password: str, stored_hash: str) -> tuple[bool, str | None]:
    """`verify_password` off the event loop."""
    return await default_hasher().verify_password_async(password, stored_hash)


async def dummy_verify_async(password: str) -> None:
    """`dummy_verify` off the event loop."""
    await default_hasher().dummy_verify_async(password)
