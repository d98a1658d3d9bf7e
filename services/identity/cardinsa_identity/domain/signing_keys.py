"""Token signing keys: Ed25519 key pairs, their JWKs, encryption at rest, rotation.

- Keys are Ed25519 (JWS ``EdDSA``): small, fast, deterministic signatures, and no
  parameter choices to get wrong. The ``kid`` is the key's RFC 7638 JWK
  thumbprint, so a kid can never point at two different keys and a decrypted
  key can be checked against the kid it was stored under.
- Private keys are stored only encrypted: an envelope (a fresh AES-256-GCM data
  key wrapped under a key derived by HKDF-SHA256 from the settings secret
  ``signing_key_encryption_key``); the kid is the associated data, so a
  ciphertext moved to another row does not decrypt. Earlier secrets listed in
  ``signing_key_encryption_previous_keys`` still decrypt, so the secret can be
  rotated (``python -m cardinsa_identity.cli reencrypt``).
- Rotation is a set of pure rules over the keys' states (`plan_rotation`):
  PUBLISHED → ACTIVE → RETIRING → RETIRED. A new key is published before it signs
  (verifiers' JWKS caches pick it up during ``publish_delay``), and an old key
  stays published until every token it signed has expired (``token_ttl``).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cardinsa_foundation.envelope import EnvelopeCipher, EnvelopeError, is_envelope

__all__ = [
    "ALGORITHM",
    "MIN_ENCRYPTION_SECRET_BYTES",
    "KeyStateChange",
    "PrivateKeyCipher",
    "RotationPlan",
    "SigningKeyDecryptionError",
    "SigningKeyPair",
    "SigningKeyRecord",
    "SigningKeyState",
    "generate_signing_key",
    "jwk_thumbprint",
    "plan_rotation",
    "public_jwk",
]

ALGORITHM: Final = "EdDSA"

#: The settings secret must carry at least this many bytes: HKDF spreads entropy,
#: it does not add any (generate one with ``python -c "import secrets;
#: print(secrets.token_urlsafe(32))"``).
MIN_ENCRYPTION_SECRET_BYTES: Final = 32

_BLOB_VERSION: Final = b"\x01"
_NONCE_BYTES: Final = 12
_HKDF_INFO: Final = b"cardinsa/identity/signing-key-encryption/v1"
_PURPOSE: Final = "identity/signing-keys"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def jwk_thumbprint(public_key: Ed25519PublicKey) -> str:
    """RFC 7638 thumbprint (SHA-256, base64url) of the key's OKP JWK."""
    # The required members in lexicographic order, no whitespace (RFC 7638 §3.2).
    canonical = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": _b64url(_raw_public(public_key))},
        separators=(",", ":"),
        sort_keys=True,
    )
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def public_jwk(public_key: Ed25519PublicKey, kid: str) -> dict[str, str]:
    """The JWKS entry of a public key (RFC 8037 OKP form)."""
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": _b64url(_raw_public(public_key)),
        "kid": kid,
        "use": "sig",
        "alg": ALGORITHM,
    }


@dataclass(frozen=True, slots=True)
class SigningKeyPair:
    """A private signing key with its kid. Its repr never shows the key."""

    kid: str
    private_key: Ed25519PrivateKey = dataclasses.field(repr=False)
    algorithm: str = ALGORITHM

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, str]:
        return public_jwk(self.public_key, self.kid)


def generate_signing_key() -> SigningKeyPair:
    """A new Ed25519 key pair, kid = its JWK thumbprint."""
    private_key = Ed25519PrivateKey.generate()
    return SigningKeyPair(kid=jwk_thumbprint(private_key.public_key()), private_key=private_key)


# ------------------------------------------------------------ encryption at rest


class SigningKeyDecryptionError(Exception):
    """A stored private key cannot be decrypted: the encryption secret in settings is
    not the one it was stored with, or the stored bytes were altered. The message
    names the kid only, never key material."""


def _derive(secret: str | bytes) -> AESGCM:
    material = secret.encode() if isinstance(secret, str) else secret
    if len(material) < MIN_ENCRYPTION_SECRET_BYTES:
        raise ValueError(
            "the signing-key encryption secret must be at least "
            f"{MIN_ENCRYPTION_SECRET_BYTES} bytes long"
        )
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(material)
    return AESGCM(key)


class PrivateKeyCipher:
    """Encrypts private signing keys (and other identity secrets) for storage and
    decrypts them again.

    New blobs are envelopes (:mod:`cardinsa_foundation.envelope`): a fresh data
    key per value, wrapped under a key derived from the settings secret
    (``signing_key_encryption_key``). `previous_secrets`
    (``signing_key_encryption_previous_keys``) lets that secret be rotated:
    blobs stored under an older secret -- envelopes, or the direct format 1 of
    earlier versions -- still decrypt, and ``cli reencrypt`` rewrites them under
    the current one (:meth:`needs_reencryption` tells which).
    """

    def __init__(
        self, secret: str | bytes, *, previous_secrets: Iterable[str | bytes] = ()
    ) -> None:
        previous = tuple(previous_secrets)
        self._envelope = EnvelopeCipher(secret, previous_secrets=previous, purpose=_PURPOSE)
        # Format 1 (direct AES-GCM under the HKDF key): read only.
        self._legacy = tuple(_derive(s) for s in (secret, *previous))

    @staticmethod
    def _aad(kid: str) -> bytes:
        return _BLOB_VERSION + kid.encode("utf-8")

    def encrypt_bytes(self, plaintext: bytes, *, aad: bytes) -> bytes:
        """An envelope of ``plaintext`` under the current secret, bound to ``aad``."""
        return self._envelope.encrypt(plaintext, aad=aad)

    def decrypt_bytes(self, blob: bytes, *, aad: bytes) -> bytes:
        """The plaintext of `blob` (an envelope or format 1), or
        SigningKeyDecryptionError naming nothing secret."""
        blob = bytes(blob)
        if is_envelope(blob):
            try:
                return self._envelope.decrypt(blob, aad=aad)
            except EnvelopeError as error:
                raise SigningKeyDecryptionError(str(error)) from None
        if len(blob) <= 1 + _NONCE_BYTES or blob[:1] != _BLOB_VERSION:
            raise SigningKeyDecryptionError("the stored value is not in a known encrypted format")
        nonce, ciphertext = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        for cipher in self._legacy:
            try:
                return cipher.decrypt(nonce, ciphertext, aad)
            except InvalidTag:
                continue
        raise SigningKeyDecryptionError(
            "the stored value cannot be decrypted: the signing-key encryption secret in "
            "settings is not the one it was stored with, or it was altered"
        )

    def needs_reencryption(self, blob: bytes) -> bool:
        """Whether `blob` is not an envelope under the current secret."""
        blob = bytes(blob)
        if not is_envelope(blob):
            return True
        try:
            return not self._envelope.is_current(blob)
        except EnvelopeError:
            return True

    def encrypt(self, key: SigningKeyPair) -> bytes:
        """An envelope of the PKCS#8 DER private key, bound to the kid."""
        plaintext = key.private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return self.encrypt_bytes(plaintext, aad=self._aad(key.kid))

    def decrypt(self, kid: str, blob: bytes) -> SigningKeyPair:
        """The key stored as `blob` under `kid`, or SigningKeyDecryptionError."""
        try:
            plaintext = self.decrypt_bytes(blob, aad=self._aad(kid))
        except SigningKeyDecryptionError as error:
            raise SigningKeyDecryptionError(
                f"the signing key {kid!r} cannot be decrypted: {error}"
            ) from None
        private_key = serialization.load_der_private_key(plaintext, password=None)
        if not isinstance(private_key, Ed25519PrivateKey):
            raise SigningKeyDecryptionError(f"the stored signing key {kid!r} is not Ed25519")
        if jwk_thumbprint(private_key.public_key()) != kid:
            raise SigningKeyDecryptionError(f"the stored signing key does not match kid {kid!r}")
        return SigningKeyPair(kid=kid, private_key=private_key)

    # Other secrets at rest (a user's TOTP secret) under the same keys: the
    # associated data names what the blob is (``context``, e.g. ``totp:<user
    # id>``) after a marker no kid contains, so neither a signing key nor
    # another row's secret can be swapped in.
    @staticmethod
    def _sealed_aad(context: str) -> bytes:
        return _BLOB_VERSION + b"\x00sealed\x00" + context.encode("utf-8")

    def seal(self, plaintext: bytes, context: str) -> bytes:
        """An envelope of ``plaintext`` under the current secret, bound to ``context``."""
        return self.encrypt_bytes(plaintext, aad=self._sealed_aad(context))

    def open_sealed(self, blob: bytes, context: str) -> bytes:
        """What `seal` stored under ``context`` (under the current or a previous
        secret), or SigningKeyDecryptionError (naming the context only)."""
        try:
            return self.decrypt_bytes(blob, aad=self._sealed_aad(context))
        except SigningKeyDecryptionError:
            raise SigningKeyDecryptionError(
                f"the secret stored for {context!r} cannot be decrypted"
            ) from None


# ------------------------------------------------------------------- rotation


class SigningKeyState(StrEnum):
    """Values match `cardinsa.identity.v1.SigningKey.State` names."""

    PUBLISHED = "PUBLISHED"  # in the JWKS, not signing yet
    ACTIVE = "ACTIVE"  # signing new tokens
    RETIRING = "RETIRING"  # no longer signing; in the JWKS until its tokens expire
    RETIRED = "RETIRED"  # gone from the JWKS


@dataclass(frozen=True, slots=True)
class SigningKeyRecord:
    """What rotation needs to know of a stored key. `create_time` is when it was
    published; `retire_time` is when it stopped signing (set for RETIRING)."""

    kid: str
    state: SigningKeyState
    create_time: datetime
    activate_time: datetime | None = None
    retire_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class KeyStateChange:
    """One state change the plan makes; the application stores it and audits it."""

    kid: str
    from_state: SigningKeyState
    to_state: SigningKeyState


@dataclass(frozen=True, slots=True)
class RotationPlan:
    """The outcome of `plan_rotation`."""

    #: The key that signs tokens from now on; None when no key can (see `needs_new_key`).
    signing_kid: str | None
    #: Kids the JWKS must contain, the signing key first, then newest first.
    published_kids: tuple[str, ...]
    #: Every key with its state after the plan (same order as given).
    keys: tuple[SigningKeyRecord, ...]
    #: What changed, for storing and auditing.
    changes: tuple[KeyStateChange, ...]
    #: No key signs and none is waiting to: the application must create one. At the
    #: very first start it may be ACTIVE at once, since no verifier can hold a JWKS
    #: that lacks it; after that, a new key is published first.
    needs_new_key: bool
    #: When the plan would next change by itself (a published key becomes due, a
    #: retiring key's tokens have all expired); None when nothing is pending.
    next_change_time: datetime | None


def plan_rotation(
    keys: Sequence[SigningKeyRecord],
    now: datetime,
    publish_delay: timedelta,
    token_ttl: timedelta,
) -> RotationPlan:
    """Decide which key signs now, which are published and which retire.

    Rules:
    1. The signer is the newest key that is ACTIVE, or PUBLISHED for at least
       `publish_delay` (it then becomes ACTIVE).
    2. Every other ACTIVE key becomes RETIRING (retire_time = now).
    3. A PUBLISHED key older than the signer never signs (a newer key overtook
       it): it becomes RETIRED at once, having signed nothing.
    4. A RETIRING key becomes RETIRED once `token_ttl` has passed since it stopped
       signing: no token it signed can still be valid. (Add the verifiers' clock
       leeway to `token_ttl` if it should count.)
    5. The JWKS holds the PUBLISHED, ACTIVE and RETIRING keys.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if publish_delay < timedelta(0) or token_ttl < timedelta(0):
        raise ValueError("publish_delay and token_ttl must not be negative")
    if len({k.kid for k in keys}) != len(keys):
        raise ValueError("signing keys must have distinct kids")
    for k in keys:
        if k.state is SigningKeyState.RETIRING and k.retire_time is None:
            raise ValueError(f"retiring signing key {k.kid!r} has no retire_time")

    def due(k: SigningKeyRecord) -> bool:
        return k.create_time + publish_delay <= now

    eligible = [
        k
        for k in keys
        if k.state is SigningKeyState.ACTIVE or (k.state is SigningKeyState.PUBLISHED and due(k))
    ]
    signer = max(eligible, key=lambda k: (k.create_time, k.kid)) if eligible else None

    updated: list[SigningKeyRecord] = []
    changes: list[KeyStateChange] = []
    for k in keys:
        new = k
        if signer is not None and k.kid == signer.kid:
            if k.state is SigningKeyState.PUBLISHED:
                new = dataclasses.replace(k, state=SigningKeyState.ACTIVE, activate_time=now)
        elif k.state is SigningKeyState.ACTIVE:
            new = dataclasses.replace(k, state=SigningKeyState.RETIRING, retire_time=now)
        elif (
            k.state is SigningKeyState.PUBLISHED
            and signer is not None
            and (k.create_time, k.kid) < (signer.create_time, signer.kid)
        ):
            new = dataclasses.replace(k, state=SigningKeyState.RETIRED, retire_time=now)
        if (
            new.state is SigningKeyState.RETIRING
            and new.retire_time is not None
            and new.retire_time + token_ttl <= now
        ):
            new = dataclasses.replace(new, state=SigningKeyState.RETIRED)
        if new.state is not k.state:
            changes.append(KeyStateChange(k.kid, k.state, new.state))
        updated.append(new)

    live = (SigningKeyState.PUBLISHED, SigningKeyState.ACTIVE, SigningKeyState.RETIRING)
    published = sorted(
        (k for k in updated if k.state in live),
        key=lambda k: (k.kid != (signer.kid if signer else None), -k.create_time.timestamp()),
    )

    pending: list[datetime] = []
    for k in updated:
        if k.state is SigningKeyState.PUBLISHED:
            pending.append(k.create_time + publish_delay)
        elif k.state is SigningKeyState.RETIRING and k.retire_time is not None:
            pending.append(k.retire_time + token_ttl)

    return RotationPlan(
        signing_kid=signer.kid if signer else None,
        published_kids=tuple(k.kid for k in published),
        keys=tuple(updated),
        changes=tuple(changes),
        needs_new_key=signer is None
        and not any(k.state is SigningKeyState.PUBLISHED for k in updated),
        next_change_time=min(pending) if pending else None,
    )
