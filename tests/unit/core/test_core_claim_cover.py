"""Claim cover: which claims a cancellation, lapse or endorsement leaves uncovered."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import date, timedelta
from decimal import Decimal

from cardinsa_core.domain.cover import ClaimCover, claims_losing_cover, covers_claim
from cardinsa_core.domain.money import Money
from cardinsa_core.domain.policies import (
    CancelReason,
    InsuredMembers,
    PaymentFrequency,
    Policy,
    PolicyState,
    PolicyTerms,
)

TODAY = date(2025, 6, 15)
CHILD = uuid.UUID("00000000-0000-0000-0000-0000000000d1")
OTHER_CHILD = uuid.UUID("00000000-0000-0000-0000-0000000000d2")
TERMS = PolicyTerms(
    effective_date=date(2025, 1, 1),
    expiry_date=date(2025, 12, 31),
    payment_frequency=PaymentFrequency.ANNUAL,
    sum_insured=Money.of(Decimal(100_000), "USD"),
    insured=InsuredMembers(holder=True, dependent_ids=frozenset({CHILD, OTHER_CHILD})),
)
IN_FORCE = Policy(
    state=PolicyState.IN_FORCE,
    currency="USD",
    terms=TERMS,
    premium=Money.of(Decimal(900), "USD"),
    policy_number="POL-00000001",
    version=1,
    version_effective_date=TERMS.effective_date,
    activated=True,
)


def claim(day: date, claimant: uuid.UUID | None = None, number: str = "CLM-1") -> ClaimCover:
    return ClaimCover(uuid.uuid4(), number, day, claimant)


def test_a_cancellation_back_before_the_incident_takes_the_cover() -> None:
    incident = date(2025, 5, 1)
    before_it = IN_FORCE.cancel(
        CancelReason.NON_PAYMENT, TODAY, effective_date=incident - timedelta(days=1)
    )
    on_it = IN_FORCE.cancel(CancelReason.NON_PAYMENT, TODAY, effective_date=incident)
    after_it = IN_FORCE.cancel(
        CancelReason.NON_PAYMENT, TODAY, effective_date=incident + timedelta(days=1)
    )
    c = claim(incident)
    # The cancellation date is the first day not covered.
    assert claims_losing_cover(IN_FORCE, before_it, [c]) == [c]
    assert claims_losing_cover(IN_FORCE, on_it, [c]) == [c]
    assert claims_losing_cover(IN_FORCE, after_it, [c]) == []


def test_a_scheduled_cancellation_keeps_claims_before_its_date() -> None:
    later = IN_FORCE.cancel(
        CancelReason.MEMBER_REQUEST, TODAY, effective_date=date(2025, 7, 1), scheduled=True
    )
    assert claims_losing_cover(IN_FORCE, later, [claim(date(2025, 6, 30))]) == []


def test_a_lapse_back_before_the_incident_takes_the_cover() -> None:
    early, late = claim(date(2025, 3, 1), number="CLM-A"), claim(date(2025, 5, 1), number="CLM-B")
    lapsed = IN_FORCE.lapse(TODAY, lapse_date=date(2025, 4, 1))
    assert claims_losing_cover(IN_FORCE, lapsed, [late, early]) == [late]
    # A lapse today takes nothing that happened before.
    assert claims_losing_cover(IN_FORCE, IN_FORCE.lapse(TODAY), [early, late]) == []


def test_an_endorsement_removing_the_claimant_from_before_the_incident() -> None:
    incident = date(2025, 5, 1)
    without_child = InsuredMembers(holder=True, dependent_ids=frozenset({OTHER_CHILD}))
    child_claim, holder_claim = claim(incident, CHILD), claim(incident, None)
    earlier = IN_FORCE.endorse(incident - timedelta(days=10), insured=without_child)
    same_day = IN_FORCE.endorse(incident, insured=without_child)
    later = IN_FORCE.endorse(incident + timedelta(days=1), insured=without_child)
    assert claims_losing_cover(IN_FORCE, earlier, [child_claim, holder_claim]) == [child_claim]
    assert claims_losing_cover(IN_FORCE, same_day, [child_claim]) == [child_claim]
    # The incident falls under version 1, which the endorsement does not change.
    assert claims_losing_cover(IN_FORCE, later, [child_claim]) == []


def test_an_endorsement_removing_the_holder_takes_the_holders_claims() -> None:
    incident = date(2025, 5, 1)
    children_only = InsuredMembers(holder=False, dependent_ids=frozenset({CHILD, OTHER_CHILD}))
    endorsed = IN_FORCE.endorse(date(2025, 2, 1), insured=children_only)
    holder_claim, child_claim = claim(incident), claim(incident, CHILD)
    assert claims_losing_cover(IN_FORCE, endorsed, [holder_claim, child_claim]) == [holder_claim]


def test_an_endorsement_changing_only_money_takes_nothing() -> None:
    endorsed = IN_FORCE.endorse(date(2025, 2, 1), sum_insured=Money.of(Decimal(5), "USD"))
    assert claims_losing_cover(IN_FORCE, endorsed, [claim(date(2025, 5, 1), CHILD)]) == []


def test_a_claim_already_uncovered_does_not_count_again() -> None:
    incident = date(2025, 5, 1)
    # Cancelled earlier (an overridden change): the claim has no cover to lose.
    cancelled = IN_FORCE.cancel(CancelReason.FRAUD, TODAY, effective_date=date(2025, 4, 1))
    c = claim(incident)
    assert not covers_claim(cancelled, c)
    earlier = dataclasses.replace(cancelled, cancel_effective_date=date(2025, 3, 1))
    assert claims_losing_cover(cancelled, earlier, [c]) == []
    # A dependent no longer insured by the current version has no cover either.
    without_child = IN_FORCE.endorse(
        date(2025, 2, 1), insured=InsuredMembers(holder=True, dependent_ids=frozenset())
    )
    assert not covers_claim(without_child, claim(incident, CHILD))
    lapsed = without_child.lapse(TODAY, lapse_date=date(2025, 4, 1))
    assert claims_losing_cover(without_child, lapsed, [claim(incident, CHILD)]) == []


def test_the_result_is_in_incident_date_order_and_labels_fall_back_to_the_id() -> None:
    a, b = claim(date(2025, 5, 2), number="CLM-2"), claim(date(2025, 5, 1), number="CLM-9")
    unnumbered = ClaimCover(uuid.uuid4(), None, date(2025, 5, 3))
    lapsed = IN_FORCE.lapse(TODAY, lapse_date=date(2025, 4, 1))
    assert claims_losing_cover(IN_FORCE, lapsed, [unnumbered, a, b]) == [b, a, unnumbered]
    assert unnumbered.label == str(unnumbered.claim_id) and a.label == "CLM-2"
