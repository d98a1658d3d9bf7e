"""Webhook subscriptions as the API manages them: field rules, the update mask,
the secret's rotation window and when a delivery may be sent again.

The URL's shape is judged here (:func:`cardinsa_company.domain.webhooks.check_url`);
where its host points is judged by the application after resolving it, with
:func:`target_problem` over the addresses it found.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from cardinsa_company.domain.webhooks import address_allowed, check_url
from cardinsa_foundation.errors import FailedPrecondition, FieldViolation, InvalidArgument
from cardinsa_foundation.outbox import EVENT_TYPE

__all__ = [
    "DEFAULT_PREVIOUS_SECRET_TTL",
    "MAX_DESCRIPTION",
    "MAX_EVENT_TYPES",
    "MAX_PREVIOUS_SECRET_TTL",
    "SUBSCRIPTION_FIELDS",
    "SUBSCRIPTION_STATES",
    "SubscriptionSpec",
    "audited_url",
    "check_event_type",
    "check_redelivery",
    "check_spec",
    "normalize_spec",
    "previous_secret_ttl",
    "secret_hint",
    "target_problem",
]

MAX_EVENT_TYPES: Final = 100
MAX_DESCRIPTION: Final = 500
#: A type name is far shorter; this bounds what a pattern may cost to store and echo.
MAX_EVENT_TYPE_LENGTH: Final = 200
#: What a subscription's ``state`` may be set to.
SUBSCRIPTION_STATES: Final = frozenset({"ACTIVE", "PAUSED"})
#: What an update mask may name.
SUBSCRIPTION_FIELDS: Final = frozenset({"url", "event_types", "description", "state"})
#: How long the old secret still signs after a rotation, unless the request says.
DEFAULT_PREVIOUS_SECRET_TTL: Final = timedelta(hours=24)
MAX_PREVIOUS_SECRET_TTL: Final = timedelta(days=7)
#: A delivery that may be sent again; a pending one is still being tried.
REDELIVERABLE: Final = frozenset({"DELIVERED", "DEAD_LETTERED"})


@dataclass(frozen=True, slots=True)
class SubscriptionSpec:
    """The client-set fields of a subscription (``state`` by its enum name;
    ``STATE_UNSPECIFIED`` when the request left it unset)."""

    url: str = ""
    event_types: tuple[str, ...] = ()
    description: str = ""
    state: str = "STATE_UNSPECIFIED"


def normalize_spec(spec: SubscriptionSpec) -> SubscriptionSpec:
    """Surrounding blanks dropped; repeated event types kept once, in order (the
    same type twice would deliver nothing twice, it only looks like it would)."""
    types = tuple(dict.fromkeys(t.strip() for t in spec.event_types))
    return replace(
        spec,
        url=spec.url.strip(),
        event_types=types,
        description=unicodedata.normalize("NFC", spec.description.strip()),
    )


def check_event_type(pattern: str) -> str:
    """Why ``pattern`` is not an event type a subscription can name ("" when it is):
    an exact type name, a prefix of type names ending in ``*``, or ``*`` alone."""
    if not pattern:
        return "must not be empty"
    if len(pattern) > MAX_EVENT_TYPE_LENGTH:
        return f"must be at most {MAX_EVENT_TYPE_LENGTH} characters"
    if pattern == "*":
        return ""
    if pattern.endswith("*"):
        prefix = pattern[:-1]
        if "*" in prefix or not prefix.startswith("cardinsa.") or not prefix.endswith("."):
            return (
                "a prefix pattern is whole name segments followed by '*' "
                "(like 'cardinsa.core.claim.*')"
            )
        # The prefix must be able to begin some type name: complete it and check.
        segments = prefix[:-1].split(".")
        if len(segments) > 4:
            return "is longer than any event type name"
        candidate = ".".join([*segments, *["x"] * (4 - len(segments)), "v1"])
        if not EVENT_TYPE.match(candidate):
            return "no event type name starts with this prefix"
        return ""
    if not EVENT_TYPE.match(pattern):
        return (
            "must be an event type (like 'cardinsa.core.policy.bound.v1'), a prefix "
            "ending in '*' (like 'cardinsa.core.claim.*') or '*'"
        )
    return ""


def check_spec(
    spec: SubscriptionSpec,
    *,
    prefix: str,
    allow_http: bool,
    fields: Iterable[str] | None = None,
) -> list[FieldViolation]:
    """Violations of a normalised spec; ``fields`` limits the check to a mask.
    The URL's host is not resolved here (see :func:`target_problem`)."""
    wanted = set(SUBSCRIPTION_FIELDS if fields is None else fields)
    out: list[FieldViolation] = []
    if "url" in wanted:
        if not spec.url:
            out.append(FieldViolation(f"{prefix}.url", "required"))
        else:
            _, why = check_url(spec.url, allow_http=allow_http)
            if why:
                out.append(FieldViolation(f"{prefix}.url", why))
    if "event_types" in wanted:
        field = f"{prefix}.event_types"
        if not spec.event_types:
            out.append(FieldViolation(field, "at least one event type is required"))
        elif len(spec.event_types) > MAX_EVENT_TYPES:
            out.append(FieldViolation(field, f"at most {MAX_EVENT_TYPES} event types"))
        else:
            for index, pattern in enumerate(spec.event_types):
                why = check_event_type(pattern)
                if why:
                    out.append(FieldViolation(f"{field}[{index}]", why))
    if "description" in wanted:
        if len(spec.description) > MAX_DESCRIPTION:
            out.append(
                FieldViolation(
                    f"{prefix}.description", f"must be at most {MAX_DESCRIPTION} characters"
                )
            )
        elif any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in spec.description):
            out.append(
                FieldViolation(f"{prefix}.description", "must not contain control characters")
            )
    # On create an unset state means ACTIVE; an update that names it must say which.
    unset_ok = fields is None and spec.state == "STATE_UNSPECIFIED"
    if "state" in wanted and spec.state not in SUBSCRIPTION_STATES and not unset_ok:
        out.append(FieldViolation(f"{prefix}.state", "must be ACTIVE or PAUSED"))
    return out


def target_problem(addresses: Sequence[str], *, allow_private: bool) -> str:
    """Why a host resolving to ``addresses`` may not receive webhooks ("" when it
    may): every address must be allowed, or a second lookup -- the dispatcher's,
    at connection time -- could land on the one that is not."""
    if not addresses:
        return "the host has no address"
    if all(address_allowed(a, allow_private=allow_private) for a in addresses):
        return ""
    return (
        "must be a public host: it is or resolves to a loopback, private, link-local "
        "or otherwise non-public address"
    )


def previous_secret_ttl(seconds: int) -> timedelta:
    """How long the previous secret stays in use after a rotation (0: the default)."""
    if seconds < 0 or timedelta(seconds=seconds) > MAX_PREVIOUS_SECRET_TTL:
        limit = int(MAX_PREVIOUS_SECRET_TTL.total_seconds())
        raise InvalidArgument(
            "previous_secret_ttl_seconds is out of range",
            field_violations=[
                FieldViolation(
                    "previous_secret_ttl_seconds",
                    f"must be between 0 (24 hours) and {limit} (7 days)",
                )
            ],
        )
    return timedelta(seconds=seconds) if seconds else DEFAULT_PREVIOUS_SECRET_TTL


def audited_url(url: str) -> str:
    """The URL as the audit log records it: without its query, where receivers
    often put a token of their own."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def secret_hint(secret: str) -> str:
    """The last four characters: enough to tell two secrets apart, not to guess one."""
    return secret[-4:]


def check_redelivery(state: str, delivery_id: str) -> None:
    """Only a finished delivery (delivered or dead-lettered) can be sent again."""
    if state not in REDELIVERABLE:
        raise FailedPrecondition(
            "the delivery is still pending: it is being tried and cannot be redelivered",
            reason="DELIVERY_PENDING",
            metadata={"delivery_id": delivery_id, "current_state": state},
        )
