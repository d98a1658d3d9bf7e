"""Personal data at rest: the columns stored only encrypted, and their keys.

The columns typed :class:`EncryptedText` hold an envelope blob
(:mod:`cardinsa_foundation.envelope`) in the database and a plain ``str`` in
Python: the value is encrypted when it is written and decrypted when it is
read, so the code above the repository sees ordinary strings. The associated
data is the column's own name (``core.policyholders.national_id``), so a blob
copied into another column does not decrypt. An empty string is stored as
NULL (nothing to protect, nothing to erase).

National ids also have a keyed hash (HMAC-SHA256, :func:`national_id_hash`),
kept up to date by the models, which exact-match filters compare against.

The keys come from the core settings (``personal_data_key``,
``personal_data_previous_keys``, ``personal_data_hash_key``): the process
installs them once with :func:`use_settings` (the service's ``build``, the
CLI, migration 0015); until then the settings of the environment are used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import LargeBinary
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from cardinsa_core.settings import CoreSettings
from cardinsa_foundation.config import get_settings
from cardinsa_foundation.envelope import EnvelopeCipher, KeyedHash

__all__ = [
    "PURPOSE",
    "EncryptedText",
    "PersonalDataKeys",
    "keys",
    "national_id_hash",
    "use_settings",
]

PURPOSE = "core/personal-data"


@dataclass(frozen=True, slots=True)
class PersonalDataKeys:
    cipher: EnvelopeCipher
    lookup: KeyedHash

    @classmethod
    def from_settings(cls, settings: CoreSettings) -> PersonalDataKeys:
        return cls(
            cipher=EnvelopeCipher(
                settings.personal_data_key.get_secret_value(),
                previous_secrets=[
                    s.get_secret_value() for s in settings.personal_data_previous_keys
                ],
                purpose=PURPOSE,
            ),
            lookup=KeyedHash(settings.personal_data_hash_key.get_secret_value(), purpose=PURPOSE),
        )


_installed: list[PersonalDataKeys] = []


def use_settings(settings: CoreSettings) -> PersonalDataKeys:
    """Install the keys of ``settings`` for this process (replacing earlier ones)."""
    installed = PersonalDataKeys.from_settings(settings)
    _installed[:] = [installed]
    return installed


def keys() -> PersonalDataKeys:
    """The installed keys (those of the environment's settings if none were)."""
    if not _installed:
        use_settings(get_settings(CoreSettings))
    return _installed[0]


def national_id_hash(normalized: str) -> bytes | None:
    """The lookup hash of a (normalised) national id; None for none."""
    return keys().lookup.digest(normalized) if normalized else None


class EncryptedText(TypeDecorator[str]):
    """A text value stored as an envelope blob bound to its column's name."""

    impl = LargeBinary
    cache_ok = True

    def __init__(self, column: str) -> None:
        super().__init__()
        self.column = column
        self._aad = column.encode("utf-8")

    def process_bind_param(self, value: Any, dialect: Dialect) -> bytes | None:
        if value is None or value == "":
            return None
        return keys().cipher.encrypt_text(str(value), aad=self._aad)

    def process_result_value(self, value: Any, dialect: Dialect) -> str:
        if value is None:
            return ""
        return keys().cipher.decrypt_text(bytes(value), aad=self._aad)

    def copy(self, **kw: Any) -> EncryptedText:
        return EncryptedText(self.column)
