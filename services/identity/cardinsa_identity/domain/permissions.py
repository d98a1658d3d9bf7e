"""The permission catalogue and the built-in roles.

A permission is ``<resource>.<action>`` (lower snake case on both sides). The
catalogue holds every permission an RPC of any Cardinsa service declares in its
proto option ``(cardinsa.common.v1.authorization)``: identity's own (checked
against the protos by a unit test) and those the company and core services need.
Identity owns the catalogue because it puts permissions into access tokens; a
service adding an RPC with a new permission adds the name here.

Decisions:
- One audit permission, ``audit_events.list``, for the audit log of every service
  (identity, company, core). What it lets a caller read is always bounded by the
  caller's company (platform admins: any company), so separate per-service names
  would only multiply role maintenance without narrowing anything.
- Restore (undelete) needs the same permission as delete (as in the identity
  protos): whoever may remove a thing may take the removal back.
- Claim approval needs ``claims.approve`` *and* the authority band for the
  approved amount (``claims.approve_band_1`` lowest … ``_band_3`` highest; the
  amounts per band are company settings). A band permission alone approves
  nothing.
- Dependents of a policyholder are managed through the ``policyholders.*``
  permissions (they are part of the policyholder aggregate); reading a national
  id unmasked needs ``policyholders.read_national_id`` on top of
  ``policyholders.get``/``list``.
- Documents are permissions of the resource they are about:
  ``policies.get_schedule`` and ``claims.get_decision_letter`` issue (render
  and store) and read the PDF. They are not ``get`` permissions, so a viewer
  holds neither: a schedule carries the policyholder's address and members.
  Underwriters and agents get the schedule (they hand it to customers),
  claims adjusters the decision letter; ``invoices.get_document`` (an invoice
  as PDF, with the payer's address) goes to billing clerks and agents.
- A cancellation, lapse or endorsement that would leave approved or paid claims
  without cover is refused; ``policies.override_claim_cover`` lets the caller
  make it anyway with a reason. It is an admin's decision: only the platform and
  company admins hold it (not the underwriter, who makes those changes, nor the
  claims adjuster, whose claims lose the cover).
- Self-service (``me.get``, ``me.update``, ``me.change_password``,
  ``me.change_email``, ``me.list_sessions``, ``me.revoke_session``, ``me.get_mfa``,
  ``me.enroll_mfa``, ``me.disable_mfa``; MeService, ``/v1/me``) is in
  every built-in role: a user needs no admin permission to read and edit their
  own harmless profile fields, change their password or end their own sessions.
  Built-in roles take their permissions from this module, so no data migration
  seeds them. They act only on the holder, so the privilege rule
  (domain/privilege.py) does not count them as power over anyone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from cardinsa_foundation.context import PLATFORM_ADMIN_ROLE
from cardinsa_foundation.errors import FieldViolation

__all__ = [
    "ALL_PERMISSIONS",
    "BUILT_IN_ROLES",
    "CATALOGUE",
    "PERMISSION_NAME",
    "SELF_SERVICE",
    "BuiltInRole",
    "Permission",
    "built_in_role",
    "check_permission_names",
    "effective_permissions",
    "is_known_permission",
]

#: The shape of a permission name: ``<resource>.<action>``.
PERMISSION_NAME: Final = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Permission:
    """One entry of the catalogue (what ListPermissions returns)."""

    name: str
    description: str

    @property
    def resource(self) -> str:
        return self.name.partition(".")[0]

    @property
    def action(self) -> str:
        return self.name.partition(".")[2]


_CRUD = {
    "create": "Create {plural}",
    "get": "Read a {singular}",
    "list": "List {plural}",
    "update": "Change {plural}",
    "delete": "Delete {plural} and restore deleted ones",
}


def _crud(
    resource: str, singular: str, plural: str, actions: Iterable[str] = tuple(_CRUD)
) -> list[Permission]:
    return [
        Permission(f"{resource}.{a}", _CRUD[a].format(singular=singular, plural=plural))
        for a in actions
    ]


#: Self-service (MeService): what a user may do about their own account. Every
#: built-in role holds all of them (``SELF_SERVICE``); the user acted on is always
#: the caller, so they grant no power over anyone else.
_SELF_SERVICE_PERMISSIONS: Final = (
    Permission("me.get", "Read one's own user profile"),
    Permission(
        "me.update",
        "Change one's own given, family and display name and locale (not the email or the phone)",
    ),
    Permission("me.change_password", "Change one's own password (the current one is needed)"),
    Permission(
        "me.change_email",
        "Ask to change one's own email (the current password is needed; the new "
        "address confirms it)",
    ),
    Permission("me.list_sessions", "List one's own login sessions"),
    Permission("me.revoke_session", "End one of one's own login sessions"),
    Permission("me.get_mfa", "Read the state of one's own second factor (TOTP)"),
    Permission(
        "me.enroll_mfa",
        "Enrol an authenticator app as one's own second factor (secret, QR code, confirmation)",
    ),
    Permission("me.disable_mfa", "Remove one's own second factor (the current password is needed)"),
)


def _build_catalogue() -> tuple[Permission, ...]:
    entries: list[Permission] = [
        # --- identity (names fixed by protos/cardinsa/identity/v1) -------------------
        *_crud("users", "user", "users"),
        Permission("users.lock", "Lock and unlock users (unlock also clears a login lock)"),
        Permission("users.deactivate", "Deactivate and reactivate users"),
        Permission(
            "users.reset_mfa",
            "Remove a user's second factor (a lost device): they enrol again",
        ),
        Permission("mfa_policies.get", "Read which roles of the company need a second factor"),
        Permission("mfa_policies.update", "Set which roles of the company need a second factor"),
        Permission("sessions.list", "List the login sessions of users"),
        Permission("sessions.revoke", "Revoke a login session of a user"),
        *_SELF_SERVICE_PERMISSIONS,
        *_crud("roles", "role", "custom roles"),
        Permission("role_bindings.create", "Grant roles to users"),
        Permission("role_bindings.list", "List which users hold which roles"),
        Permission("role_bindings.delete", "Take roles away from users"),
        *_crud(
            "service_accounts",
            "service account",
            "service accounts",
            ("create", "get", "list", "delete"),
        ),
        Permission("api_keys.create", "Issue API keys to service accounts"),
        Permission("api_keys.list", "List the API keys of service accounts (never the secrets)"),
        Permission("api_keys.revoke", "Revoke API keys"),
        Permission("signing_keys.list", "List the token signing keys and their rotation state"),
        Permission("signing_keys.rotate", "Start a rotation of the token signing key"),
        Permission(
            "revocations.watch",
            "Follow the stream of revoked access tokens (for the platform's services, "
            "which refuse those tokens)",
        ),
        Permission(
            "events.watch",
            "Stream the events of a service's outbox (the caller's company; every "
            "company for the platform's services)",
        ),
        Permission(
            "events.watch_all",
            "With events.watch: stream every company's events (for the platform's "
            "services, such as the event dispatcher)",
        ),
        Permission("webhooks.create", "Subscribe a URL to the company's events"),
        Permission("webhooks.get", "Read webhook subscriptions and their deliveries"),
        Permission("webhooks.list", "List webhook subscriptions"),
        Permission("webhooks.update", "Change or pause a webhook subscription, rotate its secret"),
        Permission("webhooks.delete", "Delete a webhook subscription"),
        Permission("webhooks.redeliver", "Deliver a webhook event again"),
        Permission(
            "audit_events.list",
            "Read the audit log (of every service; limited to the caller's company "
            "unless the caller is a platform admin)",
        ),
        # --- company ---------------------------------------------------------------
        Permission("companies.create", "Create companies (tenants)"),
        Permission("companies.get", "Read a company and its settings"),
        Permission(
            "companies.list", "List companies (only the caller's own unless platform admin)"
        ),
        Permission("companies.update", "Change a company's details, settings and feature flags"),
        Permission("companies.delete", "Delete companies and restore deleted ones"),
        Permission("companies.suspend", "Suspend a company: its users and keys stop working"),
        Permission("companies.reactivate", "Reactivate a suspended company"),
        Permission("companies.close", "Close a company for good"),
        Permission(
            "companies.get_status",
            "Read whether any company may act, with its currency, time zone and locale "
            "(for the platform's service accounts; not limited to the caller's company)",
        ),
        *_crud("departments", "department", "departments"),
        *_crud("units", "unit", "units"),
        # --- core: policyholders and products -------------------------------------
        *_crud("policyholders", "policyholder", "policyholders and their dependents"),
        Permission(
            "policyholders.read_national_id",
            "See national ids of policyholders and dependents unmasked",
        ),
        Permission(
            "policyholders.export_personal_data",
            "Export everything held about a policyholder (data-subject access, GDPR "
            "articles 15 and 20)",
        ),
        Permission(
            "policyholders.erase_personal_data",
            "Erase a policyholder's personal data (GDPR article 17): names and "
            "contact details pseudonymised, financial records kept",
        ),
        *_crud("products", "product", "products"),
        Permission("products.activate", "Put a draft product on sale"),
        Permission("products.retire", "Take a product off sale"),
        # --- core: policies -------------------------------------------------------
        *_crud("policies", "policy (with its versions and status log)", "draft policies"),
        Permission("policies.quote", "Price a draft policy into a quote"),
        Permission("policies.bind", "Bind a quote: the policy goes in force"),
        Permission("policies.endorse", "Endorse a policy in force (a new version)"),
        Permission("policies.renew", "Renew a policy into a successor policy"),
        Permission("policies.cancel", "Cancel a policy"),
        Permission("policies.reinstate", "Reinstate a cancelled policy"),
        Permission("policies.lapse", "Lapse a policy (for example for non-payment)"),
        Permission("policies.expire", "Expire a policy at the end of its term"),
        Permission(
            "policies.get_schedule",
            "Issue and read the schedule of a bound policy (PDF; shows the policyholder's "
            "address and the insured members)",
        ),
        Permission(
            "policies.underwrite",
            "Approve or decline the underwriting issues of a quote (age limits, sum "
            "insured referrals, backdating, manual underwriting)",
        ),
        Permission(
            "policies.override_claim_cover",
            "Cancel, lapse or endorse a policy although approved or paid claims lose "
            "their cover (with a recorded reason; on top of the change's own permission)",
        ),
        # --- core: claims ---------------------------------------------------------
        *_crud("claims", "claim (with its action log)", "draft claims"),
        Permission("claims.submit", "Submit a claim (first notice of loss)"),
        Permission("claims.review", "Take a submitted claim under review"),
        Permission(
            "claims.approve",
            "Approve claims (also needs the authority band of the approved amount)",
        ),
        Permission(
            "claims.approve_band_1", "Authority to approve claim amounts of band 1 (lowest)"
        ),
        Permission("claims.approve_band_2", "Authority to approve claim amounts of band 2"),
        Permission(
            "claims.approve_band_3", "Authority to approve claim amounts of band 3 (highest)"
        ),
        Permission("claims.deny", "Deny claims"),
        Permission(
            "claims.pay",
            "Record, issue, clear and void claim payments (also needs the authority "
            "band of the amount)",
        ),
        Permission("claims.close", "Close claims"),
        Permission("claims.reopen", "Reopen closed or denied claims"),
        Permission("claims.withdraw", "Withdraw a draft or submitted claim"),
        Permission(
            "claims.reserve",
            "Set a claim's indemnity or expense reserve (also needs the authority band)",
        ),
        Permission("claims.recover", "Record salvage, subrogation and overpayment recoveries"),
        # --- core: billing --------------------------------------------------------
        Permission("invoices.get", "Read an invoice of a policy"),
        Permission("invoices.list", "List the invoices of a policy"),
        Permission(
            "invoices.get_document",
            "Issue and read an invoice as a document for the payer (PDF; shows the "
            "policyholder's address)",
        ),
        Permission("payments.list", "List the premium payments of a policy"),
        Permission(
            "payments.record",
            "Record premium money received for a policy (it settles invoices and moves "
            "the paid-to date, which keeps the policy from lapsing)",
        ),
        Permission(
            "claims.get_decision_letter",
            "Issue and read the decision letter of an approved or denied claim (PDF)",
        ),
    ]
    return tuple(sorted(entries, key=lambda p: p.name))


#: Every permission, sorted by name.
CATALOGUE: Final[tuple[Permission, ...]] = _build_catalogue()
#: The names of the catalogue.
ALL_PERMISSIONS: Final[frozenset[str]] = frozenset(p.name for p in CATALOGUE)

if len(ALL_PERMISSIONS) != len(CATALOGUE):  # pragma: no cover - guards edits above
    raise RuntimeError("the permission catalogue lists a name twice")


def is_known_permission(name: str) -> bool:
    """Whether `name` is in the catalogue."""
    return name in ALL_PERMISSIONS


def check_permission_names(
    names: Iterable[str], *, field: str = "role.permissions"
) -> list[FieldViolation]:
    """Violations for names that are not in the catalogue or are listed twice; the
    field path names the index (``role.permissions[2]``)."""
    violations: list[FieldViolation] = []
    seen: set[str] = set()
    for index, name in enumerate(names):
        path = f"{field}[{index}]"
        if name not in ALL_PERMISSIONS:
            shown = name if len(name) <= 100 and PERMISSION_NAME.fullmatch(name) else None
            detail = f"'{shown}' is" if shown else "this is"
            violations.append(
                FieldViolation(path, f"{detail} not a known permission; see ListPermissions")
            )
        elif name in seen:
            violations.append(FieldViolation(path, f"'{name}' is listed more than once"))
        seen.add(name)
    return violations


def effective_permissions(role_permission_sets: Iterable[Iterable[str]]) -> frozenset[str]:
    """The union of the permissions of a principal's roles, limited to the catalogue:
    a name dropped from the catalogue stops granting anything even if a stored
    custom role still lists it."""
    granted: set[str] = set()
    for permissions in role_permission_sets:
        granted.update(permissions)
    return frozenset(granted & ALL_PERMISSIONS)


# ------------------------------------------------------------------ built-in roles


@dataclass(frozen=True, slots=True)
class BuiltInRole:
    """A role every company has; it belongs to no company and cannot be changed."""

    name: str
    description: str
    permissions: frozenset[str]
    #: Only the platform admin acts across companies; every other role is bounded
    #: by the company of the user holding it.
    cross_company: bool = False


def _where(*actions: str) -> frozenset[str]:
    return frozenset(p.name for p in CATALOGUE if p.action in actions)


def _names(*names: str) -> frozenset[str]:
    return frozenset(names)


# Platform-level powers a tenant must not hold over itself: signing keys are the
# whole platform's trust root, and creating, suspending, reactivating, closing or
# deleting a company are the platform's decisions about a tenant (a company admin
# who could reactivate their own suspended company would make suspension moot).
# Reading any company's status is the platform services' view across tenants.
_PLATFORM_ONLY = frozenset(
    {
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
)

# Reading these says more than business data: who logged in from where, what was
# changed by whom, unmasked national ids. Viewers do not get them.
_SENSITIVE_READS = frozenset(
    {
        "sessions.list",
        "audit_events.list",
        "signing_keys.list",
        "api_keys.list",
        "service_accounts.get",
        "service_accounts.list",
        "policyholders.read_national_id",
        "policyholders.export_personal_data",
        # Every event carries the resource in full; subscriptions name where
        # the company's data goes.
        "events.watch",
        "webhooks.get",
        "webhooks.list",
    }
)

_ORG_READ = _names(
    "companies.get",
    "departments.get",
    "departments.list",
    "units.get",
    "units.list",
)

#: The self-service permissions; every built-in role holds them.
SELF_SERVICE: Final = frozenset(p.name for p in _SELF_SERVICE_PERMISSIONS)

_ROLES: tuple[BuiltInRole, ...] = (
    BuiltInRole(
        PLATFORM_ADMIN_ROLE,
        "Operates the platform: every permission, in every company.",
        ALL_PERMISSIONS,
        cross_company=True,
    ),
    BuiltInRole(
        "company-admin",
        "Administers one company: users, roles, service accounts, org structure and "
        "all business data, but no signing keys and no company create, suspend, "
        "reactivate, close or delete.",
        ALL_PERMISSIONS - _PLATFORM_ONLY,
    ),
    BuiltInRole(
        "underwriter",
        "Assesses and issues policies: the whole policy lifecycle, policyholders "
        "(with national ids), read access to products and claims.",
        _ORG_READ
        | _names(
            "policyholders.create",
            "policyholders.get",
            "policyholders.list",
            "policyholders.update",
            "policyholders.read_national_id",
            "products.get",
            "products.list",
            "policies.create",
            "policies.get",
            "policies.list",
            "policies.update",
            "policies.quote",
            "policies.bind",
            "policies.endorse",
            "policies.renew",
            "policies.cancel",
            "policies.reinstate",
            "policies.lapse",
            "policies.expire",
            "policies.underwrite",
            "policies.get_schedule",
            "claims.get",
            "claims.list",
            "invoices.get",
            "invoices.list",
            "payments.list",
        ),
    ),
    BuiltInRole(
        "billing-clerk",
        "Collects premium: records payments received for policies and reads invoices, "
        "payments, policies and policyholders. National ids stay masked.",
        _ORG_READ
        | _names(
            "policyholders.get",
            "policyholders.list",
            "products.get",
            "products.list",
            "policies.get",
            "policies.list",
            "invoices.get",
            "invoices.list",
            "invoices.get_document",
            "payments.list",
            "payments.record",
        ),
    ),
    BuiltInRole(
        "claims-adjuster",
        "Handles claims from first notice of loss to payment and closure, approving "
        "amounts of band 1 only (higher bands through custom roles); reads policies "
        "and policyholders.",
        _ORG_READ
        | _names(
            "policyholders.get",
            "policyholders.list",
            "policyholders.read_national_id",
            "products.get",
            "products.list",
            "policies.get",
            "policies.list",
            "claims.create",
            "claims.get",
            "claims.list",
            "claims.update",
            "claims.submit",
            "claims.review",
            "claims.approve",
            "claims.approve_band_1",
            "claims.deny",
            "claims.pay",
            "claims.close",
            "claims.reopen",
            "claims.withdraw",
            "claims.reserve",
            "claims.recover",
            "claims.get_decision_letter",
        ),
    ),
    BuiltInRole(
        "agent",
        "Sells: registers policyholders, prepares and quotes policies (binding is the "
        "underwriter's), files claims for customers. National ids stay masked.",
        _ORG_READ
        | _names(
            "policyholders.create",
            "policyholders.get",
            "policyholders.list",
            "policyholders.update",
            "products.get",
            "products.list",
            "policies.create",
            "policies.get",
            "policies.list",
            "policies.update",
            "policies.quote",
            "invoices.get",
            "invoices.list",
            "invoices.get_document",
            "policies.get_schedule",
            "claims.create",
            "claims.get",
            "claims.list",
            "claims.update",
            "claims.submit",
            "claims.withdraw",
        ),
    ),
    BuiltInRole(
        "viewer",
        "Reads the company's data (get and list) and changes nothing but its own "
        "profile, password and sessions; no other user's sessions, no audit log, API "
        "keys, service accounts or unmasked national ids.",
        _where("get", "list") - _SENSITIVE_READS,
    ),
)

# Every built-in role may read and change its holder's own account.
_ROLES = tuple(
    BuiltInRole(r.name, r.description, r.permissions | SELF_SERVICE, r.cross_company)
    for r in _ROLES
)

#: The built-in roles by name.
BUILT_IN_ROLES: Final[Mapping[str, BuiltInRole]] = MappingProxyType({r.name: r for r in _ROLES})


def built_in_role(name: str) -> BuiltInRole | None:
    """The built-in role called `name`, if any."""
    return BUILT_IN_ROLES.get(name)
