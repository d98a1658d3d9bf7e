"""Policy and claim numbers: a prefix and a per-company sequence.

The sequence value comes from one counter row per (company, kind), incremented
inside the transaction that binds the policy or submits the claim, so numbers
are unique and gap-free: a rolled-back transaction rolls its increment back.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Final

__all__ = ["NumberKind", "format_number", "valid_prefix"]

_PREFIX: Final = re.compile(r"^[A-Z][A-Z0-9]{0,9}$")
WIDTH: Final = 8


class NumberKind(StrEnum):
    POLICY = "POLICY"
    CLAIM = "CLAIM"


def valid_prefix(prefix: str) -> bool:
    return bool(_PREFIX.match(prefix))


def format_number(prefix: str, value: int) -> str:
    """``POL-00000042``: the prefix and the value zero-padded to eight digits."""
    if value < 1:
        raise ValueError("sequence values start at 1")
    return f"{prefix}-{value:0{WIDTH}d}"
