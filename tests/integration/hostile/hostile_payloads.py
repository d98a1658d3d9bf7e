"""Payloads for attacks through the gateway's REST surface (test_attack_rest.py).

The gRPC-level suites of this directory do not start Envoy. test_attack_rest.py
(with the ``hostile_gateway`` fixture) sends these to every REST route the
descriptors declare and records each case with the ``attacks`` fixture, so its
rows join the same end-of-run table:

* :func:`rest_routes` -- every ``google.api.http`` route of a target's services,
  with the path filled from a tenant's ids (:func:`fill_route`);
* :data:`REST_ATTACKS` -- the named bodies: oversized (beyond Envoy's buffer
  limit), deeply nested JSON, malformed JSON, JSON of the wrong types, unknown
  fields, duplicate keys, hostile strings, bytes that are not JSON; each with
  the statuses that mean the gateway held (4xx, never 5xx; a success too where
  the body can still be a valid request: unknown keys are ignored, as the
  proto3 JSON mapping says, and a hostile string may be acceptable text);
  every one of them also goes to the GET and DELETE routes (a body where the
  contract has none);
* the SQL/filter injection lists of support/request_fuzz.py apply unchanged to
  the ``filter``/``order_by`` query parameters of the List routes.

The schemathesis run over the gateway's OpenAPI description lives with the
gateway tests (tests/integration/gateway/test_gateway_schemathesis.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from google.api import annotations_pb2
from google.protobuf.descriptor import (
    Descriptor,
    FieldDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)
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


def body_fields(method: MethodDescriptor) -> list[FieldDescriptor]:
    """The fields a REST body of ``method`` carries: those of the message its
    ``body`` names (``"*"``: the request; ``"policy"``: the Policy), or the
    request's where the route declares no body."""
    body = method.GetOptions().Extensions[annotations_pb2.http].body
    message: Descriptor = method.input_type
    if body and body != "*":
        field = method.input_type.fields_by_name[body]
        if field.message_type is not None:
            message = field.message_type
    return list(message.fields)


def _wrong_value(fd: FieldDescriptor) -> object:
    if fd.is_repeated:
        return {"not": "a list"}
    if fd.type == fd.TYPE_STRING:
        return {"$ne": ""}
    if fd.type in (fd.TYPE_INT32, fd.TYPE_INT64, fd.TYPE_UINT32, fd.TYPE_UINT64):
        return "1 OR 1=1"
    if fd.type == fd.TYPE_BOOL:
        return [True]
    return 12345


def wrong_types_json(method: MethodDescriptor) -> bytes:
    """Every body field with a JSON value of another type (string fields get
    objects, numbers get strings, booleans get arrays, messages get numbers,
    lists get objects); a body without fields gets an array instead of an object."""
    fields = body_fields(method)
    if not fields:
        return b'[{"$ne": ""}]'
    return json.dumps({fd.name: _wrong_value(fd) for fd in fields}).encode()


def _path_bound(method: MethodDescriptor) -> set[str]:
    """Field paths the route's template binds (``user_id``, ``policy.id``): a
    body that sets them too is refused as a collision before anything else."""
    _verb, template = http_rule(method)
    return {match.group(1) for match in _VARIABLE.finditer(template)}


def hostile_strings_json(method: MethodDescriptor) -> bytes:
    """Every string field of the body, nested resources included, set to one of
    the hostile strings (in turn); fields the path binds keep the path's value."""
    strings = iter(range(10**6))
    bound = _path_bound(method)
    body_name = method.GetOptions().Extensions[annotations_pb2.http].body

    def fill(fields: Sequence[FieldDescriptor], prefix: str, depth: int) -> dict[str, object]:
        body: dict[str, object] = {}
        for fd in fields:
            if prefix + fd.name in bound:
                continue
            if fd.type == fd.TYPE_STRING:
                text = HOSTILE_STRINGS[next(strings) % len(HOSTILE_STRINGS)]
                body[fd.name] = [text] if fd.is_repeated else text
            elif (
                fd.message_type is not None
                and fd.message_type.full_name.startswith("cardinsa.")
                and depth < 3
            ):
                nested = fill(fd.message_type.fields, f"{prefix}{fd.name}.", depth + 1)
                body[fd.name] = [nested] if fd.is_repeated else nested
        return body

    prefix = f"{body_name}." if body_name and body_name != "*" else ""
    return json.dumps(fill(body_fields(method), prefix, 0)).encode()


def _refused(status: int) -> bool:
    return 400 <= status < 500


def _refused_or_accepted(status: int) -> bool:
    return 200 <= status < 300 or 400 <= status < 500


@dataclass(frozen=True)
class RestAttack:
    """One hostile body; ``held`` says which HTTP status means the gateway held
    (a 4xx must also have written nothing: the suite checks)."""

    name: str
    body: Callable[[MethodDescriptor], bytes]
    content_type: str = "application/json"
    held: Callable[[int], bool] = _refused


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
        held=_refused_or_accepted,
    ),
    RestAttack(
        "REST hostile strings in every JSON field",
        hostile_strings_json,
        held=_refused_or_accepted,
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
