"""Regenerate everything derived from protos/: lint, Python stubs, descriptor set, OpenAPI.

Run through `make proto` (and automatically by `make up` / `make test` whenever a
.proto file changed). Output goes to gen/, which is git-ignored: generated code
is produced by the set-up, never committed and never edited by hand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
VENDORED = ROOT / "third_party" / "googleapis"
GEN = ROOT / "gen"
BIN = Path(sys.executable).parent
GATEWAY = ROOT / "gateway"


def run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, cwd=ROOT, check=False)
    if result.returncode != 0:
        sys.exit(f"codegen: {' '.join(cmd[:3])} ... failed (exit {result.returncode})")


def write_openapi(descriptor: Path, output: Path) -> None:
    """The OpenAPI 3.1 document of the REST surface (served by the gateway)."""
    from cardinsa_gateway.contract import Contract
    from cardinsa_gateway.openapi import render_openapi

    contract = Contract.load(descriptor)
    if not contract.has_source_info():
        sys.exit("codegen: the descriptor set carries no source info (comments)")
    output.write_text(render_openapi(contract), encoding="utf-8")


def main() -> None:
    os.environ.setdefault("BUF_CACHE_DIR", str(ROOT / ".cache" / "buf"))
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    print(f"==> codegen: buf lint, then {len(sources)} proto files -> gen/", flush=True)
    run([str(BIN / "buf"), "lint"])

    # Build into a temporary folder and swap it in, so a failed run never
    # leaves half-written stubs behind.
    tmp = Path(tempfile.mkdtemp(prefix="gen.", dir=ROOT))
    try:
        out = tmp / "python"
        out.mkdir()
        import grpc_tools

        wkt = Path(grpc_tools.__file__).parent / "_proto"
        run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"-I{PROTOS}",
                f"-I{VENDORED}",
                f"-I{wkt}",
                f"--python_out={out}",
                f"--pyi_out={out}",
                f"--grpc_python_out={out}",
                *sources,
            ]
        )
        # Generated modules import siblings as `cardinsa.<area>.v1`; make every
        # folder a regular package so mypy and importlib agree.
        for folder in [out / "cardinsa", *(p for p in (out / "cardinsa").rglob("*") if p.is_dir())]:
            (folder / "__init__.py").touch()
        (tmp / "python" / "cardinsa" / "py.typed").touch()
        # One descriptor set with every import (google/api, google/rpc/error_details,
        # well-known types) for the gateway's transcoder and for contract tests.
        # Source info (comments) stays in: `buf build` keeps it unless told
        # --exclude-source-info; the OpenAPI descriptions come from it.
        run(
            [
                str(BIN / "buf"),
                "build",
                "--as-file-descriptor-set",
                "-o",
                str(tmp / "descriptor.binpb"),
            ]
        )
        write_openapi(tmp / "descriptor.binpb", tmp / "openapi.json")
        if GEN.exists():
            shutil.rmtree(GEN)
        tmp.rename(GEN)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    print("==> codegen: done", flush=True)


if __name__ == "__main__":
    main()
