"""Pure rules of AccessService: names, the permission ceilings, masks, API-key input."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from cardinsa_foundation.context import PLATFORM_ADMIN_ROLE
from cardinsa_foundation.errors import FieldViolation
from cardinsa_identity.domain.access import (
    COMPANY_ADMIN_ROLE,
    COMPANY_CEILING,
    MAX_API_KEY_DISPLAY_NAME_LENGTH,
    MAX_DESCRIPTION_LENGTH,
    ROLE_UPDATABLE_FIELDS,
    ApiKeySpec,
    RoleSpec,
    ServiceAccountSpec,
    check_api_key_spec,
    check_name,
    check_role_spec,
    check_service_account_spec,
    check_update_mask,
    describe_lifetime,
    grant_violations,
    missing_to_grant,
)
from cardinsa_identity.domain.permissions import ALL_PERMISSIONS, BUILT_IN_ROLES
from cardinsa_identity.repository.models import RoleRow
from cardinsa_identity.repository.roles import role_permissions

PLATFORM_ONLY = {
    "signing_keys.list",
    "signing_keys.rotate",
    "companies.create",
    "companies.suspend",
    "companies.reactivate",
    "companies.close",
    "companies.delete",
    "companies.get_status",
    "revocations.watch",
    "events.watch_all",
}
ADMIN = BUILT_IN_ROLES[COMPANY_ADMIN_ROLE].permissions
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def fields(violations: list[FieldViolation]) -> list[str]:
    return [v.field for v in violations]


# ------------------------------------------------------------------------ names


@pytest.mark.parametrize(
    "name",
    ["abc", "senior-adjuster", "a1b", "2fa-admins", "x" * 63, "a-b-c", "team-7"],
)
def test_valid_names(name: str) -> None:
    assert check_name(name, "role.name") == []


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "required"),
        ("ab", "3 to 63"),
        ("x" * 64, "3 to 63"),
        ("Senior", "lowercase"),
        ("senior_adjuster", "lowercase"),
        ("senior adjuster", "lowercase"),
        ("-abc", "dash"),
        ("abc-", "dash"),
        ("ädmin", "lowercase"),
        ("abc\n", "lowercase"),
    ],
)
def test_invalid_names(name: str, fragment: str) -> None:
    violations = check_name(name, "service_account.name")
    assert fields(violations) == ["service_account.name"]
    assert fragment in violations[0].description


def test_role_name_may_not_be_a_built_in_name() -> None:
    for name in BUILT_IN_ROLES:
        violations = check_role_spec(RoleSpec(name=name), held=ADMIN)
        assert fields(violations) == ["role.name"], name
        assert "built-in" in violations[0].description


def test_service_account_spec() -> None:
    assert check_service_account_spec(ServiceAccountSpec("billing-sync", "Syncs billing")) == []
    bad = check_service_account_spec(
        ServiceAccountSpec("B", "line\nbreak" + "x" * MAX_DESCRIPTION_LENGTH)
    )
    assert fields(bad) == ["service_account.name", "service_account.description"]


# --------------------------------------------------------------------- ceilings


def test_company_ceiling_is_company_admin_without_platform_powers() -> None:
    assert COMPANY_CEILING == ADMIN
    assert COMPANY_CEILING == ALL_PERMISSIONS - PLATFORM_ONLY
    assert not COMPANY_CEILING & PLATFORM_ONLY


def test_every_built_in_role_but_platform_admin_fits_under_the_company_ceiling() -> None:
    # So a company admin may bind each of them, and nothing above them.
    for name, role in BUILT_IN_ROLES.items():
        if name == PLATFORM_ADMIN_ROLE:
            assert missing_to_grant(role.permissions, ADMIN) == sorted(PLATFORM_ONLY)
        else:
            assert missing_to_grant(role.permissions, ADMIN) == [], name


@pytest.mark.parametrize("permission", sorted(PLATFORM_ONLY))
def test_platform_permissions_are_refused_even_for_a_platform_admin(permission: str) -> None:
    violations = grant_violations(
        ["users.get", permission], held=ALL_PERMISSIONS, field="role.permissions"
    )
    assert fields(violations) == ["role.permissions[1]"]
    assert "platform permission" in violations[0].description


def test_unknown_and_duplicate_permissions_name_their_index() -> None:
    violations = grant_violations(
        ["users.get", "nope.nothing", "users.get", "NOT A NAME"],
        held=ALL_PERMISSIONS,
        field="api_key.permissions",
    )
    assert fields(violations) == [
        "api_key.permissions[1]",
        "api_key.permissions[2]",
        "api_key.permissions[3]",
    ]


def test_nobody_grants_more_than_they_hold() -> None:
    held = {"roles.create", "claims.get", "claims.list"}
    violations = grant_violations(
        ["claims.get", "claims.approve", "claims.list", "users.delete"],
        held=held,
        field="role.permissions",
    )
    assert fields(violations) == ["role.permissions[1]", "role.permissions[3]"]
    assert all("your own permissions" in v.description for v in violations)


def test_keeping_a_permission_on_update_is_not_granting_it() -> None:
    held = {"roles.update", "claims.get"}
    spec = RoleSpec(permissions=("claims.get", "claims.approve"))
    assert (
        check_role_spec(spec, held=held, fields={"permissions"}, already=["claims.approve"]) == []
    )
    added = RoleSpec(permissions=("claims.get", "claims.approve", "claims.deny"))
    violations = check_role_spec(
        added, held=held, fields={"permissions"}, already=["claims.approve"]
    )
    assert fields(violations) == ["role.permissions[2]"]


def test_update_checks_only_the_masked_fields() -> None:
    spec = RoleSpec(name="NOT VALID", description="fine", permissions=("nope.x",))
    assert check_role_spec(spec, held=ADMIN, fields={"description"}) == []
    assert fields(check_role_spec(spec, held=ADMIN, fields={"permissions"})) == [
        "role.permissions[0]"
    ]


def test_a_valid_custom_role() -> None:
    spec = RoleSpec("senior-adjuster", "Band 2 approvals", ("claims.approve_band_2", "claims.get"))
    assert check_role_spec(spec, held=ADMIN) == []
    assert check_role_spec(RoleSpec("empty-role"), held=frozenset()) == []


def test_missing_to_grant() -> None:
    assert missing_to_grant({"a.b", "c.d"}, {"a.b"}) == ["c.d"]
    assert missing_to_grant(set(), set()) == []


# ------------------------------------------------------------------------- roles


def test_built_in_role_permissions_come_from_code() -> None:
    row = RoleRow(id=uuid.uuid4(), company_id=None, name="viewer", built_in=True, permissions=[])
    assert role_permissions(row) == BUILT_IN_ROLES["viewer"].permissions


def test_custom_role_permissions_come_from_the_row_within_the_catalogue() -> None:
    row = RoleRow(
        id=uuid.uuid4(),
        company_id=uuid.uuid4(),
        name="viewer-plus",
        built_in=False,
        permissions=["users.get", "retired.permission"],
    )
    assert role_permissions(row) == {"users.get"}


def test_a_company_row_never_passes_for_a_built_in_role() -> None:
    # Even if a company row carried a built-in name and flag, it grants its own list.
    row = RoleRow(
        id=uuid.uuid4(),
        company_id=uuid.uuid4(),
        name=PLATFORM_ADMIN_ROLE,
        built_in=True,
        permissions=["users.get"],
    )
    assert role_permissions(row) == {"users.get"}


# ------------------------------------------------------------------- update mask


def test_update_mask_rules() -> None:
    assert {"description", "permissions"} == ROLE_UPDATABLE_FIELDS
    assert check_update_mask(["description", "permissions"], ROLE_UPDATABLE_FIELDS) == []
    assert fields(check_update_mask([], ROLE_UPDATABLE_FIELDS)) == ["update_mask"]
    bad = check_update_mask(["name", "description", "built_in"], ROLE_UPDATABLE_FIELDS)
    assert len(bad) == 2
    assert "'name' cannot be updated" in bad[0].description


# ----------------------------------------------------------------------- API keys


def test_api_key_spec_valid() -> None:
    spec = ApiKeySpec("billing", ("users.get",), NOW + timedelta(days=30))
    assert check_api_key_spec(spec, held={"users.get", "api_keys.create"}, now=NOW) == []
    assert check_api_key_spec(ApiKeySpec(), held=frozenset(), now=NOW) == []


def test_api_key_spec_violations() -> None:
    spec = ApiKeySpec(
        "x" * (MAX_API_KEY_DISPLAY_NAME_LENGTH + 1),
        ("users.get", "signing_keys.rotate", "users.delete"),
        NOW,
    )
    violations = check_api_key_spec(spec, held={"users.get", "signing_keys.rotate"}, now=NOW)
    assert fields(violations) == [
        "api_key.display_name",
        "api_key.permissions[1]",
        "api_key.permissions[2]",
        "api_key.expire_time",
    ]


def test_api_key_display_name_at_the_limit() -> None:
    spec = ApiKeySpec("x" * MAX_API_KEY_DISPLAY_NAME_LENGTH)
    assert check_api_key_spec(spec, held=frozenset(), now=NOW) == []


def test_api_key_expiry_is_bounded_by_the_maximum_lifetime() -> None:
    year = timedelta(days=365)
    at_limit = ApiKeySpec("k", (), NOW + year)
    assert check_api_key_spec(at_limit, held=frozenset(), now=NOW, max_lifetime=year) == []
    too_long = ApiKeySpec("k", (), NOW + year + timedelta(seconds=1))
    (violation,) = check_api_key_spec(too_long, held=frozenset(), now=NOW, max_lifetime=year)
    assert violation.field == "api_key.expire_time"
    assert "at most 365 days from now" in violation.description
    assert "maximum API key lifetime" in violation.description
    # Without an expiry the rule has nothing to refuse (the key gets the maximum).
    assert check_api_key_spec(ApiKeySpec("k"), held=frozenset(), now=NOW, max_lifetime=year) == []


def test_lifetimes_are_described_in_their_largest_whole_unit() -> None:
    assert describe_lifetime(timedelta(days=365)) == "365 days"
    assert describe_lifetime(timedelta(hours=36)) == "36 hours"
    assert describe_lifetime(timedelta(minutes=90)) == "90 minutes"
    assert describe_lifetime(timedelta(seconds=3601)) == "3601 seconds"
