"""A real SMTP server for tests: `make up`'s sink (aiosmtpd) on 127.0.0.1, on a
port the OS picks, optionally with STARTTLS (a self-signed certificate made
here) and a login it checks; messages are read back from its folder."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any, cast

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cardinsa_tools.mail_sink import MailSink, read_messages


@dataclass
class Sink:
    port: int
    directory: Path
    ca_file: Path | None = None
    logins: list[tuple[str, str]] = field(default_factory=list)

    def messages(self) -> list[EmailMessage]:
        return [
            cast(EmailMessage, message_from_bytes(raw, policy=default_policy))
            for raw in read_messages(self.directory)
        ]

    def messages_to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages() if m["To"].addresses[0].addr_spec == address]

    async def wait_for(
        self, address: str, count: int = 1, timeout_s: float = 10.0
    ) -> list[EmailMessage]:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            found = self.messages_to(address)
            if len(found) >= count or asyncio.get_running_loop().time() > deadline:
                return found
            await asyncio.sleep(0.05)


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@asynccontextmanager
async def smtp_sink(
    directory: Path, *, starttls: bool = False, login: tuple[str, str] | None = None
) -> AsyncIterator[Sink]:
    """The sink on 127.0.0.1:<free port>; with ``starttls`` it requires STARTTLS,
    with ``login`` it requires that login (after TLS)."""
    sink = Sink(port=0, directory=directory / "mail")
    kwargs: dict[str, Any] = {}
    if starttls:
        cert, key = self_signed(directory)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        kwargs.update(tls_context=context, require_starttls=True)
        sink.ca_file = cert
    if login is not None:

        def authenticate(
            server: SMTP, session: object, envelope: object, mechanism: str, data: Any
        ) -> AuthResult:
            assert isinstance(data, LoginPassword)
            pair = (data.login.decode(), data.password.decode())
            sink.logins.append(pair)
            return AuthResult(success=pair == login)

        kwargs.update(authenticator=authenticate, auth_required=True, auth_require_tls=starttls)
    handler = MailSink(sink.directory)
    # aiosmtpd logs what it receives (the message, so the token) at DEBUG: that is
    # the recipient's side, not identity's; quiet here so tests that search the
    # logs for the token look at identity's logs.
    server_log = logging.getLogger("mail.log")
    level = server_log.level
    server_log.setLevel(logging.WARNING)
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(handler, hostname="test-sink", **kwargs), host="127.0.0.1", port=0
    )
    sink.port = server.sockets[0].getsockname()[1]
    try:
        yield sink
    finally:
        server.close()
        await server.wait_closed()
        server_log.setLevel(level)


def part(message: EmailMessage, subtype: str) -> str:
    body = message.get_body(preferencelist=(subtype,))
    assert body is not None and body.get_content_subtype() == subtype, subtype
    return cast(str, body.get_content())
