"""The dispatcher's connection guard, with a resolver the test controls: a host
is refused unless every address it resolves to is allowed, and the connection
goes to the address that was checked (the name is never resolved again, so a
second, different DNS answer cannot redirect it). Also the retry backoff and
the dispatcher's settings."""

from __future__ import annotations

import http.server
import sys
import threading
import types
from collections.abc import Iterator

import httpx
import pytest
from pydantic import ValidationError

from cardinsa_company.dispatcher.delivery import backoff_s
from cardinsa_company.dispatcher.network import GuardedBackend, TargetNotAllowed, guarded_transport
from cardinsa_company.dispatcher.process import jetstream_sink
from cardinsa_company.dispatcher_settings import DispatcherSettings
from cardinsa_company.domain.webhooks import address_allowed


def strict(address: str) -> bool:
    return address_allowed(address, allow_private=False)


def resolver(answers: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return answers[host]

    resolve.asked = asked  # type: ignore[attr-defined]
    return resolve


@pytest.mark.parametrize(
    "answer",
    [
        ["127.0.0.1"],
        ["10.1.2.3"],
        ["169.254.169.254"],
        ["::ffff:127.0.0.1"],
        ["8.8.8.8", "192.168.1.1"],  # one bad address is enough
    ],
)
async def test_a_host_resolving_to_any_internal_address_is_refused(answer: list[str]) -> None:
    backend = GuardedBackend(strict, resolver=resolver({"hooks.example.com": answer}))
    with pytest.raises(TargetNotAllowed, match="is not allowed"):
        await backend.connect_tcp("hooks.example.com", 443)


async def test_an_ip_literal_is_checked_without_resolving() -> None:
    resolve = resolver({})
    backend = GuardedBackend(strict, resolver=resolve)
    for literal in ("127.0.0.1", "[::1]", "::ffff:10.0.0.1", "0.0.0.0"):  # noqa: S104
        with pytest.raises(TargetNotAllowed):
            await backend.connect_tcp(literal, 80)
    assert resolve.asked == []  # type: ignore[attr-defined]


async def test_public_addresses_pass_the_check() -> None:
    backend = GuardedBackend(strict, resolver=resolver({"hooks.example.com": ["8.8.8.8"]}))
    assert await backend.addresses("hooks.example.com", 443) == ["8.8.8.8"]


async def test_unix_sockets_are_refused() -> None:
    with pytest.raises(TargetNotAllowed):
        await GuardedBackend(strict).connect_unix_socket("/var/run/docker.sock")


@pytest.fixture
def local_server() -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


async def test_the_connection_goes_to_the_checked_address(local_server: int) -> None:
    """``receiver.invalid`` resolves nowhere on this machine: the request can
    only succeed by connecting to the address the guard's resolver returned
    (and checked), once."""
    resolve = resolver({"receiver.invalid": ["127.0.0.1"]})
    transport = guarded_transport(
        allow_private=True, max_connections=2, resolver=resolve, allowed=lambda _: True
    )
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.post(f"http://receiver.invalid:{local_server}/hook", content=b"{}")
    assert response.status_code == 204
    assert resolve.asked == ["receiver.invalid"]  # type: ignore[attr-defined]


async def test_the_same_host_refused_when_private_targets_are_not_allowed(
    local_server: int,
) -> None:
    resolve = resolver({"receiver.invalid": ["127.0.0.1"]})
    transport = guarded_transport(allow_private=False, max_connections=2, resolver=resolve)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(TargetNotAllowed, match=r"receiver\.invalid is not allowed"):
            await client.post(f"http://receiver.invalid:{local_server}/hook", content=b"{}")


def test_backoff_doubles_is_capped_and_half_of_it_is_random() -> None:
    low = [backoff_s(n, base_s=30, max_s=21600, rand=lambda: 0.0) for n in range(1, 12)]
    high = [backoff_s(n, base_s=30, max_s=21600, rand=lambda: 1.0) for n in range(1, 12)]
    assert high[:4] == [30, 60, 120, 240]
    assert low[:4] == [15, 30, 60, 120]
    assert max(high) == 21600 and high[-1] == 21600 and low[-1] == 10800
    assert backoff_s(1000, base_s=30, max_s=60, rand=lambda: 1.0) == 60


def test_settings_defaults_and_checks() -> None:
    settings = DispatcherSettings(_env_file=None)
    assert settings.dispatcher_sources == ["identity", "company", "core"]
    assert settings.dispatcher_metrics_port == 9055
    assert settings.dispatcher_concurrency == 8
    assert settings.dispatcher_delivery_timeout_s == 10.0
    assert (settings.dispatcher_retry_base_s, settings.dispatcher_max_attempts) == (30.0, 10)
    assert settings.source_address("core") == "127.0.0.1:50053"
    assert DispatcherSettings(
        _env_file=None, dispatcher_sources="core, identity"
    ).dispatcher_sources == [
        "core",
        "identity",
    ]
    with pytest.raises(ValidationError, match="unknown sources"):
        DispatcherSettings(_env_file=None, dispatcher_sources="billing")
    with pytest.raises(ValidationError, match="dispatcher_lease_s"):
        DispatcherSettings(_env_file=None, dispatcher_lease_s=20, dispatcher_delivery_timeout_s=10)
    problems = DispatcherSettings(_env_file=None).serving_problems()
    assert [name for name, _ in problems] == ["service_api_key"]
    assert "events.watch" in problems[0][1]
    assert DispatcherSettings(_env_file=None, service_api_key="cdk_x").serving_problems() == []


def test_the_jetstream_sink_is_made_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The agreed constructor: ``JetStreamSink(url, *, stream, subject_prefix)``,
    imported only when CARDINSA_DISPATCHER_NATS_URL is set (a module of its own)."""
    made: list[tuple[str, dict[str, str]]] = []

    class JetStreamSink:
        name = "jetstream"

        def __init__(self, url: str, **kwargs: str) -> None:
            made.append((url, kwargs))

    module = types.ModuleType("cardinsa_company.dispatcher.jetstream")
    module.JetStreamSink = JetStreamSink  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    settings = DispatcherSettings(
        _env_file=None, dispatcher_nats_url="nats://nats.internal:4222", dispatcher_nats_stream="S"
    )
    assert isinstance(jetstream_sink(settings), JetStreamSink)
    assert made == [
        ("nats://nats.internal:4222", {"stream": "S", "subject_prefix": "cardinsa.events"})
    ]
