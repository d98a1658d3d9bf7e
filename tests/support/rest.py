"""One HTTP exchange on its own connection and its reply: what the gateway, e2e
and attack tests send REST calls with."""

from __future__ import annotations

import contextlib
import http.client
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass
class Reply:
    status: int
    headers: dict[str, list[str]]  # lower-case names
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)

    def ok(self) -> Any:
        """The JSON body of a 200, or a failure naming the status and body."""
        assert self.status == 200, (self.status, self.body[:2000])
        return self.json()

    def grpc_headers(self) -> list[str]:
        return [name for name in self.headers if name.startswith("grpc-")]


def exchange(
    host: str,
    port: int,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 30,
    source: str | None = None,
) -> Reply:
    """Send one request on a new connection (from ``source`` when given) and read
    the reply. A server may answer before the whole body is sent (413 to an
    oversized body) and close: the answer is read all the same."""
    connection = http.client.HTTPConnection(
        host, port, timeout=timeout_s, source_address=(source, 0) if source else None
    )
    try:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            connection.request(method, path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        found: dict[str, list[str]] = {}
        for name, value in response.getheaders():
            found.setdefault(name.lower(), []).append(value)
        return Reply(response.status, found, response.read())
    finally:
        connection.close()
