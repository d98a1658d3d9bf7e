"""Paths and small helpers shared by the deployment tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = ("dev", "prod")
SERVICES = ("identity", "company", "core")
SERVICE_PORTS = {"identity": (50051, 9051), "company": (50052, 9052), "core": (50053, 9053)}

Obj = dict[str, Any]


def find(objects: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [
        o
        for o in objects
        if o.get("kind") == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objects: list[Obj], kind: str, name: str) -> Obj:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_spec(obj: Obj) -> Obj:
    spec: Obj = obj["spec"]["template"]["spec"]
    return spec


def containers(obj: Obj, *, init: bool = True) -> list[Obj]:
    spec = pod_spec(obj)
    return [*(spec.get("initContainers") or [] if init else []), *spec["containers"]]


def workloads(objects: list[Obj]) -> list[Obj]:
    return [o for o in objects if o.get("kind") in ("Deployment", "StatefulSet", "Job")]
