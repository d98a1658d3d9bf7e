"""Request values before the application resolves them (money without a currency,
insured members by reference), so handlers need no business knowledge."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from cardinsa_core.domain.money import Money, from_units_nanos
from cardinsa_core.domain.policies import InsuredMembers
from cardinsa_foundation.errors import FieldViolation, InvalidArgument


@dataclass(frozen=True, slots=True)
class MoneyInput:
    """A google.type.Money as sent: the currency may be empty (then the
    resource's currency applies)."""

    units: int
    nanos: int
    currency: str

    def resolve(self, currency: str, field: str) -> Money:
        """The amount in ``currency``; INVALID_ARGUMENT when another currency is named."""
        if self.currency and self.currency != currency:
            raise InvalidArgument(
                f"{field} must be in {currency}",
                reason="CURRENCY_MISMATCH",
                field_violations=[FieldViolation(f"{field}.currency_code", f"must be {currency}")],
            )
        return from_units_nanos(self.units, self.nanos, currency, field=field)


@dataclass(frozen=True, slots=True)
class MemberRef:
    """An insured member as sent: the policyholder, or a dependent id (as text)."""

    policyholder: bool
    dependent_id: str = ""


def resolve_members(refs: Sequence[MemberRef], field: str) -> InsuredMembers:
    """The members named; INVALID_ARGUMENT for malformed or repeated entries."""
    holder = False
    ids: set[uuid.UUID] = set()
    violations: list[FieldViolation] = []
    for index, ref in enumerate(refs):
        path = f"{field}[{index}]"
        if ref.policyholder:
            if holder:
                violations.append(FieldViolation(path, "the policyholder is listed twice"))
            holder = True
            continue
        try:
            dependent = uuid.UUID(ref.dependent_id)
        except ValueError:
            violations.append(FieldViolation(f"{path}.dependent_id", "must be a dependent id"))
            continue
        if dependent in ids:
            violations.append(FieldViolation(path, "listed twice"))
        ids.add(dependent)
    if violations:
        raise InvalidArgument("the insured members are not valid", field_violations=violations)
    return InsuredMembers(holder=holder, dependent_ids=frozenset(ids))
