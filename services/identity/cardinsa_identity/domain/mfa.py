"""TOTP second factor (RFC 6238, through pyotp) and recovery codes.

- A factor is SHA-1, 6 digits, 30-second steps: what every authenticator app
  takes from an ``otpauth://`` URI without asking.
- A code is accepted for the current step and one step either side (clock
  drift), and only for a step after the last one a code was accepted for:
  the same code (or an older one) is refused within its window (replay).
- Recovery codes carry 50 random bits each, are shown once and stored as
  SHA-256 only (like the opaque tokens: nothing to brute-force, and an unsalted
  hash lets the database find the row); each works once.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import secrets
from datetime import datetime
from typing import Final

import pyotp
import qrcode
from qrcode.image.pil import PilImage

__all__ = [
    "RECOVERY_CODE_COUNT",
    "hash_recovery_code",
    "matching_step",
    "new_recovery_codes",
    "new_totp_secret",
    "provisioning_uri",
    "qr_code_png",
    "totp_context",
]

#: Steps either side of the current one a code is accepted for.
VALID_WINDOW: Final = 1
RECOVERY_CODE_COUNT: Final = 10
_RECOVERY_ALPHABET: Final = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
_RECOVERY_GROUP: Final = 5


def new_totp_secret() -> str:
    """A fresh base32 secret of 160 bits (RFC 4226's recommended length)."""
    return pyotp.random_base32(length=32)


def totp_context(user_id: object) -> str:
    """The associated data a user's TOTP secret is encrypted under."""
    return f"totp:{user_id}"


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer)


def qr_code_png(uri: str) -> bytes:
    """``uri`` as a QR code, PNG."""
    image = qrcode.make(uri, image_factory=PilImage, border=2, box_size=8)
    out = io.BytesIO()
    image.save(out)
    return out.getvalue()


def _normalize_code(code: str) -> str | None:
    code = code.replace(" ", "").strip()
    return code if len(code) == 6 and code.isascii() and code.isdigit() else None


def matching_step(secret: str, code: str, now: datetime, last_used_step: int | None) -> int | None:
    """The time-step ``code`` is the code of (within the window and after
    ``last_used_step``), or None. Every candidate is compared, in constant time."""
    wanted = _normalize_code(code)
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    found: int | None = None
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        candidate = totp.generate_otp(step)
        same = hmac.compare_digest(candidate.encode(), (wanted or "").encode())
        if same and wanted is not None and (last_used_step is None or step > last_used_step):
            found = step if found is None else found
    return found


def _normalize_recovery(code: str) -> str:
    return "".join(c for c in code.lower() if c.isalnum())


def hash_recovery_code(code: str) -> str:
    """The stored form of a recovery code (SHA-256 of its letters and digits, hex)."""
    return hashlib.sha256(_normalize_recovery(code).encode("utf-8")).hexdigest()


def is_well_formed_recovery_code(code: str) -> bool:
    normalized = _normalize_recovery(code) if len(code) < 32 else ""
    return len(normalized) == 2 * _RECOVERY_GROUP and all(
        c in _RECOVERY_ALPHABET for c in normalized
    )


def new_recovery_codes(count: int = RECOVERY_CODE_COUNT) -> list[str]:
    """``count`` codes ``xxxxx-xxxxx`` to show once."""
    codes = []
    for _ in range(count):
        chars = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(2 * _RECOVERY_GROUP))
        codes.append(f"{chars[:_RECOVERY_GROUP]}-{chars[_RECOVERY_GROUP:]}")
    return codes
