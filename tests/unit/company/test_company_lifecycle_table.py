"""The company lifecycle: every (state, transition) pair, written out independently
of the module's table."""

from __future__ import annotations

import itertools

import pytest

from cardinsa_company.domain.lifecycle import (
    MAX_REASON_LENGTH,
    TRANSITIONS,
    CompanyState,
    CompanyTransition,
    allowed_transitions,
    check_reason,
    is_active,
    transition,
)
from cardinsa_foundation.errors import FailedPrecondition

A, S, C = CompanyState.ACTIVE, CompanyState.SUSPENDED, CompanyState.CLOSED
SUSPEND, REACTIVATE, CLOSE = (
    CompanyTransition.SUSPEND,
    CompanyTransition.REACTIVATE,
    CompanyTransition.CLOSE,
)

# state → {transition: new state or None (refused)}; every pair appears once.
TABLE: dict[CompanyState, dict[CompanyTransition, CompanyState | None]] = {
    A: {SUSPEND: S, REACTIVATE: None, CLOSE: C},
    S: {SUSPEND: None, REACTIVATE: A, CLOSE: C},
    C: {SUSPEND: None, REACTIVATE: None, CLOSE: None},
}
PAIRS = [
    (state, action, TABLE[state][action])
    for state, action in itertools.product(CompanyState, CompanyTransition)
]


def test_the_table_covers_every_pair() -> None:
    assert len(PAIRS) == len(CompanyState) * len(CompanyTransition) == 9
    assert {(s, t): n for s, t, n in PAIRS if n is not None} == dict(TRANSITIONS)


@pytest.mark.parametrize(
    ("state", "action", "expected"), PAIRS, ids=[f"{s}-{t}" for s, t, _ in PAIRS]
)
def test_every_pair(
    state: CompanyState, action: CompanyTransition, expected: CompanyState | None
) -> None:
    if expected is not None:
        assert transition(state, action) is expected
        assert action in allowed_transitions(state)
        return
    with pytest.raises(FailedPrecondition) as caught:
        transition(state, action)
    error = caught.value
    assert error.reason == "INVALID_STATE_TRANSITION"
    assert error.metadata == {"current_state": state.value, "transition": action.value}
    assert state.value in error.message and action.value in error.message
    assert action not in allowed_transitions(state)


def test_closed_is_final() -> None:
    assert allowed_transitions(C) == frozenset()
    assert [t for (s, t) in TRANSITIONS if s is C] == []


def test_only_an_active_live_company_is_active() -> None:
    assert is_active(A, deleted=False)
    assert not is_active(A, deleted=True)
    assert not is_active(S, deleted=False)
    assert not is_active(C, deleted=False)


@pytest.mark.parametrize("action", [SUSPEND, CLOSE])
def test_suspend_and_close_need_a_reason(action: CompanyTransition) -> None:
    assert [v.field for v in check_reason(action, "")] == ["reason"]
    assert [v.field for v in check_reason(action, "   ")] == ["reason"]
    assert check_reason(action, "unpaid invoices") == []


def test_reactivate_needs_no_reason_and_reasons_are_bounded() -> None:
    assert check_reason(REACTIVATE, "") == []
    assert check_reason(REACTIVATE, "x" * (MAX_REASON_LENGTH + 1))
    assert check_reason(SUSPEND, "bad\x00byte")
    assert check_reason(SUSPEND, "two\nlines") == []
