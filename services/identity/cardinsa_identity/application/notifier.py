"""How identity reaches a user outside the API (password-reset tokens).

An interface, so production plugs in mail or SMS; the development notifier
writes each message to a file readable only by its owner — never to the log.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol


class Notifier(Protocol):
    async def send_password_reset(
        self, *, email: str, token: str, expire_time: datetime
    ) -> None: ...


class FileNotifier:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send_password_reset(self, *, email: str, token: str, expire_time: datetime) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        message = {
            "kind": "password_reset",
            "to": email,
            "token": token,
            "expire_time": expire_time.isoformat(),
            "create_time": datetime.now(UTC).isoformat(),
        }
        path = self.directory / f"password-reset-{uuid.uuid4().hex}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(message, handle)

    def messages_for(self, email: str) -> list[dict[str, str]]:
        """Messages sent to ``email``, oldest first (tests and the demo read these)."""
        found: list[dict[str, str]] = []
        if not self.directory.exists():
            return found
        for path in sorted(
            self.directory.glob("password-reset-*.json"), key=lambda p: p.stat().st_mtime_ns
        ):
            data = json.loads(path.read_text())
            if data.get("to") == email:
                found.append(data)
        return found
