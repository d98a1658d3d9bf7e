"""Attack suite: hostile REST bodies through the real gateway, to every REST route.

Each body of :data:`hostile_payloads.REST_ATTACKS` -- 5 MiB (beyond the
gateway's 1 MiB limit), 10 000 levels of nested objects or arrays, malformed
JSON, JSON of the wrong types, unknown and duplicate keys, hostile strings in
every field, bytes that are not JSON -- goes to every ``google.api.http`` route
of every target, GETs and DELETEs included (a body where the contract has
none), through a real Envoy in front of this suite's identity, company and core
servers (``hostile_gateway``). The caller is the fuzz tenant's admin and the
path carries that tenant's own ids, so each request reaches a real resource it
may act on.

Every answer is checked: never a 5xx; a refusal (4xx) in the one JSON error
shape and with the target's tables exactly as before (no half-write); a
success only where the body can still be a valid request (unknown keys are
ignored, a hostile string may be acceptable text), and never on a GET or
DELETE, whose body is refused whatever it holds; no ``grpc-*`` headers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from hostile_attacks import AttackLog
from hostile_harness import TARGET_SPECS, Database, ServiceTarget, Tenants, changed
from hostile_payloads import REST_ATTACKS, RestAttack, RestRoute, fill_route, rest_routes
from support.gateway_harness import Gateway
from support.request_fuzz import SESSION_ENDING
from support.rest import Reply, exchange

TARGETS = [spec.name for spec in TARGET_SPECS]
# Not Logout: it would end the fuzz admin's token every later call sends (a
# revocation, see support.request_fuzz.SESSION_ENDING); not the stream (REST
# bodies are for unary calls).
ROUTES = {
    spec.name: [
        route
        for route in rest_routes(spec.services)
        if route.method.full_name not in SESSION_ENDING and not route.method.server_streaming
    ]
    for spec in TARGET_SPECS
}
# Path variables that are not ids: a product version is a number.
NON_ID_VARIABLES = {"version": "1"}


def send_sync(
    gateway: Gateway, verb: str, path: str, body: bytes, *, content_type: str, token: str
) -> Reply:
    """One request on its own connection. Envoy may answer an oversized body
    (413) and close before the client has sent all of it: the answer is read
    all the same."""
    headers = {"content-type": content_type, "authorization": f"Bearer {token}"}
    return exchange(gateway.host, gateway.port, verb, path, body=body, headers=headers)


BODYLESS_VERBS = ("GET", "DELETE")


def problems(attack: RestAttack, route: RestRoute, reply: Reply) -> list[str]:
    """What is wrong with the gateway's answer to ``attack`` (nothing if it held)."""
    found: list[str] = []
    refused = 400 <= reply.status < 500
    if not attack.held(reply.status):
        found.append(f"status {reply.status}")
    elif route.verb in BODYLESS_VERBS and not refused:
        found.append(f"status {reply.status} for a body on a {route.verb}")
    if reply.header("content-type") != "application/json":
        found.append(f"content-type {reply.header('content-type')!r}")
    try:
        body: Any = json.loads(reply.body)
    except ValueError:
        body = None
    if refused and not (
        isinstance(body, dict)
        and set(body) <= {"code", "message", "details"}
        and isinstance(body.get("code"), int)
        and isinstance(body.get("message"), str)
        and body["message"]
    ):
        found.append(f"not the JSON error shape: {reply.body[:160]!r}")
    elif not isinstance(body, dict):
        found.append(f"not a JSON object: {reply.body[:160]!r}")
    if reply.grpc_headers():
        found.append(f"grpc headers {reply.grpc_headers()}")
    return found


@pytest.fixture(params=TARGETS)
def target(
    request: pytest.FixtureRequest, hostile_targets: dict[str, ServiceTarget]
) -> ServiceTarget:
    return hostile_targets[request.param]


async def _attack_routes(
    target: ServiceTarget,
    attack: RestAttack,
    routes: list[RestRoute],
    *,
    gateway: Gateway,
    tenants: Tenants,
    db: Database,
    body_of: Callable[[RestRoute], bytes] | None = None,
) -> list[str]:
    """Send ``attack`` (or ``body_of(route)``) to each route as the fuzz tenant's
    admin; what went wrong."""
    fuzz = tenants.fuzz
    ids = {**fuzz.ids, **NON_ID_VARIABLES}
    failures: list[str] = []
    for route in routes:
        path = fill_route(route.template, ids)
        body = body_of(route) if body_of is not None else attack.body(route.method)
        before = await db.fingerprint(target.schemas, target.volatile_tables)
        reply = await asyncio.to_thread(
            send_sync,
            gateway,
            route.verb,
            path,
            body,
            content_type=attack.content_type,
            token=fuzz.token,
        )
        if target.settle is not None:
            await target.settle()
        after = await db.fingerprint(target.schemas, target.volatile_tables)
        found = problems(attack, route, reply)
        moved = changed(
            before, after, target.failure_side_effects.get(route.method.name, frozenset())
        )
        if moved and not 200 <= reply.status < 300:
            found.append(f"refused ({reply.status}) but tables changed: {moved}")
        if found:
            failures.append(f"{route.verb} {route.template}: {'; '.join(found)}")
    return failures


@pytest.mark.parametrize("attack", REST_ATTACKS, ids=[a.name for a in REST_ATTACKS])
async def test_attack_rest_bodies_through_the_gateway_are_answered_cleanly(
    target: ServiceTarget,
    attack: RestAttack,
    *,
    hostile_gateway: Gateway,
    tenants: Tenants,
    hostile_db: Database,
    attacks: AttackLog,
) -> None:
    routes = ROUTES[target.name]
    with attacks.attempt(attack.name, f"{target.name}: {len(routes)} routes via the gateway"):
        failures = await _attack_routes(
            target, attack, routes, gateway=hostile_gateway, tenants=tenants, db=hostile_db
        )
        assert not failures, f"{len(failures)} of {len(routes)} routes:\n" + "\n".join(failures)


def _own_fields_json(route: RestRoute, ids: dict[str, str]) -> bytes:
    """A body that would be a valid request: the request's id fields, the tenant's own ids."""
    body = {fd.name: ids[fd.name] for fd in route.method.input_type.fields if fd.name in ids}
    return json.dumps(body or {"page_size": 1}).encode()


async def test_attack_rest_a_valid_body_on_get_or_delete_is_refused(
    target: ServiceTarget,
    *,
    hostile_gateway: Gateway,
    tenants: Tenants,
    hostile_db: Database,
    attacks: AttackLog,
) -> None:
    """A GET or DELETE whose body holds nothing but the request's own, valid
    fields is refused too (the transcoder would merge them into the request)."""
    routes = [r for r in ROUTES[target.name] if r.verb in BODYLESS_VERBS]
    ids = dict(tenants.fuzz.ids)
    attack = RestAttack(
        "REST body on a GET or DELETE (the request's own valid fields)",
        lambda _m: b"{}",
    )
    with attacks.attempt(attack.name, f"{target.name}: {len(routes)} GET/DELETE routes"):
        failures = await _attack_routes(
            target,
            attack,
            routes,
            gateway=hostile_gateway,
            tenants=tenants,
            db=hostile_db,
            body_of=lambda route: _own_fields_json(route, ids),
        )
        assert routes and not failures, "\n".join(failures)
