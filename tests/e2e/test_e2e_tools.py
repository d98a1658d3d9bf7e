"""What an operator does with the running suite: grpcurl through the gateway
(list, describe, call, health), ``envoy --mode validate`` on the configuration
`make up` generated, and the endpoints and curl line the launcher prints."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from support.tools import venv_tool

from e2e.suite_harness import (
    ADMIN_EMAIL,
    PASSWORD,
    PROJECT_ROOT,
    Rest,
    SuiteProcess,
    next_client_address,
)

pytestmark = pytest.mark.integration


def grpcurl(suite: SuiteProcess, *args: str) -> str:
    done = subprocess.run(
        [venv_tool("grpcurl"), "-plaintext", "-max-time", "20", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=PROJECT_ROOT,
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def test_grpcurl_through_the_gateway_list_describe_call_and_health(suite: SuiteProcess) -> None:
    gateway = suite.gateway
    # list: every service behind the one port (the README's try-line), as the
    # descriptor set has them; reflection is answered by identity, which knows
    # the whole contract.
    listed = grpcurl(suite, gateway, "list").split()
    contract = grpcurl(
        suite, "-protoset", str(PROJECT_ROOT / "gen" / "descriptor.binpb"), gateway, "list"
    ).split()
    assert {s for s in contract if s.startswith("cardinsa.")} <= set(listed)
    assert {
        "cardinsa.identity.v1.AuthService",
        "cardinsa.company.v1.CompanyService",
        "cardinsa.core.v1.PolicyService",
        "grpc.health.v1.Health",
    } <= set(listed)
    # describe a core and a company service, and a core message, without any header
    policies = grpcurl(suite, gateway, "describe", "cardinsa.core.v1.PolicyService")
    assert "cardinsa.core.v1.PolicyService is a service" in policies
    assert re.search(r"rpc GetPolicy \( \.cardinsa\.core\.v1\.GetPolicyRequest \)", policies)
    companies = grpcurl(suite, gateway, "describe", "cardinsa.company.v1.CompanyService")
    assert "rpc GetCompany" in companies
    bind = grpcurl(suite, gateway, "describe", ".cardinsa.core.v1.BindPolicyRequest")
    assert "string policy_id = 1" in bind
    # a named upstream lists its own services
    core = grpcurl(suite, "-H", "x-cardinsa-upstream: core", gateway, "list").split()
    assert {"cardinsa.core.v1.PolicyService", "cardinsa.core.v1.ClaimService"} <= set(core)
    everything = grpcurl(
        suite, "-protoset", str(PROJECT_ROOT / "gen" / "descriptor.binpb"), gateway, "list"
    ).split()
    assert {
        "cardinsa.identity.v1.UserService",
        "cardinsa.company.v1.CompanyService",
        "cardinsa.core.v1.ProductService",
    } <= set(everything)

    # describe
    described = grpcurl(suite, gateway, "describe", "cardinsa.identity.v1.AuthService")
    assert "cardinsa.identity.v1.AuthService is a service" in described
    assert re.search(r"rpc Login \( \.cardinsa\.identity\.v1\.LoginRequest \)", described)
    message = grpcurl(
        suite,
        "-H",
        "x-cardinsa-upstream: core",
        gateway,
        "describe",
        ".cardinsa.core.v1.BindPolicyRequest",
    )
    assert "string policy_id = 1" in message

    # call: log in, then an authenticated call with the token
    tokens = json.loads(
        grpcurl(
            suite,
            "-d",
            json.dumps({"email": ADMIN_EMAIL, "password": PASSWORD}),
            gateway,
            "cardinsa.identity.v1.AuthService/Login",
        )
    )
    # (grpcurl prints proto field names)
    assert tokens["token_type"] == "Bearer" and tokens["access_token"]
    users = json.loads(
        grpcurl(
            suite,
            "-H",
            f"authorization: Bearer {tokens['access_token']}",
            "-d",
            json.dumps({"filter": f'email = "{ADMIN_EMAIL}"'}),
            gateway,
            "cardinsa.identity.v1.UserService/ListUsers",
        )
    )
    assert [user["email"] for user in users["users"]] == [ADMIN_EMAIL]
    # core and company by name through the gateway (reflection resolves them,
    # Envoy routes the call by its path)
    token = f"authorization: Bearer {tokens['access_token']}"
    products = json.loads(
        grpcurl(
            suite,
            "-H",
            token,
            "-d",
            '{"page_size": 1}',
            gateway,
            "cardinsa.core.v1.ProductService/ListProducts",
        )
    )
    assert isinstance(products, dict)
    company = json.loads(
        grpcurl(
            suite,
            "-H",
            token,
            "-d",
            json.dumps({"company_id": suite.demo_company_id}),
            gateway,
            "cardinsa.company.v1.CompanyService/GetCompany",
        )
    )
    assert company["id"] == suite.demo_company_id
    # ...and without one: Envoy refuses it as a gRPC status.
    refused = subprocess.run(
        [venv_tool("grpcurl"), "-plaintext", gateway, "cardinsa.identity.v1.UserService/ListUsers"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode != 0 and "Unauthenticated" in refused.stderr, refused.stderr

    # health: overall and per service, of each upstream
    for upstream, service in (
        ("identity", "cardinsa.identity.v1.AuthService"),
        ("company", "cardinsa.company.v1.CompanyService"),
        ("core", "cardinsa.core.v1.ClaimService"),
    ):
        for name in ("", service):
            health = json.loads(
                grpcurl(
                    suite,
                    "-H",
                    f"x-cardinsa-upstream: {upstream}",
                    "-d",
                    json.dumps({"service": name}),
                    gateway,
                    "grpc.health.v1.Health/Check",
                )
            )
            assert health == {"status": "SERVING"}, (upstream, name, health)


def test_envoy_validates_the_generated_configuration(suite: SuiteProcess) -> None:
    assert suite.config.exists()
    assert (suite.config.stat().st_mode & 0o777) == 0o600  # it carries the gateway secret
    done = subprocess.run(
        [venv_tool("envoy"), "--mode", "validate", "-c", str(suite.config), "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout + done.stderr
    config = json.loads(suite.config.read_text())
    listener = config["static_resources"]["listeners"][0]["address"]["socket_address"]
    assert (listener["address"], listener["port_value"]) == ("127.0.0.1", suite.ports.gateway)
    # The PID file names the Envoy the launcher reported ready.
    pid_file = suite.state_dir / "gateway" / "envoy.pid"
    assert int(pid_file.read_text()) == suite.envoy_pid


def test_the_launcher_prints_working_endpoints(suite: SuiteProcess) -> None:
    assert suite.output is not None
    printed = "\n".join(suite.output.launcher_lines())
    ports = suite.ports
    for expected in (
        f"gateway   http://127.0.0.1:{ports.gateway}",
        f"identity  grpc://127.0.0.1:{ports.identity}",
        f"company   grpc://127.0.0.1:{ports.company}",
        f"core      grpc://127.0.0.1:{ports.core}",
        f"OpenAPI http://127.0.0.1:{ports.gateway}/openapi.json",
    ):
        assert expected in printed, printed
    for metrics, pools in (
        (ports.identity_metrics, ("identity",)),
        (ports.company_metrics, ("company",)),
        (ports.core_metrics, ("core", "core-read")),  # core-read: Database.read
    ):
        url = f"http://127.0.0.1:{metrics}/metrics"
        assert url in printed
        with urllib.request.urlopen(url, timeout=10) as reply:
            text = reply.read().decode()
        assert "grpc_server_handled_total" in text
        for pool in pools:
            assert f'db_pool_size{{pool="{pool}"}}' in text, pool

    # The event dispatcher runs and is scraped like the rest.
    url = f"http://127.0.0.1:{ports.dispatcher_metrics}/metrics"
    assert f"{url} (dispatcher)" in printed, printed
    with urllib.request.urlopen(url, timeout=10) as reply:  # noqa: S310 (http://127.0.0.1)
        text = reply.read().decode()
    assert "event_dispatcher_deliveries_in_flight" in text
    assert 'db_pool_size{pool="event-dispatcher"}' in text

    # The curl line: its address and body, with the configured password (the
    # launcher prints a configured password as a placeholder, never the secret).
    line = next(line for line in printed.splitlines() if "curl -s -X POST" in line)
    found = re.search(r"curl -s -X POST (\S+)/v1/auth:login -d '(.+)'", line)
    assert found, line
    address, body = found.group(1), json.loads(found.group(2))
    assert body["email"] == ADMIN_EMAIL and PASSWORD not in line
    host, port = address.rsplit(":", 1)
    assert int(port) == ports.gateway
    reply = Rest(host, int(port), next_client_address(suite.aliases)).call(
        "POST", "/v1/auth:login", {**body, "password": PASSWORD}
    )
    assert reply.ok()["token_type"] == "Bearer"
    openapi = suite.rest().call("GET", "/openapi.json").ok()
    assert openapi["openapi"].startswith("3.1")
    paths = openapi["paths"]
    assert "/v1/claims/{claim_id}:approve" in paths
    # The claim money routes: reserves, payments and their lifecycle, recoveries.
    claim_money = {
        "/v1/claims/{claim_id}:unapprove": {"post"},
        "/v1/claims/{claim_id}:withdraw": {"post"},
        "/v1/claims/{claim_id}:setReserve": {"post"},
        "/v1/claims/{claim_id}/payments": {"get", "post"},
        "/v1/claims/{claim_id}/payments/{payment_id}": {"get"},
        "/v1/claims/{claim_id}/payments/{payment_id}:issue": {"post"},
        "/v1/claims/{claim_id}/payments/{payment_id}:clear": {"post"},
        "/v1/claims/{claim_id}/payments/{payment_id}:void": {"post"},
        "/v1/claims/{claim_id}/recoveries": {"get", "post"},
    }
    assert {path: set(paths.get(path, {})) for path in claim_money} == claim_money
    create_payment = paths["/v1/claims/{claim_id}/payments"]["post"]
    assert create_payment["x-grpc-method"] == "/cardinsa.core.v1.ClaimService/CreateClaimPayment"
    assert "claims.pay" in create_payment["description"]
    # The body is the payment itself: the idempotency key travels in the query.
    assert {p["name"]: p["in"] for p in create_payment["parameters"]} == {
        "claim_id": "path",
        "request_id": "query",
    }
    benefit = openapi["components"]["schemas"]["cardinsa.core.v1.ClaimBenefit"]["properties"]
    assert {"claimed", "deductible", "copay", "coinsurance", "limit_cut", "payable"} <= set(benefit)

    # Envoy's statistics, the Prometheus way, on the gateway's metrics port
    url = f"http://127.0.0.1:{ports.gateway_metrics}/metrics"
    with urllib.request.urlopen(url, timeout=10) as reply:  # noqa: S310 (http://127.0.0.1)
        text = reply.read().decode()
    assert 'envoy_cluster_upstream_rq_total{envoy_cluster_name="core"}' in text


RENDER_AS_MAKE_UP_DOES = """
import json, sys
from pathlib import Path
from cardinsa_company.settings import CompanyServiceSettings
from cardinsa_core.settings import CoreSettings
from cardinsa_gateway.process import render_to_file, select_upstreams
from cardinsa_gateway.settings import GatewaySettings
from cardinsa_identity.settings import IdentitySettings

config = render_to_file(
    Path(sys.argv[1]),
    settings=GatewaySettings(),
    upstreams=select_upstreams(["identity", "company", "core"]),
    workers=1,
)
clusters = json.loads(config.read_text())["static_resources"]["clusters"]
routed = {
    c["name"]: [
        lb["endpoint"]["address"]["socket_address"]["port_value"]
        for group in c["load_assignment"]["endpoints"]
        for lb in group["lb_endpoints"]
    ]
    for c in clusters
    if c["name"] in ("identity", "company", "core")
}
listening = {
    "identity": [IdentitySettings().identity_port],
    "company": [CompanyServiceSettings().company_port],
    "core": [CoreSettings().core_port],
}
print(json.dumps({"routed": routed, "listening": listening}))
"""


def test_the_gateway_routes_to_the_ports_set_in_dot_env(tmp_path: Path) -> None:
    """What cardinsa_tools.suite renders, with the ports in a .env file instead of the
    environment (a suite is not started: the configuration alone shows it)."""
    ports = {"IDENTITY": 47611, "COMPANY": 47612, "CORE": 47613}
    (tmp_path / ".env").write_text(
        "".join(f"CARDINSA_{name}_PORT={port}\n" for name, port in ports.items())
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDINSA_")}
    done = subprocess.run(
        [sys.executable, "-c", RENDER_AS_MAKE_UP_DOES, str(tmp_path / "envoy.json")],
        cwd=tmp_path,  # settings read ./.env as well as the project's
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["listening"] == {name.lower(): [port] for name, port in ports.items()}
    assert found["routed"] == found["listening"]


def test_each_service_reports_its_version_and_the_working_trees_commit(
    suite: SuiteProcess,
) -> None:
    """`make up` sets the build commit from git; every service shows it with its
    version (package metadata) at /v1/info/<service> and in cardinsa_build_info."""
    from importlib import metadata

    from cardinsa_tools.suite import working_tree_commit

    # The commit the launcher saw (whether a file changed since may differ).
    head = working_tree_commit().removesuffix("-dirty")
    assert re.fullmatch(r"[0-9a-f]{12}", head), head
    version = metadata.version("cardinsa")
    rest = suite.rest()
    ports = suite.ports
    for service, metrics_port in (
        ("identity", ports.identity_metrics),
        ("company", ports.company_metrics),
        ("core", ports.core_metrics),
    ):
        reply = rest.call("GET", f"/v1/info/{service}")
        assert reply.status == 200, reply.body
        info = reply.json()
        commit = info["build"]
        assert (info["name"], info["version"]) == (service, version)
        assert commit in {head, f"{head}-dirty"}, commit
        assert "buildTime" not in info  # a working tree has no build time
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as answer:
            text = answer.read().decode()
        published = [
            dict(re.findall(r'(\w+)="([^"]*)"', line))
            for line in text.splitlines()
            if line.startswith("cardinsa_build_info{") and line.endswith(" 1.0")
        ]
        assert published == [
            {"service": service, "version": version, "commit": commit, "build_time": ""}
        ], text
