"""Rotating the signing-key encryption secret: previous secrets from the settings,
envelopes for new writes, the older direct format still readable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cardinsa_foundation.config import DEV_SIGNING_KEY_ENCRYPTION_KEY
from cardinsa_foundation.envelope import is_envelope
from cardinsa_foundation.server import EXIT_CONFIG
from cardinsa_identity.domain.signing_keys import (
    PrivateKeyCipher,
    SigningKeyDecryptionError,
    SigningKeyPair,
    generate_signing_key,
)
from cardinsa_identity.main import signing_key_cipher
from cardinsa_identity.settings import IdentitySettings

OLD = "old-signing-key-secret-0123456789abcdefghij"
NEW = "new-signing-key-secret-0123456789abcdefghij"


def format_one(secret: str, key: SigningKeyPair) -> bytes:
    """A blob as identity stored it before envelopes (version 1, direct AES-GCM)."""
    derived = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=b"cardinsa/identity/signing-key-encryption/v1",
    ).derive(secret.encode())
    der = key.private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    nonce = os.urandom(12)
    return b"\x01" + nonce + AESGCM(derived).encrypt(nonce, der, b"\x01" + key.kid.encode())


def test_the_settings_pass_previous_secrets_to_the_cipher() -> None:
    key = generate_signing_key()
    old_blob = PrivateKeyCipher(OLD).encrypt(key)
    settings = IdentitySettings(
        _env_file=None,
        signing_key_encryption_key=NEW,
        signing_key_encryption_previous_keys=f"{OLD}",
    )
    rotated = signing_key_cipher(settings)
    assert rotated.decrypt(key.kid, old_blob).kid == key.kid
    assert rotated.needs_reencryption(old_blob)
    new_blob = rotated.encrypt(key)
    assert is_envelope(new_blob) and not rotated.needs_reencryption(new_blob)
    # Without the previous secret the old blob is unreadable.
    with pytest.raises(SigningKeyDecryptionError, match="encryption secret"):
        signing_key_cipher(
            IdentitySettings(_env_file=None, signing_key_encryption_key=NEW)
        ).decrypt(key.kid, old_blob)


def test_the_older_direct_format_still_decrypts_and_asks_for_reencryption() -> None:
    key = generate_signing_key()
    legacy = format_one(OLD, key)
    assert PrivateKeyCipher(OLD).decrypt(key.kid, legacy).kid == key.kid
    rotated = PrivateKeyCipher(NEW, previous_secrets=[OLD])
    assert rotated.decrypt(key.kid, legacy).kid == key.kid
    assert rotated.needs_reencryption(legacy)
    assert PrivateKeyCipher(OLD).needs_reencryption(legacy)  # not an envelope yet
    with pytest.raises(SigningKeyDecryptionError):
        PrivateKeyCipher(NEW).decrypt(key.kid, legacy)


def test_other_identity_secrets_use_the_same_cipher() -> None:
    cipher = PrivateKeyCipher(NEW, previous_secrets=[OLD])
    blob = PrivateKeyCipher(OLD).encrypt_bytes(b"totp seed", aad=b"identity.totp:user-1")
    assert cipher.decrypt_bytes(blob, aad=b"identity.totp:user-1") == b"totp seed"
    with pytest.raises(SigningKeyDecryptionError):
        cipher.decrypt_bytes(blob, aad=b"identity.totp:user-2")
    assert cipher.needs_reencryption(blob)
    assert not cipher.needs_reencryption(cipher.encrypt_bytes(b"x", aad=b"a"))


@pytest.mark.parametrize("module", ["cardinsa_identity.main", "cardinsa_core.scheduler"])
def test_a_production_process_with_a_development_secret_exits_78(
    module: str, tmp_path: Path
) -> None:
    """Refused settings end the process with one line per problem and exit code
    78 (configuration), not a traceback; the value is never printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDINSA_")}
    env.pop("DATABASE_URL", None)
    env.pop("ENVIRONMENT", None)
    env.update(
        {
            "CARDINSA_ENVIRONMENT": "production",
            "CARDINSA_DATABASE_URL": "postgresql://app:pw-0123456789@db.internal/cardinsa",
            "CARDINSA_DATABASE_PLATFORM_URL": "postgresql://p:pw-0123456789@db.internal/x",
            "CARDINSA_SIGNING_KEY_ENCRYPTION_KEY": DEV_SIGNING_KEY_ENCRYPTION_KEY,
            "CARDINSA_PAGE_TOKEN_SECRET": NEW,
        }
    )
    done = subprocess.run(
        [sys.executable, "-m", module],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == EXIT_CONFIG, (done.stdout, done.stderr)
    assert "CARDINSA_SIGNING_KEY_ENCRYPTION_KEY still has its development default" in done.stderr
    assert DEV_SIGNING_KEY_ENCRYPTION_KEY not in done.stderr and NEW not in done.stderr
    assert "Traceback" not in done.stderr
