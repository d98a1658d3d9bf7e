"""REST/JSON through the real gateway in front of the real identity service.

What a REST client sees: login and JWKS (public), authenticated reads, every
error as ``{code, message, details}`` JSON — Envoy's own (401, 404, 400, 413,
429, 503) in the same shape as the services' (400 with field violations, 403,
404) — no ``grpc-*`` headers, the request id echoed, CORS, security headers,
the OpenAPI document and docs page, and the client address the services see.
"""

from __future__ import annotations

import itertools
import json
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import pytest
from support.gateway_harness import CORS_ORIGIN, LOGIN_LIMIT, Gateway, Reply
from support.identity_harness import PASSWORD, IdentityHarness

pytestmark = pytest.mark.asyncio(loop_scope="session")

GEN = Path(__file__).resolve().parents[3] / "gen"
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


_ADDRESSES = itertools.count(1)


def client_address() -> str:
    """A fresh documentation-range address per call: each gets its own login bucket."""
    return f"198.51.100.{next(_ADDRESSES)}"


def assert_error(reply: Reply, status: int, code: int) -> dict[str, Any]:
    """The one error shape: google.rpc.Status as JSON, no gRPC headers."""
    assert reply.status == status, (reply.status, reply.body)
    assert reply.header("content-type") == "application/json"
    body: dict[str, Any] = reply.json()
    assert set(body) <= {"code", "message", "details"}, body
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    assert reply.grpc_headers() == [], reply.headers
    request_id = reply.header("x-request-id")
    assert request_id
    infos = [d for d in body.get("details", []) if d["@type"].endswith("google.rpc.ErrorInfo")]
    assert len(infos) == 1, body
    request_infos = [
        d for d in body.get("details", []) if d["@type"].endswith("google.rpc.RequestInfo")
    ]
    assert [d["request_id"] for d in request_infos] == [request_id], body
    return body


def error_info(body: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = next(
        d for d in body["details"] if d["@type"].endswith("google.rpc.ErrorInfo")
    )
    return found


async def test_login_jwks_and_an_authenticated_read(
    gateway: Gateway, identity: IdentityHarness
) -> None:
    account = identity.admin_a
    login = await gateway.request(
        "POST",
        "/v1/auth:login",
        {"email": account.email, "password": account.password},
        client=client_address(),
    )
    assert login.status == 200, login.body
    assert login.grpc_headers() == []
    tokens = login.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"].endswith("s")  # Duration as a JSON string
    assert "access_token_expire_time" in tokens  # proto field names

    jwks = await gateway.request("GET", "/.well-known/jwks.json")
    assert jwks.status == 200
    assert jwks.grpc_headers() == []
    keys = jwks.json()["keys"]
    assert keys and all(k["kid"] and k["kty"] in {"OKP", "EC"} for k in keys)

    user = await gateway.request(
        "GET", f"/v1/users/{account.user_id}", token=tokens["access_token"]
    )
    assert user.status == 200, user.body
    assert user.json()["email"] == account.email
    assert user.grpc_headers() == []
    for name, value in SECURITY_HEADERS.items():
        assert user.header(name) == value
    assert (user.header("strict-transport-security") or "").startswith("max-age=")
    assert user.header("cache-control") == "no-store"

    # A query string as form encoding (httpx, requests, generated clients) writes
    # it: "+" is a space, "%2B" a plus.
    wanted = {"filter": f'email = "{account.email}"'}
    for query in (
        urllib.parse.urlencode(wanted),  # spaces as "+"
        urllib.parse.urlencode(wanted, quote_via=urllib.parse.quote),  # as "%20"
    ):
        found = await gateway.request("GET", f"/v1/users?{query}", token=tokens["access_token"])
        assert found.status == 200, (query, found.body)
        assert [u["email"] for u in found.json()["users"]] == [account.email]
    plus = urllib.parse.urlencode({"filter": 'email = "a+b@example.test"'})
    assert "%2B" in plus
    none = await gateway.request("GET", f"/v1/users?{plus}", token=tokens["access_token"])
    assert none.status == 200 and none.json().get("users", []) == [], none.body


async def test_missing_and_bad_tokens_are_401_json(
    gateway: Gateway, identity: IdentityHarness
) -> None:
    path = f"/v1/users/{identity.admin_a.user_id}"
    missing = assert_error(await gateway.request("GET", path), 401, 16)
    assert error_info(missing)["domain"] == "gateway.cardinsa.io"
    bad = await gateway.request("GET", path, token="not.a.jwt")
    assert_error(bad, 401, 16)
    assert "invalid_token" in (bad.header("www-authenticate") or "")
    # A token in the query string is not looked at (only the Authorization header),
    # and the parameter itself is unknown.
    token = await identity.token(identity.admin_a)
    query = await gateway.request("GET", f"{path}?access_token={token}")
    assert query.status in {400, 401}
    assert_error(query, query.status, 3 if query.status == 400 else 16)


async def test_forbidden_and_other_company_come_from_the_service(
    gateway: Gateway, identity: IdentityHarness
) -> None:
    plain = await identity.create_user(identity.admin_a)  # no role: no users.get
    token = await identity.token(plain)
    forbidden = assert_error(
        await gateway.request("GET", f"/v1/users/{identity.admin_a.user_id}", token=token),
        403,
        7,
    )
    assert error_info(forbidden)["domain"] == "cardinsa.io"
    assert error_info(forbidden)["reason"] == "PERMISSION_MISSING"

    admin_token = await identity.token(identity.admin_a)
    other = await gateway.request("GET", f"/v1/users/{identity.admin_b.user_id}", token=admin_token)
    assert_error(other, 404, 5)


async def test_unknown_path_and_unknown_verb_are_404_json(gateway: Gateway) -> None:
    body = assert_error(await gateway.request("GET", "/v1/nothing/here"), 404, 5)
    assert error_info(body)["reason"] == "NOT_FOUND"
    assert_error(await gateway.request("DELETE", "/v1/auth:login"), 404, 5)
    assert_error(await gateway.request("GET", "/"), 404, 5)


async def test_malformed_json_and_unknown_query_parameter_are_400_json(
    gateway: Gateway, identity: IdentityHarness
) -> None:
    malformed = await gateway.request(
        "POST",
        "/v1/auth:login",
        '{"email": "a@example.com", "password": ',
        {"content-type": "application/json"},
        client=client_address(),
    )
    assert_error(malformed, 400, 3)
    wrong_type = await gateway.request(
        "POST", "/v1/auth:login", {"email": ["x"], "password": 1}, client=client_address()
    )
    assert_error(wrong_type, 400, 3)

    token = await identity.token(identity.admin_a)
    unknown = await gateway.request("GET", "/v1/users?colour=blue", token=token)
    body = assert_error(unknown, 400, 3)
    assert "colour" in body["message"]


async def test_field_violations_reach_rest_clients(
    gateway: Gateway, identity: IdentityHarness
) -> None:
    token = await identity.token(identity.admin_a)
    secret = "a-password-that-must-never-be-logged-1234"
    reply = await gateway.request(
        "POST",
        "/v1/users?" + urllib.parse.urlencode({"password": secret}),
        {"email": "not-an-email", "given_name": "A", "family_name": "B"},
        token=token,
    )
    body = assert_error(reply, 400, 3)
    violations = [
        v
        for d in body["details"]
        if d["@type"].endswith("google.rpc.BadRequest")
        for v in d["field_violations"]
    ]
    assert any(v["field"].endswith("email") for v in violations), body

    # The access log has the request (by its id) but never the query string.
    line = await gateway.log_line(reply.header("x-request-id") or "")
    assert line["path"] == "/v1/users"
    assert line["grpc_method"] == "/cardinsa.identity.v1.UserService/CreateUser"
    assert line["status"] == 400
    assert secret not in gateway.access_log.read_text()


async def test_login_rate_limit_per_client_address(
    gateway: Gateway, identity: IdentityHarness
) -> None:
    me, someone_else = client_address(), "203.0.113.10"
    attempt = {"email": f"nobody-{uuid.uuid4().hex[:8]}@example.com", "password": "wrong" * 3}
    replies = [
        await gateway.request("POST", "/v1/auth:login", attempt, client=me)
        for _ in range(LOGIN_LIMIT + 1)
    ]
    assert [r.status for r in replies[:LOGIN_LIMIT]] == [401] * LOGIN_LIMIT
    limited = assert_error(replies[-1], 429, 8)
    assert error_info(limited)["reason"] == "RATE_LIMITED"
    # Another address is not affected, and neither are other routes.
    other = await gateway.request(
        "POST",
        "/v1/auth:login",
        {"email": identity.admin_b.email, "password": PASSWORD},
        client=someone_else,
    )
    assert other.status == 200
    assert (await gateway.request("GET", "/v1/jwks", client=me)).status == 200


async def test_request_id_is_passed_through_and_returned(
    gateway: Gateway, identity: IdentityHarness
) -> None:
    token = await identity.token(identity.admin_a)
    mine = f"client-{uuid.uuid4().hex}"
    reply = await gateway.request(
        "GET", f"/v1/users/{identity.admin_a.user_id}", headers={"x-request-id": mine}, token=token
    )
    assert reply.status == 200
    assert reply.headers["x-request-id"] == [mine]
    line = await gateway.log_line(mine)
    assert line["upstream"] == "identity"

    # Generated when absent, returned on errors too (and in RequestInfo).
    failed = await gateway.request("GET", "/v1/users/not-a-uuid", token=token)
    assert failed.status in {400, 404}
    assert_error(failed, failed.status, failed.json()["code"])

    generated = await gateway.request("GET", "/v1/jwks")
    assert uuid.UUID(generated.header("x-request-id") or "")

    # An id the services would not accept is refused, not silently replaced.
    bad = await gateway.request("GET", "/v1/jwks", headers={"x-request-id": "a b"})
    assert_error(bad, 400, 3)


async def test_cors(gateway: Gateway) -> None:
    preflight = await gateway.request(
        "OPTIONS",
        "/v1/users",
        headers={
            "origin": CORS_ORIGIN,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        },
    )
    assert preflight.status == 200
    assert preflight.header("access-control-allow-origin") == CORS_ORIGIN
    assert "POST" in (preflight.header("access-control-allow-methods") or "")
    assert "authorization" in (preflight.header("access-control-allow-headers") or "")

    simple = await gateway.request("GET", "/v1/jwks", headers={"origin": CORS_ORIGIN})
    assert simple.header("access-control-allow-origin") == CORS_ORIGIN
    assert "x-request-id" in (simple.header("access-control-expose-headers") or "")

    stranger = await gateway.request(
        "OPTIONS",
        "/v1/users",
        headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
    )
    assert stranger.header("access-control-allow-origin") is None
    other = await gateway.request("GET", "/v1/jwks", headers={"origin": "https://evil.example"})
    assert other.header("access-control-allow-origin") is None


async def test_openapi_and_docs_are_served(gateway: Gateway) -> None:
    spec = await gateway.request("GET", "/openapi.json")
    assert spec.status == 200
    assert spec.header("content-type") == "application/json"
    assert spec.json() == json.loads((GEN / "openapi.json").read_text())

    docs = await gateway.request("GET", "/docs")
    assert docs.status == 200
    assert (docs.header("content-type") or "").startswith("text/html")
    csp = docs.header("content-security-policy") or ""
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert "script-src 'sha256-" in csp and "unsafe-inline" not in csp
    assert b"/openapi.json" in docs.body
    assert b"<script src=" not in docs.body and b"https://" not in docs.body  # self-contained
    for name, value in SECURITY_HEADERS.items():
        assert docs.header(name) == value


async def test_body_size_limit_is_413_json(gateway: Gateway) -> None:
    huge = json.dumps({"email": "x" * (gateway.settings.gateway_max_request_bytes + 10)})
    reply = await gateway.request("POST", "/v1/auth:login", huge, client=client_address())
    assert_error(reply, 413, 3)


async def test_a_body_on_get_or_delete_is_refused(
    gateway: Gateway, identity: IdentityHarness
) -> None:
    """Regression (attack suite): the transcoder read a GET's body as the request
    and merged it into the path and query -- ``GET /v1/users`` with the body
    ``{"filter": ...}`` ran that filter, which no URL or log showed."""
    token = await identity.token(identity.admin_a)
    plain = await gateway.request("GET", "/v1/users?page_size=1", token=token)
    assert plain.status == 200, plain.body
    for body in ({"filter": 'email = "x"'}, {"page_size": -1}, {}):
        reply = await gateway.request("GET", "/v1/users", body, token=token)
        error = assert_error(reply, 400, 3)
        assert "takes no body" in error["message"], error
    # Before authentication, and for public methods as well.
    assert_error(await gateway.request("GET", "/v1/jwks", {"x": 1}), 400, 3)
    # DELETE takes no body either (its etag goes in the query).
    target = await identity.create_user(identity.admin_a)
    delete = await gateway.request(
        "DELETE", f"/v1/users/{target.user_id}", {"etag": 'W/"1"'}, token=token
    )
    assert_error(delete, 400, 3)
    still = await gateway.request("GET", f"/v1/users/{target.user_id}", token=token)
    assert still.status == 200 and "delete_time" not in still.json(), still.body
    # An empty body is no body.
    empty = await gateway.request(
        "GET", "/v1/users?page_size=1", b"", {"content-length": "0"}, token=token
    )
    assert empty.status == 200, empty.body


async def test_header_names_grpc_does_not_allow_are_dropped(
    gateway: Gateway, identity: IdentityHarness
) -> None:
    """Regression (schemathesis): a header named ``%`` or ``2rtb`yz*eezz`` (legal
    in HTTP, not in gRPC metadata) reached the service, whose gRPC stack failed
    the call: 500 INTERNAL "Illegal header key". The gateway drops such headers."""
    token = await identity.token(identity.admin_a)
    path = f"/v1/users/{identity.admin_a.user_id}"
    for name in ("%", "2rtb`yz*eezz", "x-a*b", "a!", "~"):
        reply = await gateway.request("GET", path, headers={name: "^"}, token=token)
        assert reply.status == 200, (name, reply.status, reply.body)
    login = await gateway.request(
        "POST",
        "/v1/auth:login",
        {"email": identity.admin_b.email, "password": PASSWORD},
        {"%": "x", "x-request-id": "illegal-header-login"},
        client=client_address(),
    )
    assert login.status == 200, login.body
    assert login.header("x-request-id") == "illegal-header-login"


async def test_headers_beyond_what_the_services_accept_stop_at_the_gateway(
    gateway: Gateway, identity: IdentityHarness
) -> None:
    """Regression (attack suite): request headers of 8-64 KiB passed Envoy's limit
    but not the services' gRPC metadata limit, and came back as 429 "too many
    requests" whose message listed the internal headers and their sizes (the
    gateway's secret among them). The gateway's limit is now below the services'."""
    token = await identity.token(identity.admin_a)
    path = f"/v1/users/{identity.admin_a.user_id}"
    for size in (6_000, 9_000):  # 9 000: beyond gRPC's default soft limit of 8 KiB
        fine = await gateway.request("GET", path, headers={"x-pad": "p" * size}, token=token)
        assert fine.status == 200, (size, fine.body)
    for size in (14_000, 40_000, 70_000):
        reply = await gateway.request("GET", path, headers={"x-pad": "p" * size}, token=token)
        assert reply.status == 431, (size, reply.status, reply.body[:300])
        assert b"gateway-auth" not in reply.body and b"x-envoy" not in reply.body
        assert reply.header("content-type") == "application/json"
        assert error_info(reply.json())["reason"] == "HEADERS_TOO_LARGE", reply.body


async def test_unavailable_service_is_503_json_without_internals(gateway: Gateway) -> None:
    reply = await gateway.request("GET", "/v1/info/company")
    body = assert_error(reply, 503, 14)
    assert (
        "127.0.0.1" not in reply.body.decode() and str(gateway.company_port) not in body["message"]
    )
    # The gateway's own health answers for every service it routes to.
    health = await gateway.request("GET", "/healthz")
    assert health.status == 503


async def test_services_see_the_client_address_the_gateway_vouches_for(
    gateway: Gateway, identity: IdentityHarness
) -> None:
    account = await identity.create_user(identity.admin_a, roles=["company-admin"])
    reply = await gateway.request(
        "POST",
        "/v1/auth:login",
        {"email": account.email, "password": account.password},
        {
            # Forged: Envoy overwrites both before the call reaches identity.
            "x-envoy-external-address": "6.6.6.6",
            "x-cardinsa-gateway-auth": "forged",
        },
        client="203.0.113.77",
    )
    assert reply.status == 200, reply.body
    token = reply.json()["access_token"]
    sessions = await gateway.request("GET", f"/v1/users/{account.user_id}/sessions", token=token)
    assert sessions.status == 200, sessions.body
    addresses = {s.get("client_address") for s in sessions.json()["sessions"]}
    assert addresses == {"203.0.113.77"}
