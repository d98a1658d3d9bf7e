"""Every setting a process refuses to start without in production is supplied.

Nothing here lists the required settings: they are derived from the services'
settings classes. For each container that runs one of our modules
(``python -m cardinsa_<service>.main`` or ``.cli``), the environment the manifest
gives it -- the ConfigMap, literal values and every secretKeyRef, filled with a
production-looking value -- is handed to that service's settings class with
``CARDINSA_ENVIRONMENT=production``. It must validate (the foundation refuses
empty or development secrets and a missing database URL), and a serving process
(``.main``) must also have no ``serving_problems()`` (core: its service API key).
A secret added to a settings class's production checks (``SECRET_DEFAULTS``, a
``_production_problems`` or ``serving_problems`` override) without a manifest
providing it fails here, naming the setting.

The same for compose, as the runbook's production copy of its env files would be:
the same keys, ``CARDINSA_ENVIRONMENT=production`` and real values.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_kustomize import _parse_env_file
from deploy_support import DEPLOY, Obj, containers, find, workloads
from pydantic import ValidationError
from pydantic_settings import BaseSettings

COMPOSE_DIR = DEPLOY / "compose"


def settings_class(command: list[str]) -> tuple[type[BaseSettings], bool] | None:
    """The settings class of the service a command runs, and whether it serves
    (``.main``) or is a one-off (``.cli``); None for a command that is not ours.
    A long-running process of its own (core's lifecycle scheduler) declares its
    class as ``SETTINGS_CLASS`` and counts as serving."""
    if len(command) < 3 or command[1] != "-m" or not command[2].startswith("cardinsa_"):
        return None
    package, _, entry = command[2].partition(".")
    declared = getattr(importlib.import_module(command[2]), "SETTINGS_CLASS", None)
    if declared is not None:
        assert issubclass(declared, BaseSettings), command
        return declared, True
    module = importlib.import_module(f"{package}.settings")
    found = [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, BaseSettings) and cls.__module__ == module.__name__
    ]
    assert len(found) == 1, f"{module.__name__}: expected one settings class, found {found}"
    return found[0], entry == "main"


def production_value(name: str) -> str:
    """A value of the right shape that no development default equals."""
    if name.endswith("_URL"):
        return "postgresql://cardinsa_role:Pr0duction-password-0123456789@db.internal:5432/cardinsa"
    if name.endswith("API_KEY"):
        return "cdk_" + "k3x9q0a1bc" + "_" + "S" * 43  # the shape identity issues
    return "production-secret-value-0123456789-abcdefghijklmnop"


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for key in list(os.environ):
        if key.startswith("CARDINSA_") or key in ("DATABASE_URL", "ENVIRONMENT"):
            monkeypatch.delenv(key)
    yield monkeypatch


def missing_settings(
    monkeypatch: pytest.MonkeyPatch, cls: type[BaseSettings], serving: bool, env: dict[str, str]
) -> list[str]:
    """Settings ``cls`` refuses (or, when ``serving``, cannot serve without) in
    production with exactly ``env``; [] when it starts."""
    with monkeypatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        patch.setenv("CARDINSA_ENVIRONMENT", "production")
        try:
            settings = cls(_env_file=None)  # type: ignore[call-arg]
        except ValidationError as error:
            return sorted(str(e["loc"][0]) for e in error.errors())
        if not serving or not hasattr(settings, "serving_problems"):
            return []
        return sorted(name for name, _ in settings.serving_problems())


def container_environment(container: Obj, config_maps: dict[str, dict[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            env.update(config_maps[source["configMapRef"]["name"]])
    for entry in container.get("env") or []:
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
        elif "secretKeyRef" in (entry.get("valueFrom") or {}):
            env[entry["name"]] = production_value(entry["name"])
    return env


def our_containers(objects: list[Obj]) -> Iterator[tuple[str, Obj, type[BaseSettings], bool]]:
    for workload in workloads(objects):
        for container in containers(workload):
            found = settings_class(container.get("command") or [])
            if found is not None:
                where = f"{workload['kind']} {workload['metadata']['name']}/{container['name']}"
                yield where, container, *found


def test_every_k8s_container_gets_every_setting_its_service_requires_in_production(
    rendered: dict[str, list[Obj]], clean_environment: pytest.MonkeyPatch
) -> None:
    objects = rendered["prod"]
    config_maps = {c["metadata"]["name"]: c.get("data") or {} for c in find(objects, "ConfigMap")}
    seen: set[str] = set()
    for where, container, cls, serving in our_containers(objects):
        env = container_environment(container, config_maps)
        missing = missing_settings(clean_environment, cls, serving, env)
        assert missing == [], f"{where} lacks (in production) {missing}"
        seen.add(cls.__name__)
    # Every service's Deployment and migration Job were looked at.
    assert {"IdentitySettings", "CompanyServiceSettings", "CoreSettings"} <= seen


@pytest.mark.parametrize(
    ("deployment", "dropped", "setting"),
    [
        ("core", "CARDINSA_SERVICE_API_KEY", "service_api_key"),
        ("identity", "CARDINSA_PAGE_TOKEN_SECRET", "page_token_secret"),
        ("identity", "CARDINSA_NOTIFIER", "notifier"),
        ("company", "CARDINSA_DATABASE_URL", "database_url"),
    ],
)
def test_the_check_names_a_secret_the_manifest_forgot(
    rendered: dict[str, list[Obj]],
    clean_environment: pytest.MonkeyPatch,
    deployment: str,
    dropped: str,
    setting: str,
) -> None:
    objects = rendered["prod"]
    config_maps = {c["metadata"]["name"]: c.get("data") or {} for c in find(objects, "ConfigMap")}
    (found,) = [
        (container, cls, serving)
        for where, container, cls, serving in our_containers(objects)
        if where == f"Deployment {deployment}/{deployment}"
    ]
    container, cls, serving = found
    env = container_environment(container, config_maps)
    del env[dropped]
    assert setting in missing_settings(clean_environment, cls, serving, env)


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


#: What the runbook's production copy of compose changes besides the env files'
#: values (docs/runbook.md, "Mail"): identity mails through a relay instead of
#: writing files.
COMPOSE_PRODUCTION_MAIL = {"CARDINSA_NOTIFIER": "smtp", "CARDINSA_SMTP_HOST": "smtp.example.com"}


def _compose_production_copy(service: dict[str, Any], mail: bool = True) -> dict[str, str]:
    env: dict[str, str] = {}
    for env_file in service.get("env_file") or []:
        for key, value in _parse_env_file(COMPOSE_DIR / Path(env_file)).items():
            # The production copy: same keys, real values.
            env[key] = production_value(key) if "dev-only" in value else value
    env.update({k: str(v) for k, v in (service.get("environment") or {}).items()})
    if mail:
        env.update(COMPOSE_PRODUCTION_MAIL)
    return env


def test_every_compose_service_gets_every_setting_in_a_production_copy(
    clean_environment: pytest.MonkeyPatch,
) -> None:
    checked = 0
    for name, service in _compose()["services"].items():
        found = settings_class(service.get("command") or [])
        if found is None:
            continue
        cls, serving = found
        env = _compose_production_copy(service)
        missing = missing_settings(clean_environment, cls, serving, env)
        assert missing == [], f"compose service {name} lacks (in production) {missing}"
        checked += 1
    assert checked >= 6  # three services and their migrations


def test_compose_identity_without_the_mail_relay_refuses_to_serve_in_production(
    clean_environment: pytest.MonkeyPatch,
) -> None:
    service = _compose()["services"]["identity"]
    found = settings_class(service["command"])
    assert found is not None
    cls, serving = found
    env = _compose_production_copy(service, mail=False)
    assert missing_settings(clean_environment, cls, serving, env) == ["notifier"]
