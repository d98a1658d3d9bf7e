"""`make up` mails: the launcher starts its local SMTP sink and points identity's
SMTP notifier at it. A password reset requested through the gateway arrives as
a .eml file (0600) in the sink's folder, in the demo company's language
(German: the user has no locale of their own), and its token completes the
reset through the gateway."""

from __future__ import annotations

import re
import stat
import time
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import cast

import pytest

from e2e.suite_harness import ADMIN_EMAIL, SuiteProcess

pytestmark = pytest.mark.integration

TOKEN = re.compile(r"cdp_[A-Za-z0-9_\-]+")


def wait_for_mail(folder: Path, address: str, timeout_s: float = 30.0) -> tuple[Path, EmailMessage]:
    deadline = time.monotonic() + timeout_s
    while True:
        for path in sorted(folder.glob("*.eml")) if folder.exists() else []:
            message = cast(
                EmailMessage, message_from_bytes(path.read_bytes(), policy=default_policy)
            )
            if message["To"].addresses[0].addr_spec == address:
                return path, message
        assert time.monotonic() < deadline, f"no mail to {address} in {folder}"
        time.sleep(0.1)


def test_a_password_reset_is_mailed_to_the_sink_and_its_token_works(suite: SuiteProcess) -> None:
    assert suite.output is not None
    folder = suite.base / "mail"
    banner = [line for line in suite.output.launcher_lines() if line.strip().startswith("mail ")]
    assert banner and str(folder) in banner[0], banner

    rest = suite.rest()
    admin = rest.login(ADMIN_EMAIL)
    user = rest.create_user(admin, None, "mailed")
    reply = rest.call("POST", "/v1/auth:requestPasswordReset", {"email": user["email"]})
    assert reply.ok() == {}

    path, message = wait_for_mail(folder, user["email"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert message["Subject"] == "Ihr Cardinsa-Passwort zurücksetzen"  # the company's de-DE
    assert message.get_content_type() == "multipart/alternative"
    plain = message.get_body(preferencelist=("plain",))
    assert plain is not None
    (token,) = TOKEN.findall(plain.get_content())

    new_password = "E2e-Mailed-Reset-Passw0rd!"
    rest.call(
        "POST",
        "/v1/auth:confirmPasswordReset",
        {"reset_token": token, "new_password": new_password},
    ).ok()
    assert rest.login(user["email"], new_password)
    # The token reached the mail, not the suite's logs.
    assert not any(token in line for line in suite.output.snapshot())
