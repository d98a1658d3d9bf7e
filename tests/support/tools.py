"""Binaries the project installs into its virtual environment (grpcurl, envoy, buf)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def venv_tool(name: str) -> str:
    """Path of a console script of this environment, even when .venv/bin is not on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    assert found, f"{name} is not installed (it comes with the project's extras: make setup)"
    return found
