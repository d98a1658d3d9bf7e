"""Departments and units: field rules, update masks and the tree rule.

A department may sit under a parent department of the same company; the tree
must stay a tree: moving a department under itself or under one of its own
descendants is refused, and so is a tree deeper than `MAX_DEPTH`.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Final

from cardinsa_foundation.errors import FailedPrecondition, FieldViolation, InvalidArgument

__all__ = [
    "DEPARTMENT_FIELDS",
    "MAX_DEPTH",
    "UNIT_FIELDS",
    "OrgNodeSpec",
    "check_move",
    "check_spec",
    "normalize_spec",
    "parse_mask",
]

MAX_NAME: Final = 200
MAX_CODE: Final = 32
MAX_DESCRIPTION: Final = 1000
#: Levels of departments, top level included.
MAX_DEPTH: Final = 16
_CODE: Final = re.compile(r"^[A-Za-z0-9_-]+$")

#: What an update mask may name, per resource.
DEPARTMENT_FIELDS: Final = frozenset(
    {"display_name", "code", "description", "parent_department_id"}
)
UNIT_FIELDS: Final = frozenset({"display_name", "code", "description"})


@dataclass(frozen=True, slots=True)
class OrgNodeSpec:
    """The client-set fields of a department or a unit."""

    display_name: str = ""
    code: str = ""
    description: str = ""
    #: Departments only: "" for top level.
    parent_department_id: str = ""


def normalize_spec(spec: OrgNodeSpec) -> OrgNodeSpec:
    return replace(
        spec,
        display_name=unicodedata.normalize("NFC", spec.display_name.strip()),
        code=spec.code.strip(),
        description=unicodedata.normalize("NFC", spec.description.strip()),
        parent_department_id=spec.parent_department_id.strip(),
    )


def check_spec(
    spec: OrgNodeSpec, *, prefix: str, fields: Iterable[str] | None = None
) -> list[FieldViolation]:
    """Violations of a normalised spec; ``fields`` limits the check to a mask."""
    wanted = set(DEPARTMENT_FIELDS if fields is None else fields)
    out: list[FieldViolation] = []
    if "display_name" in wanted:
        name = spec.display_name
        if not name:
            out.append(FieldViolation(f"{prefix}.display_name", "required"))
        elif len(name) > MAX_NAME:
            out.append(
                FieldViolation(f"{prefix}.display_name", f"must be at most {MAX_NAME} characters")
            )
        elif any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in name):
            out.append(
                FieldViolation(f"{prefix}.display_name", "must not contain control characters")
            )
    if (
        "code" in wanted
        and spec.code
        and (len(spec.code) > MAX_CODE or not _CODE.fullmatch(spec.code))
    ):
        out.append(
            FieldViolation(
                f"{prefix}.code", f"at most {MAX_CODE} characters: letters, digits, '-' and '_'"
            )
        )
    if "description" in wanted:
        if len(spec.description) > MAX_DESCRIPTION:
            out.append(
                FieldViolation(
                    f"{prefix}.description", f"must be at most {MAX_DESCRIPTION} characters"
                )
            )
        elif any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in spec.description):
            out.append(
                FieldViolation(f"{prefix}.description", "must not contain control characters")
            )
    if "parent_department_id" in wanted and spec.parent_department_id:
        try:
            uuid.UUID(spec.parent_department_id)
        except ValueError:
            out.append(FieldViolation(f"{prefix}.parent_department_id", "must be a UUID"))
    return out


def parse_mask(paths: Sequence[str], allowed: frozenset[str], resource: str) -> list[str]:
    """The mask's paths, or INVALID_ARGUMENT naming what cannot be updated."""
    requested = [p.strip() for p in paths]
    if not requested:
        raise InvalidArgument(
            "update_mask is required", field_violations=[FieldViolation("update_mask", "required")]
        )
    if requested == ["*"]:
        return sorted(allowed)
    bad = [p for p in requested if p not in allowed]
    if bad:
        raise InvalidArgument(
            f"update_mask names fields of the {resource} that cannot be updated",
            field_violations=[
                FieldViolation(
                    "update_mask",
                    f"'{p[:100]}' cannot be updated; updatable: " + ", ".join(sorted(allowed)),
                )
                for p in bad
            ],
        )
    return list(dict.fromkeys(requested))


def check_move(
    department_id: uuid.UUID,
    new_parent_chain: Sequence[uuid.UUID],
    subtree_height: int,
) -> None:
    """Refuse a move that would make a cycle or a tree deeper than `MAX_DEPTH`.

    ``new_parent_chain`` is the new parent followed by its ancestors up to the
    top; ``subtree_height`` is the number of levels of the moved department's
    own subtree (1 for a department without sub-departments).
    """
    if department_id in new_parent_chain:
        raise FailedPrecondition(
            "a department cannot move under itself or under one of its sub-departments",
            reason="DEPARTMENT_CYCLE",
            metadata={"department_id": str(department_id)},
        )
    if len(new_parent_chain) + subtree_height > MAX_DEPTH:
        raise FailedPrecondition(
            f"departments nest at most {MAX_DEPTH} levels deep",
            reason="DEPARTMENT_TOO_DEEP",
            metadata={"max_depth": str(MAX_DEPTH)},
        )
