"""The permission catalogue against the protos, and the built-in roles."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cardinsa_identity.domain.permissions import (
    ALL_PERMISSIONS,
    BUILT_IN_ROLES,
    CATALOGUE,
    PERMISSION_NAME,
    SELF_SERVICE,
    built_in_role,
    check_permission_names,
    effective_permissions,
    is_known_permission,
)

REPO = Path(__file__).resolve().parents[3]
PROTOS = REPO / "protos" / "cardinsa"
_DECLARED = re.compile(r'permission\s*:\s*"([^"]*)"')


def declared_permissions(files: list[Path]) -> set[str]:
    return {name for f in files for name in _DECLARED.findall(f.read_text(encoding="utf-8"))}


def test_catalogue_covers_every_permission_of_the_identity_protos() -> None:
    files = sorted((PROTOS / "identity" / "v1").glob("*.proto"))
    declared = declared_permissions(files)
    # The parse itself must have worked: identity declares 27 distinct names.
    assert len(declared) >= 25, declared
    assert {"users.create", "api_keys.revoke", "signing_keys.rotate"} <= declared
    assert declared - ALL_PERMISSIONS == set()


def test_catalogue_covers_every_permission_declared_in_any_proto() -> None:
    # Company and core protos, when they exist, must use catalogued names too.
    declared = declared_permissions(sorted(PROTOS.rglob("*.proto")))
    assert declared
    assert declared - ALL_PERMISSIONS == set()


@pytest.mark.parametrize(
    "name",
    [
        *(
            f"companies.{a}"
            for a in ("create", "get", "list", "update", "delete", "suspend", "reactivate")
        ),
        "companies.close",
        *(f"departments.{a}" for a in ("create", "get", "list", "update", "delete")),
        *(f"units.{a}" for a in ("create", "get", "list", "update", "delete")),
        "audit_events.list",
        *(f"policyholders.{a}" for a in ("create", "get", "list", "update", "delete")),
        "policyholders.read_national_id",
        *(f"products.{a}" for a in ("create", "get", "list", "update", "delete")),
        *(
            f"policies.{a}"
            for a in (
                "create",
                "get",
                "list",
                "update",
                "quote",
                "bind",
                "endorse",
                "renew",
                "cancel",
                "reinstate",
                "lapse",
                "expire",
                "override_claim_cover",
            )
        ),
        *(
            f"claims.{a}"
            for a in (
                "create",
                "get",
                "list",
                "update",
                "submit",
                "review",
                "approve",
                "deny",
                "pay",
                "close",
                "reopen",
                "approve_band_1",
                "approve_band_2",
                "approve_band_3",
            )
        ),
    ],
)
def test_catalogue_has_what_company_and_core_need(name: str) -> None:
    assert is_known_permission(name)


def test_catalogue_entries_are_well_formed_sorted_and_described() -> None:
    names = [p.name for p in CATALOGUE]
    assert names == sorted(names)
    assert len(names) == len(set(names)) == len(ALL_PERMISSIONS)
    for p in CATALOGUE:
        assert PERMISSION_NAME.fullmatch(p.name), p.name
        assert p.description.strip() and not p.description.endswith(".")
        assert f"{p.resource}.{p.action}" == p.name


def test_built_in_roles_exist_with_dashed_names() -> None:
    assert set(BUILT_IN_ROLES) == {
        "platform-admin",
        "company-admin",
        "underwriter",
        "claims-adjuster",
        "agent",
        "billing-clerk",
        "viewer",
    }
    for name, role in BUILT_IN_ROLES.items():
        assert role.name == name
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", name)
        assert role.description.strip()
    assert built_in_role("viewer") is BUILT_IN_ROLES["viewer"]
    assert built_in_role("nobody") is None


@pytest.mark.parametrize("name", sorted(BUILT_IN_ROLES))
def test_built_in_roles_only_contain_catalogue_permissions(name: str) -> None:
    role = BUILT_IN_ROLES[name]
    assert role.permissions, name
    assert role.permissions <= ALL_PERMISSIONS, role.permissions - ALL_PERMISSIONS


def test_only_the_platform_admin_acts_across_companies_and_has_everything() -> None:
    admin = BUILT_IN_ROLES["platform-admin"]
    assert admin.cross_company and admin.permissions == ALL_PERMISSIONS
    assert [r.name for r in BUILT_IN_ROLES.values() if r.cross_company] == ["platform-admin"]


def test_company_admin_has_everything_but_platform_powers() -> None:
    perms = BUILT_IN_ROLES["company-admin"].permissions
    platform_only = {
        "signing_keys.list",
        "signing_keys.rotate",
        "companies.create",
        "companies.suspend",
        "companies.close",
        "companies.reactivate",
        "companies.delete",
        "companies.get_status",
        "revocations.watch",
        "events.watch_all",
    }
    assert perms.isdisjoint(platform_only)
    assert perms == ALL_PERMISSIONS - platform_only
    assert {"users.create", "roles.create", "audit_events.list", "companies.update"} <= perms


def test_viewer_is_read_only_and_sees_nothing_sensitive() -> None:
    perms = BUILT_IN_ROLES["viewer"].permissions - SELF_SERVICE
    assert all(p.rsplit(".", 1)[1] in ("get", "list") for p in perms), perms
    assert {"policies.get", "claims.list", "users.get", "companies.get"} <= perms
    for sensitive in (
        "policyholders.read_national_id",
        "audit_events.list",
        "sessions.list",
        "signing_keys.list",
        "api_keys.list",
    ):
        assert sensitive not in perms


def test_claims_adjuster_has_the_lowest_authority_band_only() -> None:
    perms = BUILT_IN_ROLES["claims-adjuster"].permissions
    assert {"claims.approve", "claims.approve_band_1", "claims.pay", "claims.reopen"} <= perms
    assert "claims.approve_band_2" not in perms and "claims.approve_band_3" not in perms
    assert not any(
        p.startswith("policies.") and p.split(".")[1] not in ("get", "list") for p in perms
    )


def test_agent_quotes_but_does_not_bind_or_see_national_ids() -> None:
    perms = BUILT_IN_ROLES["agent"].permissions
    assert {"policies.quote", "policyholders.create", "claims.submit"} <= perms
    assert "policies.bind" not in perms
    assert "policyholders.read_national_id" not in perms
    assert not any(p.startswith(("users.", "roles.", "role_bindings.")) for p in perms)


def test_underwriter_runs_the_policy_lifecycle_but_not_claims() -> None:
    perms = BUILT_IN_ROLES["underwriter"].permissions
    lifecycle = {"bind", "endorse", "renew", "cancel", "reinstate", "lapse", "expire", "quote"}
    assert {f"policies.{a}" for a in lifecycle} <= perms
    assert "claims.approve" not in perms and "claims.get" in perms


def test_only_admins_override_claim_cover() -> None:
    holders = {
        name
        for name, role in BUILT_IN_ROLES.items()
        if "policies.override_claim_cover" in role.permissions
    }
    assert holders == {"platform-admin", "company-admin"}


def test_effective_permissions_is_the_union_limited_to_the_catalogue() -> None:
    got = effective_permissions(
        [
            ["users.get", "users.list"],
            frozenset({"users.list", "claims.get"}),
            ["retired.permission", "users.get"],
            [],
        ]
    )
    assert got == frozenset({"users.get", "users.list", "claims.get"})
    assert effective_permissions([]) == frozenset()
    assert effective_permissions(r.permissions for r in BUILT_IN_ROLES.values()) == ALL_PERMISSIONS


def test_check_permission_names_accepts_catalogue_names() -> None:
    assert check_permission_names(["users.get", "claims.approve_band_2"]) == []
    assert check_permission_names([]) == []


def test_check_permission_names_reports_unknown_and_duplicates_with_paths() -> None:
    violations = check_permission_names(
        ["users.get", "users.fly", "users.get", "Not A Name!", "x" * 500],
        field="api_key.permissions",
    )
    assert [v.field for v in violations] == [
        "api_key.permissions[1]",
        "api_key.permissions[2]",
        "api_key.permissions[3]",
        "api_key.permissions[4]",
    ]
    assert violations[0].description == "'users.fly' is not a known permission; see ListPermissions"
    assert "more than once" in violations[1].description
    # Odd or huge input is not echoed back.
    assert "Not A Name" not in violations[2].description
    assert "xxx" not in violations[3].description
    assert check_permission_names(["bogus.perm"])[0].field == "role.permissions[0]"


def test_only_billing_clerks_and_admins_record_payments() -> None:
    """A recorded payment keeps a policy from lapsing: selling or reading is not enough."""
    holders = {n for n, r in BUILT_IN_ROLES.items() if "payments.record" in r.permissions}
    assert holders == {"platform-admin", "company-admin", "billing-clerk"}
    assert {"invoices.get", "invoices.list", "payments.list"} <= BUILT_IN_ROLES[
        "viewer"
    ].permissions


def test_every_built_in_role_holds_the_self_service_permissions() -> None:
    assert {
        "me.get",
        "me.update",
        "me.change_password",
        "me.change_email",
        "me.list_sessions",
        "me.revoke_session",
        "me.get_mfa",
        "me.enroll_mfa",
        "me.disable_mfa",
    } == SELF_SERVICE
    assert SELF_SERVICE <= ALL_PERMISSIONS
    for role in BUILT_IN_ROLES.values():
        assert role.permissions >= SELF_SERVICE, role.name
