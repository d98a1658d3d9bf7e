"""The watch's cursor and scope rules without a database: a cursor round-trips
and anything else is INVALID_ARGUMENT on ``cursor``; who is a platform caller;
a company caller never reads another company."""

from __future__ import annotations

import base64
import uuid

import pytest

from cardinsa_foundation.context import PLATFORM_ADMIN_ROLE, Principal, PrincipalKind
from cardinsa_foundation.errors import InvalidArgument, PermissionDenied
from cardinsa_foundation.event_watch import WATCH_ALL, WatchCursor, WatchScope, is_platform_caller

COMPANY = str(uuid.uuid4())
OTHER = str(uuid.uuid4())


def principal(
    kind: PrincipalKind = PrincipalKind.USER,
    company: str | None = COMPANY,
    permissions: tuple[str, ...] = ("events.watch",),
    roles: tuple[str, ...] = (),
) -> Principal:
    return Principal(
        subject=str(uuid.uuid4()),
        kind=kind,
        company_id=company,
        permissions=frozenset(permissions),
        roles=frozenset(roles),
    )


@pytest.mark.parametrize("cursor", [(0, 0, 0), (3, 9, 0), (1, 2**40, 2**40 + 7)])
def test_a_cursor_round_trips(cursor: tuple[int, int, int]) -> None:
    value = WatchCursor(*cursor)
    encoded = value.encode()
    assert encoded.isascii() and "=" not in encoded
    assert WatchCursor.decode(encoded) == value


def _b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "%%%",
        "é",
        "A" * 201,
        _b64("v1:1:2"),
        _b64("v2:1:2:3"),
        _b64("v1:-1:2:3"),
        _b64("v1:01:2:3"),
        _b64("v1:3:2:0"),  # lo above hi
        _b64("v1:1:2:x"),
        _b64(f"v1:0:{2**63}:0"),
    ],
)
def test_anything_else_is_refused_on_the_cursor_field(cursor: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        WatchCursor.decode(cursor)
    assert [v.field for v in refused.value.field_violations] == ["cursor"]


@pytest.mark.parametrize(
    ("caller", "platform"),
    [
        (principal(roles=(PLATFORM_ADMIN_ROLE,)), True),
        (principal(PrincipalKind.SERVICE_ACCOUNT, company=None), True),
        (principal(PrincipalKind.SERVICE_ACCOUNT, permissions=("events.watch", WATCH_ALL)), True),
        (principal(PrincipalKind.SERVICE_ACCOUNT), False),
        # Other platform permissions say nothing about events.
        (principal(PrincipalKind.SERVICE_ACCOUNT, permissions=("revocations.watch",)), False),
        (principal(roles=("company-admin",)), False),
    ],
)
def test_who_is_a_platform_caller(caller: Principal, platform: bool) -> None:
    assert is_platform_caller(caller) is platform


def test_a_company_caller_reads_its_own_company_only() -> None:
    scope = WatchScope.of(principal(), "", [])
    assert scope.company == uuid.UUID(COMPANY) and not scope.platform
    assert WatchScope.of(principal(), COMPANY, []).company == uuid.UUID(COMPANY)
    with pytest.raises(PermissionDenied):
        WatchScope.of(principal(), OTHER, [])
    with pytest.raises(PermissionDenied):
        WatchScope.of(principal(PrincipalKind.SERVICE_ACCOUNT), OTHER, [])


def test_a_platform_caller_reads_every_company_or_the_one_named() -> None:
    admin = principal(roles=(PLATFORM_ADMIN_ROLE,))
    assert WatchScope.of(admin, "", []).company is None
    assert WatchScope.of(admin, OTHER, []).company == uuid.UUID(OTHER)
    assert WatchScope.of(admin, "", []).platform


def test_malformed_filters_are_invalid_argument() -> None:
    with pytest.raises(InvalidArgument) as refused:
        WatchScope.of(principal(), "not-a-uuid", ["cardinsa.core.policy.bind.v1", "bind"])
    assert [v.field for v in refused.value.field_violations] == ["company_id", "types[1]"]
    with pytest.raises(InvalidArgument) as refused:
        WatchScope.of(principal(), "", ["cardinsa.core.policy.bind.v1"] * 101)
    assert [v.field for v in refused.value.field_violations] == ["types"]
