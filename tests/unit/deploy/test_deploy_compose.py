"""deploy/compose/compose.yaml, checked structurally (docker compose cannot run here).

Where a ``docker compose`` (v2) or ``docker-compose`` (v1.29) binary is on PATH, the
last test also has it parse and validate the file against its own schema.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import DEPLOY, SERVICES

COMPOSE_DIR = DEPLOY / "compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"
ONE_SHOT = {f"{s}-migrate" for s in SERVICES}
LONG_RUNNING = {"postgres", *SERVICES, "core-scheduler", "event-dispatcher", "envoy"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())  # resolves the x-cardinsa anchors
    assert isinstance(loaded, dict)
    return loaded


def test_the_whole_suite_is_there(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == LONG_RUNNING | ONE_SHOT


def test_every_service_has_image_command_and_healthcheck(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert service.get("image"), name
        assert service.get("command"), name
        if name in LONG_RUNNING:
            test = service["healthcheck"]["test"]
            assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name
            assert service.get("restart") == "unless-stopped", name
        else:
            assert service.get("restart") == "no", name


def test_dependencies_exist_and_wait_for_the_right_condition(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for target, spec in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            expected = "service_completed_successfully" if target in ONE_SHOT else "service_healthy"
            assert spec["condition"] == expected, (name, target)
    for migration in ONE_SHOT:
        assert services[migration]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
        service = migration.removesuffix("-migrate")
        assert services[migration]["command"] == ["python", "-m", f"cardinsa_{service}.cli",
                                                  "migrate"]  # fmt: skip
        assert migration in services[service]["depends_on"]
        assert services[service]["command"] == ["python", "-m", f"cardinsa_{service}.main"]
    assert set(services["envoy"]["depends_on"]) == set(SERVICES)


def test_published_ports_are_loopback_only(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports") or []:
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), (name, port)


def test_our_containers_are_hardened(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if name == "postgres":
            continue
        assert service["user"] == "10001:10001", name
        assert service["read_only"] is True, name
        assert "/tmp" in service["tmpfs"], name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service["build"]["dockerfile"] == "deploy/docker/Dockerfile", name
        assert (COMPOSE_DIR / service["build"]["context"]).resolve() == DEPLOY.parent


def test_secrets_come_from_dev_only_env_files(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for key in service.get("environment") or {}:
            assert not any(word in key for word in ("PASSWORD", "SECRET", "DATABASE_URL",
                                                    "ADMIN_URL", "_KEY")), (name, key)  # fmt: skip
        env_files = service.get("env_file") or []
        assert env_files, name
        for env_file in env_files:
            path = COMPOSE_DIR / env_file
            assert path.name.endswith(".dev.env"), path
            assert path.read_text().startswith("# DEVELOPMENT ONLY"), path
            for line in path.read_text().splitlines():
                if line and not line.startswith("#"):
                    assert "dev-only" in line and "not-secret" in line, line


def test_volumes_and_init_script_exist(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), (name, source)
            else:
                assert source in declared, (name, source)
    assert (COMPOSE_DIR / "postgres-init" / "10-cardinsa-roles.sh").exists()


def test_a_compose_binary_accepts_the_file(tmp_path: Path) -> None:
    if (
        shutil.which("docker")
        and subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        command, directory, target = ["docker", "compose"], COMPOSE_DIR, COMPOSE
    elif shutil.which("docker-compose"):
        # v1.29 predates the top-level `name`; everything else is checked against its schema.
        for item in COMPOSE_DIR.iterdir():
            if item.name != "compose.yaml":
                (tmp_path / item.name).symlink_to(item)
        target = tmp_path / "compose.yaml"
        target.write_text(COMPOSE.read_text().replace("name: cardinsa\n", "", 1))
        command, directory = ["docker-compose"], tmp_path
    else:
        pytest.skip("no docker compose binary on PATH (the structural checks above ran)")
    done = subprocess.run(
        [*command, "--project-directory", str(directory), "-f", str(target), "config", "-q"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
