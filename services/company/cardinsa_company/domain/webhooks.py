"""Webhooks: what a delivery looks like on the wire, and how it is signed.

A delivery is an HTTP POST of one event as a CloudEvents JSON document
(structured mode, ``Content-Type: application/cloudevents+json``), with

- ``Cardinsa-Timestamp``: Unix seconds when this attempt was signed;
- ``Cardinsa-Signature``: ``v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>``,
  one ``v1=`` entry per secret in use (two while a rotation overlaps),
  comma-separated;
- ``Cardinsa-Event-Id``, ``Cardinsa-Event-Type``, ``Cardinsa-Delivery-Id`` and
  ``Cardinsa-Delivery-Attempt``.

A receiver recomputes the HMAC over the timestamp header, a dot and the raw
body, compares it in constant time with any ``v1`` entry, refuses timestamps
older than a few minutes (replays), and de-duplicates by the event id (the
same on every attempt and redelivery).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
from collections.abc import Iterable, Sequence
from typing import Any, Final
from urllib.parse import SplitResult, urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from google.protobuf import json_format, symbol_database

from cardinsa.events.v1 import events_pb2

__all__ = [
    "CONTENT_TYPE",
    "DELIVERY_ATTEMPT_HEADER",
    "DELIVERY_ID_HEADER",
    "EVENT_ID_HEADER",
    "EVENT_TYPE_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "SecretCipher",
    "SecretDecryptionError",
    "address_allowed",
    "check_url",
    "cloud_event_body",
    "matches",
    "new_secret",
    "sign",
    "signature_header",
    "verify",
]

CONTENT_TYPE: Final = "application/cloudevents+json"
TIMESTAMP_HEADER: Final = "Cardinsa-Timestamp"
SIGNATURE_HEADER: Final = "Cardinsa-Signature"
EVENT_ID_HEADER: Final = "Cardinsa-Event-Id"
EVENT_TYPE_HEADER: Final = "Cardinsa-Event-Type"
DELIVERY_ID_HEADER: Final = "Cardinsa-Delivery-Id"
DELIVERY_ATTEMPT_HEADER: Final = "Cardinsa-Delivery-Attempt"
SECRET_PREFIX: Final = "whsec_"  # noqa: S105 (a prefix, not a secret)
#: A receiver's default tolerance for the timestamp (seconds), as in the docs.
DEFAULT_TOLERANCE_S: Final = 300


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` and 32 random bytes, URL-safe base64."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``secret``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secrets_in_use: Iterable[str], timestamp: int, body: bytes) -> str:
    """``v1=<hex>[,v1=<hex>]``: one signature per secret (current first)."""
    return ",".join(f"v1={sign(s, timestamp, body)}" for s in secrets_in_use)


def verify(
    secret: str,
    header: str,
    timestamp: str,
    body: bytes,
    *,
    now: float,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> bool:
    """What a receiver does: a fresh timestamp and a matching ``v1`` entry."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs(now - sent) > tolerance_s:
        return False
    expected = sign(secret, sent, body).encode()
    for part in header.split(","):
        scheme, _, value = part.strip().partition("=")
        if scheme == "v1" and hmac.compare_digest(value.encode(), expected):
            return True
    return False


def matches(patterns: Sequence[str], event_type: str) -> bool:
    """Whether a subscription's ``event_types`` take ``event_type``: an exact
    name, a prefix ending in ``*``, or ``*`` alone."""
    for pattern in patterns:
        if pattern.endswith("*"):
            if event_type.startswith(pattern[:-1]):
                return True
        elif pattern == event_type:
            return True
    return False


MAX_URL_LENGTH: Final = 2048


def address_allowed(address: str, *, allow_private: bool) -> bool:
    """Whether a webhook may connect to ``address`` (an IP literal).

    Only globally routable unicast addresses: no loopback, private (RFC 1918,
    unique local), link-local (the cloud metadata service at 169.254.169.254),
    shared (100.64/10), multicast, unspecified or reserved ranges -- an IPv6
    address that embeds an IPv4 one (mapped, 6to4, NAT64 well-known prefix)
    is judged by that IPv4 address. ``allow_private`` (a test or laptop
    setting) allows every address but the unspecified and multicast ones.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in ipaddress.IPv6Network("64:ff9b::/96"):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            ip = embedded
    if ip.is_unspecified or ip.is_multicast:
        return False
    if allow_private:
        return True
    return ip.is_global and not ip.is_reserved


def check_url(url: str, *, allow_http: bool) -> tuple[SplitResult | None, str]:
    """Parse a subscription URL: ``(parts, "")`` or ``(None, why it is refused)``.

    The host's addresses are checked separately (:func:`address_allowed` after
    resolution), at subscription and at every connection.
    """
    if not url or len(url) > MAX_URL_LENGTH:
        return None, f"must be an absolute URL of at most {MAX_URL_LENGTH} characters"
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        return None, "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None, "is not a valid URL"
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        return None, "must be an https URL" if not allow_http else "must be an http(s) URL"
    if not parts.hostname:
        return None, "must name a host"
    if parts.username is not None or parts.password is not None:
        return None, "must not carry a user name or password"
    if parts.fragment:
        return None, "must not have a fragment"
    if port == 0:
        return None, "must not use port 0"
    return parts, ""


def _payload_json(event: events_pb2.Event) -> Any:
    """The payload as JSON, as the REST API writes messages (proto field names)."""
    name = event.data_schema or event.data.TypeName()
    try:
        message_class = symbol_database.Default().GetSymbol(name)
    except KeyError:
        # A payload this build does not know: its bytes, so nothing is lost.
        return {"@type": event.data.type_url, "value": base64.b64encode(event.data.value).decode()}
    message = message_class()
    message.ParseFromString(event.data.value)
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def cloud_event_body(event: events_pb2.Event) -> bytes:
    """The exact bytes POSTed for ``event``: a CloudEvents 1.0 JSON document
    (``companyid`` and ``sequence`` are extension attributes)."""
    document: dict[str, Any] = {
        "specversion": "1.0",
        "id": event.id,
        "source": f"/cardinsa/{event.source}",
        "type": event.type,
        "subject": event.subject,
        "time": event.time.ToJsonString(),
        "datacontenttype": "application/json",
        "dataschema": event.data_schema,
        "companyid": event.company_id,
        "sequence": str(event.sequence),
        "data": _payload_json(event),
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


class SecretDecryptionError(Exception):
    """A stored secret cannot be decrypted (another key, or altered bytes)."""


_VERSION: Final = b"\x01"
_NONCE_BYTES: Final = 12
_INFO: Final = b"cardinsa webhook secret v1"


def _derive(key: str) -> AESGCM:
    material = key.encode()
    if len(material) < 32:
        raise ValueError("the webhook secret encryption key must be at least 32 bytes long")
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(material)
    return AESGCM(derived)


class SecretCipher:
    """Webhook secrets at rest: AES-256-GCM under a key from the settings, bound
    to the subscription id; ``previous_keys`` still decrypt after a key change."""

    def __init__(self, key: str, *, previous_keys: Iterable[str] = ()) -> None:
        self._current = _derive(key)
        self._previous = tuple(_derive(k) for k in previous_keys)

    def encrypt(self, subscription_id: str, secret: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        aad = _VERSION + subscription_id.encode()
        return _VERSION + nonce + self._current.encrypt(nonce, secret.encode(), aad)

    def decrypt(self, subscription_id: str, blob: bytes) -> str:
        if len(blob) <= 1 + _NONCE_BYTES or blob[:1] != _VERSION:
            raise SecretDecryptionError(f"subscription {subscription_id}: unknown secret format")
        nonce, ciphertext = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        aad = _VERSION + subscription_id.encode()
        for cipher in (self._current, *self._previous):
            try:
                return cipher.decrypt(nonce, ciphertext, aad).decode()
            except InvalidTag:
                continue
        raise SecretDecryptionError(
            f"subscription {subscription_id}: the secret cannot be decrypted with the "
            "configured webhook secret encryption key"
        )
