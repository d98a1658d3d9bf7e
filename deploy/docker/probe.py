"""Container probes without grpcurl or curl: the image has Python, so this is enough.

    python /app/probe.py grpc 127.0.0.1:50051 [SERVICE]     exit 0 when SERVING
    python /app/probe.py http http://127.0.0.1:9901/ready    exit 0 on a 2xx answer
    python /app/probe.py envoy-drain http://127.0.0.1:9901 SECONDS
        fail Envoy's health checks, drain its listeners, wait SECONDS (a preStop hook)

Exit codes: 0 healthy, 1 answered but not healthy, 2 unreachable or failed. Used by
the compose healthchecks and the Envoy pod's probes; Kubernetes probes the services
with its native gRPC probe instead.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request

HEALTHY, UNHEALTHY, UNREACHABLE = 0, 1, 2


def check_grpc(address: str, service: str, timeout_s: float) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError as error:
            code = error.code() if hasattr(error, "code") else None
            print(f"{address} {service or '(overall)'}: {code}", file=sys.stderr)
            return UNHEALTHY if code == grpc.StatusCode.NOT_FOUND else UNREACHABLE
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    if reply.status == health_pb2.HealthCheckResponse.SERVING:
        return HEALTHY
    print(f"{address} {service or '(overall)'}: {status}", file=sys.stderr)
    return UNHEALTHY


def _require_local_http(url: str) -> None:
    if not url.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]")):
        raise SystemExit(f"refusing {url}: probes only talk to this container (loopback)")


def check_http(url: str, timeout_s: float) -> int:
    _require_local_http(url)
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310
            return HEALTHY if 200 <= response.status < 300 else UNHEALTHY
    except urllib.error.HTTPError as error:
        print(f"{url}: HTTP {error.code}", file=sys.stderr)
        return UNHEALTHY
    except OSError as error:
        print(f"{url}: {error}", file=sys.stderr)
        return UNREACHABLE


def _post(url: str, timeout_s: float) -> bool:
    _require_local_http(url)
    try:
        request = urllib.request.Request(url, data=b"", method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=timeout_s):  # noqa: S310
            return True
    except OSError as error:
        print(f"{url}: {error}", file=sys.stderr)
        return False


def envoy_drain(admin_url: str, seconds: float, timeout_s: float) -> int:
    """A preStop hook for Envoy: fail its health checks (/ready and the listener's
    /healthz answer 503, so load balancers stop sending), drain the listeners
    gracefully (GOAWAY / Connection: close while in-flight requests finish), then
    wait `seconds` before the kubelet sends SIGTERM."""
    base = admin_url.rstrip("/")
    failed = _post(f"{base}/healthcheck/fail", timeout_s)
    drained = _post(f"{base}/drain_listeners?graceful&inboundonly", timeout_s)
    time.sleep(seconds)
    return HEALTHY if failed and drained else UNREACHABLE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="probe.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per request")
    sub = parser.add_subparsers(dest="kind", required=True)
    g = sub.add_parser("grpc", help="grpc.health.v1 Check")
    g.add_argument("address")
    g.add_argument("service", nargs="?", default="")
    h = sub.add_parser("http", help="GET, healthy on 2xx")
    h.add_argument("url")
    d = sub.add_parser("envoy-drain", help="drain Envoy's listeners, then wait")
    d.add_argument("admin_url")
    d.add_argument("seconds", type=float)
    args = parser.parse_args(argv)
    if args.kind == "grpc":
        return check_grpc(args.address, args.service, args.timeout)
    if args.kind == "http":
        return check_http(args.url, args.timeout)
    return envoy_drain(args.admin_url, args.seconds, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
