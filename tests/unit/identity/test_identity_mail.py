"""Identity's SMTP notifier against a real SMTP server on 127.0.0.1 (aiosmtpd,
`make up`'s sink, started here on a free port): what arrives (headers, both
parts, language, escaping), TLS and login, failures (retried, then given up,
never raised into the caller, never the token or the password in a log), and
the settings (production refuses the file notifier)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError
from support.smtp_sink import part, smtp_sink

from cardinsa_foundation import metrics
from cardinsa_foundation.server import EXIT_CONFIG
from cardinsa_identity.application.mail import (
    SmtpConfig,
    SmtpNotifier,
    pick_language,
    render_message,
)
from cardinsa_identity.main import build
from cardinsa_identity.settings import IdentitySettings, NotifierKind, SmtpTls

TOKEN = "cdp_" + "Z" * 43  # the shape of a reset token; searched for in the logs
EXPIRES = datetime(2026, 12, 7, 18, 30, tzinfo=UTC)


def notifier(port: int, **overrides: object) -> SmtpNotifier:
    config = {
        "host": "127.0.0.1",
        "port": port,
        "tls": SmtpTls.NONE,
        "sender": "Cardinsa <no-reply@cardinsa.test>",
        "timeout_s": 2.0,
        "retries": 2,
        "backoff_s": 0.05,
    }
    config.update(overrides)
    return SmtpNotifier(SmtpConfig(**config))  # type: ignore[arg-type]


def mail_count(kind: str, result: str) -> float:
    return (
        metrics.REGISTRY.get_sample_value("identity_mail_total", {"kind": kind, "result": result})
        or 0.0
    )


@pytest.mark.parametrize(
    ("locales", "language"),
    [
        (("de-DE", "en"), "de"),
        (("", "de-AT"), "de"),
        (("fr", "de"), "de"),  # the first one that has templates
        (("en-GB", "de"), "en"),
        (("", ""), "en"),
        (("pt-BR",), "en"),
        (("DE_ch",), "de"),
    ],
)
def test_the_language_is_the_first_locale_with_templates(
    locales: tuple[str, ...], language: str
) -> None:
    assert pick_language(*locales) == language


def test_html_escapes_values_and_text_keeps_them() -> None:
    message = render_message(
        "password_reset",
        "en",
        {"token": "<b>&\"x'", "expire_time": "soon"},
        sender="Cardinsa <no-reply@cardinsa.test>",
        to="a@example.com",
    )
    assert "&lt;b&gt;&amp;&quot;x&#x27;" in part(message, "html")
    assert "<b>" not in part(message, "html")
    assert "<b>&\"x'" in part(message, "plain")


async def test_password_reset_and_contact_changed_arrive_in_english_and_german(
    tmp_path: Path,
) -> None:
    async with smtp_sink(tmp_path) as sink:
        sender = notifier(sink.port)
        await sender.start()
        try:
            await sender.send_password_reset(
                email="en@example.com", token=TOKEN, expire_time=EXPIRES, locale="en-US"
            )
            await sender.send_password_reset(
                email="de@example.com", token=TOKEN, expire_time=EXPIRES, locale="de-DE"
            )
            await sender.send_contact_changed(
                email="en@example.com",
                changed_fields=["phone", "email"],
                change_time=EXPIRES,
                locale="",
            )
            await sender.send_contact_changed(
                email="de@example.com",
                changed_fields=["email"],
                change_time=EXPIRES,
                locale="de",
            )
            await asyncio.wait_for(sender.wait_until_sent(), 10)
        finally:
            await sender.stop()

        en_reset, en_notice = sink.messages_to("en@example.com")
        de_reset, de_notice = sink.messages_to("de@example.com")

    for message in (en_reset, en_notice, de_reset, de_notice):
        assert message.get_content_type() == "multipart/alternative"
        assert message["From"] == "Cardinsa <no-reply@cardinsa.test>"
        assert message["Date"] and message["Message-ID"].endswith("@cardinsa.test>")
        assert [p.get_content_type() for p in message.iter_parts()] == [
            "text/plain",
            "text/html",
        ]
    assert len({m["Message-ID"] for m in (en_reset, en_notice, de_reset, de_notice)}) == 4

    assert en_reset["Subject"] == "Reset your Cardinsa password"
    assert en_reset["Content-Language"] == "en"
    assert TOKEN in part(en_reset, "plain") and TOKEN in part(en_reset, "html")
    assert "2026-12-07 18:30 UTC" in part(en_reset, "plain")

    assert de_reset["Subject"] == "Ihr Cardinsa-Passwort zurücksetzen"
    assert de_reset["Content-Language"] == "de"
    assert TOKEN in part(de_reset, "plain") and TOKEN in part(de_reset, "html")
    assert "07.12.2026 18:30 UTC" in part(de_reset, "plain")
    assert '<html lang="de">' in part(de_reset, "html")

    assert en_notice["Subject"] == "The contact details of your Cardinsa account changed"
    assert "e-mail address and phone number" in part(en_notice, "plain")
    assert "<strong>e-mail address and phone number</strong>" in part(en_notice, "html")
    assert de_notice["Subject"] == "Die Kontaktdaten Ihres Cardinsa-Kontos wurden geändert"
    assert "E-Mail-Adresse" in part(de_notice, "plain")
    for notice in (en_notice, de_notice):
        assert "cdp_" not in notice.as_string()


async def test_starttls_and_login(tmp_path: Path) -> None:
    async with smtp_sink(tmp_path, starttls=True, login=("mailer", "s3cret-pass")) as sink:
        assert sink.ca_file is not None
        sender = notifier(
            sink.port,
            tls=SmtpTls.STARTTLS,
            user="mailer",
            password="s3cret-pass",
            ca_file=str(sink.ca_file),
        )
        await sender.send_password_reset(email="tls@example.com", token=TOKEN, expire_time=EXPIRES)
        await asyncio.wait_for(sender.wait_until_sent(), 10)
        await sender.stop()
        (message,) = sink.messages_to("tls@example.com")
        assert TOKEN in part(message, "plain")
        assert sink.logins == [("mailer", "s3cret-pass")]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_unreachable_server_is_retried_then_given_up_without_token_in_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sender = notifier(free_port(), retries=2, backoff_s=0.05, password="smtp-password-secret")
    failed_before = mail_count("password_reset", "failed")
    retried_before = mail_count("password_reset", "retried")
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    # The caller returns at once, whatever happens to the message.
    await sender.send_password_reset(email="nobody@example.com", token=TOKEN, expire_time=EXPIRES)
    assert time.monotonic() - started < 0.5
    await asyncio.wait_for(sender.wait_until_sent(), 10)
    await sender.stop()

    assert mail_count("password_reset", "retried") - retried_before == 2
    assert mail_count("password_reset", "failed") - failed_before == 1
    attempts = [r for r in caplog.records if r.getMessage().startswith("mail not sent")]
    assert [getattr(r, "attempt", None) for r in attempts] == [1, 2, 3]
    assert attempts[-1].getMessage() == "mail not sent; giving up"
    everything = "\n".join(
        f"{r.getMessage()} {r.__dict__} {r.exc_text or ''}" for r in caplog.records
    )
    for secret in (TOKEN, "smtp-password-secret", "nobody@example.com"):
        assert secret not in everything


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_a_permanent_refusal_is_not_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The server wants a login that the notifier does not give: 530, permanent.
    async with smtp_sink(tmp_path, login=("mailer", "right")) as sink:
        sender = notifier(sink.port, retries=3)
        caplog.set_level(logging.INFO)
        await sender.send_password_reset(email="x@example.com", token=TOKEN, expire_time=EXPIRES)
        await asyncio.wait_for(sender.wait_until_sent(), 10)
        await sender.stop()
        assert sink.messages() == []
    attempts = [r for r in caplog.records if r.getMessage().startswith("mail not sent")]
    assert len(attempts) == 1 and getattr(attempts[0], "smtp_code", 0) >= 500
    assert TOKEN not in "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)


async def test_a_full_queue_drops_and_shutdown_gives_up_after_its_timeout() -> None:
    # A server that accepts the connection and never answers: the sender hangs
    # in its first attempt until the timeout, while the queue fills.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        sender = SmtpNotifier(
            SmtpConfig(
                host="127.0.0.1",
                port=listener.getsockname()[1],
                tls=SmtpTls.NONE,
                sender="no-reply@cardinsa.test",
                timeout_s=30,
                retries=0,
            ),
            queue_size=2,
            shutdown_timeout_s=0.3,
        )
        dropped_before = mail_count("contact_changed", "dropped")
        for _ in range(5):
            await sender.send_contact_changed(
                email="q@example.com", changed_fields=["email"], change_time=EXPIRES
            )
        await asyncio.sleep(0.1)  # the sender takes the first one
        started = time.monotonic()
        await sender.stop()
        assert time.monotonic() - started < 3
        # 5 queued: 1 taken by the sender, then 2 fit, 2 dropped; at shutdown
        # the queued ones are dropped too.
        assert mail_count("contact_changed", "dropped") - dropped_before >= 4
        await sender.send_contact_changed(
            email="q@example.com", changed_fields=["email"], change_time=EXPIRES
        )
        assert mail_count("contact_changed", "dropped") - dropped_before >= 5
    finally:
        listener.close()


def production(**overrides: object) -> dict[str, object]:
    secret = "production-secret-value-0123456789-abcdefghijklmnop"
    values: dict[str, object] = {
        "_env_file": None,
        "environment": "production",
        "database_url": "postgresql://app:pw-0123456789@db.internal/cardinsa",
        "database_platform_url": "postgresql://platform:pw-0123456789@db.internal/cardinsa",
        "signing_key_encryption_key": secret,
        "page_token_secret": secret,
    }
    values.update(overrides)
    return values


def test_production_refuses_to_serve_with_the_file_notifier() -> None:
    settings = IdentitySettings(**production())  # type: ignore[arg-type]
    assert settings.notifier is NotifierKind.FILE
    ((name, message),) = settings.serving_problems()
    assert name == "notifier" and "CARDINSA_NOTIFIER=smtp" in message
    with pytest.raises(RuntimeError, match="CARDINSA_NOTIFIER=smtp"):
        build(settings, "postgresql+asyncpg://app:pw@db.internal/cardinsa", port=0)
    smtp = IdentitySettings(**production(notifier="smtp", smtp_host="smtp.example.com"))  # type: ignore[arg-type]
    assert smtp.serving_problems() == []
    # Development and tests keep the file notifier.
    assert IdentitySettings(_env_file=None, environment="development").serving_problems() == []  # type: ignore[call-arg]


def test_a_production_identity_with_the_file_notifier_exits_with_one_line(
    tmp_path: Path,
) -> None:
    """The real entry point, as an operator starts it: refused before any worker
    or database connection, exit code 78 (configuration), the fix named."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDINSA_")}
    env.pop("DATABASE_URL", None)
    env.pop("ENVIRONMENT", None)
    for key, value in production().items():
        if not key.startswith("_"):
            env[f"CARDINSA_{key.upper()}"] = str(value)
    env["CARDINSA_NOTIFIER"] = "file"
    done = subprocess.run(
        [sys.executable, "-m", "cardinsa_identity.main"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == EXIT_CONFIG, (done.stdout, done.stderr)
    assert "CARDINSA_NOTIFIER=smtp" in done.stderr
    assert "Traceback" not in done.stderr


def test_unusable_smtp_settings_are_refused_without_the_password() -> None:
    with pytest.raises(ValidationError, match="CARDINSA_SMTP_HOST must be set") as error:
        IdentitySettings(_env_file=None, notifier="smtp")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="set together") as error:
        IdentitySettings(
            _env_file=None,  # type: ignore[call-arg]
            notifier="smtp",
            smtp_host="smtp.example.com",
            smtp_password="only-the-password-0123",
        )
    assert "only-the-password-0123" not in str(error.value)
    settings = IdentitySettings(
        _env_file=None,  # type: ignore[call-arg]
        notifier="smtp",
        smtp_host="smtp.example.com",
        smtp_user="mailer",
        smtp_password="the-password-0123",
    )
    config = SmtpConfig.from_settings(settings)
    assert "the-password-0123" not in repr(config) and "the-password-0123" not in repr(settings)


async def test_an_address_that_would_inject_headers_is_refused_not_raised(
    tmp_path: Path,
) -> None:
    async with smtp_sink(tmp_path) as sink:
        sender = notifier(sink.port)
        failed_before = mail_count("password_reset", "failed")
        await sender.send_password_reset(
            email="victim@example.com\r\nBcc: thief@example.com", token=TOKEN, expire_time=EXPIRES
        )
        await asyncio.wait_for(sender.wait_until_sent(), 10)
        await sender.stop()
        assert sink.messages() == []
        assert mail_count("password_reset", "failed") - failed_before == 1
