"""Payment providers: the port, and the signed-webhook adapter.

A payment provider (a card acquirer, a direct-debit or open-banking service)
tells the insurer that money arrived by calling a webhook. Core accepts such a
call only when it can prove who sent it and that it is fresh:

- ``Cardinsa-Provider-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]``:
  ``v1`` is HMAC-SHA256 under the provider's signing secret over the
  timestamp, a dot and the raw body (the scheme the large payment providers
  use). Several ``v1`` entries are allowed (a provider rotating its secret
  signs with both); several secrets are accepted (ours overlapping a rotation).
- The timestamp must be within ``tolerance_s`` of our clock (300 s by
  default), in either direction: a captured request replayed later is refused.
- A replay inside the window is harmless: the confirmation carries the
  provider's payment id, and a payment is recorded once per
  ``(company, provider, provider payment id)``.

The body is a JSON event. Only ``payment.succeeded`` records a payment; other
types are acknowledged and ignored (a provider retries what is not
acknowledged)::

    {"id": "evt_1", "type": "payment.succeeded", "created": 1796558400,
     "data": {"payment_id": "pay_1", "company_id": "<uuid>", "policy_id": "<uuid>",
              "amount_minor": 8350, "currency": "EUR",
              "received_date": "2026-12-07", "reference": "SEPA 4711"}}

``amount_minor`` is in the currency's minor units (cents for EUR, yen for JPY),
as providers send them; it becomes an exact :class:`Money`.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Protocol

from cardinsa_core.domain.money import Money, minor_units
from cardinsa_foundation.errors import FieldViolation, InvalidArgument, Unauthenticated

__all__ = [
    "PAYMENT_SUCCEEDED",
    "SIGNATURE_HEADER",
    "PaymentConfirmation",
    "PaymentProvider",
    "SignedWebhookProvider",
    "sign",
    "signature_header",
]

SIGNATURE_HEADER: Final = "cardinsa-provider-signature"
PAYMENT_SUCCEEDED: Final = "payment.succeeded"
DEFAULT_TOLERANCE_S: Final = 300
#: A body larger than this is not a payment event.
MAX_BODY_BYTES: Final = 64 * 1024
_HEX64: Final = re.compile(r"^[0-9a-f]{64}$")
_PROVIDER_ID: Final = re.compile(r"^[A-Za-z0-9_.:\-]{1,200}$")


@dataclass(frozen=True, slots=True)
class PaymentConfirmation:
    """Money a provider says it received for a policy."""

    provider: str
    event_id: str
    provider_payment_id: str
    company_id: uuid.UUID
    policy_id: uuid.UUID
    amount: Money
    received_date: datetime.date
    reference: str


class PaymentProvider(Protocol):
    """The port: turn one inbound webhook call into a confirmation (or None for
    an event that records nothing), or refuse it."""

    @property
    def name(self) -> str: ...

    def confirmation(
        self, headers: Mapping[str, str], body: bytes, now: datetime.datetime
    ) -> PaymentConfirmation | None: ...


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex ``v1`` signature of ``body`` sent at ``timestamp``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secrets: Sequence[str], timestamp: int, body: bytes) -> str:
    """The header value a provider sends (one ``v1`` per secret)."""
    return ",".join([f"t={timestamp}", *(f"v1={sign(s, timestamp, body)}" for s in secrets)])


def _refused(message: str, reason: str) -> Unauthenticated:
    return Unauthenticated(message, reason=reason)


def _parse_header(value: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for part in value.split(","):
        key, _, item = part.strip().partition("=")
        if key == "t" and item.isdigit() and len(item) <= 12:
            timestamp = int(item)
        elif key == "v1" and _HEX64.match(item):
            signatures.append(item)
    if timestamp is None or not signatures:
        raise _refused("the signature header is malformed", "SIGNATURE_MALFORMED")
    return timestamp, signatures


@dataclass(frozen=True)
class SignedWebhookProvider:
    """The adapter for providers that sign their webhooks with a shared secret.

    ``secrets``: the current signing secret first, then any still accepted
    during a rotation."""

    name: str
    secrets: tuple[str, ...]
    tolerance_s: int = DEFAULT_TOLERANCE_S

    def verify(self, headers: Mapping[str, str], body: bytes, now: datetime.datetime) -> None:
        """Refuse (UNAUTHENTICATED) a call that is unsigned, signed by no secret
        of ours, or not fresh."""
        value = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER), None)
        if not value:
            raise _refused("the call carries no provider signature", "SIGNATURE_MISSING")
        timestamp, signatures = _parse_header(value)
        if abs(now.timestamp() - timestamp) > self.tolerance_s:
            raise _refused(
                f"the signature timestamp is more than {self.tolerance_s} s from now",
                "SIGNATURE_STALE",
            )
        expected = [sign(secret, timestamp, body) for secret in self.secrets]
        # Every pair is compared (constant time each): no early exit on a match.
        matched = [hmac.compare_digest(e, s) for e in expected for s in signatures]
        if not any(matched):
            raise _refused("the provider signature does not match", "SIGNATURE_MISMATCH")

    def confirmation(
        self, headers: Mapping[str, str], body: bytes, now: datetime.datetime
    ) -> PaymentConfirmation | None:
        if len(body) > MAX_BODY_BYTES:
            raise InvalidArgument(
                "the event is too large",
                field_violations=[FieldViolation("body", f"at most {MAX_BODY_BYTES} bytes")],
            )
        self.verify(headers, body, now)
        return parse_event(self.name, body)


def _field(data: Mapping[str, Any], name: str, violations: list[FieldViolation]) -> Any:
    value = data.get(name)
    if value is None or value == "":
        violations.append(FieldViolation(f"data.{name}", "is required"))
    return value


def _uuid(value: Any, field: str, violations: list[FieldViolation]) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        violations.append(FieldViolation(field, "must be a UUID"))
        return uuid.UUID(int=0)


def parse_event(provider: str, body: bytes) -> PaymentConfirmation | None:
    """The confirmation in a verified event body; None for an event type that
    records nothing. INVALID_ARGUMENT (with field violations) for a body that
    is not such an event."""
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument(
            "the event is not JSON",
            field_violations=[FieldViolation("body", "must be a JSON object")],
        ) from None
    if not isinstance(event, dict):
        raise InvalidArgument(
            "the event is not a JSON object",
            field_violations=[FieldViolation("body", "must be a JSON object")],
        )
    violations: list[FieldViolation] = []
    event_id = event.get("id")
    if not isinstance(event_id, str) or not _PROVIDER_ID.match(event_id):
        violations.append(FieldViolation("id", "must be the provider's event id"))
    if event.get("type") != PAYMENT_SUCCEEDED:
        if violations:
            raise InvalidArgument("the event is not valid", field_violations=violations)
        return None
    data = event.get("data")
    if not isinstance(data, dict):
        violations.append(FieldViolation("data", "must be an object"))
        raise InvalidArgument("the event is not valid", field_violations=violations)
    payment_id = _field(data, "payment_id", violations)
    if payment_id is not None and not (
        isinstance(payment_id, str) and _PROVIDER_ID.match(payment_id)
    ):
        violations.append(FieldViolation("data.payment_id", "must be the provider's payment id"))
    company_id = _uuid(_field(data, "company_id", violations), "data.company_id", violations)
    policy_id = _uuid(_field(data, "policy_id", violations), "data.policy_id", violations)
    currency = _field(data, "currency", violations)
    amount_minor = _field(data, "amount_minor", violations)
    amount: Money | None = None
    if not isinstance(amount_minor, int) or isinstance(amount_minor, bool) or amount_minor <= 0:
        violations.append(FieldViolation("data.amount_minor", "must be a positive integer"))
    elif isinstance(currency, str):
        try:
            amount = Money.of(
                Decimal(amount_minor).scaleb(-minor_units(currency)), currency, field="data.amount"
            )
        except InvalidArgument as exc:
            violations.extend(exc.field_violations)
    else:
        violations.append(FieldViolation("data.currency", "must be an ISO 4217 code"))
    received: datetime.date | None = None
    try:
        received = datetime.date.fromisoformat(str(_field(data, "received_date", violations)))
    except ValueError:
        violations.append(FieldViolation("data.received_date", "must be a date YYYY-MM-DD"))
    reference = data.get("reference", "")
    if not isinstance(reference, str) or len(reference) > 200:
        violations.append(FieldViolation("data.reference", "must be text of at most 200"))
    if violations or amount is None or received is None:
        raise InvalidArgument("the payment event is not valid", field_violations=violations)
    return PaymentConfirmation(
        provider=provider,
        event_id=str(event_id),
        provider_payment_id=str(payment_id),
        company_id=company_id,
        policy_id=policy_id,
        amount=amount,
        received_date=received,
        reference=str(reference),
    )
