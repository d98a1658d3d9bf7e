"""A lifecycle as a table: (current state, action) → next state.

Every aggregate with states (a company, a user, a product, a policy, a claim)
declares its table once, in its service's domain; the table is the one place to
read, and to test, what may happen to it. Building the table checks it: every
state and target is of the states enum and every action of the actions enum. An action
the table does not list for the current state is FAILED_PRECONDITION naming the
state and the action (reason ``INVALID_STATE_TRANSITION``), raised before any
other rule of the action is looked at, so a caller always learns first that the
transition itself is impossible.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Generic, TypeVar

from cardinsa_foundation.errors import FailedPrecondition

__all__ = ["INVALID_STATE_TRANSITION", "Lifecycle"]

INVALID_STATE_TRANSITION = "INVALID_STATE_TRANSITION"

S = TypeVar("S", bound=StrEnum)
A = TypeVar("A", bound=StrEnum)


class Lifecycle(Generic[S, A]):
    """The transition table of one kind of resource (``entity`` names it in errors)."""

    def __init__(
        self,
        entity: str,
        states: type[S],
        actions: type[A],
        transitions: Mapping[tuple[S, A], S],
    ) -> None:
        for (state, action), target in transitions.items():
            if not (isinstance(state, states) and isinstance(target, states)):
                raise TypeError(f"{entity}: {state!r} → {target!r} are not {states.__name__}")
            if not isinstance(action, actions):
                raise TypeError(f"{entity}: {action!r} is not a {actions.__name__}")
        self.entity = entity
        self.states = states
        self.actions = actions
        self.transitions: Mapping[tuple[S, A], S] = MappingProxyType(dict(transitions))

    def next_state(self, state: S | str, action: A | str) -> S:
        """The state after ``action``, or FAILED_PRECONDITION naming both."""
        current, tried = self.states(state), self.actions(action)
        target = self.transitions.get((current, tried))
        if target is None:
            raise FailedPrecondition(
                f"cannot {tried.value} a {self.entity} whose state is {current.value}",
                reason=INVALID_STATE_TRANSITION,
                metadata={"current_state": current.value, "transition": tried.value},
            )
        return target

    def allows(self, state: S | str, action: A | str) -> bool:
        return (self.states(state), self.actions(action)) in self.transitions

    def allowed_actions(self, state: S | str) -> frozenset[A]:
        """The actions ``state`` allows."""
        current = self.states(state)
        return frozenset(a for (s, a) in self.transitions if s is current)
