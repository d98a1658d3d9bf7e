"""Department and unit rules: the tree, names, codes, masks."""

from __future__ import annotations

import uuid

import pytest

from cardinsa_company.domain.organization import (
    DEPARTMENT_FIELDS,
    MAX_DEPTH,
    UNIT_FIELDS,
    OrgNodeSpec,
    check_move,
    check_spec,
    normalize_spec,
    parse_mask,
)
from cardinsa_foundation.errors import FailedPrecondition, InvalidArgument


def test_moving_under_itself_or_a_descendant_is_a_cycle() -> None:
    me, child, grandchild, other = (uuid.uuid4() for _ in range(4))
    # The chain is the new parent and its ancestors, up to the top.
    for chain in ([me], [child, me], [grandchild, child, me]):
        with pytest.raises(FailedPrecondition) as caught:
            check_move(me, chain, 1)
        assert caught.value.reason == "DEPARTMENT_CYCLE"
    check_move(me, [other], 3)
    check_move(me, [], 1)


def test_trees_are_bounded_in_depth() -> None:
    me = uuid.uuid4()
    chain = [uuid.uuid4() for _ in range(MAX_DEPTH - 2)]
    check_move(me, chain, 2)
    with pytest.raises(FailedPrecondition) as caught:
        check_move(me, chain, 3)
    assert caught.value.reason == "DEPARTMENT_TOO_DEEP"


def test_spec_rules() -> None:
    spec = normalize_spec(OrgNodeSpec(display_name="  Claims  ", code=" CL-1 "))
    assert (spec.display_name, spec.code) == ("Claims", "CL-1")
    assert check_spec(spec, prefix="department") == []
    bad = OrgNodeSpec(
        display_name="", code="has space", description="x" * 1001, parent_department_id="nope"
    )
    assert {v.field for v in check_spec(bad, prefix="department")} == {
        "department.display_name",
        "department.code",
        "department.description",
        "department.parent_department_id",
    }
    # A mask limits the check to its fields.
    assert check_spec(bad, prefix="unit", fields=["code"])[0].field == "unit.code"
    assert [v.field for v in check_spec(OrgNodeSpec("A\nB"), prefix="unit")] == [
        "unit.display_name"
    ]


def test_masks() -> None:
    assert parse_mask(["display_name", "display_name"], UNIT_FIELDS, "unit") == ["display_name"]
    assert parse_mask(["*"], DEPARTMENT_FIELDS, "department") == sorted(DEPARTMENT_FIELDS)
    for paths in ([], ["parent_department_id"], ["etag"]):
        with pytest.raises(InvalidArgument):
            parse_mask(paths, UNIT_FIELDS, "unit")
