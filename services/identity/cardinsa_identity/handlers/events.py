"""Identity's events as the API's messages, written to identity's outbox."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa.identity.v1 import events_pb2
from cardinsa_foundation.outbox import Outbox, event_type
from cardinsa_identity.handlers.convert import user_to_proto
from cardinsa_identity.repository.models import IdentityOutboxRow, UserRow

__all__ = ["OutboxEvents", "identity_events"]

#: The CloudEvents ``source`` of every identity event.
SOURCE = "identity"


class OutboxEvents:
    """:class:`cardinsa_identity.application.events.UserEventSink` on identity's outbox."""

    def __init__(self, outbox: Outbox[IdentityOutboxRow]) -> None:
        self.outbox = outbox

    def user_changed(
        self,
        session: AsyncSession,
        user: UserRow,
        roles: list[str],
        *,
        change: str,
        from_state: str | None,
    ) -> None:
        # The User message has no password hash, reset token or other secret.
        payload = events_pb2.UserEvent(
            user=user_to_proto(user, roles),
            change=change,
            from_state=from_state,
        )
        self.outbox.add(
            session,
            type=event_type("identity", "user", change),
            subject=f"users/{user.id}",
            payload=payload,
            company_id=user.company_id,
        )


def identity_events() -> OutboxEvents:
    """The event sink identity's use cases write through."""
    return OutboxEvents(Outbox(IdentityOutboxRow, SOURCE))
