"""docs/webhook-deliveries.md cannot lie: its examples run against real signatures.

The example body and headers must be what the dispatcher sends for the example
event (``cardinsa_company.domain.webhooks``); the Python and shell verification
examples are extracted from the Markdown (the fenced block after an
``<!-- example: NAME -->`` marker) and executed against bodies signed by
:func:`signature_header`, accepting what is valid and refusing what is not.
"""

from __future__ import annotations

import ast
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cardinsa.core.v1 import events_pb2 as core_events_pb2
from cardinsa.core.v1 import resources_pb2 as core_pb2
from cardinsa.events.v1 import events_pb2
from cardinsa_company.domain import webhooks

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "webhook-deliveries.md"

EXAMPLE_SECRET = "whsec_q8J2vX5nR1tY7uB4wE9zK3mP6sD0fH2gL5cA8xV1bN4"
EXAMPLE_TIMESTAMP = 1796636490
EXAMPLE_DELIVERY_ID = "6a0f3e9d-2b7c-4d18-9e5a-3c4b2d1f0e87"


def example_event() -> events_pb2.Event:
    """The event the document shows: a claim submitted."""
    company = "5f1d3c2a-8b4e-4f6a-9c7d-1e2f3a4b5c6d"
    claim = core_pb2.Claim(
        id="c3a9e2f1-7b6d-4e5c-8a9b-0c1d2e3f4a5b",
        claim_number="CLM-2026-000042",
        policy_id="9e8d7c6b-5a4f-4e3d-9c1b-0a9f8e7d6c5b",
        policy_version=1,
        claim_type=core_pb2.Claim.ClaimType.MEDICAL,
        description="Emergency treatment after a fall",
        coverage_code="hospital",
        state=core_pb2.Claim.State.SUBMITTED,
        etag='"Qm9vSzl0c2xZb3Rj"',
    )
    claim.incident_date.year, claim.incident_date.month, claim.incident_date.day = 2026, 12, 3
    claim.report_date.year, claim.report_date.month, claim.report_date.day = 2026, 12, 7
    claim.claimed_amount.currency_code = "EUR"
    claim.claimed_amount.units = 1250
    claim.create_time.FromDatetime(datetime(2026, 12, 7, 9, 12, 5, tzinfo=UTC))
    claim.update_time.FromDatetime(datetime(2026, 12, 7, 9, 41, 27, 512000, tzinfo=UTC))
    payload = core_events_pb2.ClaimEvent(
        claim=claim, transition="submit", from_state=core_pb2.Claim.State.DRAFT
    )
    event = events_pb2.Event(
        id="0b7f6c1e-5d2a-4c8e-9f31-2a6d8e4b7c90",
        source="core",
        type="cardinsa.core.claim.submit.v1",
        subject=f"claims/{claim.id}",
        company_id=company,
        ordering_key=f"claims/{claim.id}",
        sequence=1042,
        data_schema="cardinsa.core.v1.ClaimEvent",
    )
    event.time.FromDatetime(datetime(2026, 12, 7, 9, 41, 27, 512000, tzinfo=UTC))
    event.data.Pack(payload)
    return event


def _text() -> str:
    return DOC.read_text(encoding="utf-8")


def _block(name: str) -> str:
    """The fenced code block right after ``<!-- example: name -->``."""
    found = re.search(
        rf"<!-- example: {re.escape(name)} -->\s*\n```[a-z]*\n(.*?)\n```", _text(), re.DOTALL
    )
    assert found, f"no example {name!r} in {DOC.name}"
    return found.group(1) + "\n"


def test_the_example_body_is_what_the_dispatcher_sends() -> None:
    shown = json.loads(_block("delivery-body"))
    assert shown == json.loads(webhooks.cloud_event_body(example_event()))


def test_the_example_headers_carry_the_real_signature_of_the_example_body() -> None:
    lines = _block("delivery-headers").strip().splitlines()
    assert lines[0].startswith("POST ")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    body = webhooks.cloud_event_body(example_event())
    assert headers == {
        "Content-Type": webhooks.CONTENT_TYPE,
        webhooks.EVENT_ID_HEADER: example_event().id,
        webhooks.EVENT_TYPE_HEADER: example_event().type,
        webhooks.DELIVERY_ID_HEADER: EXAMPLE_DELIVERY_ID,
        webhooks.DELIVERY_ATTEMPT_HEADER: "1",
        webhooks.TIMESTAMP_HEADER: str(EXAMPLE_TIMESTAMP),
        webhooks.SIGNATURE_HEADER: webhooks.signature_header(
            [EXAMPLE_SECRET], EXAMPLE_TIMESTAMP, body
        ),
    }
    assert f"`{EXAMPLE_SECRET}`" in _text()  # the reader can check it too


def test_the_documented_tolerance_is_the_default() -> None:
    assert webhooks.DEFAULT_TOLERANCE_S == 300
    assert "tolerance: int = 300" in _block("verify-python")


@pytest.fixture
def signed() -> Callable[..., tuple[bytes, str, str]]:
    """``(body, timestamp header, signature header)`` signed now (or ``age`` ago)."""

    def sign(*secrets: str, age: int = 0) -> tuple[bytes, str, str]:
        body = webhooks.cloud_event_body(example_event())
        timestamp = int(time.time()) - age
        return body, str(timestamp), webhooks.signature_header(secrets, timestamp, body)

    return sign


NEW, OLD, OTHER = (f"whsec_{name}-{'x' * 40}" for name in ("new", "old", "other"))


def test_the_python_example_uses_only_the_standard_library() -> None:
    tree = ast.parse(_block("verify-python"))
    modules = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert modules
    assert modules <= set(sys.stdlib_module_names)


def test_the_python_example_accepts_valid_and_refuses_invalid_deliveries(
    signed: Callable[..., tuple[bytes, str, str]],
) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(_block("verify-python"), "docs/webhook-deliveries.md", "exec"), namespace)  # noqa: S102
    verify = namespace["verify"]

    body, timestamp, header = signed(NEW, OLD)  # during a rotation: both signatures
    assert verify(NEW, timestamp, header, body) is True
    assert verify(OLD, timestamp, header, body) is True
    assert verify(OTHER, timestamp, header, body) is False
    assert verify(NEW, timestamp, header, body + b" ") is False
    assert verify(NEW, str(int(timestamp) + 1), header, body) is False
    assert verify(NEW, timestamp, "", body) is False
    assert verify(NEW, "soon", header, body) is False
    stale_body, stale_timestamp, stale_header = signed(NEW, age=301)  # a replay
    assert verify(NEW, stale_timestamp, stale_header, stale_body) is False
    early_body, early_timestamp, early_header = signed(NEW, age=-301)
    assert verify(NEW, early_timestamp, early_header, early_body) is False
    old_body, old_timestamp, old_header = signed(NEW, age=240)
    assert verify(NEW, old_timestamp, old_header, old_body) is True


def _run_shell(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", script],
        cwd=cwd,
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not on PATH")
def test_the_shell_example_accepts_valid_and_refuses_invalid_deliveries(
    signed: Callable[..., tuple[bytes, str, str]], tmp_path: Path
) -> None:
    script = _block("verify-shell")

    def check(secret: str, body: bytes, timestamp: str, header: str) -> int:
        (tmp_path / "body.json").write_bytes(body)
        done = _run_shell(script, tmp_path, SECRET=secret, TIMESTAMP=timestamp, SIGNATURES=header)
        return done.returncode

    body, timestamp, header = signed(NEW, OLD)
    assert check(NEW, body, timestamp, header) == 0
    assert check(OLD, body, timestamp, header) == 0
    assert check(OTHER, body, timestamp, header) != 0
    assert check(NEW, body + b"\n", timestamp, header) != 0
    assert check(NEW, body, "abc", header) != 0
    stale_body, stale_timestamp, stale_header = signed(NEW, age=301)
    assert check(NEW, stale_body, stale_timestamp, stale_header) != 0
    early_body, early_timestamp, early_header = signed(NEW, age=-301)
    assert check(NEW, early_body, early_timestamp, early_header) != 0


class _Recorder(http.server.BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.received.append((dict(self.headers.items()), self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    received: list[tuple[dict[str, str], bytes]] = []
    handler = type("Recorder", (_Recorder,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/cardinsa", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.skipif(
    shutil.which("openssl") is None or shutil.which("curl") is None,
    reason="openssl or curl is not on PATH",
)
def test_the_curl_example_sends_a_delivery_the_real_check_accepts(
    receiver: tuple[str, list[tuple[dict[str, str], bytes]]], tmp_path: Path
) -> None:
    url, received = receiver
    body = webhooks.cloud_event_body(example_event())
    (tmp_path / "body.json").write_bytes(body)
    done = _run_shell(_block("send-test-delivery"), tmp_path, SECRET=NEW, URL=url)
    assert done.returncode == 0, done.stderr
    [(headers, sent)] = received
    assert sent == body
    assert headers["Content-Type"] == webhooks.CONTENT_TYPE
    assert webhooks.verify(
        NEW,
        headers[webhooks.SIGNATURE_HEADER],
        headers[webhooks.TIMESTAMP_HEADER],
        sent,
        now=time.time(),
    )
