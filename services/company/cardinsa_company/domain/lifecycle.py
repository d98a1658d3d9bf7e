"""The company lifecycle: ACTIVE, SUSPENDED, CLOSED, as one table.

`COMPANY_LIFECYCLE` (the foundation's table) is the one place that says what may happen
to a tenant; every (state, transition) pair not in it is refused with
FAILED_PRECONDITION (``INVALID_STATE_TRANSITION``) naming the current state and
the transition tried. CLOSED is final: nothing leaves it.
Suspending and closing need a reason (it is kept on the company and audited).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from enum import StrEnum
from typing import Final

from cardinsa_foundation.errors import FieldViolation
from cardinsa_foundation.lifecycle import Lifecycle

__all__ = [
    "COMPANY_LIFECYCLE",
    "MAX_REASON_LENGTH",
    "TRANSITIONS",
    "CompanyState",
    "CompanyTransition",
    "allowed_transitions",
    "check_reason",
    "is_active",
    "transition",
]


class CompanyState(StrEnum):
    """Values match `cardinsa.company.v1.Company.State` names."""

    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    CLOSED = "CLOSED"


class CompanyTransition(StrEnum):
    """The custom methods `:suspend`, `:reactivate`, `:close`."""

    SUSPEND = "suspend"
    REACTIVATE = "reactivate"
    CLOSE = "close"


#: (current state, transition) → new state; every pair not listed is refused.
COMPANY_LIFECYCLE: Final = Lifecycle(
    "company",
    CompanyState,
    CompanyTransition,
    {
        (CompanyState.ACTIVE, CompanyTransition.SUSPEND): CompanyState.SUSPENDED,
        (CompanyState.SUSPENDED, CompanyTransition.REACTIVATE): CompanyState.ACTIVE,
        (CompanyState.ACTIVE, CompanyTransition.CLOSE): CompanyState.CLOSED,
        (CompanyState.SUSPENDED, CompanyTransition.CLOSE): CompanyState.CLOSED,
    },
)
TRANSITIONS: Final[Mapping[tuple[CompanyState, CompanyTransition], CompanyState]] = (
    COMPANY_LIFECYCLE.transitions
)

#: Transitions that must say why.
_REASON_REQUIRED: Final = frozenset({CompanyTransition.SUSPEND, CompanyTransition.CLOSE})
MAX_REASON_LENGTH: Final = 500


def transition(state: CompanyState, action: CompanyTransition) -> CompanyState:
    """The state after ``action``, or FAILED_PRECONDITION (reason
    ``INVALID_STATE_TRANSITION``) naming the current state and the transition."""
    return COMPANY_LIFECYCLE.next_state(state, action)


def allowed_transitions(state: CompanyState) -> frozenset[CompanyTransition]:
    return COMPANY_LIFECYCLE.allowed_actions(state)


def check_reason(action: CompanyTransition, reason: str) -> list[FieldViolation]:
    """Violations of the ``reason`` of a transition (required for suspend and close)."""
    text = reason.strip()
    if not text:
        if action in _REASON_REQUIRED:
            return [FieldViolation("reason", f"required to {action.value} a company")]
        return []
    if len(text) > MAX_REASON_LENGTH:
        return [FieldViolation("reason", f"must be at most {MAX_REASON_LENGTH} characters long")]
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in text):
        return [FieldViolation("reason", "must not contain control characters")]
    return []


def is_active(state: CompanyState, *, deleted: bool) -> bool:
    """Whether a tenant in ``state`` may act: only ACTIVE and not deleted."""
    return state is CompanyState.ACTIVE and not deleted
