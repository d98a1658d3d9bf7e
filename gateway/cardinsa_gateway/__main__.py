"""``python -m cardinsa_gateway``: render / validate / run the gateway, write OpenAPI.

    render   [--output .data/gateway/envoy.json] [--services identity,company]
             [--workers N] [--endpoint identity=127.0.0.1:50051,127.0.0.1:50151]
    validate [--config .data/gateway/envoy.json]     (envoy --mode validate)
    openapi  [--output gen/openapi.json]
    run      [render options]                          (render, start Envoy, wait, Ctrl-C stops)

Settings come from the environment (``CARDINSA_*``, see settings.py).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from cardinsa_gateway.contract import Contract
from cardinsa_gateway.envoy import Endpoint
from cardinsa_gateway.openapi import render_openapi
from cardinsa_gateway.process import (
    DEFAULT_OUTPUT,
    DESCRIPTOR,
    OPENAPI,
    EnvoyProcess,
    render_to_file,
    select_upstreams,
    validate,
)
from cardinsa_gateway.settings import GatewaySettings


def _endpoints(values: list[str]) -> dict[str, list[Endpoint]]:
    found: dict[str, list[Endpoint]] = {}
    for value in values:
        name, _, addresses = value.partition("=")
        if not addresses:
            raise SystemExit(f"--endpoint {value!r}: expected name=host:port[,host:port]")
        found[name.strip()] = [Endpoint.parse(a) for a in addresses.split(",") if a.strip()]
    return found


def _render(args: argparse.Namespace) -> Path:
    names = [n.strip() for n in args.services.split(",")] if args.services else None
    return render_to_file(
        Path(args.output),
        upstreams=select_upstreams(names),
        endpoints=_endpoints(args.endpoint),
        workers=args.workers,
        descriptor=Path(args.descriptor),
    )


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cardinsa_gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("render", "run"):
        sub = commands.add_parser(name)
        sub.add_argument("--output", default=str(DEFAULT_OUTPUT))
        sub.add_argument("--descriptor", default=str(DESCRIPTOR))
        sub.add_argument("--services", help="comma-separated subset of the upstreams")
        sub.add_argument("--workers", type=int, default=1, help="worker ports per service")
        sub.add_argument("--endpoint", action="append", default=[], metavar="NAME=HOST:PORT,...")
    check = commands.add_parser("validate")
    check.add_argument("--config", default=str(DEFAULT_OUTPUT))
    doc = commands.add_parser("openapi")
    doc.add_argument("--output", default=str(OPENAPI))
    doc.add_argument("--descriptor", default=str(DESCRIPTOR))
    args = parser.parse_args(argv)

    if args.command == "openapi":
        Path(args.output).write_text(
            render_openapi(Contract.load(Path(args.descriptor))), encoding="utf-8"
        )
        return 0
    if args.command == "validate":
        result = validate(Path(args.config))
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        return result.returncode
    output = _render(args)
    print(f"wrote {output}", file=sys.stderr)
    if args.command == "render":
        return 0

    settings = GatewaySettings()
    envoy = EnvoyProcess(
        output, settings.gateway_admin_port, f"{settings.gateway_host}:{settings.gateway_port}"
    )
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        envoy.start()
        envoy.wait_ready(upstreams_healthy=False)
        print(f"envoy (pid {envoy.pid}) listening on {envoy.listen}", file=sys.stderr)
        assert envoy.process is not None
        return envoy.process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        envoy.stop()


if __name__ == "__main__":
    sys.exit(main())
