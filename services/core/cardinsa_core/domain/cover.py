"""Claim cover: which claims a policy change would leave uncovered.

A claim is covered when the policy covers its incident date (in force, within
the term, before any cancellation or lapse date: :meth:`Policy.covers`) and the
claimant is insured by the policy version in effect on that date. A
cancellation or a lapse moves the last covered day; an endorsement starts a new
version from its effective date, which may insure fewer members. Claims with an
incident before the new version keep the version they were made under, so an
endorsement only touches claims from its effective date on.

:func:`claims_losing_cover` compares the policy before and after the change and
returns the claims covered before and not after: a claim that had already lost
its cover (by an earlier, overridden change) does not block the next one.
Which claims are worth checking (approved, paid or closed ones, or any with
money paid out) is the caller's choice; drafts and claims under review are
checked again for eligibility when they are approved.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Final

from cardinsa_core.domain.policies import Policy

__all__ = [
    "CLAIMS_WOULD_LOSE_COVER",
    "OVERRIDE_CLAIM_COVER",
    "ClaimCover",
    "claims_losing_cover",
    "covers_claim",
]

#: The FAILED_PRECONDITION reason of a change that would leave claims uncovered.
CLAIMS_WOULD_LOSE_COVER: Final = "CLAIMS_WOULD_LOSE_COVER"
#: The permission that lets a caller make such a change anyway, with a reason.
OVERRIDE_CLAIM_COVER: Final = "policies.override_claim_cover"


@dataclass(frozen=True, slots=True)
class ClaimCover:
    """What of a claim its cover depends on."""

    claim_id: uuid.UUID
    claim_number: str | None
    incident_date: date
    #: The claimant: None is the policyholder.
    claimant_dependent_id: uuid.UUID | None = None

    @property
    def label(self) -> str:
        """The claim number, or its id while it has none."""
        return self.claim_number or str(self.claim_id)


def covers_claim(policy: Policy, claim: ClaimCover) -> bool:
    """Whether ``policy`` covers ``claim`` as far as its current version tells.

    An incident before the current version's effective date falls under an
    earlier version, which no change of the current one touches: only the date
    is checked for it.
    """
    if not policy.covers(claim.incident_date):
        return False
    start = policy.version_effective_date
    if start is not None and claim.incident_date >= start:
        return policy.terms.insured.includes(claim.claimant_dependent_id)
    return True


def claims_losing_cover(
    before: Policy, after: Policy, claims: Iterable[ClaimCover]
) -> list[ClaimCover]:
    """The claims ``before`` covers and ``after`` (the policy once changed) does not,
    in incident date order."""
    losing = [c for c in claims if covers_claim(before, c) and not covers_claim(after, c)]
    return sorted(losing, key=lambda c: (c.incident_date, c.label))
