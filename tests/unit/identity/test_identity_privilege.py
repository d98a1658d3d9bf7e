"""The one rule for grants and for acting on accounts (domain/privilege.py)."""

from __future__ import annotations

import pytest

from cardinsa_foundation.context import PLATFORM_ADMIN_ROLE, Principal, PrincipalKind
from cardinsa_foundation.errors import PermissionDenied
from cardinsa_identity.application.access import AccessUseCases
from cardinsa_identity.application.privilege import (
    TARGET_MORE_PRIVILEGED,
    caller_power,
    require_may_act_on,
)
from cardinsa_identity.domain.access import missing_to_grant
from cardinsa_identity.domain.permissions import ALL_PERMISSIONS, BUILT_IN_ROLES, SELF_SERVICE
from cardinsa_identity.domain.privilege import Power, Shortfall, shortfall
from cardinsa_identity.repository.models import RoleRow

ADMIN = BUILT_IN_ROLES["company-admin"].permissions
VIEWER = BUILT_IN_ROLES["viewer"].permissions
ROOT = Power(ALL_PERMISSIONS, platform_admin=True)


def test_equal_and_stronger_callers_pass_weaker_ones_fall_short() -> None:
    helpdesk = Power(frozenset({"users.update"}))
    admin = Power(ADMIN)
    assert shortfall(admin, admin) is None  # equal, also oneself
    assert shortfall(admin, helpdesk) is None
    assert shortfall(helpdesk, Power(frozenset())) is None  # a user without roles
    short = shortfall(helpdesk, admin)
    assert short is not None
    assert not short.platform_admin
    assert list(short.missing) == sorted(ADMIN - {"users.update"} - SELF_SERVICE)


def test_platform_admins_are_reached_only_by_platform_admins() -> None:
    # Even a caller holding every permission is not a platform admin by that.
    everything = Power(ALL_PERMISSIONS)
    assert shortfall(everything, ROOT) == Shortfall(platform_admin=True, missing=())
    assert shortfall(ROOT, ROOT) is None
    assert shortfall(ROOT, Power(ADMIN)) is None
    short = shortfall(Power(ADMIN), ROOT)
    assert short is not None
    assert short.platform_admin
    assert short.missing  # the platform-only permissions


def test_power_of_keeps_only_catalogue_names() -> None:
    power = Power.of(["users.get", "gone.permission"])
    assert power.permissions == frozenset({"users.get"})
    assert shortfall(Power(frozenset({"users.get"})), power) is None


def test_self_service_permissions_are_no_power_over_others() -> None:
    # They act only on their holder: a custom helpdesk role without them still
    # reaches a viewer (who holds them through the built-in role) and grants it.
    helpdesk = set(VIEWER - SELF_SERVICE) | {"users.update"}
    assert SELF_SERVICE <= VIEWER
    assert shortfall(Power.of(helpdesk), Power.of(VIEWER)) is None
    assert missing_to_grant(VIEWER, helpdesk) == []
    assert missing_to_grant({"me.get", "users.get"}, set()) == ["users.get"]


def test_the_grant_rule_is_the_same_rule() -> None:
    assert missing_to_grant({"a.b", "c.d"}, {"a.b"}) == ["c.d"]
    assert missing_to_grant(ADMIN, VIEWER) == sorted(ADMIN - VIEWER)
    assert missing_to_grant(VIEWER, ADMIN) == []


def _principal(permissions: frozenset[str], roles: frozenset[str] = frozenset()) -> Principal:
    return Principal(
        subject="u", kind=PrincipalKind.USER, company_id="c", permissions=permissions, roles=roles
    )


def _built_in(name: str) -> RoleRow:
    role = BUILT_IN_ROLES[name]
    return RoleRow(name=name, company_id=None, built_in=True, permissions=sorted(role.permissions))


def test_grant_check_and_target_check_answer_from_the_same_shortfall() -> None:
    admin = _principal(ADMIN, frozenset({"company-admin"}))
    root = _principal(ALL_PERMISSIONS, frozenset({PLATFORM_ADMIN_ROLE}))
    assert caller_power(root) == ROOT
    AccessUseCases._check_may_grant(admin, _built_in("viewer"))
    AccessUseCases._check_may_grant(root, _built_in(PLATFORM_ADMIN_ROLE))
    with pytest.raises(PermissionDenied) as caught:
        AccessUseCases._check_may_grant(admin, _built_in(PLATFORM_ADMIN_ROLE))
    assert caught.value.reason == "PLATFORM_ADMIN_ONLY"
    with pytest.raises(PermissionDenied) as caught:
        AccessUseCases._check_may_grant(_principal(VIEWER), _built_in("company-admin"))
    assert caught.value.reason == "ROLE_EXCEEDS_CALLER"

    require_may_act_on(admin, Power(ADMIN), resource="user")
    require_may_act_on(root, ROOT, resource="user")
    for caller, target in ((admin, ROOT), (_principal(VIEWER), Power(ADMIN))):
        with pytest.raises(PermissionDenied) as caught:
            require_may_act_on(caller, target, resource="user")
        assert caught.value.reason == TARGET_MORE_PRIVILEGED
        # The refusal names no permission of the target.
        text = str(caught.value) + repr(caught.value.metadata)
        assert not [p for p in ALL_PERMISSIONS if p in text]
