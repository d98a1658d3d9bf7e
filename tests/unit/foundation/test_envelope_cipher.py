"""The envelope cipher and keyed hash of cardinsa_foundation.envelope."""

from __future__ import annotations

import pytest

from cardinsa_foundation.envelope import (
    ENVELOPE_VERSION,
    EnvelopeCipher,
    EnvelopeError,
    KeyedHash,
    is_envelope,
)

OLD = "old-secret-0123456789abcdefghijklmnopqrstuv"
NEW = "new-secret-0123456789abcdefghijklmnopqrstuv"
PURPOSE = "test/values"
AAD = b"core.policyholders.national_id"


def cipher(secret: str = NEW, *previous: str, purpose: str = PURPOSE) -> EnvelopeCipher:
    return EnvelopeCipher(secret, previous_secrets=previous, purpose=purpose)


def test_round_trip_and_format() -> None:
    blob = cipher().encrypt_text("DE12345678901", aad=AAD)
    assert is_envelope(blob) and blob[0] == ENVELOPE_VERSION
    assert b"DE12345678901" not in blob
    assert cipher().decrypt_text(blob, aad=AAD) == "DE12345678901"
    assert cipher().key_id_of(blob) == cipher().current_key_id
    assert cipher().encrypt(b"") != b""  # an empty value is still sealed
    assert cipher().decrypt(cipher().encrypt(b""), aad=b"") == b""


def test_every_value_gets_its_own_data_key_and_nonces() -> None:
    c = cipher()
    first, second = c.encrypt(b"same", aad=AAD), c.encrypt(b"same", aad=AAD)
    assert first != second
    header = 2 + first[1]
    assert first[header:] != second[header:]


def test_rotation_old_values_decrypt_and_new_writes_use_the_current_key() -> None:
    old_blob = cipher(OLD).encrypt(b"value", aad=AAD)
    rotated = cipher(NEW, OLD)
    assert rotated.decrypt(old_blob, aad=AAD) == b"value"
    assert not rotated.is_current(old_blob)
    new_blob = rotated.encrypt(b"value", aad=AAD)
    assert rotated.is_current(new_blob)
    assert rotated.key_ids == (cipher(NEW).current_key_id, cipher(OLD).current_key_id)
    # After the old secret is gone, only the re-encrypted value still reads.
    assert cipher(NEW).decrypt(new_blob, aad=AAD) == b"value"
    with pytest.raises(EnvelopeError, match="neither the current nor a previous"):
        cipher(NEW).decrypt(old_blob, aad=AAD)


def test_the_wrong_key_fails_without_saying_a_secret() -> None:
    blob = cipher(OLD).encrypt(b"DE99887766", aad=AAD)
    with pytest.raises(EnvelopeError) as caught:
        cipher(NEW).decrypt(blob, aad=AAD)
    said = str(caught.value)
    assert OLD not in said and NEW not in said and "DE99887766" not in said


@pytest.mark.parametrize("position", [0, 1, 5, 20, 40, 70, 90, -1])
def test_any_altered_byte_is_detected(position: int) -> None:
    blob = bytearray(cipher().encrypt(b"a national id", aad=AAD))
    blob[position] ^= 0x01
    with pytest.raises(EnvelopeError):
        cipher().decrypt(bytes(blob), aad=AAD)


def test_the_value_is_bound_to_its_associated_data() -> None:
    blob = cipher().encrypt(b"value", aad=AAD)
    with pytest.raises(EnvelopeError):
        cipher().decrypt(blob, aad=b"core.dependents.national_id")


def test_purposes_separate_the_keys_of_one_secret() -> None:
    blob = cipher(purpose="core/personal-data").encrypt(b"value")
    other = cipher(purpose="identity/signing-keys")
    assert other.current_key_id != cipher(purpose="core/personal-data").current_key_id
    with pytest.raises(EnvelopeError):
        other.decrypt(blob)


@pytest.mark.parametrize("blob", [b"", b"\x02", b"\x01" + b"\x00" * 100, b"\x02\x10abc"])
def test_not_an_envelope(blob: bytes) -> None:
    with pytest.raises(EnvelopeError):
        cipher().decrypt(blob)
    assert is_envelope(blob) == (blob[:1] == b"\x02")


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        EnvelopeCipher("short", purpose=PURPOSE)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        EnvelopeCipher(NEW, previous_secrets=["short"], purpose=PURPOSE)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        KeyedHash("short", purpose=PURPOSE)


def test_keyed_hash_is_deterministic_and_depends_on_the_key() -> None:
    one, again, other = (
        KeyedHash(NEW, purpose=PURPOSE),
        KeyedHash(NEW, purpose=PURPOSE),
        KeyedHash(OLD, purpose=PURPOSE),
    )
    assert one.digest("DE123") == again.digest("DE123")
    assert len(one.digest("DE123")) == 32
    assert one.digest("DE123") != one.digest("DE124")
    assert one.digest("DE123") != other.digest("DE123")
    assert one.digest("DE123") != KeyedHash(NEW, purpose="other").digest("DE123")
