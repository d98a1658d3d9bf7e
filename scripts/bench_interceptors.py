"""What an interceptor layer costs: no-op unary calls through different stacks.

    .venv/bin/python scripts/bench_interceptors.py [--seconds 5] [--concurrency 50]

Variants (each a fresh server process, loaded by a fresh client process):
- ``bare``: grpc.aio server, no interceptor (the ceiling);
- ``grpc_interceptor_x7``: seven pass-through ``grpc_interceptor``
  AsyncServerInterceptor layers (one per concern, the library's way);
- ``grpc_interceptor_x1``: one such layer;
- ``pipeline``: Cardinsa's CallPipeline (request id, auth skipped for a public
  method, error mapping, metrics, access log) as one grpc.aio interceptor.

Prints requests/s and the ratio to ``bare`` measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import subprocess
import sys
import time
from typing import Any

import grpc

METHOD = "/cardinsa.bench.v1.Bench/Noop"


def _noop_handler() -> grpc.GenericRpcHandler:
    async def noop(request: bytes, context: Any) -> bytes:
        return b""

    return grpc.method_handlers_generic_handler(
        "cardinsa.bench.v1.Bench", {"Noop": grpc.unary_unary_rpc_method_handler(noop)}
    )


def _interceptors(variant: str) -> list[Any]:
    if variant == "bare":
        return []
    if variant.startswith("grpc_interceptor"):
        from grpc_interceptor.server import AsyncServerInterceptor

        class PassThrough(AsyncServerInterceptor):  # type: ignore[misc]
            async def intercept(
                self, method: Any, request: Any, context: Any, method_name: str
            ) -> Any:
                return await method(request, context)

        count = int(variant.rsplit("x", 1)[1])
        return [PassThrough() for _ in range(count)]
    if variant == "pipeline":
        from cardinsa_foundation.authorization import Access, MethodRule
        from cardinsa_foundation.interceptors import CallPipeline

        logging.getLogger("cardinsa.access").setLevel(
            int(__import__("os").environ.get("ACCESS_LEVEL", "20"))
        )
        logging.basicConfig(level=logging.INFO, stream=open("/dev/null", "w"))  # noqa: SIM115
        rules = {METHOD: MethodRule(METHOD, Access.PUBLIC)}
        return [CallPipeline(rules=rules, verifier=None, service="bench")]
    raise SystemExit(f"unknown variant {variant}")


async def serve(variant: str) -> None:
    server = grpc.aio.server(
        interceptors=_interceptors(variant), options=[("grpc.so_reuseport", 0)]
    )
    server.add_generic_rpc_handlers((_noop_handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


async def load(port: int, seconds: float, concurrency: int) -> float:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(METHOD)
        for _ in range(200):  # warm-up
            await call(b"")
        done = 0
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await call(b"")
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.perf_counter() - started)


def h2load(port: int, seconds: float, concurrency: int) -> float:
    """Load with h2load (nghttp2-client): the load generator costs far less CPU
    than a Python client, so the server's own cost shows. Every call is an
    empty gRPC message; h2load's own count cannot see gRPC errors, but a no-op
    method has none."""
    import re
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".bin") as payload:
        payload.write(b"\x00\x00\x00\x00\x00")
        payload.flush()
        out = subprocess.run(
            [
                "h2load",
                "-D",
                str(int(seconds)),
                "-c",
                str(concurrency),
                "-m",
                "10",
                "-d",
                payload.name,
                "-H",
                "content-type: application/grpc",
                "-H",
                "te: trailers",
                f"http://127.0.0.1:{port}{METHOD}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    match = re.search(r"finished in [^,]+, ([0-9.]+) req/s", out)
    assert match, out
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--load", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return
    if args.load:
        print(json.dumps(asyncio.run(load(args.load, args.seconds, args.concurrency))))
        return
    variants = ["bare", "grpc_interceptor_x1", "grpc_interceptor_x7", "pipeline"]
    results: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.rounds):
        for variant in variants:
            server = subprocess.Popen(
                [sys.executable, __file__, "--serve", variant], stdout=subprocess.PIPE, text=True
            )
            try:
                assert server.stdout is not None
                port = int(server.stdout.readline())
                if shutil.which("h2load"):
                    results[variant].append(h2load(port, args.seconds, args.concurrency))
                else:
                    out = subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--load",
                            str(port),
                            "--seconds",
                            str(args.seconds),
                            "--concurrency",
                            str(args.concurrency),
                        ],
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    results[variant].append(float(out.stdout))
            finally:
                server.terminate()
                server.wait()
    base = max(results["bare"])
    print(f"{'variant':<22}{'req/s (best)':>14}{'ratio to bare':>16}")
    for variant in variants:
        best = max(results[variant])
        print(f"{variant:<22}{best:>14.0f}{best / base:>16.2f}")


if __name__ == "__main__":
    main()
