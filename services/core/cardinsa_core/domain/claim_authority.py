"""A company's claim settings: rules about who may act on a claim, beyond the
permissions and bands of :mod:`cardinsa_core.domain.claims`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["CLAIM_SETTINGS_FIELDS", "ClaimSettings"]

#: The fields UpdateClaimSettings may change (its update_mask paths).
CLAIM_SETTINGS_FIELDS: Final = frozenset({"require_segregation_of_duties"})


@dataclass(frozen=True, slots=True)
class ClaimSettings:
    """A company's claim settings; the defaults until it changes them."""

    #: The claim's assigned adjuster may neither approve nor pay it.
    require_segregation_of_duties: bool = False
