"""The outbox's event type names."""

from __future__ import annotations

import pytest

from cardinsa_foundation.outbox import event_type


def test_event_types_are_checked() -> None:
    assert event_type("core", "policy", "renewal_withdrawn") == (
        "cardinsa.core.policy.renewal_withdrawn.v1"
    )
    assert event_type("identity", "user", "create", 2) == "cardinsa.identity.user.create.v2"
    for service, resource, occurrence, version in (
        ("Core", "policy", "create", 1),
        ("core", "policy", "create-x", 1),
        ("core", "policy", "", 1),
        ("core", "policy", "create", 0),
        ("core", "policy.x", "create", 1),
    ):
        with pytest.raises(ValueError, match="not an event type"):
            event_type(service, resource, occurrence, version)
