"""Process logging: one JSON object per line with the request context, secrets redacted.

`configure_logging` installs a single stderr handler on the root logger. Every
line carries the service, the pid and the request context (request id, company,
principal, method; ``trace_id`` and ``span_id`` while tracing is on) read from
`cardinsa_foundation.context`, so a log aggregator can follow one call across
services without each call site repeating it.

Secrets never reach the output: a `RedactionFilter` on the handler rewrites the
message (after its args are merged in), the ``extra`` fields (nested dicts and
lists included) and the exception text before any formatter sees them. The same
rules are available as `redact` (structures) and `redact_text` (strings) for
code that builds messages or audit payloads itself. What counts as a secret:

- values under keys containing password / passwd / passphrase / secret / token /
  api_key (apikey, api-key) / authorization / private_key / cookie
  (``extra={"refresh_token": ...}``, ``{"user": {"password": ...}}``);
- the same keys inside text: ``password=...``, ``"token": "..."``,
  ``Authorization: Bearer ...``, proto text ``password: "..."``;
- ``Bearer <token>``; JWT-looking strings (three base64url segments whose first
  two are base64 JSON, or any three long base64url segments: our access tokens);
  the opaque secrets identity issues, wherever they stand: API keys
  ``cdk_<prefix>_<secret>``, refresh tokens ``cdr_<secret>``, password-reset tokens
  ``cdp_<secret>`` (also the older ``cardinsa_<16+ chars>`` form); passwords in URLs
  (``postgresql://user:pw@host``); argon2 and bcrypt hashes.
- the shared secrets of the deployment under their setting or header names
  (``signing_key_encryption_key=...``, ``x-cardinsa-gateway-auth: ...``).

tests/unit/identity/test_redaction_of_issued_secrets.py checks these against values
made by identity's real generators, and tests/integration/identity/
test_no_secret_in_logs.py against a real identity server's log lines.

Cost: one pass of one compiled regular expression over the message, and a walk of
the extra fields; patterns are bounded or possessive so a long blob stays linear.

The access line every RPC writes goes through `AccessLogger`: the same JSON line,
the same redaction of its fields, without a LogRecord, the logger hierarchy walk
and the generic filter when our JSON handler is the only one (production), for
about half the CPU (docs/performance.md). Any other logging set-up (a test's
capture handler, text output) gets an ordinary log call, so nothing changes for
it.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import json as _json
import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from cardinsa_foundation.context import (
    client_address_var,
    method_var,
    principal_var,
    request_id_var,
    trace_var,
)

__all__ = [
    "REDACTED",
    "AccessLogger",
    "JsonFormatter",
    "RedactionFilter",
    "TextFormatter",
    "configure_logging",
    "is_sensitive_key",
    "redact",
    "redact_text",
]

REDACTED = "[REDACTED]"

_KEY_FRAGMENT = (
    r"pass(?:word|wd|phrase)|secret|token|api[_-]?key|authorization|private[_-]?key|cookie"
    r"|encryption[_-]?key|gateway[_-]?auth"
)
_SENSITIVE_KEY = re.compile(_KEY_FRAGMENT, re.IGNORECASE)
# Substrings (of the lower-cased text) without which no key=value secret can be present.
_KEY_TRIGGERS = (
    "pass",
    "secret",
    "token",
    "api",
    "authorization",
    "private",
    "cookie",
    "encryption",
    "gateway",
)

# key = value / "key": "value" / key: value / ('key', 'value'), matched on the
# lower-cased text (Python's case-insensitive matching is several times slower). The
# value is quoted, escaped-quoted or bare; an auth scheme such as "Bearer" is
# swallowed with the credential.
# The key is matched from its secret fragment on: what precedes it ("refresh_") is
# kept as is anyway.
_KV = re.compile(
    rf"(?:{_KEY_FRAGMENT})[a-z0-9_\-]{{0,40}}+"
    r"(?P<sep>\\?[\"']?\s*[:=]\s*|[\"']\s*,\s*(?=[\"']))"  # also ('key', 'value')
    r"(?P<val>"
    r"\\\"(?:[^\"\\]|\\[^\"])*\\\""
    r"|\"(?:[^\"\\]|\\.)*\""
    r"|'(?:[^'\\]|\\.)*'"
    r"|(?:(?:bearer|basic|digest|token)\s+)?[^\s\"',;&)}\]]+"
    r")"
)
_KV_ANY_CASE = re.compile(_KV.pattern, re.IGNORECASE)  # for text whose lower() changes length

_B64 = r"[A-Za-z0-9_\-]"
# Each pattern starts with a literal or is guarded by a substring test, and uses
# bounded or possessive repeats, so a long blob costs linear time.
_URL_PASSWORD = re.compile(r"(://[^:/@\s]{0,100}):[^@/\s]{1,200}@")
_BEARER = re.compile(r"(\bbearer\s+)[A-Za-z0-9._~+/=\-]{8,}+", re.IGNORECASE)
_JWT = re.compile(rf"\be[wy]{_B64}{{4,}}+\.e[wy]{_B64}{{4,}}+(?:\.{_B64}*+){{1,3}}")
_THREE_SEGMENTS = re.compile(rf"(?<![A-Za-z0-9_\-.]){_B64}{{20,}}+\.{_B64}{{20,}}+\.{_B64}{{20,}}+")
_OUR_KEY = re.compile(rf"\bcardinsa_{_B64}{{16,}}+")
# Identity's opaque secrets (cardinsa_identity.domain.api_keys and .tokens): a
# 3-letter kind, "_", then base64url (43 characters as issued; 8 already mask a
# truncated one), not inside a word. The lookbehind comes after the literal "cd" so
# that the engine can scan for the literal: no substring guard is needed (cheaper
# than three ``in`` tests on the usual text without any).
_ISSUED_SECRET = re.compile(rf"cd[kpr]_(?<![A-Za-z0-9]cd[kpr]_){_B64}{{8,}}+")
_PASSWORD_HASH = re.compile(r"\$argon2(?:id|i|d)\$[^\s\"']++|\$2[abxy]\$\d\d\$[./A-Za-z0-9]{53}")


def _mask(value: str) -> str:
    if value.startswith('\\"'):
        return f'\\"{REDACTED}\\"'
    if value[0] in "\"'":
        return f"{value[0]}{REDACTED}{value[0]}"
    return REDACTED


def _redact_key_values(text: str, low: str) -> str:
    if len(low) != len(text):
        return _KV_ANY_CASE.sub(
            lambda m: text[m.start() : m.start("val")] + _mask(m.group("val")), text
        )
    out: list[str] = []
    last = 0
    for match in _KV.finditer(low):
        start, end = match.span("val")
        out.append(text[last:start])
        out.append(_mask(text[start:end]))
        last = end
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


def redact_text(text: str) -> str:
    """`text` with every secret-looking part replaced by ``[REDACTED]``."""
    if len(text) < 7:  # shorter than the shortest pattern ("token=x")
        return text
    low = text.lower()
    if any(t in low for t in _KEY_TRIGGERS):
        text = _redact_key_values(text, low)
    if "://" in text:
        text = _URL_PASSWORD.sub(rf"\1:{REDACTED}@", text)
    if "bearer" in low:
        text = _BEARER.sub(rf"\1{REDACTED}", text)
    if ".ey" in text or ".ew" in text:
        text = _JWT.sub(REDACTED, text)
    if text.count(".") >= 2:
        text = _THREE_SEGMENTS.sub(REDACTED, text)
    if "cardinsa_" in text:
        text = _OUR_KEY.sub(REDACTED, text)
    text = _ISSUED_SECRET.sub(REDACTED, text)
    if "$argon2" in text or "$2" in text:
        text = _PASSWORD_HASH.sub(REDACTED, text)
    return text


@functools.lru_cache(maxsize=2048)
def is_sensitive_key(key: str) -> bool:
    """Whether a field named `key` holds a secret (its whole value is dropped)."""
    return _SENSITIVE_KEY.search(key) is not None


_MAX_DEPTH = 12


def _redact(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, int | float | bool):
        return value
    if depth >= _MAX_DEPTH:
        return "[...]"
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if isinstance(k, str) and is_sensitive_key(k) else _redact(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        items = [_redact(v, depth + 1) for v in value]
        if isinstance(value, list):
            return items
        if isinstance(value, tuple):
            return tuple(items)
        try:
            return type(value)(items)
        except TypeError:  # unhashable after redaction: keep the content, not the type
            return items
    return value


def redact(value: Any) -> Any:
    """A copy of `value` without secrets: strings are text-redacted, mappings lose the
    values of sensitive keys, lists/tuples/sets are walked. Other objects are returned
    as they are (the log formatters redact their ``str`` when they print them)."""
    return _redact(value, 0)


# ----------------------------------------------------------------- the filter

_STANDARD_ATTRS = frozenset(
    logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None).__dict__
) | {
    "message",
    "asctime",
    "taskName",
    "_cardinsa_ctx",
    "_cardinsa_redacted",
    "_cardinsa_extra_keys",
}

_EXC_FORMATTER = logging.Formatter()


class RedactionFilter(logging.Filter):
    """Handler filter: rewrites the record in place so no formatter sees a secret.
    Also captures the request context (in the caller's context) for the formatters."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_cardinsa_redacted", False):
            return True
        record._cardinsa_ctx = _context()

        args = record.args
        if args:
            record.args = redact(args) if isinstance(args, Mapping) else tuple(redact(args))
            try:
                message = record.getMessage()
            except (TypeError, ValueError, KeyError):
                message = f"{record.msg} {record.args!r}"
        else:
            message = str(record.msg)
        record.msg = redact_text(message)
        record.args = None

        fields = record.__dict__
        extra_keys = sorted(fields.keys() - _STANDARD_ATTRS)
        for key in extra_keys:
            fields[key] = REDACTED if is_sensitive_key(key) else redact(fields[key])
        record._cardinsa_extra_keys = extra_keys

        if record.exc_info and not record.exc_text:
            record.exc_text = _EXC_FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        record._cardinsa_redacted = True
        return True


# ---------------------------------------------------------------- formatters

_ContextTuple = tuple[
    str | None, str | None, str | None, str | None, str | None, str | None, tuple[str, str] | None
]


def _context() -> _ContextTuple:
    principal = principal_var.get()
    return (
        request_id_var.get(),
        principal.company_id if principal else None,
        principal.subject if principal else None,
        principal.on_behalf_of if principal else None,
        method_var.get(),
        client_address_var.get(),
        trace_var.get(),
    )


def _record_context(record: logging.LogRecord) -> _ContextTuple:
    ctx: _ContextTuple | None = getattr(record, "_cardinsa_ctx", None)
    return ctx if ctx is not None else _context()


_second_cache: tuple[int, str] = (-1, "")


def _timestamp(record: logging.LogRecord) -> str:
    """RFC 3339 UTC with milliseconds; the seconds part is formatted once per second."""
    return _timestamp_of(record.created)


def _timestamp_of(created: float) -> str:
    global _second_cache  # noqa: PLW0603 - a one-slot cache, races are harmless
    second = int(created)
    cached_second, prefix = _second_cache
    if second != cached_second:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second_cache = (second, prefix)
    return f"{prefix}.{int((created - second) * 1000):03d}Z"


def _safe_str(value: object) -> str:
    return redact_text(str(value))


def _json_default(value: object) -> object:
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return list(value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return _safe_str(value)


_CORE_KEYS = frozenset(
    {"time", "level", "logger", "message", "service", "pid", "exception", "trace_id", "span_id"}
)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    fields = record.__dict__
    keys = getattr(record, "_cardinsa_extra_keys", None)
    if keys is None:
        keys = sorted(fields.keys() - _STANDARD_ATTRS)
    return {k: fields[k] for k in keys}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (RFC 3339 UTC), level, logger, message, service,
    pid, request_id, company_id, principal, method, the extra fields, exception."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service
        self._pid = os.getpid()

    def _entry(
        self,
        created: float,
        levelname: str,
        name: str,
        message: str,
        *,
        context: _ContextTuple,
        extras: Mapping[str, Any],
    ) -> dict[str, Any]:
        request_id, company_id, principal, on_behalf_of, method, peer, trace_ids = context
        entry: dict[str, Any] = {
            "time": _timestamp_of(created),
            "level": levelname,
            "logger": name,
            "message": message,
            "service": self._service,
            "pid": self._pid,
            "request_id": request_id,
            "company_id": company_id,
            "principal": principal,
            "method": method,
        }
        if trace_ids:  # tracing on (cardinsa_foundation.tracing): the call's trace and span
            entry["trace_id"], entry["span_id"] = trace_ids
        if on_behalf_of:
            entry["on_behalf_of"] = on_behalf_of
        if peer:
            entry["peer"] = peer
        for key, value in extras.items():
            entry[f"extra_{key}" if key in _CORE_KEYS else key] = value
        return entry

    def line(self, level: int, name: str, message: str, fields: Mapping[str, Any]) -> str:
        """What `format` makes of a record with these extra ``fields``, logged now in
        the caller's request context (redacted like the RedactionFilter does)."""
        extras = {
            key: REDACTED if is_sensitive_key(key) else redact(fields[key])
            for key in sorted(fields)
        }
        entry = self._entry(
            time.time(),
            logging.getLevelName(level),
            name,
            redact_text(message),
            context=_context(),
            extras=extras,
        )
        return _json.dumps(entry, ensure_ascii=False, default=_json_default)

    def format(self, record: logging.LogRecord) -> str:
        entry = self._entry(
            record.created,
            record.levelname,
            record.name,
            record.getMessage(),
            context=_record_context(record),
            extras=_extras(record),
        )
        if record.exc_info and not record.exc_text:  # no RedactionFilter in front
            record.exc_text = redact_text(self.formatException(record.exc_info))
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return _json.dumps(entry, ensure_ascii=False, default=_json_default)


class TextFormatter(logging.Formatter):
    """Readable single-line format for a developer's terminal."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        request_id, company_id, principal, _, method, _, trace_ids = _record_context(record)
        context = " ".join(
            f"{name}={value}"
            for name, value in (
                ("request_id", request_id),
                ("company", company_id),
                ("principal", principal),
                ("method", method),
                ("trace_id", trace_ids[0] if trace_ids else None),
            )
            if value
        )
        extras = " ".join(f"{k}={_safe_str(v)}" for k, v in _extras(record).items())
        parts = [_timestamp(record), f"{record.levelname:<7}", record.name]
        if context:
            parts.append(f"[{context}]")
        parts.append(record.getMessage())
        if extras:
            parts.append(extras)
        line = " ".join(parts)
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(self.formatException(record.exc_info))
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        if record.stack_info:
            line = f"{line}\n{record.stack_info}"
        return line


class _CardinsaHandler(logging.StreamHandler[TextIO]):
    """The handler `configure_logging` owns (a second call replaces it).

    Access lines (`write_line`) written while an event loop runs are collected
    and written together at the end of the loop's current turn, one write and
    flush for all the calls that ended in it, instead of one each (under load
    many calls end per turn, and a write per line is a visible share of a
    call's CPU). Nothing waits on a timer: the lines reach the stream before
    the loop does anything else, and every other record, a write from a thread
    without a loop, a full batch and closing the handler flush them first, so
    the order of lines is kept.
    """

    _BATCH: int = 256

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._flush_loop: asyncio.AbstractEventLoop | None = None

    def write_line(self, line: str) -> None:
        """Write one formatted line, as `emit` does with a formatted record."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        self.acquire()
        try:
            self._pending.append(line)
            scheduled = self._flush_loop
            if loop is None or len(self._pending) >= self._BATCH:
                self._write_pending()
            elif scheduled is None:
                self._flush_loop = loop
                loop.call_soon(self._flush_soon)
            elif scheduled is not loop or scheduled.is_closed():
                self._write_pending()  # another loop's turn would come too late
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": line}))
        finally:
            self.release()

    def _flush_soon(self) -> None:
        self.acquire()
        try:
            self._write_pending()
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": "access lines"}))
        finally:
            self.release()

    def _write_pending(self) -> None:
        """With the lock held: every pending line, then flush the stream."""
        self._flush_loop = None
        if self._pending:
            lines, self._pending = self._pending, []
            self.stream.write(self.terminator.join(lines) + self.terminator)
        super().flush()

    def flush(self) -> None:
        """The pending lines too (logging's shutdown flushes every handler)."""
        self.acquire()
        try:
            if self.stream is not None and not getattr(self.stream, "closed", False):
                self._write_pending()
        finally:
            self.release()

    def emit(self, record: logging.LogRecord) -> None:
        if self._pending:
            self.flush()
        super().emit(record)


def _sole_json_handler(logger: logging.Logger, level: int) -> _CardinsaHandler | None:
    """Our JSON handler when it is the only place a record of ``logger`` would go,
    behind nothing but our RedactionFilter; None otherwise."""
    if logger.filters:
        return None
    current: logging.Logger | None = logger
    while current is not None and current.parent is not None:
        if current.handlers or not current.propagate:
            return None
        current = current.parent
    if current is None or len(current.handlers) != 1:
        return None
    handler = current.handlers[0]
    if (
        type(handler) is _CardinsaHandler
        and level >= handler.level
        and type(handler.formatter) is JsonFormatter
        and len(handler.filters) == 1
        and type(handler.filters[0]) is RedactionFilter
    ):
        return handler
    return None


class AccessLogger:
    """``AccessLogger("cardinsa.access").log(logging.INFO, "rpc", {"code": "OK"})``:
    the per-call line of the logger ``name``, written straight to the JSON handler
    when that is where it would end up anyway (see the module docstring), else
    logged as usual."""

    __slots__ = ("_logger",)

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    def log(self, level: int, message: str, fields: Mapping[str, Any]) -> None:
        logger = self._logger
        if not logger.isEnabledFor(level):
            return
        handler = _sole_json_handler(logger, level)
        if handler is None:
            logger.log(level, message, extra=dict(fields), stacklevel=2)
            return
        formatter = handler.formatter
        assert isinstance(formatter, JsonFormatter)
        handler.write_line(formatter.line(level, logger.name, message, fields))


def configure_logging(
    level: str, json: bool, service: str, *, stream: TextIO | None = None
) -> None:
    """Send all logging to stderr (or `stream`), JSON lines when `json`, redacted.

    Idempotent: calling it again replaces the handler it installed earlier and
    leaves other handlers (a test harness's) alone. Warnings are routed to logging.
    """
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level: {level!r}")
    handler = _CardinsaHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(RedactionFilter())
    handler.setFormatter(JsonFormatter(service) if json else TextFormatter(service))

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _CardinsaHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(numeric)
    logging.captureWarnings(True)
