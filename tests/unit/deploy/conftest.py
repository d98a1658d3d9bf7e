"""Fixtures of the deployment tests: the overlays, rendered once per session."""

from __future__ import annotations

import pytest
from deploy_kustomize import render
from deploy_support import K8S, OVERLAYS, Obj


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Obj]]:
    return {overlay: render(K8S / "overlays" / overlay) for overlay in OVERLAYS}
