"""Signing keys: kid thumbprints, JWKs, encryption at rest, rotation planning."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cardinsa_identity.domain.signing_keys import (
    KeyStateChange,
    PrivateKeyCipher,
    SigningKeyDecryptionError,
    SigningKeyPair,
    SigningKeyRecord,
    SigningKeyState,
    generate_signing_key,
    jwk_thumbprint,
    plan_rotation,
    public_jwk,
)

SECRET = "a-test-signing-key-encryption-secret-of-enough-length"
OTHER_SECRET = "another-test-signing-key-encryption-secret-long-enough"

# RFC 8037, appendix A.1-A.3: an Ed25519 key and its RFC 7638 thumbprint.
RFC8037_D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
RFC8037_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_thumbprint_matches_rfc_8037_example() -> None:
    private = Ed25519PrivateKey.from_private_bytes(_b64decode(RFC8037_D))
    assert jwk_thumbprint(private.public_key()) == RFC8037_THUMBPRINT
    assert public_jwk(private.public_key(), "k1") == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": RFC8037_X,
        "kid": "k1",
        "use": "sig",
        "alg": "EdDSA",
    }


def test_generated_key_kid_is_its_thumbprint_and_keys_differ() -> None:
    a, b = generate_signing_key(), generate_signing_key()
    assert a.kid == jwk_thumbprint(a.public_key) and len(a.kid) == 43
    assert a.kid != b.kid
    assert a.algorithm == "EdDSA"
    assert a.public_jwk()["kid"] == a.kid


def test_repr_never_shows_the_private_key() -> None:
    key = generate_signing_key()
    raw = key.private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    text = repr(key)
    assert "private_key" not in text
    assert base64.urlsafe_b64encode(raw).decode().rstrip("=") not in text


def test_public_jwk_loads_in_pyjwt_and_verifies_a_signature() -> None:
    key = generate_signing_key()
    token = jwt.encode({"a": 1}, key.private_key, algorithm="EdDSA")
    loaded = jwt.PyJWK(key.public_jwk(), algorithm="EdDSA")
    assert jwt.decode(token, loaded.key, algorithms=["EdDSA"]) == {"a": 1}


# ------------------------------------------------------------- encryption at rest


def test_encrypted_key_round_trip() -> None:
    key = generate_signing_key()
    cipher = PrivateKeyCipher(SECRET)

    blob = cipher.encrypt(key)
    restored = cipher.decrypt(key.kid, blob)

    assert isinstance(restored, SigningKeyPair) and restored.kid == key.kid
    token = jwt.encode({"x": 1}, restored.private_key, algorithm="EdDSA")
    assert jwt.decode(token, key.public_key, algorithms=["EdDSA"]) == {"x": 1}


def test_ciphertext_hides_the_key_and_is_randomised() -> None:
    key = generate_signing_key()
    cipher = PrivateKeyCipher(SECRET)
    raw = key.private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    blob1, blob2 = cipher.encrypt(key), cipher.encrypt(key)
    assert raw not in blob1
    assert blob1 != blob2  # fresh nonce each time


def test_wrong_secret_fails_clearly() -> None:
    key = generate_signing_key()
    blob = PrivateKeyCipher(SECRET).encrypt(key)
    with pytest.raises(SigningKeyDecryptionError, match="encryption secret") as caught:
        PrivateKeyCipher(OTHER_SECRET).decrypt(key.kid, blob)
    assert key.kid in str(caught.value)
    assert SECRET not in str(caught.value) and OTHER_SECRET not in str(caught.value)


def test_ciphertext_is_bound_to_its_kid() -> None:
    key, other = generate_signing_key(), generate_signing_key()
    blob = PrivateKeyCipher(SECRET).encrypt(key)
    with pytest.raises(SigningKeyDecryptionError):
        PrivateKeyCipher(SECRET).decrypt(other.kid, blob)


@pytest.mark.parametrize("position", [0, 1, 13, -1])
def test_altered_ciphertext_fails(position: int) -> None:
    key = generate_signing_key()
    blob = bytearray(PrivateKeyCipher(SECRET).encrypt(key))
    blob[position] ^= 0x01
    with pytest.raises(SigningKeyDecryptionError):
        PrivateKeyCipher(SECRET).decrypt(key.kid, bytes(blob))


@pytest.mark.parametrize("blob", [b"", b"\x01", b"\x01" + b"\x00" * 12, b"\x02" + b"\x00" * 64])
def test_truncated_or_unknown_format_fails(blob: bytes) -> None:
    with pytest.raises(SigningKeyDecryptionError):
        PrivateKeyCipher(SECRET).decrypt("kid", blob)


def test_previous_secret_still_decrypts() -> None:
    key = generate_signing_key()
    old_blob = PrivateKeyCipher(OTHER_SECRET).encrypt(key)
    rotated = PrivateKeyCipher(SECRET, previous_secrets=[OTHER_SECRET])
    assert rotated.decrypt(key.kid, old_blob).kid == key.kid
    # Re-encrypting uses the current secret only.
    new_blob = rotated.encrypt(key)
    assert PrivateKeyCipher(SECRET).decrypt(key.kid, new_blob).kid == key.kid
    with pytest.raises(SigningKeyDecryptionError):
        PrivateKeyCipher(OTHER_SECRET).decrypt(key.kid, new_blob)


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        PrivateKeyCipher("too-short")
    with pytest.raises(ValueError):
        PrivateKeyCipher(SECRET, previous_secrets=["short"])


# ------------------------------------------------------------------- rotation

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DELAY = timedelta(minutes=10)
TTL = timedelta(minutes=15)
P, A, R, X = (
    SigningKeyState.PUBLISHED,
    SigningKeyState.ACTIVE,
    SigningKeyState.RETIRING,
    SigningKeyState.RETIRED,
)


def rec(
    kid: str,
    state: SigningKeyState,
    created_min: int,
    *,
    retired_min: int | None = None,
) -> SigningKeyRecord:
    return SigningKeyRecord(
        kid=kid,
        state=state,
        create_time=T0 + timedelta(minutes=created_min),
        activate_time=T0 + timedelta(minutes=created_min) if state is not P else None,
        retire_time=T0 + timedelta(minutes=retired_min) if retired_min is not None else None,
    )


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def states(plan_keys: tuple[SigningKeyRecord, ...]) -> dict[str, SigningKeyState]:
    return {k.kid: k.state for k in plan_keys}


def test_no_keys_needs_a_new_one() -> None:
    plan = plan_rotation([], at(0), DELAY, TTL)
    assert plan.signing_kid is None and plan.published_kids == ()
    assert plan.needs_new_key and plan.next_change_time is None


def test_steady_state_changes_nothing() -> None:
    keys = [rec("a", A, 0)]
    plan = plan_rotation(keys, at(500), DELAY, TTL)
    assert plan.signing_kid == "a" and plan.published_kids == ("a",)
    assert plan.changes == () and plan.keys == tuple(keys) and not plan.needs_new_key


def test_new_key_is_published_before_it_signs() -> None:
    keys = [rec("old", A, 0), rec("new", P, 100)]
    plan = plan_rotation(keys, at(105), DELAY, TTL)
    assert plan.signing_kid == "old"
    assert plan.published_kids == ("old", "new")  # verifiers can already fetch "new"
    assert plan.changes == ()
    assert plan.next_change_time == at(110)


def test_published_key_takes_over_after_the_delay() -> None:
    keys = [rec("old", A, 0), rec("new", P, 100)]
    plan = plan_rotation(keys, at(110), DELAY, TTL)
    assert plan.signing_kid == "new"
    assert states(plan.keys) == {"old": R, "new": A}
    by_kid = {k.kid: k for k in plan.keys}
    assert by_kid["new"].activate_time == at(110)
    assert by_kid["old"].retire_time == at(110)
    # The old key stays published: tokens it signed are still alive.
    assert plan.published_kids == ("new", "old")
    assert set(plan.changes) == {KeyStateChange("old", A, R), KeyStateChange("new", P, A)}
    assert plan.next_change_time == at(125)


def test_retiring_key_stays_until_its_tokens_expired() -> None:
    keys = [rec("new", A, 100), rec("old", R, 0, retired_min=110)]
    assert states(plan_rotation(keys, at(124), DELAY, TTL).keys)["old"] is R
    plan = plan_rotation(keys, at(125), DELAY, TTL)
    assert states(plan.keys) == {"new": A, "old": X}
    assert plan.published_kids == ("new",)
    assert plan.changes == (KeyStateChange("old", R, X),)
    assert plan.next_change_time is None


def test_retired_keys_are_never_published_or_revived() -> None:
    keys = [rec("gone", X, 0, retired_min=5), rec("cur", A, 1)]
    plan = plan_rotation(keys, at(1000), DELAY, TTL)
    assert plan.published_kids == ("cur",) and plan.changes == ()


def test_newest_of_several_due_keys_signs_older_published_one_is_skipped() -> None:
    keys = [rec("a", A, 0), rec("b", P, 10), rec("c", P, 20)]
    plan = plan_rotation(keys, at(60), DELAY, TTL)
    assert plan.signing_kid == "c"
    # "b" never signed anything, so it leaves at once instead of lingering.
    assert states(plan.keys) == {"a": R, "b": X, "c": A}
    assert plan.published_kids == ("c", "a")


def test_published_key_older_than_the_signer_is_retired() -> None:
    keys = [rec("stale", P, 0), rec("cur", A, 50)]
    plan = plan_rotation(keys, at(51), DELAY, TTL)
    assert plan.signing_kid == "cur"
    assert states(plan.keys) == {"stale": X, "cur": A}


def test_only_a_fresh_published_key_waits_and_needs_nothing_new() -> None:
    plan = plan_rotation([rec("first", P, 0)], at(5), DELAY, TTL)
    assert plan.signing_kid is None
    assert not plan.needs_new_key  # one is on its way
    assert plan.published_kids == ("first",)
    assert plan.next_change_time == at(10)
    assert plan_rotation([rec("first", P, 0)], at(10), DELAY, TTL).signing_kid == "first"


def test_two_active_keys_keep_only_the_newest_signing() -> None:
    keys = [rec("a", A, 0), rec("b", A, 5)]
    plan = plan_rotation(keys, at(6), DELAY, TTL)
    assert plan.signing_kid == "b"
    assert states(plan.keys) == {"a": R, "b": A}


def test_only_retiring_and_retired_keys_need_a_new_key() -> None:
    keys = [rec("a", R, 0, retired_min=5), rec("b", X, 0, retired_min=1)]
    plan = plan_rotation(keys, at(6), DELAY, TTL)
    assert plan.signing_kid is None and plan.needs_new_key
    assert plan.published_kids == ("a",)


def test_zero_ttl_retires_immediately() -> None:
    keys = [rec("old", A, 0), rec("new", P, 0 + 1)]
    plan = plan_rotation(keys, at(20), DELAY, timedelta(0))
    assert states(plan.keys) == {"old": X, "new": A}
    assert plan.changes == (KeyStateChange("old", A, X), KeyStateChange("new", P, A))


def test_keys_keep_their_input_order() -> None:
    keys = [rec("z", P, 30), rec("a", A, 0), rec("m", R, 0, retired_min=1)]
    plan = plan_rotation(keys, at(2), DELAY, TTL)
    assert [k.kid for k in plan.keys] == ["z", "a", "m"]


@pytest.mark.parametrize(
    ("keys", "now", "delay", "ttl"),
    [
        ([rec("a", A, 0)], datetime(2026, 1, 1), DELAY, TTL),  # naive time
        ([rec("a", A, 0), rec("a", P, 1)], at(0), DELAY, TTL),  # duplicate kid
        ([rec("a", R, 0)], at(0), DELAY, TTL),  # RETIRING without retire_time
        ([], at(0), timedelta(-1), TTL),
        ([], at(0), DELAY, timedelta(-1)),
    ],
)
def test_inconsistent_input_is_refused(
    keys: list[SigningKeyRecord], now: datetime, delay: timedelta, ttl: timedelta
) -> None:
    with pytest.raises(ValueError):
        plan_rotation(keys, now, delay, ttl)
