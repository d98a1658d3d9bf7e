"""Password hashing: argon2id by default, bcrypt upgraded, dummy work for unknown emails."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from typing import Any

import argon2.low_level
import bcrypt
import pytest

from cardinsa_identity.domain import passwords
from cardinsa_identity.domain.passwords import (
    MAX_PASSWORD_BYTES,
    Argon2Parameters,
    PasswordHasher,
)

# Cheap parameters keep most tests fast; the timing test uses the real defaults.
CHEAP = Argon2Parameters(memory_cost_kib=1024, time_cost=1, parallelism=1)
PASSWORD = "correct horse battery staple"


@pytest.fixture
def hasher() -> Iterator[PasswordHasher]:
    h = PasswordHasher(CHEAP)
    yield h
    h.close()


@pytest.fixture
def argon2_verifications(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Records the hash of every argon2 verification libpass performs."""
    seen: list[bytes] = []
    real = argon2.low_level.verify_secret

    def counting(hash: bytes, secret: bytes, type: Any) -> Any:
        seen.append(hash)
        return real(hash, secret, type)

    monkeypatch.setattr(argon2.low_level, "verify_secret", counting)
    return seen


def test_hash_is_argon2id_with_configured_parameters(hasher: PasswordHasher) -> None:
    stored = hasher.hash_password(PASSWORD)
    assert stored.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert PASSWORD not in stored


def test_default_parameters_are_argon2id_above_owasp_minimum() -> None:
    stored = PasswordHasher().hash_password(PASSWORD)
    assert stored.startswith("$argon2id$v=19$m=32768,t=2,p=1$")


def test_hashes_are_salted(hasher: PasswordHasher) -> None:
    assert hasher.hash_password(PASSWORD) != hasher.hash_password(PASSWORD)


def test_verify_right_and_wrong_password(hasher: PasswordHasher) -> None:
    stored = hasher.hash_password(PASSWORD)
    assert hasher.verify_password(PASSWORD, stored) == (True, None)
    assert hasher.verify_password(PASSWORD + "!", stored) == (False, None)
    assert hasher.verify_password("", stored) == (False, None)


def test_bcrypt_hash_verifies_and_yields_argon2id(hasher: PasswordHasher) -> None:
    legacy = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    assert hasher.needs_rehash(legacy)

    ok, new_hash = hasher.verify_password(PASSWORD, legacy)

    assert ok is True
    assert new_hash is not None and new_hash.startswith("$argon2id$")
    assert hasher.verify_password(PASSWORD, new_hash) == (True, None)
    assert not hasher.needs_rehash(new_hash)


def test_bcrypt_wrong_password_gives_no_new_hash(hasher: PasswordHasher) -> None:
    legacy = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    assert hasher.verify_password("not the password", legacy) == (False, None)


def test_bcrypt_hash_of_long_password_still_verifies(hasher: PasswordHasher) -> None:
    # The old system's bcrypt silently used only the first 72 bytes.
    long_password = "p" * 60 + "ü" * 20  # 100 bytes
    legacy = bcrypt.hashpw(long_password.encode()[:72], bcrypt.gensalt(rounds=4)).decode()

    ok, new_hash = hasher.verify_password(long_password, legacy)

    assert ok and new_hash is not None
    # The new hash covers the whole password, not just 72 bytes.
    assert hasher.verify_password(long_password, new_hash) == (True, None)
    assert hasher.verify_password(long_password[:-1], new_hash)[0] is False


def test_argon2_with_outdated_parameters_is_rehashed(hasher: PasswordHasher) -> None:
    stronger = PasswordHasher(Argon2Parameters(memory_cost_kib=2048, time_cost=1))
    old = hasher.hash_password(PASSWORD)

    ok, new_hash = stronger.verify_password(PASSWORD, old)

    assert ok and new_hash is not None
    assert new_hash.startswith("$argon2id$v=19$m=2048,t=1,p=1$")
    assert stronger.verify_password(PASSWORD, new_hash) == (True, None)


def test_argon2i_hash_is_upgraded_to_argon2id(hasher: PasswordHasher) -> None:
    argon2i = argon2.low_level.hash_secret(
        PASSWORD.encode(),
        b"somesaltsomesalt",
        time_cost=1,
        memory_cost=1024,
        parallelism=1,
        hash_len=32,
        type=argon2.low_level.Type.I,
    ).decode()
    ok, new_hash = hasher.verify_password(PASSWORD, argon2i)
    assert ok and new_hash is not None and new_hash.startswith("$argon2id$")


def test_unicode_forms_verify_alike(hasher: PasswordHasher) -> None:
    composed = unicodedata.normalize("NFC", "Crème brûlée au café")
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    stored = hasher.hash_password(composed)
    assert hasher.verify_password(decomposed, stored) == (True, None)


@pytest.mark.parametrize("stored", ["", "not-a-hash", "$argon2id$garbage", "$2b$12$short"])
def test_unusable_stored_hash_is_a_mismatch_that_costs_a_verification(
    hasher: PasswordHasher, argon2_verifications: list[bytes], stored: str
) -> None:
    assert hasher.verify_password(PASSWORD, stored) == (False, None)
    assert len(argon2_verifications) >= 1


def test_over_long_password_is_refused_without_hashing_it(
    hasher: PasswordHasher, argon2_verifications: list[bytes]
) -> None:
    stored = hasher.hash_password(PASSWORD)
    argon2_verifications.clear()
    huge = "x" * (MAX_PASSWORD_BYTES + 1)

    assert hasher.verify_password(huge, stored) == (False, None)
    # Only the dummy verification ran, never one against the user's hash.
    assert argon2_verifications == [hasher.dummy_hash.encode()]
    with pytest.raises(ValueError, match="longer than"):
        hasher.hash_password(huge)
    with pytest.raises(ValueError):
        hasher.hash_password("é" * (MAX_PASSWORD_BYTES // 2 + 1))  # under 1024 chars, over bytes


def test_dummy_verify_runs_one_real_argon2id_verification(
    hasher: PasswordHasher, argon2_verifications: list[bytes]
) -> None:
    dummy = hasher.dummy_hash  # made before counting starts
    argon2_verifications.clear()

    hasher.dummy_verify("whatever the client sent")
    hasher.dummy_verify("x" * 10_000)  # over-long input still costs exactly one verify

    assert argon2_verifications == [dummy.encode(), dummy.encode()]
    # Same scheme and parameters as a real user's hash, so the same cost.
    real = hasher.hash_password(PASSWORD)
    assert dummy.rsplit("$", 2)[0] == real.rsplit("$", 2)[0]


def test_dummy_hash_follows_the_configured_parameters() -> None:
    assert PasswordHasher(CHEAP).dummy_hash.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    stronger = PasswordHasher(Argon2Parameters(memory_cost_kib=4096, time_cost=3))
    assert stronger.dummy_hash.startswith("$argon2id$v=19$m=4096,t=3,p=1$")


def _median_seconds(fn: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def test_dummy_verify_costs_about_what_a_wrong_password_costs() -> None:
    hasher = PasswordHasher()  # the real default parameters
    stored = hasher.hash_password(PASSWORD)
    hasher.dummy_verify("warm-up")  # builds the dummy hash outside the measurement

    real = _median_seconds(lambda: hasher.verify_password("wrong password!", stored), 5)
    dummy = _median_seconds(lambda: hasher.dummy_verify("wrong password!"), 5)

    # Generous bounds: the machine is shared, but a missing or much cheaper dummy
    # (a plain comparison takes microseconds) falls far outside them.
    assert 0.4 < dummy / real < 2.5, (dummy, real)
    assert real > 0.005


def test_default_hash_takes_tens_of_milliseconds() -> None:
    hasher = PasswordHasher()
    seconds = _median_seconds(lambda: hasher.hash_password(PASSWORD), 3)
    # Target ~30-60 ms on the 2-core reference machine; wide bounds for noise.
    assert 0.01 < seconds < 0.5, seconds


def test_invalid_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        Argon2Parameters(time_cost=0)
    with pytest.raises(ValueError):
        Argon2Parameters(memory_cost_kib=4, parallelism=1)
    with pytest.raises(ValueError):
        PasswordHasher(CHEAP, max_concurrency=0)


async def test_async_wrappers_run_off_the_event_loop(hasher: PasswordHasher) -> None:
    loop_thread = threading.current_thread()
    stored = await hasher.hash_password_async(PASSWORD)
    assert await hasher.verify_password_async(PASSWORD, stored) == (True, None)
    assert await hasher.verify_password_async("nope", stored) == (False, None)

    threads: list[threading.Thread] = []
    real_verify = hasher.verify_password

    def recording(password: str, stored_hash: str) -> tuple[bool, str | None]:
        threads.append(threading.current_thread())
        return real_verify(password, stored_hash)

    hasher.verify_password = recording  # type: ignore[method-assign]
    await hasher.verify_password_async(PASSWORD, stored)
    await hasher.dummy_verify_async(PASSWORD)
    assert threads and all(t is not loop_thread for t in threads)
    assert threads[0].name.startswith("password-hash")


async def test_async_hashing_is_bounded(hasher: PasswordHasher) -> None:
    bounded = PasswordHasher(CHEAP, max_concurrency=2)
    running = 0
    peak = 0
    lock = threading.Lock()

    def slow(password: str) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1

    bounded.dummy_verify = slow  # type: ignore[method-assign]
    try:
        await asyncio.gather(*(bounded.dummy_verify_async("x") for _ in range(6)))
    finally:
        bounded.close()
    assert peak == 2


async def test_module_level_functions_use_the_default_hasher() -> None:
    stored = passwords.hash_password(PASSWORD)
    assert stored.startswith("$argon2id$v=19$m=32768,t=2,p=1$")
    assert passwords.verify_password(PASSWORD, stored) == (True, None)
    assert await passwords.verify_password_async("wrong", stored) == (False, None)
    passwords.dummy_verify(PASSWORD)
    await passwords.dummy_verify_async(PASSWORD)
    assert (await passwords.hash_password_async(PASSWORD)).startswith("$argon2id$")
    assert passwords.default_hasher() is passwords.default_hasher()
