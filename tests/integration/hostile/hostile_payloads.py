"""Payloads for attacks through the gateway's REST surface (used by gateway-level suites).

The gRPC-level suites of this directory do not start Envoy. A gateway suite (a
module ``test_attack_gateway_*.py`` here, with the gateway fixture) sends these
to every REST route the descriptors declare and records each case with the
``attacks`` fixture, so its rows join the same end-of-run table:

* :func:`rest_routes` -- every ``google.api.http`` route of a target's services,
  with the path filled from a tenant's ids (:func:`fill_route`);
* :data:`REST_ATTACKS` -- the named bodies: oversized (beyond Envoy's buffer
  limit), deeply nested JSON, malformed JSON, JSON of the wrong types, unknown
  fields, duplicate keys, a body on a GET; each with the statuses that mean
  the gateway held (4xx, never 5xx);
* the SQL/filter injection lists of support/request_fuzz.py apply unchanged to
  the ``filter``/``order_by`` query parameters of the List routes.

A schemathesis run over the gateway's OpenAPI description records one row
(``attacks.attempt("REST fuzz from the OpenAPI description (schemathesis)", ...)``)
with the check "no 5xx".
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from support.request_fuzz import HOSTILE_STRINGS, http_rule

MIB = 1024 * 1024


def oversized_json_body(size_bytes: int, field: str = "email") -> bytes:
    """A syntactically valid JSON object whose one string field has ``size_bytes``."""
    return b'{"' + field.encode() + b'": "' + b"a" * size_bytes + b'"}'


def deep_json(depth: int, *, arrays: bool = False) -> bytes:
    """``{"a": {"a": ... 1 ...}}`` (or ``[[[...]]]``) nested ``depth`` levels."""
    if arrays:
        return b"[" * depth + b"1" + b"]" * depth
    return b'{"a": ' * depth + b"1" + b"}" * depth


def wrong_types_json(method: MethodDescriptor) -> bytes:
    """Every field of the request with a JSON value of another type (string fields
    get objects, numbers get strings, booleans get arrays, messages get numbers)."""
    wrong: dict[str, object] = {}
    for fd in method.input_type.fields:
        if fd.type == fd.TYPE_STRING:
            wrong[fd.json_name] = {"$ne": ""}
        elif fd.type in (fd.TYPE_INT32, fd.TYPE_INT64, fd.TYPE_UINT32, fd.TYPE_UINT64):
            wrong[fd.json_name] = "1 OR 1=1"
        elif fd.type == fd.TYPE_BOOL:
            wrong[fd.json_name] = [True]
        else:
            wrong[fd.json_name] = 12345
    return json.dumps(wrong).encode()


@dataclass(frozen=True)
class RestAttack:
    """One hostile body; ``held`` says which HTTP status means the gateway held."""

    name: str
    body: Callable[[MethodDescriptor], bytes]
    content_type: str = "application/json"
    held: Callable[[int], bool] = lambda status: 400 <= status < 500


REST_ATTACKS: tuple[RestAttack, ...] = (
    RestAttack(
        "REST oversized body (5 MiB)",
        lambda _m: oversized_json_body(5 * MIB),
        held=lambda status: status in (400, 413),
    ),
    RestAttack("REST deeply nested JSON (10 000 objects)", lambda _m: deep_json(10_000)),
    RestAttack(
        "REST deeply nested JSON (10 000 arrays)", lambda _m: deep_json(10_000, arrays=True)
    ),
    RestAttack("REST malformed JSON", lambda _m: b'{"email": "a", '),
    RestAttack("REST JSON of the wrong types", wrong_types_json),
    RestAttack(
        "REST unknown and duplicate fields",
        lambda _m: b'{"__proto__": {"admin": true}, "email": "a", "email": "b"}',
    ),
    RestAttack(
        "REST hostile strings in every JSON field",
        lambda m: json.dumps(
            {
                fd.json_name: HOSTILE_STRINGS[i % len(HOSTILE_STRINGS)]
                for i, fd in enumerate(m.input_type.fields)
            }
        ).encode(),
    ),
    RestAttack("REST body that is not JSON", lambda _m: b"\xff\xfe\x00garbage", "application/json"),
)


@dataclass(frozen=True)
class RestRoute:
    service: ServiceDescriptor
    method: MethodDescriptor
    verb: str
    template: str


def rest_routes(services: Sequence[ServiceDescriptor]) -> list[RestRoute]:
    """Every REST route the services declare (``google.api.http``)."""
    routes: list[RestRoute] = []
    for service in services:
        for method in service.methods:
            verb, template = http_rule(method)
            if verb:
                routes.append(RestRoute(service, method, verb.upper(), template))
    return routes


_VARIABLE = re.compile(r"\{([a-z_.]+)(?:=[^}]*)?\}")


def fill_route(
    template: str, ids: Mapping[str, str], default: str = "00000000-0000-0000-0000-000000000000"
) -> str:
    """``/v1/users/{user_id}`` → ``/v1/users/<id>``; ``{user.id}`` uses ``user_id``."""

    def value(match: re.Match[str]) -> str:
        variable = match.group(1)
        parts = variable.split(".")
        key = f"{parts[-2]}_id" if parts[-1] == "id" and len(parts) > 1 else parts[-1]
        return ids.get(key, default)

    return _VARIABLE.sub(value, template)
