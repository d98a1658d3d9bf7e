"""Nobody acts on, or grants, more power than they hold.

One rule guards both what a caller may give away and whom a caller may act on:

- granting (a role through a binding): the caller must hold every permission
  the role grants, and only a platform admin hands out the platform-admin role;
  the same for taking it away (unbinding it, deleting the role, removing
  permissions from it: the caller must hold what is removed);
- acting on an account (update any field, lock, unlock, deactivate, reactivate,
  delete, undelete, list or revoke its sessions, bind or unbind its roles; for a
  service account: issue, list or revoke its API keys, delete it): the caller
  must hold every permission the account holds (the union over all its roles,
  custom and built-in, or over its usable API keys), and a platform admin
  account is reachable only by a platform admin.

Without the second half, a "helpdesk" holding only ``users.update`` could set
the company admin's email to its own address, reset the password and log in as
that admin. Equal power passes: a caller may act on itself and on its peers.

The self-service permissions (``me.*``, held by every built-in role) act only
on their holder, so they are no power over anyone and count on neither side:
a custom "helpdesk" role without them still acts on a viewer and grants the
built-in roles it otherwise covers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cardinsa_identity.domain.permissions import ALL_PERMISSIONS, SELF_SERVICE

__all__ = ["Power", "Shortfall", "shortfall"]


@dataclass(frozen=True, slots=True)
class Power:
    """What a principal, an account or a role amounts to."""

    permissions: frozenset[str]
    #: Holds (or, for a role, is) the built-in platform-admin role.
    platform_admin: bool = False

    @classmethod
    def of(cls, permissions: Iterable[str], *, platform_admin: bool = False) -> Power:
        """Limited to the catalogue: a name dropped from it grants nothing."""
        return cls(frozenset(permissions) & ALL_PERMISSIONS, platform_admin)


@dataclass(frozen=True, slots=True)
class Shortfall:
    """Why a caller falls short of a target (never empty: see :func:`shortfall`)."""

    #: The target is a platform admin and the caller is not.
    platform_admin: bool
    #: Permissions the target holds and the caller lacks, sorted.
    missing: tuple[str, ...]


def shortfall(caller: Power, target: Power) -> Shortfall | None:
    """None when ``caller`` may act on (or grant) ``target``: it holds every
    permission of the target (the self-service ones aside), and is a platform
    admin if the target is one."""
    needs_platform_admin = target.platform_admin and not caller.platform_admin
    missing = tuple(sorted(target.permissions - caller.permissions - SELF_SERVICE))
    if not needs_platform_admin and not missing:
        return None
    return Shortfall(needs_platform_admin, missing)
