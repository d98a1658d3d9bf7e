"""How identity reaches a user outside the API (password-reset, invitation and
e-mail-change tokens, and the notice to the previous address when a user's
email or phone changes).

An interface with two implementations, chosen by ``CARDINSA_NOTIFIER``: the
SMTP notifier (application/mail.py, e-mail; required in production) and the
development notifier here, which writes each message to a file readable only by
its owner — never to the log. Both are called after the transaction that made
the token or the change committed, and neither blocks the caller on delivery.

``locale`` is the user's locale (BCP 47), else the company's; the notifier picks
the language of the message from it (application/mail.py, ``pick_language``).
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
        self, *, email: str, token: str, expire_time: datetime, locale: str = ""
    ) -> None: ...

    async def send_contact_changed(
        self, *, email: str, changed_fields: list[str], change_time: datetime, locale: str = ""
    ) -> None:
        """Tell ``email`` (the address before the change) which contact fields
        changed; never the new values, never a token."""
        ...

    async def send_invitation(
        self, *, email: str, name: str, token: str, expire_time: datetime, locale: str = ""
    ) -> None:
        """The invitation token of an INVITED user (InviteUser, ResendInvitation)."""
        ...

    async def send_email_change(
        self, *, email: str, token: str, expire_time: datetime, locale: str = ""
    ) -> None:
        """The confirmation token of an e-mail change, to the new address."""
        ...

    async def send_email_changed(
        self, *, email: str, change_time: datetime, locale: str = ""
    ) -> None:
        """Tell ``email`` (the address before a confirmed change) that the
        account's email changed; never the new address, never a token."""
        ...


class FileNotifier:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send_password_reset(
        self, *, email: str, token: str, expire_time: datetime, locale: str = ""
    ) -> None:
        self._write(
            {
                "kind": "password_reset",
                "to": email,
                "locale": locale,
                "token": token,
                "expire_time": expire_time.isoformat(),
                "create_time": datetime.now(UTC).isoformat(),
            }
        )

    async def send_contact_changed(
        self, *, email: str, changed_fields: list[str], change_time: datetime, locale: str = ""
    ) -> None:
        self._write(
            {
                "kind": "contact_changed",
                "to": email,
                "locale": locale,
                "changed_fields": sorted(changed_fields),
                "change_time": change_time.isoformat(),
                "text": "The "
                + " and ".join(sorted(changed_fields))
                + " of your Cardinsa account changed and every session was signed out."
                " If you did not ask for this, contact your administrator.",
                "create_time": datetime.now(UTC).isoformat(),
            }
        )

    async def send_invitation(
        self, *, email: str, name: str, token: str, expire_time: datetime, locale: str = ""
    ) -> None:
        self._write(
            {
                "kind": "invitation",
                "to": email,
                "locale": locale,
                "name": name,
                "token": token,
                "expire_time": expire_time.isoformat(),
                "create_time": datetime.now(UTC).isoformat(),
            }
        )

    async def send_email_change(
        self, *, email: str, token: str, expire_time: datetime, locale: str = ""
    ) -> None:
        self._write(
            {
                "kind": "email_change",
                "to": email,
                "locale": locale,
                "token": token,
                "expire_time": expire_time.isoformat(),
                "create_time": datetime.now(UTC).isoformat(),
            }
        )

    async def send_email_changed(
        self, *, email: str, change_time: datetime, locale: str = ""
    ) -> None:
        self._write(
            {
                "kind": "email_changed",
                "to": email,
                "locale": locale,
                "change_time": change_time.isoformat(),
                "text": "The e-mail address of your Cardinsa account changed and every"
                " session was signed out. If this wasn't you, contact your administrator.",
                "create_time": datetime.now(UTC).isoformat(),
            }
        )

    def _write(self, message: dict[str, object]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        prefix = str(message["kind"]).replace("_", "-")
        path = self.directory / f"{prefix}-{uuid.uuid4().hex}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(message, handle)

    def messages_for(self, email: str, kind: str = "password_reset") -> list[dict[str, str]]:
        """Messages of ``kind`` sent to ``email``, oldest first (tests and the demo
        read these)."""
        found: list[dict[str, str]] = []
        if not self.directory.exists():
            return found
        pattern = kind.replace("_", "-") + "-*.json"
        for path in sorted(self.directory.glob(pattern), key=lambda p: p.stat().st_mtime_ns):
            data = json.loads(path.read_text())
            if data.get("to") == email:
                found.append(data)
        return found
