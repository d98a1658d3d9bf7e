"""The gateway-level payloads (hostile_payloads.py) are what they claim, for every
REST route the targets declare -- checked here so a gateway suite can rely on them."""

from __future__ import annotations

import json

import pytest
from hostile_harness import TARGET_SPECS
from hostile_payloads import (
    MIB,
    REST_ATTACKS,
    deep_json,
    fill_route,
    hostile_strings_json,
    oversized_json_body,
    rest_routes,
    wrong_types_json,
)
from support.request_fuzz import HOSTILE_STRINGS


@pytest.mark.parametrize("spec", TARGET_SPECS, ids=[s.name for s in TARGET_SPECS])
def test_every_rpc_has_a_rest_route_and_every_route_fills(spec: object) -> None:
    services = spec.services  # type: ignore[attr-defined]
    routes = rest_routes(services)
    assert len(routes) == sum(len(s.methods) for s in services)
    ids = {"user_id": "u", "company_id": "c", "department_id": "d", "unit_id": "n"}
    for route in routes:
        path = fill_route(route.template, ids)
        assert path.startswith("/") and "{" not in path and "}" not in path, route.template
    assert fill_route("/v1/users/{user.id}", {"user_id": "42"}) == "/v1/users/42"


@pytest.mark.parametrize("spec", TARGET_SPECS, ids=[s.name for s in TARGET_SPECS])
def test_rest_attack_bodies_are_built_for_every_route(spec: object) -> None:
    for route in rest_routes(spec.services):  # type: ignore[attr-defined]
        for attack in REST_ATTACKS:
            body = attack.body(route.method)
            assert isinstance(body, bytes) and body, attack.name
    assert len(oversized_json_body(5 * MIB)) > 5 * MIB
    assert json.loads(oversized_json_body(10))["email"] == "a" * 10
    nested = deep_json(10_000)
    assert nested.count(b"{") == nested.count(b"}") == 10_000
    assert json.loads(deep_json(50)) is not None
    statuses = {a.name: [s for s in (200, 400, 413, 500, 502) if a.held(s)] for a in REST_ATTACKS}
    assert all(400 in held and 500 not in held and 502 not in held for held in statuses.values())
    # Only bodies that can still be a valid request may succeed.
    may_succeed = {"REST unknown and duplicate fields", "REST hostile strings in every JSON field"}
    assert {name for name, held in statuses.items() if 200 in held} == may_succeed, statuses


def test_body_payloads_follow_the_routes_body_field() -> None:
    """A route whose body is one field (``body: "policy"``) gets that message's
    fields; a request without fields gets no empty (valid) object."""
    by_name = {
        route.method.name: route.method
        for spec in TARGET_SPECS
        for route in rest_routes(spec.services)
    }
    update = json.loads(wrong_types_json(by_name["UpdatePolicy"]))
    assert "policyholder_id" in update and "policy" not in update, update
    assert json.loads(wrong_types_json(by_name["GetServerInfo"])) == [{"$ne": ""}]
    strings = json.loads(hostile_strings_json(by_name["CreateUser"]))
    assert strings["password"] in HOSTILE_STRINGS, strings
    assert strings["user"]["email"] in HOSTILE_STRINGS, strings
