"""deploy/docker: the Dockerfile lints clean, is multi-stage and non-root, its build
context holds what it copies and nothing secret, and the probe script works.

No container runtime exists on these machines: the image itself is not built here.
"""

from __future__ import annotations

import http.server
import importlib.util
import json
import re
import shlex
import subprocess
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from types import ModuleType

import grpc
import pytest
from deploy_support import DEPLOY, REPO
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from support.tools import venv_tool

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
DOCKERIGNORE = DEPLOY / "docker" / "Dockerfile.dockerignore"
HADOLINT_CONFIG = DEPLOY / "docker" / "hadolint.yaml"


# ---------------------------------------------------------------- Dockerfile


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined: list[str] = []
    buffer = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if buffer and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        joined.append(buffer + line)
        buffer = ""
    return [(i.split(None, 1)[0].upper(), i.split(None, 1)[1] if " " in i else "") for i in joined]


def stages(text: str) -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in instructions(text):
        if instruction[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def test_hadolint_reports_nothing() -> None:
    done = subprocess.run(
        [venv_tool("hadolint"), "--config", str(HADOLINT_CONFIG), "--format", "json",
         str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    findings = json.loads(done.stdout or "[]")
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)
    assert done.returncode == 0, done.stderr


def test_hadolint_config_ignores_nothing() -> None:
    text = HADOLINT_CONFIG.read_text()
    assert "failure-threshold: style" in text
    assert re.search(r"^ignored: \[\]$", text, flags=re.M)
    assert "hadolint ignore" not in DOCKERFILE.read_text()


def named_stages(text: str) -> dict[str, list[tuple[str, str]]]:
    return {stage[0][1].split(" AS ")[1]: stage for stage in stages(text)}


def test_multi_stage_slim_non_root_runtime() -> None:
    text = DOCKERFILE.read_text()
    (arg,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, flags=re.M)
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", arg), arg
    found = named_stages(text)
    assert list(found) == ["builder", "gateway-builder", "base", "gateway", "runtime"]
    builder, base, gateway, runtime = (found[n] for n in ("builder", "base", "gateway", "runtime"))
    assert builder[0] == ("FROM", "${PYTHON_IMAGE} AS builder")
    assert found["gateway-builder"][0] == ("FROM", "builder AS gateway-builder")
    assert base[0] == ("FROM", "${PYTHON_IMAGE} AS base")
    assert gateway[0] == ("FROM", "base AS gateway")
    # The services' image is the last stage: a build without --target makes it.
    assert runtime[0] == ("FROM", "base AS runtime")
    # The images install nothing: no package manager, no compiler, no pip; the
    # base only adds the user.
    for stage in (base, gateway, runtime):
        runs = " ".join(args for name, args in stage if name == "RUN")
        for tool in ("apt-get", "apt ", "pip", "gcc", "make", "curl", "wget"):
            assert tool not in runs, tool
    assert not [name for name, _ in gateway + runtime if name == "RUN"]
    assert not any(name == "ADD" for stage in found.values() for name, _ in stage)

    def copied(stage: list[tuple[str, str]]) -> set[str]:
        return {c for name, c in stage if name == "COPY" and c.startswith("--from=")}

    assert copied(runtime) == {"--from=builder /opt/venv /opt/venv"}
    assert copied(gateway) == {
        "--from=gateway-builder /opt/venv /opt/venv",
        "--from=builder /src/gen/descriptor.binpb /app/gen/descriptor.binpb",
    }
    # A fixed numeric UID, the last user switch, after every RUN.
    users = [(i, args) for i, (name, args) in enumerate(base) if name == "USER"]
    assert users and users[-1][1] == "10001:10001"
    last_run = max(i for i, (name, _) in enumerate(base) if name == "RUN")
    assert users[-1][0] > last_run
    assert not [name for name, _ in gateway + runtime if name == "USER"]
    assert re.search(r"useradd [^\n]*--uid 10001", text)
    # The builder makes the generated code and the wheel; the images get neither
    # the sources nor the build backend.
    builder_runs = " ".join(args for name, args in builder if name == "RUN")
    assert "scripts/codegen.py" in builder_runs
    assert "--no-build-isolation" in builder_runs and "hatchling==" in builder_runs
    for stage in (base, gateway, runtime):
        env = " ".join(args for name, args in stage if name == "ENV")
        assert not re.search(r"SECRET|PASSWORD|DATABASE_URL|_KEY=", env)
    assert any(name == "CMD" for name, _ in runtime)
    assert any(name == "CMD" for name, _ in gateway)


def test_only_the_gateway_image_has_envoy() -> None:
    """The shipped environment has the runtime dependencies; only the gateway's
    adds the `gateway` extra (Envoy). The code generator has its own environment,
    which stays in the builder."""
    found = named_stages(DOCKERFILE.read_text())
    builder_runs = " && ".join(args for name, args in found["builder"] if name == "RUN")
    commands = [" ".join(c.split()) for c in builder_runs.split("&&")]
    installs = [c for c in commands if " install " in c and "hatchling" not in c]
    # /opt/venv (PATH's pip) gets the runtime set only; the generator's own venv
    # the runtime set and the codegen extra.
    assert installs == [
        "pip install --no-cache-dir --requirement /tmp/runtime.txt",
        "/opt/codegen/bin/pip install --no-cache-dir --requirement /tmp/runtime.txt"
        " --requirement /tmp/codegen.txt",
        "pip install --no-cache-dir --no-deps /tmp/wheels/cardinsa-*.whl",
    ]
    assert "/opt/codegen/bin/python scripts/codegen.py" in builder_runs
    gateway_runs = " ".join(a for n, a in found["gateway-builder"] if n == "RUN")
    assert "--requirement /tmp/gateway.txt" in gateway_runs
    assert "envoy" not in " ".join(a for n, a in found["runtime"] if n in {"CMD", "ENV", "COPY"})


def test_the_build_reaches_both_images() -> None:
    found = named_stages(DOCKERFILE.read_text())
    for name in ("gateway", "runtime"):
        stage = found[name]
        args = {a for n, a in stage if n == "ARG"}
        assert {'CARDINSA_BUILD_COMMIT=""', 'CARDINSA_BUILD_TIME=""'} <= args, name
        env = " ".join(a for n, a in stage if n == "ENV")
        assert "CARDINSA_BUILD_COMMIT=${CARDINSA_BUILD_COMMIT}" in env
        assert "CARDINSA_BUILD_TIME=${CARDINSA_BUILD_TIME}" in env


# --------------------------------------------------------- the build context


def _pattern(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def dockerignore_rules(path: Path) -> list[tuple[re.Pattern[str], bool]]:
    """(pattern, is_exception) as Docker reads a .dockerignore file."""
    rules = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        line = line.lstrip("!").strip().strip("/")
        rules.append((_pattern(line), exception))
    return rules


def excluded(relative: str, rules: list[tuple[re.Pattern[str], bool]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern, exception in rules:
        if any(pattern.fullmatch(c) for c in candidates):
            result = not exception
    return result


def test_dockerignore_matcher() -> None:
    rules = [(_pattern("*"), False), (_pattern("shared"), True), (_pattern("**/*.pyc"), False)]
    assert excluded(".env", rules)
    assert not excluded("shared/a/b.py", rules)
    assert excluded("shared/a/b.pyc", rules)


@pytest.fixture(scope="module")
def context_files() -> dict[str, bool]:
    """Every file of the repository (as git sees it, plus untracked ones) → excluded?"""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    rules = dockerignore_rules(DOCKERIGNORE)
    return {path: excluded(path, rules) for path in listed}


def test_build_context_keeps_secrets_and_local_state_out(context_files: dict[str, bool]) -> None:
    rules = dockerignore_rules(DOCKERIGNORE)
    never = [
        ".git/config",
        ".env",
        ".env.local",
        ".venv/bin/python",
        "gen/descriptor.binpb",
        ".data/postgres/PG_VERSION",
        ".gitignore",
        "tests/conftest.py",
        "deploy/compose/cardinsa.dev.env",
        "shared/x/__pycache__/m.cpython-311.pyc",
    ]
    for path in never:
        assert excluded(path, rules), path
    included = [p for p, out in context_files.items() if not out]
    assert any(p.startswith("shared/") for p in included)
    assert not [p for p in included if re.search(r"(^|/)\.env|\.dev\.env$|/\.git/", p)]


def test_every_copy_source_is_in_the_build_context(context_files: dict[str, bool]) -> None:
    rules = dockerignore_rules(DOCKERIGNORE)
    for stage in stages(DOCKERFILE.read_text()):
        for name, args in stage:
            if name != "COPY" or args.startswith("--from"):
                continue
            *sources, _destination = shlex.split(args)
            for source in sources:
                path = REPO / source
                assert path.exists(), f"COPY {source}: not in the repository"
                assert not excluded(source.rstrip("/"), rules), f"COPY {source}: dockerignored"
                if path.is_dir():
                    inside = [p for p in context_files if p.startswith(source.rstrip("/") + "/")]
                    assert inside and not all(context_files[p] for p in inside), source


# ---------------------------------------------------------------- probe.py


def load_probe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cardinsa_probe", DEPLOY / "docker" / "probe.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def probe() -> ModuleType:
    return load_probe()


@pytest.fixture
def health_server() -> Iterator[tuple[str, health.HealthServicer]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        server.stop(None)


def test_grpc_probe(probe: ModuleType, health_server: tuple[str, health.HealthServicer]) -> None:
    address, servicer = health_server
    name = "cardinsa.identity.v1.IdentityService"
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    assert probe.main(["grpc", address]) == 0
    assert probe.main(["grpc", address, name]) == 1
    assert probe.main(["grpc", address, "no.such.Service"]) == 1
    servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    assert probe.main(["grpc", address, name]) == 0


def test_grpc_probe_unreachable(probe: ModuleType) -> None:
    assert probe.main(["--timeout", "0.3", "grpc", "127.0.0.1:1"]) == 2


class _Admin(http.server.BaseHTTPRequestHandler):
    posts: list[str] = []
    ready_status = 200

    def do_GET(self) -> None:
        self.send_response(self.ready_status)
        self.end_headers()

    def do_POST(self) -> None:
        self.posts.append(self.path)
        if self.path == "/healthcheck/fail":
            type(self).ready_status = 503
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def admin() -> Iterator[str]:
    _Admin.posts = []
    _Admin.ready_status = 200
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Admin)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_probe_and_envoy_drain(probe: ModuleType, admin: str) -> None:
    assert probe.main(["http", f"{admin}/ready"]) == 0
    assert probe.main(["envoy-drain", admin, "0"]) == 0
    assert _Admin.posts == ["/healthcheck/fail", "/drain_listeners?graceful&inboundonly"]
    assert probe.main(["http", f"{admin}/ready"]) == 1
    assert probe.main(["--timeout", "0.3", "http", "http://127.0.0.1:1/ready"]) == 2


def test_probes_only_talk_to_loopback(probe: ModuleType) -> None:
    with pytest.raises(SystemExit):
        probe.main(["http", "http://example.com/ready"])
