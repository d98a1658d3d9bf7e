"""Data-subject requests: what an erasure changes, and when it is refused.

An erasure (GDPR article 17) pseudonymises a policyholder and its dependents:
names become ``erased-<first 8 characters of the id>``; national ids, dates of
birth, gender, e-mail, phone, postal address (and an organisation's register
number) are removed. What the insurer must keep -- policies, claims, invoices,
payments, issued documents, audit events -- stays, still pointing at the
(pseudonymised) holder by id.

It is refused while the holder still has a contract running or a claim
unfinished: the insurer needs the person's data to serve them (article 17(3)(b)
and (e)); the reasons are ``POLICY_IN_FORCE`` and ``CLAIM_OPEN``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Final

from cardinsa_core.domain.claims import ClaimState
from cardinsa_core.domain.policies import PolicyState

__all__ = [
    "CLAIM_OPEN",
    "ERASED_PREFIX",
    "OPEN_CLAIM_STATES",
    "POLICY_IN_FORCE",
    "RUNNING_POLICY_STATES",
    "erasure_blocker",
    "pseudonym",
]

POLICY_IN_FORCE: Final = "POLICY_IN_FORCE"
CLAIM_OPEN: Final = "CLAIM_OPEN"
ERASED_PREFIX: Final = "erased-"

#: A policy in one of these states is a running contract.
RUNNING_POLICY_STATES: Final = frozenset(
    {PolicyState.BOUND, PolicyState.IN_FORCE, PolicyState.CANCEL_PENDING}
)
#: A claim in one of these states is not finished.
OPEN_CLAIM_STATES: Final = frozenset(
    {ClaimState.DRAFT, ClaimState.SUBMITTED, ClaimState.UNDER_REVIEW, ClaimState.APPROVED}
)


def pseudonym(entity_id: uuid.UUID | str) -> str:
    """The name an erased party or dependent gets."""
    return f"{ERASED_PREFIX}{str(entity_id)[:8]}"


def erasure_blocker(
    policy_states: Iterable[str], claim_states: Iterable[str]
) -> tuple[str, str] | None:
    """(reason, message) when an erasure must be refused, else None."""
    if any(PolicyState(s) in RUNNING_POLICY_STATES for s in policy_states):
        return (
            POLICY_IN_FORCE,
            "a policy of this policyholder is bound or in force; cancel or let it end first",
        )
    if any(ClaimState(s) in OPEN_CLAIM_STATES for s in claim_states):
        return CLAIM_OPEN, "a claim of this policyholder is open; finish it first"
    return None
