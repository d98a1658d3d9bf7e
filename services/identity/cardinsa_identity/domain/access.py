"""Pure rules of AccessService (no I/O): names, free text, the permission
ceilings, update masks and the input of roles, service accounts and API keys.

Nobody grants more than they hold: a custom role, an API key and anything else a
company principal can hold is capped by the built-in ``company-admin`` role
(:data:`COMPANY_CEILING`), and the permissions put into a role or a key must be
among the caller's own.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from cardinsa_foundation.context import PLATFORM_ADMIN_ROLE
from cardinsa_foundation.errors import FieldViolation
from cardinsa_identity.domain.permissions import (
    ALL_PERMISSIONS,
    BUILT_IN_ROLES,
    check_permission_names,
)
from cardinsa_identity.domain.privilege import Power, shortfall

__all__ = [
    "COMPANY_ADMIN_ROLE",
    "COMPANY_CEILING",
    "MAX_API_KEY_DISPLAY_NAME_LENGTH",
    "MAX_DESCRIPTION_LENGTH",
    "NAME_PATTERN",
    "ROLE_UPDATABLE_FIELDS",
    "ApiKeySpec",
    "RoleSpec",
    "ServiceAccountSpec",
    "check_api_key_spec",
    "check_name",
    "check_role_spec",
    "check_service_account_spec",
    "check_update_mask",
    "describe_lifetime",
    "grant_violations",
    "granted_by",
    "is_platform_admin_role",
    "missing_to_grant",
]

#: Names of custom roles and service accounts: lowercase letters, digits and
#: dashes, 3 to 63 characters, not starting or ending with a dash.
NAME_PATTERN: Final = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
MIN_NAME_LENGTH: Final = 3
MAX_NAME_LENGTH: Final = 63
MAX_DESCRIPTION_LENGTH: Final = 500
MAX_API_KEY_DISPLAY_NAME_LENGTH: Final = 100

COMPANY_ADMIN_ROLE: Final = "company-admin"
#: Everything a company's own principals (custom roles, API keys) may ever hold:
#: the built-in company-admin role. What it lacks is the platform's alone.
COMPANY_CEILING: Final[frozenset[str]] = BUILT_IN_ROLES[COMPANY_ADMIN_ROLE].permissions

#: The fields of a role an update mask may name.
ROLE_UPDATABLE_FIELDS: Final = frozenset({"description", "permissions"})


@dataclass(frozen=True, slots=True)
class RoleSpec:
    """The fields of a role a client sets (create, or update with a mask)."""

    name: str = ""
    description: str = ""
    permissions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ServiceAccountSpec:
    """The fields of a service account a client sets on create."""

    name: str = ""
    description: str = ""
    company_id: str = ""


@dataclass(frozen=True, slots=True)
class ApiKeySpec:
    """The fields of an API key a client sets on create."""

    display_name: str = ""
    permissions: tuple[str, ...] = ()
    expire_time: datetime | None = field(default=None)


def check_name(name: str, field: str) -> list[FieldViolation]:
    """Violations of a role or service-account name (empty: required)."""
    if not name:
        return [FieldViolation(field, "required")]
    if len(name) < MIN_NAME_LENGTH or len(name) > MAX_NAME_LENGTH:
        return [
            FieldViolation(field, f"must be {MIN_NAME_LENGTH} to {MAX_NAME_LENGTH} characters long")
        ]
    if not NAME_PATTERN.fullmatch(name):
        return [
            FieldViolation(
                field,
                "may contain only lowercase letters, digits and dashes, "
                "and must not start or end with a dash",
            )
        ]
    return []


def check_text(value: str, field: str, max_length: int) -> list[FieldViolation]:
    """A free-text field: bounded, without control characters or line breaks."""
    if len(value) > max_length:
        return [FieldViolation(field, f"must be at most {max_length} characters long")]
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in value):
        return [FieldViolation(field, "must not contain control characters or line breaks")]
    return []


def grant_violations(
    names: Sequence[str],
    *,
    held: Collection[str],
    field: str,
    already: Collection[str] = frozenset(),
    ceiling: Collection[str] = COMPANY_CEILING,
) -> list[FieldViolation]:
    """Violations of permissions a caller wants to put into a role or an API key.

    Every name must be in the catalogue (and listed once), within
    :data:`COMPANY_CEILING`, and among the caller's own permissions (``held``),
    except names in ``already`` (what the role held before an update: keeping a
    permission is not granting it). The path names the index (``role.permissions[2]``).
    """
    violations = check_permission_names(names, field=field)
    flagged = {v.field for v in violations}
    for index, name in enumerate(names):
        path = f"{field}[{index}]"
        if path in flagged or name not in ALL_PERMISSIONS:
            continue
        if name not in ceiling:
            violations.append(
                FieldViolation(
                    path,
                    f"'{name}' is a platform permission that no company role or key may hold",
                )
            )
        elif name not in held and name not in already:
            violations.append(
                FieldViolation(
                    path,
                    f"'{name}' is not among your own permissions; "
                    "nobody grants more than they hold",
                )
            )
    violations.sort(key=lambda v: _index_of(v.field))
    return violations


def _index_of(path: str) -> int:
    match = re.search(r"\[(\d+)\]$", path)
    return int(match.group(1)) if match else -1


def missing_to_grant(permissions: Collection[str], held: Collection[str]) -> list[str]:
    """The permissions of a role that the caller lacks (sorted; empty: may grant it)."""
    short = shortfall(Power(frozenset(held)), Power(frozenset(permissions)))
    return list(short.missing) if short else []


def check_update_mask(paths: Sequence[str], allowed: Collection[str]) -> list[FieldViolation]:
    """Violations of an update mask: required, and only the updatable fields."""
    if not paths:
        return [FieldViolation("update_mask", "required")]
    return [
        FieldViolation(
            "update_mask",
            f"'{path[:64]}' cannot be updated; updatable: {', '.join(sorted(allowed))}",
        )
        for path in paths
        if path not in allowed
    ]


def check_role_spec(
    spec: RoleSpec,
    *,
    held: Collection[str],
    fields: Collection[str] | None = None,
    already: Collection[str] = frozenset(),
) -> list[FieldViolation]:
    """Violations of a custom role; `fields` limits the check to an update mask
    (None: every field, as on create, where the name is checked too)."""
    violations: list[FieldViolation] = []
    if fields is None:
        violations += check_name(spec.name, "role.name")
        if spec.name in BUILT_IN_ROLES:
            violations.append(FieldViolation("role.name", "is the name of a built-in role"))
    if fields is None or "description" in fields:
        violations += check_text(spec.description, "role.description", MAX_DESCRIPTION_LENGTH)
    if fields is None or "permissions" in fields:
        violations += grant_violations(
            spec.permissions, held=held, field="role.permissions", already=already
        )
    return violations


def check_service_account_spec(spec: ServiceAccountSpec) -> list[FieldViolation]:
    return check_name(spec.name, "service_account.name") + check_text(
        spec.description, "service_account.description", MAX_DESCRIPTION_LENGTH
    )


def check_api_key_spec(
    spec: ApiKeySpec,
    *,
    held: Collection[str],
    now: datetime,
    ceiling: Collection[str] = COMPANY_CEILING,
    max_lifetime: timedelta | None = None,
) -> list[FieldViolation]:
    """``ceiling`` is the company ceiling, except for keys a platform admin issues
    to a service account of its own (platform) company: the platform's services
    (identity, core) need platform permissions such as ``companies.get_status``.
    ``max_lifetime``: an expiry later than ``now`` plus this is refused."""
    violations = check_text(
        spec.display_name, "api_key.display_name", MAX_API_KEY_DISPLAY_NAME_LENGTH
    )
    violations += grant_violations(
        spec.permissions, held=held, field="api_key.permissions", ceiling=ceiling
    )
    if spec.expire_time is not None and spec.expire_time <= now:
        violations.append(FieldViolation("api_key.expire_time", "must be in the future"))
    elif (
        spec.expire_time is not None
        and max_lifetime is not None
        and spec.expire_time > now + max_lifetime
    ):
        violations.append(
            FieldViolation(
                "api_key.expire_time",
                f"must be at most {describe_lifetime(max_lifetime)} from now "
                "(the maximum API key lifetime)",
            )
        )
    return violations


def describe_lifetime(lifetime: timedelta) -> str:
    """``365 days``, ``36 hours``, ``90 minutes``: the largest whole unit."""
    seconds = int(lifetime.total_seconds())
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} seconds"


def granted_by(
    name: str, *, built_in: bool, platform_wide: bool, permissions: Iterable[str]
) -> frozenset[str]:
    """What a role grants: a built-in role's permissions come from code (as in
    ``roles_and_permissions``), a custom role's from its stored list, limited to
    the catalogue. ``platform_wide``: the role belongs to no company."""
    if built_in and platform_wide:
        role = BUILT_IN_ROLES.get(name)
        if role is not None:
            return role.permissions
    return frozenset(permissions) & ALL_PERMISSIONS


def is_platform_admin_role(name: str, *, built_in: bool, platform_wide: bool) -> bool:
    return built_in and platform_wide and name == PLATFORM_ADMIN_ROLE
