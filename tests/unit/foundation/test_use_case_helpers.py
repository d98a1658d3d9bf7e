"""The foundation's shared use-case pieces: lifecycle tables, request helpers,
request fingerprints."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum

import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from cardinsa_foundation import errors, use_cases
from cardinsa_foundation.context import Principal, PrincipalKind, principal_var
from cardinsa_foundation.idempotency import request_fingerprint, request_id_reused
from cardinsa_foundation.lifecycle import INVALID_STATE_TRANSITION, Lifecycle


class Door(StrEnum):
    OPEN = "OPEN"
    SHUT = "SHUT"
    GONE = "GONE"


class Push(StrEnum):
    CLOSE = "close"
    OPEN = "open"
    REMOVE = "remove"


DOOR = Lifecycle(
    "door",
    Door,
    Push,
    {
        (Door.OPEN, Push.CLOSE): Door.SHUT,
        (Door.SHUT, Push.OPEN): Door.OPEN,
        (Door.SHUT, Push.REMOVE): Door.GONE,
    },
)


def test_lifecycle_moves_along_its_table() -> None:
    assert DOOR.next_state(Door.OPEN, Push.CLOSE) is Door.SHUT
    assert DOOR.next_state("SHUT", "remove") is Door.GONE
    assert DOOR.allows(Door.SHUT, Push.OPEN)
    assert not DOOR.allows(Door.OPEN, Push.OPEN)
    assert DOOR.allowed_actions(Door.SHUT) == {Push.OPEN, Push.REMOVE}
    assert DOOR.allowed_actions(Door.GONE) == frozenset()


def test_lifecycle_refuses_what_its_table_does_not_list() -> None:
    with pytest.raises(errors.FailedPrecondition) as caught:
        DOOR.next_state(Door.GONE, Push.OPEN)
    assert caught.value.reason == INVALID_STATE_TRANSITION
    assert caught.value.metadata == {"current_state": "GONE", "transition": "open"}
    assert str(caught.value.message) == "cannot open a door whose state is GONE"


def test_lifecycle_checks_its_table_when_built() -> None:
    with pytest.raises(TypeError, match="not Door"):
        Lifecycle("door", Door, Push, {(Door.OPEN, Push.CLOSE): Push.OPEN})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="not a Push"):
        Lifecycle("door", Door, Push, {(Door.OPEN, Door.SHUT): Door.SHUT})  # type: ignore[dict-item]


def test_require_principal_needs_a_caller() -> None:
    with pytest.raises(errors.Unauthenticated) as caught:
        use_cases.require_principal()
    assert caught.value.reason == "MISSING_TOKEN"
    principal = Principal(subject=str(uuid.uuid4()), kind=PrincipalKind.USER, company_id=None)
    token = principal_var.set(principal)
    try:
        assert use_cases.require_principal() is principal
        assert use_cases.actor_uuid(principal) == uuid.UUID(principal.subject)
    finally:
        principal_var.reset(token)
    service = Principal(subject="svc:core", kind=PrincipalKind.SERVICE_ACCOUNT, company_id=None)
    assert use_cases.actor_uuid(service) is None


@pytest.mark.parametrize("value", ["", "nope", "1234", "{}", "x" * 300])
def test_a_malformed_id_names_nothing(value: str) -> None:
    assert use_cases.lookup_uuid(value) is None
    with pytest.raises(errors.InvalidArgument) as caught:
        use_cases.parse_uuid(value, "user_id")
    assert [v.field for v in caught.value.field_violations] == ["user_id"]


def test_not_found_and_deleted_name_the_resource() -> None:
    error = use_cases.not_found("role binding", "x" * 100)
    assert error.reason == "ROLE_BINDING_NOT_FOUND"
    assert error.metadata == {"id": "x" * 64}
    assert use_cases.deleted("policy").reason == "RESOURCE_DELETED"


def test_request_checks() -> None:
    assert use_cases.check_request_id("") == []
    assert use_cases.check_request_id(str(uuid.uuid4())) == []
    assert [v.field for v in use_cases.check_request_id("retry-1")] == ["request_id"]
    assert use_cases.check_note("n" * use_cases.MAX_NOTE, "note") == []
    assert use_cases.check_note("n" * (use_cases.MAX_NOTE + 1), "note")
    use_cases.invalid("nothing wrong", [])
    with pytest.raises(errors.InvalidArgument):
        use_cases.invalid("bad", use_cases.check_request_id("retry-1"))
    use_cases.check_mask(["name"], frozenset({"name", "email"}))
    with pytest.raises(errors.InvalidArgument):
        use_cases.check_mask([], frozenset({"name"}))
    with pytest.raises(errors.InvalidArgument) as caught:
        use_cases.check_mask(["name", "password"], frozenset({"name"}))
    assert "password" in caught.value.field_violations[0].description


@dataclass(frozen=True)
class Claim:
    amount: Decimal
    incident: date
    member: uuid.UUID
    tags: frozenset[str]


MEMBER = uuid.uuid4()


def test_a_fingerprint_is_stable_and_tells_arguments_apart() -> None:
    claim = Claim(Decimal("100.0"), date(2026, 1, 2), MEMBER, frozenset({"a", "b"}))
    same = Claim(Decimal("100.00"), date(2026, 1, 2), MEMBER, frozenset({"b", "a"}))
    assert request_fingerprint(claim, "CreateClaim") == request_fingerprint(same, "CreateClaim")
    assert request_fingerprint(claim) != request_fingerprint(
        Claim(Decimal("100.01"), date(2026, 1, 2), MEMBER, frozenset({"a", "b"}))
    )
    assert request_fingerprint(claim) != request_fingerprint(
        Claim(Decimal("100"), date(2026, 1, 3), MEMBER, frozenset({"a", "b"}))
    )
    # Type matters: "1" is not 1, a date is not its ISO string.
    assert request_fingerprint("1") != request_fingerprint(1)
    assert request_fingerprint(date(2026, 1, 2)) != request_fingerprint("2026-01-02")
    assert request_fingerprint({"a": 1, "b": 2}) == request_fingerprint({"b": 2, "a": 1})
    assert request_fingerprint(FieldMask(paths=["a"])) != request_fingerprint(
        FieldMask(paths=["b"])
    )
    assert request_fingerprint(datetime(2026, 1, 2, tzinfo=UTC), None, [1, 2]) == (
        request_fingerprint(datetime(2026, 1, 2, tzinfo=UTC), None, (1, 2))
    )


def test_a_fingerprint_refuses_what_it_cannot_hash_faithfully() -> None:
    with pytest.raises(TypeError, match="object"):
        request_fingerprint(object())


def test_request_id_reused_tells_the_client_what_to_do() -> None:
    error = request_id_reused()
    assert error.reason == "REQUEST_ID_REUSED"
    assert [v.field for v in error.field_violations] == ["request_id"]
