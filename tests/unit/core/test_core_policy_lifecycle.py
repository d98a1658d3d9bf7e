"""Policy lifecycle: every (state, action) pair, then the rules of each action."""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from cardinsa_core.domain.money import Money
from cardinsa_core.domain.policies import (
    POLICY_LIFECYCLE,
    CancelReason,
    InsuredMembers,
    PaymentFrequency,
    Policy,
    PolicyAction,
    PolicyState,
    PolicyTerms,
    add_months,
    check_policy_terms,
)
from cardinsa_foundation.errors import FailedPrecondition, InvalidArgument

S, P = PolicyState, PolicyAction
TODAY = date(2025, 6, 15)
DEPENDENT = uuid.UUID("00000000-0000-0000-0000-0000000000d1")
SUCCESSOR = uuid.UUID("00000000-0000-0000-0000-0000000000f1")


def usd(amount: str | int) -> Money:
    return Money.of(Decimal(amount), "USD")


TERMS = PolicyTerms(
    effective_date=date(2025, 1, 1),
    expiry_date=date(2025, 12, 31),
    payment_frequency=PaymentFrequency.ANNUAL,
    sum_insured=usd(100_000),
    insured=InsuredMembers(holder=True, dependent_ids=frozenset({DEPENDENT})),
)
DRAFT = Policy(state=S.DRAFT, currency="USD", terms=TERMS)
QUOTED = dataclasses.replace(DRAFT, state=S.QUOTED, premium=usd(900))
BOUND = dataclasses.replace(
    QUOTED,
    state=S.BOUND,
    policy_number="POL-00000001",
    version=1,
    version_effective_date=TERMS.effective_date,
)
IN_FORCE = dataclasses.replace(BOUND, state=S.IN_FORCE, activated=True)
CANCELLED = dataclasses.replace(
    IN_FORCE,
    state=S.CANCELLED,
    cancel_reason=CancelReason.MEMBER_REQUEST,
    cancel_effective_date=date(2025, 6, 10),
    cancel_processed_date=date(2025, 6, 10),
    termination_note="moved abroad",
)
LAPSED = dataclasses.replace(
    IN_FORCE, state=S.LAPSED, lapse_date=date(2025, 6, 10), termination_note="unpaid"
)
EXPIRED = dataclasses.replace(IN_FORCE, state=S.EXPIRED)
CANCEL_PENDING = dataclasses.replace(
    IN_FORCE,
    state=S.CANCEL_PENDING,
    cancel_reason=CancelReason.MEMBER_REQUEST,
    cancel_effective_date=date(2025, 7, 1),
    cancel_processed_date=date(2025, 6, 1),
    termination_note="moving",
)
IN_STATE = {
    S.CANCEL_PENDING: CANCEL_PENDING,
    S.DRAFT: DRAFT,
    S.QUOTED: QUOTED,
    S.BOUND: BOUND,
    S.IN_FORCE: IN_FORCE,
    S.CANCELLED: CANCELLED,
    S.LAPSED: LAPSED,
    S.EXPIRED: EXPIRED,
}


def perform(policy: Policy, action: PolicyAction) -> Policy:
    """The action with valid arguments, so only the state can refuse it."""
    if action is P.UPDATE:
        return policy.update(dataclasses.replace(TERMS, payment_frequency=PaymentFrequency.MONTHLY))
    if action is P.QUOTE:
        return policy.quote(usd(500))
    if action is P.BIND:
        return policy.bind("POL-00000007")
    if action is P.ACTIVATE:
        return policy.activate(TODAY)
    if action is P.ENDORSE:
        return policy.endorse(date(2025, 7, 1), sum_insured=usd(150_000))
    if action is P.RENEW:
        return policy.renew(SUCCESSOR)
    if action is P.CANCEL:
        return policy.cancel(CancelReason.NON_PAYMENT, TODAY, note="n")
    if action is P.SCHEDULE_CANCEL:
        later = TODAY + timedelta(days=10)
        if policy.state is S.BOUND:  # refused by the state, not by the date
            later = policy.terms.effective_date
        return policy.cancel(
            CancelReason.NON_PAYMENT, TODAY, effective_date=later, scheduled=True, note="n"
        )
    if action is P.COMPLETE_CANCEL:
        return policy.complete_cancel(date(2025, 7, 1))
    if action is P.REINSTATE:
        return policy.reinstate(TODAY, 30)
    if action is P.LAPSE:
        return policy.lapse(TODAY, note="n")
    if action is P.EXPIRE:
        return policy.expire(policy.terms.expiry_date + timedelta(days=1))
    policy.check_delete()
    return policy


# The whole lifecycle written out independently of the module's table:
# (state, action) → (state after, the fields that change).
CANCEL_FIELDS = {
    "state",
    "cancel_reason",
    "cancel_effective_date",
    "cancel_processed_date",
    "termination_note",
}
EXPECTED: dict[tuple[PolicyState, PolicyAction], tuple[PolicyState, set[str]]] = {
    (S.DRAFT, P.UPDATE): (S.DRAFT, {"terms"}),
    (S.QUOTED, P.UPDATE): (S.DRAFT, {"state", "terms", "premium"}),
    (S.DRAFT, P.QUOTE): (S.QUOTED, {"state", "premium"}),
    (S.QUOTED, P.QUOTE): (S.QUOTED, {"premium"}),
    (S.QUOTED, P.BIND): (S.BOUND, {"state", "policy_number", "version", "version_effective_date"}),
    (S.BOUND, P.ACTIVATE): (S.IN_FORCE, {"state", "activated"}),
    (S.IN_FORCE, P.ENDORSE): (S.IN_FORCE, {"terms", "version", "version_effective_date"}),
    (S.IN_FORCE, P.RENEW): (S.IN_FORCE, {"successor_id"}),
    (S.BOUND, P.CANCEL): (S.CANCELLED, CANCEL_FIELDS),
    (S.IN_FORCE, P.CANCEL): (S.CANCELLED, CANCEL_FIELDS),
    (S.CANCEL_PENDING, P.CANCEL): (S.CANCELLED, CANCEL_FIELDS),
    (S.IN_FORCE, P.SCHEDULE_CANCEL): (S.CANCEL_PENDING, CANCEL_FIELDS),
    (S.CANCEL_PENDING, P.SCHEDULE_CANCEL): (
        S.CANCEL_PENDING,
        {"cancel_reason", "cancel_effective_date", "cancel_processed_date", "termination_note"},
    ),
    (S.CANCEL_PENDING, P.COMPLETE_CANCEL): (S.CANCELLED, {"state"}),
    (S.IN_FORCE, P.LAPSE): (S.LAPSED, {"state", "lapse_date", "termination_note"}),
    (S.CANCEL_PENDING, P.LAPSE): (S.LAPSED, {"state", "lapse_date", "termination_note"}),
    (S.CANCEL_PENDING, P.REINSTATE): (S.IN_FORCE, CANCEL_FIELDS),
    (S.CANCELLED, P.REINSTATE): (S.IN_FORCE, CANCEL_FIELDS),
    (S.LAPSED, P.REINSTATE): (S.IN_FORCE, {"state", "lapse_date", "termination_note"}),
    (S.IN_FORCE, P.EXPIRE): (S.EXPIRED, {"state"}),
    (S.DRAFT, P.DELETE): (S.DRAFT, set()),
    (S.QUOTED, P.DELETE): (S.QUOTED, set()),
}
ALL_PAIRS = list(itertools.product(PolicyState, PolicyAction))


def changed_fields(before: Any, after: Any) -> set[str]:
    return {
        f.name
        for f in dataclasses.fields(before)
        if getattr(before, f.name) != getattr(after, f.name)
    }


@pytest.mark.parametrize(("state", "action"), ALL_PAIRS, ids=[f"{s}-{a}" for s, a in ALL_PAIRS])
def test_every_state_and_action(state: PolicyState, action: PolicyAction) -> None:
    before = IN_STATE[state]
    expected = EXPECTED.get((state, action))
    if expected is not None:
        after = perform(before, action)
        new_state, fields = expected
        assert after.state is new_state
        assert changed_fields(before, after) == fields
        assert action in POLICY_LIFECYCLE.allowed_actions(state)
        return
    if (state, action) == (S.BOUND, P.SCHEDULE_CANCEL):
        # Not yet in force: cancelled flat from its effective date, never scheduled.
        with pytest.raises(InvalidArgument) as invalid:
            BOUND.cancel(
                CancelReason.NON_PAYMENT,
                TODAY,
                effective_date=TODAY + timedelta(days=10),
                scheduled=True,
            )
        assert "effective date" in invalid.value.message
        assert not POLICY_LIFECYCLE.allows(state, action)
        return
    with pytest.raises(FailedPrecondition) as caught:
        perform(before, action)
    error = caught.value
    # A scheduled cancellation is asked for through cancel: that is what a refusal names.
    shown = P.CANCEL if action is P.SCHEDULE_CANCEL else action
    assert error.reason == "INVALID_STATE_TRANSITION"
    assert error.metadata == {"current_state": state.value, "transition": shown.value}
    assert state.value in error.message and shown.value in error.message
    assert not POLICY_LIFECYCLE.allows(state, action)


def test_the_table_is_exactly_the_expected_one() -> None:
    assert len(ALL_PAIRS) == 8 * 13
    table = dict(POLICY_LIFECYCLE.transitions)
    assert set(table) == set(EXPECTED)
    # Reinstating a policy that never went in force is the one computed target.
    assert all(table[pair] is EXPECTED[pair][0] for pair in EXPECTED)


def test_quote_takes_the_rated_premium() -> None:
    quoted = DRAFT.quote(usd("666.66"))
    assert quoted.premium == usd("666.66") and quoted.currency == "USD"


def test_quote_in_another_currency_than_the_sum_insured_is_refused() -> None:
    with pytest.raises(FailedPrecondition) as caught:
        DRAFT.quote(Money.of(Decimal(10), "EUR"))
    assert caught.value.reason == "CURRENCY_MISMATCH"


def test_update_of_a_quote_drops_its_premium() -> None:
    assert QUOTED.update(TERMS).premium is None


def test_bind_gives_the_number_and_the_first_version() -> None:
    bound = QUOTED.bind("POL-00000009")
    assert (bound.policy_number, bound.version, bound.version_effective_date) == (
        "POL-00000009",
        1,
        TERMS.effective_date,
    )


def test_activate_refuses_before_the_effective_date() -> None:
    with pytest.raises(FailedPrecondition) as caught:
        BOUND.activate(TERMS.effective_date - timedelta(days=1))
    assert caught.value.reason == "NOT_YET_EFFECTIVE"
    assert BOUND.activate(TERMS.effective_date).state is S.IN_FORCE


class TestEndorse:
    def test_a_new_version_from_its_effective_date(self) -> None:
        members = InsuredMembers(holder=True)
        endorsed = IN_FORCE.endorse(date(2025, 3, 1), insured=members).repriced(usd(450))
        assert (endorsed.version, endorsed.version_effective_date) == (2, date(2025, 3, 1))
        assert endorsed.terms.insured == members and endorsed.premium == usd(450)
        again = endorsed.endorse(date(2025, 3, 1), sum_insured=usd(1))
        assert again.version == 3

    @pytest.mark.parametrize("day", [date(2024, 12, 31), date(2026, 1, 1)])
    def test_outside_the_term(self, day: date) -> None:
        with pytest.raises(InvalidArgument):
            IN_FORCE.endorse(day, sum_insured=usd(1))

    def test_not_before_the_current_version(self) -> None:
        endorsed = IN_FORCE.endorse(date(2025, 5, 1), sum_insured=usd(5))
        with pytest.raises(InvalidArgument):
            endorsed.endorse(date(2025, 4, 30), sum_insured=usd(6))

    def test_nothing_changed(self) -> None:
        with pytest.raises(InvalidArgument) as caught:
            IN_FORCE.endorse(date(2025, 5, 1), sum_insured=TERMS.sum_insured)
        assert caught.value.reason == "EMPTY_ENDORSEMENT"

    @pytest.mark.parametrize(
        "change",
        [
            {"sum_insured": Money.of(Decimal(5), "EUR")},
            {"sum_insured": usd(0)},
            {"insured": InsuredMembers(holder=False)},
        ],
    )
    def test_invalid_changes(self, change: dict[str, Any]) -> None:
        with pytest.raises(InvalidArgument):
            IN_FORCE.endorse(date(2025, 5, 1), **change)


class TestCancel:
    def test_reason_is_required(self) -> None:
        with pytest.raises(InvalidArgument):
            IN_FORCE.cancel(None, TODAY)

    def test_defaults_to_today(self) -> None:
        assert IN_FORCE.cancel(CancelReason.FRAUD, TODAY).cancel_effective_date == TODAY

    def test_a_future_date_needs_scheduled(self) -> None:
        later = TODAY + timedelta(days=10)
        with pytest.raises(InvalidArgument) as caught:
            IN_FORCE.cancel(CancelReason.MEMBER_REQUEST, TODAY, effective_date=later)
        assert "scheduled" in caught.value.message
        scheduled = IN_FORCE.cancel(
            CancelReason.MEMBER_REQUEST, TODAY, effective_date=later, scheduled=True
        )
        assert scheduled.state is S.CANCEL_PENDING and scheduled.cancel_effective_date == later
        assert scheduled.cancel_processed_date == TODAY
        # Cover runs until the day before the cancellation takes effect.
        assert scheduled.covers(later - timedelta(days=1)) and not scheduled.covers(later)
        with pytest.raises(FailedPrecondition) as early:
            scheduled.complete_cancel(later - timedelta(days=1))
        assert early.value.reason == "CANCELLATION_NOT_DUE"
        done = scheduled.complete_cancel(later)
        assert done.state is S.CANCELLED and done.cancel_effective_date == later
        withdrawn = scheduled.reinstate(later - timedelta(days=1), 0)
        assert withdrawn.state is S.IN_FORCE and withdrawn.cancel_effective_date is None

    def test_a_past_date_within_the_term(self) -> None:
        back = IN_FORCE.cancel(CancelReason.FRAUD, TODAY, effective_date=date(2025, 2, 1))
        assert back.last_covered_day == date(2025, 1, 31)
        with pytest.raises(InvalidArgument):
            IN_FORCE.cancel(CancelReason.FRAUD, TODAY, effective_date=date(2024, 12, 31))

    def test_before_inception_it_is_a_flat_cancellation(self) -> None:
        future = dataclasses.replace(
            BOUND,
            terms=dataclasses.replace(
                TERMS, effective_date=date(2025, 9, 1), expiry_date=date(2026, 8, 31)
            ),
        )
        flat = future.cancel(CancelReason.MEMBER_REQUEST, TODAY)
        assert flat.cancel_effective_date == date(2025, 9, 1)
        assert not any(flat.covers(date(2025, 9, 1) + timedelta(days=d)) for d in range(400))


class TestReinstate:
    def test_within_the_window(self) -> None:
        assert CANCELLED.reinstate(date(2025, 7, 10), 30).state is S.IN_FORCE

    def test_after_the_window(self) -> None:
        with pytest.raises(FailedPrecondition) as caught:
            CANCELLED.reinstate(date(2025, 7, 11), 30)
        assert caught.value.reason == "REINSTATEMENT_WINDOW_CLOSED"
        assert caught.value.metadata["deadline"] == "2025-07-10"

    def test_not_after_the_term(self) -> None:
        late = dataclasses.replace(
            CANCELLED,
            cancel_effective_date=date(2025, 12, 20),
            cancel_processed_date=date(2025, 12, 20),
        )
        with pytest.raises(FailedPrecondition) as caught:
            late.reinstate(date(2026, 1, 2), 30)
        assert caught.value.reason == "POLICY_TERM_ENDED"

    def test_the_window_runs_from_the_day_the_cancellation_was_processed(self) -> None:
        # Cancelled on 2025-06-15 back to 2025-02-01: four months before the window
        # would have closed if it ran from the cancellation date.
        back = IN_FORCE.cancel(CancelReason.MEMBER_REQUEST, TODAY, effective_date=date(2025, 2, 1))
        assert back.reinstate(TODAY + timedelta(days=30), 30).state is S.IN_FORCE
        with pytest.raises(FailedPrecondition) as caught:
            back.reinstate(TODAY + timedelta(days=31), 30)
        assert caught.value.metadata["deadline"] == (TODAY + timedelta(days=30)).isoformat()

    def test_a_policy_that_never_went_in_force_goes_back_to_bound(self) -> None:
        cancelled = BOUND.cancel(CancelReason.MEMBER_REQUEST, TODAY)
        assert cancelled.reinstate(TODAY, 30).state is S.BOUND

    def test_a_lapsed_policy_covers_again(self) -> None:
        assert not LAPSED.covers(date(2025, 6, 20))
        assert LAPSED.reinstate(TODAY, 30).covers(date(2025, 6, 20))


class TestLapseExpireRenew:
    def test_lapse_date_not_in_the_future(self) -> None:
        with pytest.raises(InvalidArgument):
            IN_FORCE.lapse(TODAY, lapse_date=TODAY + timedelta(days=1))

    def test_expire_only_after_the_term(self) -> None:
        with pytest.raises(FailedPrecondition) as caught:
            IN_FORCE.expire(TERMS.expiry_date)
        assert caught.value.reason == "NOT_YET_EXPIRED"

    def test_renew_once(self) -> None:
        renewed = IN_FORCE.renew(SUCCESSOR)
        with pytest.raises(FailedPrecondition) as caught:
            renewed.renew(uuid.uuid4())
        assert caught.value.reason == "ALREADY_RENEWED"

    def test_renewal_terms_follow_on(self) -> None:
        terms = IN_FORCE.renewal_terms(12)
        assert (terms.effective_date, terms.expiry_date) == (date(2026, 1, 1), date(2026, 12, 31))
        assert terms.insured == TERMS.insured and terms.sum_insured == TERMS.sum_insured


def test_cover_needs_the_policy_to_have_gone_in_force() -> None:
    assert not BOUND.covers(TODAY)
    assert IN_FORCE.covers(TERMS.effective_date) and IN_FORCE.covers(TERMS.expiry_date)
    assert not IN_FORCE.covers(TERMS.expiry_date + timedelta(days=1))
    assert not IN_FORCE.covers(TERMS.effective_date - timedelta(days=1))


@pytest.mark.parametrize(
    ("start", "months", "end"),
    [
        (date(2025, 1, 31), 1, date(2025, 2, 28)),
        (date(2024, 1, 31), 1, date(2024, 2, 29)),
        (date(2025, 11, 15), 3, date(2026, 2, 15)),
        (date(2025, 1, 1), 12, date(2026, 1, 1)),
    ],
)
def test_add_months(start: date, months: int, end: date) -> None:
    assert add_months(start, months) == end


def test_check_policy_terms() -> None:
    assert check_policy_terms(TERMS, "USD") == []
    bad = dataclasses.replace(
        TERMS,
        expiry_date=date(2024, 1, 1),
        sum_insured=usd(0),
        insured=InsuredMembers(holder=False),
    )
    fields = {v.field for v in check_policy_terms(bad, "USD")}
    assert fields == {"policy.expiry_date", "policy.sum_insured", "policy.insured_members"}
    assert [v.field for v in check_policy_terms(TERMS, "EUR")] == ["policy.sum_insured"]
