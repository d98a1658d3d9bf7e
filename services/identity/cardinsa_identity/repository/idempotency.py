"""Identity's request ids (AIP-155): the foundation's insert-first claim on
identity's ``idempotency_keys`` table (:meth:`RequestIds.claim`)."""

from __future__ import annotations

import uuid

from cardinsa_foundation.idempotency import RequestIds
from cardinsa_identity.repository.models import IdempotencyRow

__all__ = ["PLATFORM", "claim"]

#: The company of platform-wide operations' request ids (the nil UUID).
PLATFORM = uuid.UUID(int=0)

claim = RequestIds(IdempotencyRow).claim
