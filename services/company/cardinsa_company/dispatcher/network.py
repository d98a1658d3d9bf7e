"""Connections to webhook receivers that only ever reach allowed addresses.

A subscription's URL was checked when it was made, but what its host resolves
to can change afterwards (DNS rebinding), and a receiver can redirect to any
host. So the check is made where the connection is made: the network backend
under httpx resolves the host itself, refuses unless *every* address it gets
is allowed (:func:`cardinsa_company.domain.webhooks.address_allowed`), and
connects to one of those checked addresses -- never resolving the name a
second time. TLS still verifies the certificate against the host name (httpcore
passes the URL's host as the server name), and every redirect opens its
connection through the same backend.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpcore
import httpx
from httpcore._backends.anyio import AnyIOBackend

from cardinsa_company.domain.webhooks import address_allowed

__all__ = [
    "AddressCheck",
    "GuardedBackend",
    "Resolver",
    "TargetNotAllowed",
    "guarded_transport",
    "system_resolver",
]

#: ``(host, port) -> addresses`` (IP literals).
Resolver = Callable[[str, int], Awaitable[list[str]]]
#: Whether one address may be connected to.
AddressCheck = Callable[[str], bool]


class TargetNotAllowed(Exception):
    """The host resolves to an address a webhook may not reach."""


async def system_resolver(host: str, port: int) -> list[str]:
    """The system's resolver (``getaddrinfo``), addresses in its order, once each."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, resolving and checking before it connects."""

    def __init__(
        self,
        allowed: AddressCheck,
        *,
        resolver: Resolver = system_resolver,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._allowed = allowed
        self._resolver = resolver
        self._inner = inner if inner is not None else AnyIOBackend()

    async def addresses(self, host: str, port: int) -> list[str]:
        """The addresses to connect to, all allowed; else :class:`TargetNotAllowed`."""
        host = host.strip("[]")
        try:
            found = [host] if _is_literal(host) else await self._resolver(host, port)
        except OSError as error:
            raise httpcore.ConnectError(f"cannot resolve {host}: {error}") from error
        if not found:
            raise httpcore.ConnectError(f"cannot resolve {host}: no address")
        refused = [address for address in found if not self._allowed(address)]
        if refused:
            raise TargetNotAllowed(
                f"the target {host} is not allowed: it resolves to {', '.join(refused)} "
                "(not a public address)"
            )
        return found

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        last: Exception | None = None
        for address in await self.addresses(host, port):
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                last = error
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise TargetNotAllowed("webhooks do not connect to Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool that uses :class:`GuardedBackend`."""

    def __init__(self, backend: GuardedBackend, *, max_connections: int) -> None:
        # No proxy from the environment (a proxy would connect on our behalf,
        # unchecked), no client certificate.
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl.create_default_context(),
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=5.0,
            network_backend=backend,
        )


def default_check(*, allow_private: bool) -> AddressCheck:
    return lambda address: address_allowed(address, allow_private=allow_private)


def guarded_transport(
    *,
    allow_private: bool,
    max_connections: int,
    resolver: Resolver = system_resolver,
    allowed: AddressCheck | None = None,
) -> httpx.AsyncBaseTransport:
    """The transport of the delivery client: every connection checked."""
    check = allowed if allowed is not None else default_check(allow_private=allow_private)
    return _GuardedTransport(
        GuardedBackend(check, resolver=resolver), max_connections=max_connections
    )
