"""The generated gateway configuration and OpenAPI document, checked without traffic.

- ``envoy --mode validate`` accepts what the generator renders (defaults; several
  workers; host-name upstreams as in Kubernetes; an external JWKS URL; tracing
  on, with a collector by address and by host name);
- the tracing configuration is rendered only when tracing is on;
- every Cardinsa package in the contract has an upstream in the one list;
- the JWT rules open exactly the public methods (from the contract) and the
  operator services, and require a token everywhere else;
- retries of reads (GET) on failures, of every other method only when the
  request never reached a worker; the login limit only on login, timeouts per route;
- workers CARDINSA_WORKER_PORT_STEP apart, health-checked by their own service
  name, ejected on repeated failures; a drain longer than the detection;
- gen/openapi.json is current, valid OpenAPI 3.1 and matches the contract.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate as validate_openapi
from pydantic import ValidationError
from support.gateway_harness import Endpoint, GatewaySettings, render_to_file, select_upstreams

from cardinsa_gateway.contract import Access, Contract
from cardinsa_gateway.envoy import (
    F_JWT,
    F_LOGIN_LIMIT,
    F_TRANSCODER,
    OTLP_CLUSTER,
    EnvoyConfig,
    unrouted_packages,
)
from cardinsa_gateway.openapi import openapi_path, render_openapi
from cardinsa_gateway.process import validate
from cardinsa_gateway.services import (
    LOGIN_LIMITED_METHODS,
    LOGIN_METHOD,
    OPERATOR_SERVICES,
    REFLECTION_SERVICES,
    ROUTED_PACKAGES_HEADER,
    UPSTREAMS,
)

GEN = Path(__file__).resolve().parents[3] / "gen"
DESCRIPTOR = GEN / "descriptor.binpb"
OPENAPI = GEN / "openapi.json"


@pytest.fixture(scope="module")
def contract() -> Contract:
    return Contract.load(DESCRIPTOR)


def settings(**overrides: Any) -> GatewaySettings:
    return GatewaySettings(_env_file=None, **overrides)  # type: ignore[call-arg]


def render(contract: Contract, **overrides: Any) -> dict[str, Any]:
    s = settings(**overrides)
    return EnvoyConfig(
        contract,
        s,
        descriptor_path=DESCRIPTOR,
        openapi_path=OPENAPI,
        endpoints={u.name: [Endpoint("127.0.0.1", u.port)] for u in UPSTREAMS},
    ).build()


def http_filter(config: dict[str, Any], name: str) -> dict[str, Any]:
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    found = [f for f in manager["typed_config"]["http_filters"] if f["name"] == name]
    assert len(found) == 1, name
    return dict(found[0]["typed_config"])


def routes(config: dict[str, Any]) -> list[dict[str, Any]]:
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    return list(manager["typed_config"]["route_config"]["virtual_hosts"][0]["routes"])


@pytest.mark.parametrize(
    "variant",
    ["defaults", "workers", "kubernetes", "external-jwks", "tracing", "tracing-dns"],
)
def test_envoy_accepts_the_generated_config(
    variant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for upstream in UPSTREAMS:
        monkeypatch.delenv(f"CARDINSA_{upstream.name.upper()}_ADDRESS", raising=False)
    overrides: dict[str, Any] = {"gateway_secret": "x" * 40}
    workers = 1
    if variant == "workers":
        workers = 3
    if variant == "kubernetes":
        overrides["gateway_host"] = "0.0.0.0"  # noqa: S104
        overrides["metrics_host"] = "0.0.0.0"  # noqa: S104
        for upstream in UPSTREAMS:
            monkeypatch.setenv(
                f"CARDINSA_{upstream.name.upper()}_ADDRESS", f"{upstream.name}:{upstream.port}"
            )
    if variant == "external-jwks":
        overrides["gateway_jwks_uri"] = "https://id.example.test/.well-known/jwks.json"
    if variant == "tracing":
        overrides.update(tracing_enabled=True, tracing_otlp_endpoint="http://127.0.0.1:4317")
    if variant == "tracing-dns":
        overrides.update(
            tracing_enabled=True,
            tracing_otlp_endpoint="https://collector.example.test:4317",
            tracing_sample_ratio=0.25,
        )
    config = render_to_file(
        tmp_path / "envoy.json", settings=settings(**overrides), workers=workers
    )
    assert config.stat().st_mode & 0o077 == 0  # it carries the gateway secret
    result = validate(config)
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(config.read_text())
    clusters = {c["name"]: c for c in document["static_resources"]["clusters"]}
    for upstream in UPSTREAMS:
        cluster = clusters[upstream.name]
        endpoints = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
        assert len(endpoints) == workers
        if variant in ("defaults", "workers"):
            ports = [e["endpoint"]["address"]["socket_address"]["port_value"] for e in endpoints]
            assert ports == [upstream.port + 100 * i for i in range(workers)]
        assert cluster["common_lb_config"]["healthy_panic_threshold"] == {"value": 0}
        check = cluster["health_checks"][0]
        assert "grpc_health_check" in check and check["no_traffic_interval"]
        # Its own service's name: another service on that port does not pass.
        name = check["grpc_health_check"]["service_name"]
        assert name.startswith(upstream.packages[0] + "."), name
        outliers = cluster["outlier_detection"]
        assert outliers["consecutive_local_origin_failure"] >= 1
        assert outliers["enforcing_consecutive_local_origin_failure"] == 100
        assert outliers["max_ejection_percent"] < 100
        assert cluster["type"] == ("STRICT_DNS" if variant == "kubernetes" else "STATIC")
    assert document["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    listeners = [x["name"] for x in document["static_resources"]["listeners"]]
    assert listeners == ["cardinsa", "metrics"]  # the stats listener is on by default
    assert (OTLP_CLUSTER in clusters) == variant.startswith("tracing")


def test_tracing_is_rendered_only_when_on(contract: Contract) -> None:
    off = render(contract)
    manager = off["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    assert "tracing" not in manager["typed_config"]
    assert "request_id_extension" not in manager["typed_config"]
    assert "otlp" not in json.dumps(off)
    assert "TRACE_ID" not in json.dumps(off)

    on = render(
        contract,
        tracing_enabled=True,
        tracing_otlp_endpoint="http://10.1.2.3:4318",
        tracing_sample_ratio=0.5,
    )
    hcm = on["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    tracing = hcm["tracing"]
    assert tracing["random_sampling"] == {"value": 50.0}
    provider = tracing["provider"]
    assert provider["name"] == "envoy.tracers.opentelemetry"
    assert provider["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"] == OTLP_CLUSTER
    # The client's request id must reach the services unchanged.
    assert hcm["request_id_extension"]["typed_config"]["pack_trace_reason"] is False
    assert hcm["access_log"][0]["typed_config"]["log_format"]["json_format"]["trace_id"] == (
        "%TRACE_ID%"
    )
    (collector,) = [c for c in on["static_resources"]["clusters"] if c["name"] == OTLP_CLUSTER]
    endpoint = collector["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "10.1.2.3", "port_value": 4318}


@pytest.mark.parametrize(
    "endpoint", ["127.0.0.1:4317", "grpc://collector:4317", "http://collector:4317/v1/traces"]
)
def test_a_malformed_otlp_endpoint_is_refused(endpoint: str) -> None:
    with pytest.raises(ValidationError, match="CARDINSA_TRACING_OTLP_ENDPOINT"):
        settings(tracing_enabled=True, tracing_otlp_endpoint=endpoint)


def test_every_package_of_the_contract_has_an_upstream(contract: Contract) -> None:
    assert unrouted_packages(contract) == []
    for upstream in UPSTREAMS:
        assert contract.services(upstream.packages), upstream.name


def test_the_descriptor_set_carries_comments(contract: Contract) -> None:
    assert contract.has_source_info()
    login = next(m for m in contract.methods if m.grpc_path == LOGIN_METHOD)
    assert "email and password" in login.comment


def test_jwt_rules_open_exactly_the_public_methods(contract: Contract) -> None:
    config = render(contract)
    jwt = http_filter(config, F_JWT)
    provider = jwt["providers"]["identity"]
    assert provider["from_headers"] == [{"name": "authorization", "value_prefix": "Bearer "}]
    assert "remote_jwks" in provider and "local_jwks" not in provider
    rules = jwt["rules"]
    opened = {r["match"].get("path") or r["match"]["prefix"] for r in rules if "requires" not in r}
    public = {m.grpc_path for m in contract.cardinsa_methods() if m.access is Access.PUBLIC}
    operators = {f"/{s}/" for s in OPERATOR_SERVICES}
    assert opened == public | operators
    assert rules[-1] == {"match": {"prefix": "/"}, "requires": {"provider_name": "identity"}}
    assert LOGIN_METHOD in public
    assert "/cardinsa.identity.v1.IdentityService/GetJwks" in public


def test_transcoder_settings(contract: Contract) -> None:
    transcoder = http_filter(render(contract), F_TRANSCODER)
    assert sorted(transcoder["services"]) == sorted(
        contract.services(tuple(p for u in UPSTREAMS for p in u.packages))
    )
    assert transcoder["request_validation_options"]["reject_unknown_method"] is True
    assert transcoder["request_validation_options"]["reject_unknown_query_parameters"] is True
    assert transcoder["convert_grpc_status"] is True
    assert transcoder["query_param_unescape_plus"] is True
    assert transcoder["print_options"]["preserve_proto_field_names"] is True


UNSENT = {"connect-failure", "refused-stream", "reset-before-request"}


def test_retries_for_reads_and_unsent_writes_and_login_limit_only_on_login(
    contract: Contract,
) -> None:
    by_path = {r["match"].get("path"): r for r in routes(render(contract)) if "path" in r["match"]}
    reads = {m.grpc_path for m in contract.cardinsa_methods() if m.is_read}
    retried = {
        path
        for path, r in by_path.items()
        # Retried also when the request reached a worker (reads only).
        if {"reset", "unavailable"}
        <= set(r.get("route", {}).get("retry_policy", {}).get("retry_on", "").split(","))
    }
    assert retried == reads
    limited = {
        path for path, r in by_path.items() if F_LOGIN_LIMIT in r.get("typed_per_filter_config", {})
    }
    assert limited == set(LOGIN_LIMITED_METHODS)
    identity = next(u for u in UPSTREAMS if u.name == "identity")
    assert (
        by_path[LOGIN_METHOD]["route"]["timeout"]
        == f"{identity.method_timeouts['AuthService/Login']:g}s"
    )
    for route in routes(render(contract)):
        action = route.get("route", {})
        if action.get("cluster") and route["match"].get("prefix", "").startswith("/cardinsa."):
            assert action["timeout"] != "0s"
            # A write is retried only when it never reached a worker.
            policy = action["retry_policy"]
            assert set(policy["retry_on"].split(",")) == UNSENT, policy
            assert policy["retry_host_predicate"], policy


def test_the_drain_outlasts_the_gateways_health_detection() -> None:
    """A worker told to stop reports NOT_SERVING and keeps serving for the drain
    delay: longer than Envoy needs to stop sending it anything (health interval x
    unhealthy threshold, the answer being immediate), with the defaults."""
    from cardinsa_foundation.config import Settings
    from cardinsa_gateway.envoy import UNHEALTHY_THRESHOLD

    drain = Settings(_env_file=None).drain_delay_s  # type: ignore[call-arg]
    assert drain > settings().gateway_health_interval_s * UNHEALTHY_THRESHOLD


def test_reflection_without_a_named_upstream_lists_every_routed_package(contract: Contract) -> None:
    from cardinsa_foundation.reflection import ROUTED_PACKAGES_HEADER as SERVICE_SIDE

    assert ROUTED_PACKAGES_HEADER == SERVICE_SIDE
    packages = ",".join(p for u in UPSTREAMS for p in u.packages)
    for service in REFLECTION_SERVICES:
        found = [r for r in routes(render(contract)) if r["match"].get("prefix") == f"/{service}/"]
        assert len(found) == len(UPSTREAMS) + 1
        for route in found:
            if route["match"]["headers"]:  # a named upstream: its own list
                assert route["request_headers_to_remove"] == [ROUTED_PACKAGES_HEADER]
                assert "request_headers_to_add" not in route
            else:  # the default: overwrites whatever a client sent
                assert route["request_headers_to_add"] == [
                    {
                        "header": {"key": ROUTED_PACKAGES_HEADER, "value": packages},
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                    }
                ]


def test_statistics_listener(contract: Contract) -> None:
    config = render(contract, metrics_host="0.0.0.0", gateway_metrics_port=9902)  # noqa: S104
    listeners = {x["name"]: x for x in config["static_resources"]["listeners"]}
    address = listeners["metrics"]["address"]["socket_address"]
    assert (address["address"], address["port_value"]) == ("0.0.0.0", 9902)  # noqa: S104
    manager = listeners["metrics"]["filter_chains"][0]["filters"][0]["typed_config"]
    served, refused = manager["route_config"]["virtual_hosts"][0]["routes"]
    assert served["route"] == {
        "cluster": "envoy_admin",
        "prefix_rewrite": "/stats/prometheus",
        "timeout": "10s",
    }
    assert refused["direct_response"]["status"] == 404
    admin = next(c for c in config["static_resources"]["clusters"] if c["name"] == "envoy_admin")
    target = admin["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert target["socket_address"] == {"address": "127.0.0.1", "port_value": 9901}
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    # 0: no listener, no cluster.
    off = render(contract, gateway_metrics_port=0)
    assert [x["name"] for x in off["static_resources"]["listeners"]] == ["cardinsa"]
    assert "envoy_admin" not in {c["name"] for c in off["static_resources"]["clusters"]}
    with pytest.raises(ValidationError, match="METRICS_PORT"):
        settings(gateway_metrics_port=9901)


def test_unsafe_settings_are_refused() -> None:
    with pytest.raises(ValidationError, match="GATEWAY_SECRET"):
        settings(environment="production")
    with pytest.raises(ValidationError, match="GATEWAY_SECRET"):
        settings(environment="production", gateway_secret="short")
    settings(environment="production", gateway_secret="s" * 32)
    with pytest.raises(ValidationError, match="origins"):
        settings(cors_origins="*")


def test_only_selected_upstreams_are_routed(contract: Contract, tmp_path: Path) -> None:
    config = json.loads(
        render_to_file(
            tmp_path / "envoy.json",
            settings=settings(),
            upstreams=select_upstreams(["identity"]),
        ).read_text()
    )
    clusters = {c["name"] for c in config["static_resources"]["clusters"]}
    assert clusters == {"identity", "jwks", "envoy_admin"}  # envoy_admin: the stats listener
    transcoded = http_filter(config, F_TRANSCODER)["services"]
    assert all(s.startswith("cardinsa.identity.v1.") for s in transcoded)
    with pytest.raises(ValueError, match="unknown service"):
        select_upstreams(["nope"])


# --- OpenAPI ------------------------------------------------------------------------


def test_openapi_document_is_current_and_valid(contract: Contract) -> None:
    assert OPENAPI.exists(), "gen/openapi.json is missing: run `make proto`"
    assert OPENAPI.read_text() == render_openapi(contract), (
        "gen/openapi.json is older than the descriptor set or the generator: run `make proto`"
    )
    document = json.loads(OPENAPI.read_text())
    validate_openapi(document)
    assert document["openapi"].startswith("3.1")


def test_openapi_matches_the_contract(contract: Contract) -> None:
    document = json.loads(OPENAPI.read_text())
    paths = document["paths"]
    for method in contract.cardinsa_methods():
        if method.server_streaming:
            # WatchRevocations: for the services (native gRPC), not in the REST document.
            assert openapi_path(method.bindings[0].path) not in paths
            continue
        for binding in method.bindings:
            operation = paths[openapi_path(binding.path)][binding.verb.lower()]
            assert operation["x-grpc-method"] == method.grpc_path
            if method.is_public:
                assert operation["security"] == []
            else:
                assert "security" not in operation  # the global bearerAuth applies
                assert "401" in operation["responses"]
            if method.permission:
                assert method.permission in operation["description"]
            assert operation["description"].startswith(method.comment.split("\n")[0])
    assert document["security"] == [{"bearerAuth": []}]
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_openapi_path_parameters_have_plain_names(contract: Contract) -> None:
    """Generators refuse ``{policy.id}``: every path variable is a plain name,
    declared once as a path parameter of its operation (the nested field it binds
    is in ``x-cardinsa-field``), and paths that differ only in variable names do
    not exist (OpenAPI forbids them: PATCH shares GET's path item)."""
    document = json.loads(OPENAPI.read_text())
    shapes: dict[str, str] = {}
    updates = 0
    for path, item in document["paths"].items():
        variables = re.findall(r"\{([^}]*)\}", path)
        assert all(re.fullmatch(r"[a-z][a-z0-9_]*", v) for v in variables), path
        shape = re.sub(r"\{[^}]*\}", "{}", path)
        assert shapes.setdefault(shape, path) == path, (path, shapes[shape])
        for verb, operation in item.items():
            declared = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
            assert declared == variables, (verb, path)
            names = [p["name"] for p in operation.get("parameters", [])]
            assert len(set(names)) == len(names), (verb, path)
            updates += verb == "patch"
    patch_bindings = [
        b for m in contract.cardinsa_methods() for b in m.bindings if b.verb == "PATCH"
    ]
    assert updates == len(patch_bindings) >= 9
    unit = paths_operation(
        document, "/v1/companies/{company_id}/departments/{department_id}/units/{unit_id}", "patch"
    )
    assert {
        p["name"]: p.get("x-cardinsa-field") for p in unit["parameters"] if p["in"] == "path"
    } == {
        "company_id": "unit.company_id",
        "department_id": "unit.department_id",
        "unit_id": "unit.id",
    }
    assert "get" in document["paths"]["/v1/policies/{policy_id}"]
    assert "patch" in document["paths"]["/v1/policies/{policy_id}"]


def test_openapi_schemas(contract: Contract) -> None:
    document = json.loads(OPENAPI.read_text())
    schemas = document["components"]["schemas"]
    user = schemas["cardinsa.identity.v1.User"]
    assert user["properties"]["create_time"]["format"] == "date-time"
    assert user["properties"]["create_time"]["readOnly"] is True
    assert user["properties"]["state"]["$ref"].endswith("cardinsa.identity.v1.User.State")
    assert "ACTIVE" in schemas["cardinsa.identity.v1.User.State"]["enum"]
    assert user["description"]
    tokens = schemas["cardinsa.identity.v1.TokenPair"]["properties"]
    assert tokens["expires_in"]["type"] == "string"  # Duration
    assert tokens["access_token"]["description"]
    login = schemas["cardinsa.identity.v1.LoginRequest"]
    assert set(login["required"]) == {"email", "password"}
    update = paths_operation(document, "/v1/users/{user_id}", "patch")
    mask = next(p for p in update["parameters"] if p["name"] == "update_mask")
    assert mask["schema"]["type"] == "string"  # FieldMask
    audit = schemas["cardinsa.common.v1.AuditEvent"]["properties"]
    assert audit["detail"]["type"] == "object"  # Struct
    assert schemas["google.type.Date"]["properties"]["year"]["type"] == "integer"
    assert schemas["google.type.Money"]["properties"]["units"]["type"] == "string"  # int64
    status = schemas["google.rpc.Status"]
    assert set(status["properties"]) == {"code", "message", "details"}
    assert "google.rpc.BadRequest" in schemas and "google.rpc.ErrorInfo" in schemas
    get_user = paths_operation(document, "/v1/users/{user_id}", "get")
    assert [p["name"] for p in get_user["parameters"] if p["in"] == "path"] == ["user_id"]
    error = document["components"]["responses"]["BadRequest"]
    assert error["content"]["application/json"]["schema"]["$ref"].endswith("google.rpc.Status")


def paths_operation(document: dict[str, Any], path: str, verb: str) -> dict[str, Any]:
    operation = document["paths"][path][verb]
    assert isinstance(operation, dict)
    return operation


def test_openapi_describes_an_httpbody_response_by_its_media_type(contract: Contract) -> None:
    paths = json.loads(OPENAPI.read_text())["paths"]
    raw = [m for m in contract.cardinsa_methods() if m.output_type == "google.api.HttpBody"]
    assert raw, "no method returns google.api.HttpBody"
    for method in raw:
        for binding in method.bindings:
            operation = paths[openapi_path(binding.path)][binding.verb.lower()]
            assert operation["responses"]["200"]["content"] == {
                method.response_content_type: {"schema": {"type": "string", "format": "binary"}}
            }, method.grpc_path
    assert "google.api.HttpBody" not in json.loads(OPENAPI.read_text())["components"]["schemas"]
