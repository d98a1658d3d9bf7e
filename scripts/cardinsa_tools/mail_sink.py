"""The local SMTP sink of `make up`: a real SMTP server (aiosmtpd) on 127.0.0.1
that accepts every message and keeps each as one ``.eml`` file, readable only
by its owner (0600, in a 0700 folder), instead of delivering it.

``python -m cardinsa_tools.mail_sink [--host 127.0.0.1] [--port N] [--dir PATH]``
(defaults: CARDINSA_MAIL_SINK_PORT, CARDINSA_MAIL_SINK_DIR); SIGTERM or SIGINT
stops it. The launcher starts it before identity and points identity's SMTP
notifier at it (docs/runbook.md, "Mail"). For development only: no TLS, no
login, nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session
from pydantic import Field, field_validator

from cardinsa_foundation.config import PROJECT_ROOT, Settings

__all__ = ["MailSink", "MailSinkSettings", "read_messages", "start_sink"]


class MailSinkSettings(Settings):
    """Where `make up`'s SMTP sink listens (127.0.0.1) and keeps the messages."""

    mail_sink_port: int = Field(default=2525, ge=1, le=65535)
    mail_sink_dir: Path = PROJECT_ROOT / ".data" / "mail"

    @field_validator("mail_sink_dir", mode="after")
    @classmethod
    def _anchor_to_project(cls, value: Path) -> Path:
        return value if value.is_absolute() else PROJECT_ROOT / value


class MailSink:
    """aiosmtpd handler: every message accepted and written to ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8")
        path = self.write(content)
        subject = message_from_bytes(content, policy=default_policy).get("Subject", "")
        print(
            f"[mail-sink] message for {len(envelope.rcpt_tos)} recipient(s) ({subject}): {path}",
            flush=True,
        )
        return "250 Message accepted for delivery"

    def write(self, content: bytes) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Sorted by name = in the order received.
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns()}-{uuid.uuid4().hex[:8]}.eml"
        path = self.directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        return path


async def start_sink(host: str, port: int, directory: Path) -> asyncio.Server:
    """The sink listening on ``host:port`` (0: a free port, see the server's sockets)."""
    handler = MailSink(directory)
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: SMTP(handler, hostname="cardinsa-mail-sink", ident="cardinsa mail sink"),
        host=host,
        port=port,
    )


def read_messages(directory: Path) -> list[bytes]:
    """The raw messages kept in ``directory``, oldest first."""
    if not directory.exists():
        return []
    return [path.read_bytes() for path in sorted(directory.glob("*.eml"))]


async def _serve(host: str, port: int, directory: Path) -> None:
    server = await start_sink(host, port, directory)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"[mail-sink] listening on {host}:{port}, messages in {directory}", flush=True)
    async with server:
        await stop.wait()
    print("[mail-sink] stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    settings = MailSinkSettings()
    parser = argparse.ArgumentParser(prog="cardinsa_tools.mail_sink", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=settings.mail_sink_port)
    parser.add_argument("--dir", type=Path, default=settings.mail_sink_dir)
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args.host, args.port, args.dir))
    except OSError as error:
        print(f"[mail-sink] cannot listen on {args.host}:{args.port}: {error}", flush=True)
        return 1
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
