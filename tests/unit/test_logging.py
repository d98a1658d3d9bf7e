"""Logging: JSON lines with the request context, and no secret ever in the output."""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cardinsa_foundation.context import (
    Principal,
    PrincipalKind,
    method_var,
    principal_var,
    request_id_var,
)
from cardinsa_foundation.logging import (
    REDACTED,
    AccessLogger,
    configure_logging,
    redact,
    redact_text,
)

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

JWT = (
    "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0"
    ".eyJzdWIiOiJ1MSIsInR5cCI6ImFjY2VzcyJ9"
    ".Zm9vYmFyYmF6cXV4LXNpZ25hdHVyZS1ieXRlcw"
)
API_KEY = "cardinsa_sk_9f8e7d6c5b4a3210ZyXwVuTs"
PASSWORD = "Hunter2-Correct-Horse"
REFRESH = "rt_5mQ2zK8pW1nB7vC4xL9j"
RESET = "rst_A1b2C3d4E5f6G7h8"
HASH = "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG"

# (secret value, how it appears in free text)
SECRET_TEXTS = {
    "password": (PASSWORD, f"login attempt password={PASSWORD} from 10.0.0.1"),
    "password_json": (PASSWORD, f'body {{"email": "a@b.c", "password": "{PASSWORD}"}}'),
    "access_token": (JWT, f"verifying {JWT} now"),
    "bearer_header": (JWT, f"metadata authorization: Bearer {JWT}"),
    "refresh_token": (REFRESH, f"rotating refresh_token={REFRESH}"),
    "reset_token": (RESET, f"{{'reset_token': '{RESET}', 'user': 'u1'}}"),
    "api_key": (API_KEY, f"service account presented {API_KEY}"),
    "api_key_header": ("k-ZZZ-123-secret", "x-api-key: k-ZZZ-123-secret"),
    "grpc_metadata": ("k-ZZZ-123-secret", "metadata (('x-api-key', 'k-ZZZ-123-secret'),)"),
    "db_url": ("pg-S3cret", "connecting to postgresql+asyncpg://cardinsa:pg-S3cret@db:5432/x"),
    "password_hash": (HASH, f"stored hash {HASH}"),
    "proto_text": (PASSWORD, f'request: email: "a@b.c" password: "{PASSWORD}"'),
}


@pytest.fixture
def capture() -> Iterator[Callable[..., io.StringIO]]:
    """Configure logging into a buffer; restore the root logger afterwards."""
    root = logging.getLogger()
    saved_level = root.level
    saved_handlers = list(root.handlers)

    def configure(*, json_lines: bool = True, level: str = "DEBUG") -> io.StringIO:
        buffer = io.StringIO()
        configure_logging(level, json_lines, "test-svc", stream=buffer)
        return buffer

    yield configure
    for handler in list(root.handlers):
        if handler not in saved_handlers:
            root.removeHandler(handler)
    root.setLevel(saved_level)
    logging.captureWarnings(False)


@pytest.fixture
def in_request() -> Iterator[None]:
    tokens = [
        (request_id_var, request_id_var.set("req-7")),
        (
            principal_var,
            principal_var.set(
                Principal(subject="user-1", kind=PrincipalKind.USER, company_id="co-9")
            ),
        ),
        (method_var, method_var.set("/cardinsa.core.v1.PolicyService/GetPolicy")),
    ]
    yield
    for var, token in reversed(tokens):
        var.reset(token)  # type: ignore[attr-defined]


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    text = buffer.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


# ------------------------------------------------------------------ format


def test_json_line_has_every_field_and_the_request_context(
    capture: Callable[..., io.StringIO], in_request: None
) -> None:
    out = capture()
    logging.getLogger("cardinsa.test").info(
        "policy %s renewed", "p-1", extra={"duration_ms": 3.5, "when": datetime.date(2026, 1, 2)}
    )
    (entry,) = lines(out)
    assert RFC3339_UTC.match(entry["time"]), entry["time"]
    parsed = datetime.datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
    assert abs(parsed.timestamp() - time.time()) < 60
    assert entry["level"] == "INFO"
    assert entry["logger"] == "cardinsa.test"
    assert entry["message"] == "policy p-1 renewed"
    assert entry["service"] == "test-svc"
    assert entry["pid"] == os.getpid()
    assert entry["request_id"] == "req-7"
    assert entry["company_id"] == "co-9"
    assert entry["principal"] == "user-1"
    assert entry["method"] == "/cardinsa.core.v1.PolicyService/GetPolicy"
    assert entry["duration_ms"] == 3.5
    assert entry["when"] == "2026-01-02"
    assert "exception" not in entry


def test_context_fields_are_present_and_null_outside_a_request(
    capture: Callable[..., io.StringIO],
) -> None:
    out = capture()
    logging.getLogger("x").warning("starting")
    (entry,) = lines(out)
    for key in ("request_id", "company_id", "principal", "method"):
        assert key in entry
        assert entry[key] is None


def test_exception_text_is_a_field(capture: Callable[..., io.StringIO]) -> None:
    out = capture()
    try:
        raise RuntimeError("boom in the repository")
    except RuntimeError:
        logging.getLogger("x").exception("handler failed")
    (entry,) = lines(out)
    assert entry["level"] == "ERROR"
    assert "Traceback" in entry["exception"]
    assert "RuntimeError: boom in the repository" in entry["exception"]


def test_extra_named_like_a_core_field_does_not_overwrite_it(
    capture: Callable[..., io.StringIO],
) -> None:
    out = capture()
    logging.getLogger("x").info("m", extra={"service": "spoofed", "level": "x"})
    (entry,) = lines(out)
    assert entry["service"] == "test-svc"
    assert entry["level"] == "INFO"
    assert entry["extra_service"] == "spoofed"


def test_text_format_is_readable(capture: Callable[..., io.StringIO], in_request: None) -> None:
    out = capture(json_lines=False)
    logging.getLogger("cardinsa.test").info("hello %s", "world", extra={"code": "OK"})
    line = out.getvalue().strip()
    assert "INFO" in line
    assert "cardinsa.test" in line
    assert "hello world" in line
    assert "request_id=req-7" in line
    assert "company=co-9" in line
    assert "code=OK" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_configure_twice_keeps_one_handler_and_applies_level(
    capture: Callable[..., io.StringIO],
) -> None:
    first = capture()
    second = capture(level="warning")
    log = logging.getLogger("x")
    log.info("dropped")
    log.warning("kept")
    assert first.getvalue() == ""
    assert [e["message"] for e in lines(second)] == ["kept"]


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="log level"):
        configure_logging("LOUD", True, "svc")


# --------------------------------------------------------------- redaction


def _assert_clean(output: str, secret: str) -> None:
    assert secret not in output
    assert REDACTED in output


@pytest.mark.parametrize("kind", sorted(SECRET_TEXTS))
@pytest.mark.parametrize("json_lines", [True, False], ids=["json", "text"])
def test_secret_in_message_is_redacted(
    capture: Callable[..., io.StringIO], kind: str, json_lines: bool
) -> None:
    secret, text = SECRET_TEXTS[kind]
    out = capture(json_lines=json_lines)
    logging.getLogger("x").info(text)
    _assert_clean(out.getvalue(), secret)


@pytest.mark.parametrize("kind", sorted(SECRET_TEXTS))
def test_secret_in_args_is_redacted(capture: Callable[..., io.StringIO], kind: str) -> None:
    secret, text = SECRET_TEXTS[kind]
    out = capture()
    logging.getLogger("x").info("got %s and %d", text, 3)
    (entry,) = lines(out)
    _assert_clean(entry["message"], secret)
    assert entry["message"].endswith(" and 3")


def test_secret_values_in_structured_args_are_redacted(
    capture: Callable[..., io.StringIO],
) -> None:
    out = capture()
    log = logging.getLogger("x")
    log.info("request %s", {"email": "a@b.c", "password": "two words here", "n": 1})
    log.info("%(user)s changed %(new_password)s", {"user": "u1", "new_password": PASSWORD})
    first, second = lines(out)
    assert "two words" not in first["message"] and "here" not in first["message"]
    assert "'email': 'a@b.c'" in first["message"]
    assert second["message"] == f"u1 changed {REDACTED}"


@pytest.mark.parametrize("kind", sorted(SECRET_TEXTS))
def test_secret_in_extra_text_is_redacted(capture: Callable[..., io.StringIO], kind: str) -> None:
    secret, text = SECRET_TEXTS[kind]
    out = capture()
    logging.getLogger("x").info("m", extra={"detail": text})
    (entry,) = lines(out)
    _assert_clean(entry["detail"], secret)


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "new_password",
        "access_token",
        "refresh_token",
        "reset_token",
        "api_key",
        "x-api-key",
        "apiKey",
        "Authorization",
        "client_secret",
    ],
)
def test_extra_field_with_a_sensitive_key_is_dropped(
    capture: Callable[..., io.StringIO], key: str
) -> None:
    out = capture()
    logging.getLogger("x").info("m", extra={key: "plain-looking-value-1234"})
    (entry,) = lines(out)
    assert entry[key] == REDACTED
    assert "plain-looking-value-1234" not in out.getvalue()


def test_nested_extra_values_are_redacted(capture: Callable[..., io.StringIO]) -> None:
    out = capture()
    payload = {
        "user": {"email": "a@b.c", "password": PASSWORD, "profile": {"api_key": API_KEY}},
        "sessions": [{"refresh_token": REFRESH, "id": "s1"}, f"Bearer {JWT}"],
        "pair": ("ok", {"reset_token": RESET}),
    }
    logging.getLogger("x").info("m", extra={"request": payload})
    raw = out.getvalue()
    for secret in (PASSWORD, API_KEY, REFRESH, JWT, RESET):
        assert secret not in raw
    (entry,) = lines(out)
    request = entry["request"]
    assert request["user"]["email"] == "a@b.c"
    assert request["user"]["password"] == REDACTED
    assert request["user"]["profile"]["api_key"] == REDACTED
    assert request["sessions"][0] == {"refresh_token": REDACTED, "id": "s1"}
    assert request["sessions"][1] == f"Bearer {REDACTED}"
    assert request["pair"] == ["ok", {"reset_token": REDACTED}]
    assert payload["user"]["password"] == PASSWORD  # the caller's object is not modified


def test_object_in_extra_is_printed_redacted(capture: Callable[..., io.StringIO]) -> None:
    class Credentials:
        def __str__(self) -> str:
            return f"Credentials(password={PASSWORD})"

    out = capture()
    logging.getLogger("x").info("m", extra={"creds": Credentials()})
    (entry,) = lines(out)
    assert entry["creds"] == f"Credentials(password={REDACTED})"


@pytest.mark.parametrize("kind", sorted(SECRET_TEXTS))
@pytest.mark.parametrize("json_lines", [True, False], ids=["json", "text"])
def test_secret_in_exception_text_is_redacted(
    capture: Callable[..., io.StringIO], kind: str, json_lines: bool
) -> None:
    secret, text = SECRET_TEXTS[kind]
    out = capture(json_lines=json_lines)
    try:
        raise ValueError(text)
    except ValueError:
        logging.getLogger("x").exception("failed")
    output = out.getvalue()
    _assert_clean(output, secret)
    assert "ValueError" in output


def test_harmless_text_is_left_alone() -> None:
    for text in (
        "module cardinsa_foundation.interceptors.authentication loaded",
        "policy 8d0c1c2e-0000-4000-8000-000000000001 moved to IN_FORCE",
        "calling https://identity:8443/v1/jwks",
        "/cardinsa.identity.v1.IdentityService/Login OK in 3.2 ms",
        "the key they gave was wrong",
        "",
    ):
        assert redact_text(text) == text


def test_redact_keeps_shapes_and_handles_cycles() -> None:
    cyclic: list[Any] = ["x"]
    cyclic.append(cyclic)
    result = redact(
        {"a": (1, "password=p1"), "b": {"secret": 2}, "c": None, "d": {"x", "y"}, "e": cyclic}
    )
    assert result["a"] == (1, f"password={REDACTED}")
    assert result["b"] == {"secret": REDACTED}
    assert result["c"] is None
    assert result["d"] == {"x", "y"}
    assert "[...]" in str(result["e"])
    assert redact(42) == 42


def test_access_lines_are_all_written_and_clean(
    capture: Callable[..., io.StringIO], in_request: None
) -> None:
    """The line every RPC writes goes through the filter with its content intact
    (its cost is a figure of `make bench`, "access log line", never timed here)."""
    out = capture()
    log = logging.getLogger("cardinsa.access")
    n = 200
    for _ in range(n):
        log.info(
            "rpc finished",
            extra={"code": "OK", "duration_ms": 1.25, "peer": "ipv4:10.0.0.1:5555"},
        )
    written = lines(out)
    assert len(written) == n
    assert {(w["code"], w["duration_ms"], w["peer"]) for w in written} == {
        ("OK", 1.25, "ipv4:10.0.0.1:5555")
    }
    assert REDACTED not in out.getvalue()


class _CountingBuffer(io.StringIO):
    """A stream that counts its writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_access_lines_of_one_loop_turn_are_written_together_and_in_order(
    in_request: None,
) -> None:
    """Lines of calls that end in one turn of the event loop reach the stream
    in one write at the end of that turn; a record logged the usual way after
    them comes after them; outside a loop each line is written at once."""
    root = logging.getLogger()
    saved = list(root.handlers)
    for handler in saved:  # pytest's capture: the JSON handler must be the only one
        root.removeHandler(handler)
    out = _CountingBuffer()
    configure_logging("INFO", True, "test-svc", stream=out)
    access = AccessLogger("cardinsa.access")
    try:
        access.log(logging.INFO, "rpc", {"n": 0})  # no loop: at once
        assert [line["n"] for line in lines(out)] == [0]

        async def turn() -> tuple[int, int]:
            for n in range(1, 51):
                access.log(logging.INFO, "rpc", {"n": n})
            held = len(out.getvalue().splitlines())
            await asyncio.sleep(0)  # the loop's turn ends
            return held, out.writes

        writes_before = out.writes
        held, writes_after = asyncio.run(turn())
        assert held == 1  # nothing of the turn was written during it
        assert writes_after - writes_before == 1
        assert [line["n"] for line in lines(out)] == list(range(51))

        async def then_an_error() -> None:
            access.log(logging.INFO, "rpc", {"n": 51})
            logging.getLogger("cardinsa.test").error("after the access line")

        asyncio.run(then_an_error())
        written = lines(out)
        assert written[-2].get("n") == 51
        assert written[-1]["message"] == "after the access line"
    finally:
        for handler in list(root.handlers):
            if handler not in saved:
                root.removeHandler(handler)
        for handler in saved:
            if handler not in root.handlers:
                root.addHandler(handler)
