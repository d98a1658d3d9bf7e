"""What identity tells the world: one event per change of a user.

The use cases call a :class:`UserEventSink` inside the unit of work that makes
the change, next to its audit record, with the user's row locked: the event
commits or rolls back with the change (the transactional outbox,
:mod:`cardinsa_foundation.outbox`), and a user's events are in the order of
its changes. How a row becomes the payload (the API's ``User``, which has no
password hash nor any other secret) is the sink's business.

Changes: ``created`` (also an invited user), ``activated`` (an invitation
accepted), ``updated`` (profile; a confirmed e-mail change), ``locked``,
``unlocked``, ``deactivated``, ``reactivated``, ``deleted``, ``undeleted`` and
``roles_changed`` (a role binding created or deleted, or a custom role
the user holds deleted).
"""

from __future__ import annotations

from typing import Final, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_identity.repository.models import UserRow

__all__ = ["ACTION_CHANGES", "UserEventSink"]

#: A user action of the audit log (``user.<action>``) → the event's change.
ACTION_CHANGES: Final = {
    "lock": "locked",
    "unlock": "unlocked",
    "deactivate": "deactivated",
    "reactivate": "reactivated",
    "delete": "deleted",
    "undelete": "undeleted",
}


class UserEventSink(Protocol):
    def user_changed(
        self,
        session: AsyncSession,
        user: UserRow,
        roles: list[str],
        *,
        change: str,
        from_state: str | None,
    ) -> None:
        """Record that ``user`` (as it is now, holding ``roles``) went
        through ``change``; ``from_state``: its state before (None: new)."""
