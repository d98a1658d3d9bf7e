"""Envelope encryption of values at rest, and keyed hashes for exact-match lookups.

Every value is encrypted with its own random data key (AES-256-GCM); the data
key is stored next to it, encrypted ("wrapped") under a key-encryption key
(KEK) that comes from the settings. The stored blob names the KEK it was
wrapped under, so the KEK can be rotated: configure the new secret as the
current one and the old ones as previous; old blobs still decrypt, new writes
use the current KEK, and a service's ``reencrypt`` command rewrites every
stored blob under the current one (after which the old secret can go).

Blob format (all in one ``bytea``)::

    0x02 | len(kek_id) (1 byte) | kek_id (ASCII) | wrap nonce (12) |
    wrapped data key (32 + 16 tag) | data nonce (12) | ciphertext + tag (16)

- A KEK is derived by HKDF-SHA256 from its settings secret and a *purpose*
  (``core/personal-data``, ``identity/signing-keys``), so one secret used for two
  purposes still gives two unrelated keys. Its id is a short fingerprint of the
  derived key (never the key itself), so no id needs configuring.
- The associated data the caller gives (table and column, a key id ...) is
  bound to both layers: a blob copied to another column or row does not decrypt.
- Decryption failures (unknown KEK, altered bytes, wrong associated data) raise
  :class:`EnvelopeError`, whose message never carries key material or plaintext.

:class:`KeyedHash` is HMAC-SHA256 under its own secret: the stored hash of a
national id lets a service find the row by exact match without storing the id
in clear, and without the secret nobody can test guesses against the hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "ENVELOPE_VERSION",
    "MIN_SECRET_BYTES",
    "EnvelopeCipher",
    "EnvelopeError",
    "KeyedHash",
    "is_envelope",
]

#: First byte of every envelope blob (1 was the signing keys' direct format).
ENVELOPE_VERSION: Final = 0x02
#: A settings secret carries at least this many bytes (HKDF spreads entropy,
#: it does not add any; generate one with ``python -c "import secrets;
#: print(secrets.token_urlsafe(32))"``).
MIN_SECRET_BYTES: Final = 32

_NONCE: Final = 12
_DATA_KEY: Final = 32
_TAG: Final = 16
_WRAPPED: Final = _DATA_KEY + _TAG


class EnvelopeError(Exception):
    """A blob cannot be decrypted (or is not an envelope). Never carries secrets."""


def _material(secret: str | bytes, what: str) -> bytes:
    material = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if len(material) < MIN_SECRET_BYTES:
        raise ValueError(f"the {what} secret must be at least {MIN_SECRET_BYTES} bytes long")
    return material


def _derive(secret: str | bytes, info: bytes, what: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
        _material(secret, what)
    )


class _Kek:
    __slots__ = ("aead", "key_id")

    def __init__(self, secret: str | bytes, purpose: str) -> None:
        key = _derive(secret, f"cardinsa/envelope-kek/v1/{purpose}".encode(), purpose)
        self.aead = AESGCM(key)
        self.key_id = hmac.new(key, b"cardinsa/kek-id", hashlib.sha256).hexdigest()[:16]


def is_envelope(blob: bytes | None) -> bool:
    """Whether ``blob`` looks like an envelope (its version byte)."""
    return bool(blob) and blob is not None and blob[0] == ENVELOPE_VERSION


class EnvelopeCipher:
    """Encrypts values under a fresh data key wrapped by the current KEK; decrypts
    blobs wrapped by the current or any previous KEK.

    ``purpose`` separates the keys of different uses of the same secret.
    """

    def __init__(
        self,
        secret: str | bytes,
        *,
        previous_secrets: Iterable[str | bytes] = (),
        purpose: str,
    ) -> None:
        self.purpose = purpose
        self._current = _Kek(secret, purpose)
        self._keks = {self._current.key_id: self._current}
        for old in previous_secrets:
            kek = _Kek(old, purpose)
            self._keks.setdefault(kek.key_id, kek)

    @property
    def current_key_id(self) -> str:
        return self._current.key_id

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The current KEK's id first, then the previous ones'."""
        return tuple(self._keks)

    def encrypt(self, plaintext: bytes, *, aad: bytes = b"") -> bytes:
        data_key = AESGCM.generate_key(bit_length=_DATA_KEY * 8)
        kek_id = self._current.key_id.encode("ascii")
        header = bytes([ENVELOPE_VERSION, len(kek_id)]) + kek_id
        wrap_nonce, data_nonce = os.urandom(_NONCE), os.urandom(_NONCE)
        wrapped = self._current.aead.encrypt(wrap_nonce, data_key, header + aad)
        sealed = AESGCM(data_key).encrypt(data_nonce, plaintext, header + aad)
        return header + wrap_nonce + wrapped + data_nonce + sealed

    def decrypt(self, blob: bytes, *, aad: bytes = b"") -> bytes:
        header, kek_id, rest = self._split(blob)
        kek = self._keks.get(kek_id)
        if kek is None:
            raise EnvelopeError(
                f"the value was encrypted under key {kek_id!r} ({self.purpose}), derived from "
                "neither the current nor a previous encryption secret in the settings"
            )
        wrap_nonce, wrapped = rest[:_NONCE], rest[_NONCE : _NONCE + _WRAPPED]
        data_nonce = rest[_NONCE + _WRAPPED : 2 * _NONCE + _WRAPPED]
        sealed = rest[2 * _NONCE + _WRAPPED :]
        try:
            data_key = kek.aead.decrypt(wrap_nonce, wrapped, header + aad)
            return AESGCM(data_key).decrypt(data_nonce, sealed, header + aad)
        except InvalidTag:
            raise EnvelopeError(
                f"the value encrypted under key {kek_id!r} ({self.purpose}) was altered "
                "or belongs elsewhere"
            ) from None

    def key_id_of(self, blob: bytes) -> str:
        """The id of the KEK ``blob`` is wrapped under (EnvelopeError if none)."""
        return self._split(blob)[1]

    def is_current(self, blob: bytes) -> bool:
        """Whether ``blob`` is wrapped under the current KEK (nothing to re-encrypt)."""
        return self.key_id_of(blob) == self._current.key_id

    def encrypt_text(self, value: str, *, aad: bytes = b"") -> bytes:
        return self.encrypt(value.encode("utf-8"), aad=aad)

    def decrypt_text(self, blob: bytes, *, aad: bytes = b"") -> str:
        return self.decrypt(blob, aad=aad).decode("utf-8")

    @staticmethod
    def _split(blob: bytes) -> tuple[bytes, str, bytes]:
        blob = bytes(blob)
        if len(blob) < 2 or blob[0] != ENVELOPE_VERSION:
            raise EnvelopeError("the stored value is not in the envelope format")
        end = 2 + blob[1]
        if len(blob) < end + 2 * _NONCE + _WRAPPED + _TAG:
            raise EnvelopeError("the stored value is truncated")
        try:
            kek_id = blob[2:end].decode("ascii")
        except UnicodeDecodeError:
            raise EnvelopeError("the stored value is not in the envelope format") from None
        return blob[:end], kek_id, blob[end:]


class KeyedHash:
    """HMAC-SHA256 of values under a secret of its own, for exact-match lookups."""

    def __init__(self, secret: str | bytes, *, purpose: str) -> None:
        self._key = _derive(secret, f"cardinsa/keyed-hash/v1/{purpose}".encode(), purpose)

    def digest(self, value: str) -> bytes:
        return hmac.new(self._key, value.encode("utf-8"), hashlib.sha256).digest()
