"""E-mail to users: the messages (templates per kind and language) and the SMTP
notifier that sends them.

Templates are files beside this module, ``mail_templates/<kind>.<language>.txt``
and ``.html``, filled with :class:`string.Template` (``$name``). The plain-text
file's first line is ``Subject: ...``, then a blank line, then the body. Every
value put into the HTML part is escaped. A message is multipart/alternative
(plain text first, HTML second) with From, To, Subject, Date and Message-ID.

The language is the first of the user's locale, the company's locale and the
configured default whose primary subtag has templates (``de-AT`` -> ``de``);
English when none has.

:class:`SmtpNotifier` never sends inside the caller: a message is rendered and
put into a bounded in-process queue (``put_nowait``: a full queue drops it,
logged and counted), and one sender task started with the service sends it.
Identity calls the notifier only after its transaction committed. A transient
failure (no connection, timeout, a 4xx answer) is tried again after a backoff
(``smtp_retry_backoff_s``, doubling, capped at 60 s), at most ``smtp_retries``
times; a permanent one (5xx) is given up at once. What is logged about a
message is its kind, the attempt and the error's class and SMTP code — never
its recipient, its body, the token or the SMTP password.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from functools import cache
from importlib import resources
from string import Template
from typing import Final

import aiosmtplib

from cardinsa_foundation import metrics
from cardinsa_identity.settings import IdentitySettings, SmtpTls

__all__ = [
    "SUPPORTED_LANGUAGES",
    "MailKind",
    "SmtpConfig",
    "SmtpNotifier",
    "pick_language",
    "render_message",
]

log = logging.getLogger(__name__)

SUPPORTED_LANGUAGES: Final = ("en", "de")
FALLBACK_LANGUAGE: Final = "en"
MAX_BACKOFF_S: Final = 60.0


class MailKind:
    PASSWORD_RESET: Final = "password_reset"  # noqa: S105 (a message kind)
    CONTACT_CHANGED: Final = "contact_changed"
    INVITATION: Final = "invitation"
    EMAIL_CHANGE: Final = "email_change"  # to the new address, with the token
    EMAIL_CHANGED: Final = "email_changed"  # to the old address, no token


# How the contact fields are named in each language (the notice never carries
# the new values).
_FIELD_NAMES: Final[dict[str, dict[str, str]]] = {
    "en": {"email": "e-mail address", "phone": "phone number"},
    "de": {"email": "E-Mail-Adresse", "phone": "Telefonnummer"},
}
_AND: Final = {"en": " and ", "de": " und "}
_TIME_FORMAT: Final = {"en": "%Y-%m-%d %H:%M UTC", "de": "%d.%m.%Y %H:%M UTC"}


def pick_language(*locales: str | None) -> str:
    """The first locale whose primary language subtag has templates, else English."""
    for locale in locales:
        language = (locale or "").strip().replace("_", "-").split("-", 1)[0].lower()
        if language in SUPPORTED_LANGUAGES:
            return language
    return FALLBACK_LANGUAGE


@dataclass(frozen=True, slots=True)
class _Template:
    subject: Template
    text: Template
    html: Template


@cache
def _template(kind: str, language: str) -> _Template:
    folder = resources.files(__package__ or "cardinsa_identity.application") / "mail_templates"
    text = (folder / f"{kind}.{language}.txt").read_text(encoding="utf-8")
    first, _, body = text.partition("\n")
    if not first.startswith("Subject: "):
        raise ValueError(f"mail template {kind}.{language}.txt must start with 'Subject: '")
    return _Template(
        subject=Template(first.removeprefix("Subject: ").strip()),
        text=Template(body.lstrip("\n")),
        html=Template((folder / f"{kind}.{language}.html").read_text(encoding="utf-8")),
    )


def _when(moment: datetime, language: str) -> str:
    return moment.astimezone(UTC).strftime(_TIME_FORMAT[language])


def render_message(
    kind: str,
    language: str,
    values: dict[str, str],
    *,
    sender: str,
    to: str,
    now: datetime | None = None,
) -> EmailMessage:
    """The message of ``kind`` in ``language`` (one of SUPPORTED_LANGUAGES) to ``to``."""
    template = _template(kind, language)
    message = EmailMessage()
    message["From"] = sender
    message["To"] = Address(addr_spec=to)
    message["Subject"] = template.subject.substitute(values)
    message["Date"] = format_datetime(now or datetime.now(UTC))
    domain = parseaddr(sender)[1].rpartition("@")[2] or None
    message["Message-ID"] = make_msgid(domain=domain)
    message["Auto-Submitted"] = "auto-generated"
    # Quoted-printable, also for German: the text stays readable (and a token
    # greppable) in the raw message, unlike base64.
    message.set_content(template.text.substitute(values), cte="quoted-printable")
    escaped = {name: html.escape(value, quote=True) for name, value in values.items()}
    message.add_alternative(
        template.html.substitute(escaped), subtype="html", cte="quoted-printable"
    )
    message["Content-Language"] = language  # after the body: set_content clears Content-*
    return message


def password_reset_values(token: str, expire_time: datetime, language: str) -> dict[str, str]:
    return {"token": token, "expire_time": _when(expire_time, language)}


def invitation_values(
    name: str, token: str, expire_time: datetime, language: str
) -> dict[str, str]:
    return {"name": name, "token": token, "expire_time": _when(expire_time, language)}


def changed_values(change_time: datetime, language: str) -> dict[str, str]:
    return {"change_time": _when(change_time, language)}


def contact_changed_values(
    changed_fields: list[str], change_time: datetime, language: str
) -> dict[str, str]:
    names = [_FIELD_NAMES[language].get(field, field) for field in sorted(changed_fields)]
    return {"fields": _AND[language].join(names), "change_time": _when(change_time, language)}


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str
    port: int
    tls: SmtpTls
    sender: str
    user: str = ""
    password: str = ""
    timeout_s: float = 10.0
    retries: int = 3
    backoff_s: float = 1.0
    ca_file: str | None = None

    def __repr__(self) -> str:  # never the password
        return f"SmtpConfig(host={self.host!r}, port={self.port}, tls={self.tls.value!r})"

    @classmethod
    def from_settings(cls, settings: IdentitySettings) -> SmtpConfig:
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            tls=settings.smtp_tls,
            sender=settings.mail_from,
            user=settings.smtp_user,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else "",
            timeout_s=settings.smtp_timeout_s,
            retries=settings.smtp_retries,
            backoff_s=settings.smtp_retry_backoff_s,
            ca_file=str(settings.smtp_ca_file) if settings.smtp_ca_file else None,
        )


@dataclass(frozen=True, slots=True)
class _Outgoing:
    kind: str
    message: EmailMessage


def _smtp_code(error: BaseException) -> int | None:
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return error.code
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused) and error.recipients:
        return min(refused.code for refused in error.recipients)
    return None


class SmtpNotifier:
    """The :class:`~cardinsa_identity.application.notifier.Notifier` that sends
    e-mail; :meth:`start` with the service, :meth:`stop` at its shutdown."""

    def __init__(
        self,
        config: SmtpConfig,
        *,
        default_locale: str = FALLBACK_LANGUAGE,
        queue_size: int = 1000,
        shutdown_timeout_s: float = 10.0,
    ) -> None:
        self.config = config
        self.default_locale = default_locale
        self.shutdown_timeout_s = shutdown_timeout_s
        self._queue: asyncio.Queue[_Outgoing] = asyncio.Queue(maxsize=queue_size)
        self._sender: asyncio.Task[None] | None = None
        self._stopping = False

    @classmethod
    def from_settings(cls, settings: IdentitySettings) -> SmtpNotifier:
        return cls(
            SmtpConfig.from_settings(settings),
            default_locale=settings.mail_default_locale,
            queue_size=settings.mail_queue_size,
            shutdown_timeout_s=settings.mail_shutdown_timeout_s,
        )

    # ------------------------------------------------------------ Notifier

    async def send_password_reset(
        self, *, email: str, token: str, expire_time: datetime, locale: str = ""
    ) -> None:
        language = pick_language(locale, self.default_locale)
        self._enqueue(
            MailKind.PASSWORD_RESET,
            email,
            language,
            password_reset_values(token, expire_time, language),
        )

    async def send_contact_changed(
        self,
        *,
        email: str,
        changed_fields: list[str],
        change_time: datetime,
        locale: str = "",
    ) -> None:
        language = pick_language(locale, self.default_locale)
        self._enqueue(
            MailKind.CONTACT_CHANGED,
            email,
            language,
            contact_changed_values(changed_fields, change_time, language),
        )

    async def send_invitation(
        self, *, email: str, name: str, token: str, expire_time: datetime, locale: str = ""
    ) -> None:
        language = pick_language(locale, self.default_locale)
        self._enqueue(
            MailKind.INVITATION,
            email,
            language,
            invitation_values(name, token, expire_time, language),
        )

    async def send_email_change(
        self, *, email: str, token: str, expire_time: datetime, locale: str = ""
    ) -> None:
        language = pick_language(locale, self.default_locale)
        self._enqueue(
            MailKind.EMAIL_CHANGE,
            email,
            language,
            password_reset_values(token, expire_time, language),
        )

    async def send_email_changed(
        self, *, email: str, change_time: datetime, locale: str = ""
    ) -> None:
        language = pick_language(locale, self.default_locale)
        self._enqueue(
            MailKind.EMAIL_CHANGED, email, language, changed_values(change_time, language)
        )

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._stopping = False
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._run(), name="identity-mail-sender")

    async def stop(self) -> None:
        """Send what is queued within ``shutdown_timeout_s``, then stop; what is
        still queued then is dropped (counted and logged, by number only)."""
        self._stopping = True
        sender, self._sender = self._sender, None
        if sender is None:
            self._drop_queued()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._queue.join()), self.shutdown_timeout_s)
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        self._drop_queued()

    async def wait_until_sent(self) -> None:
        """For tests: until every queued message was sent or given up."""
        await self._queue.join()

    # ------------------------------------------------------------ internals

    def _enqueue(self, kind: str, email: str, language: str, values: dict[str, str]) -> None:
        if self._stopping:
            self._dropped(kind, "stopping")
            return
        try:
            message = render_message(kind, language, values, sender=self.config.sender, to=email)
        except Exception as error:  # an address the mail headers refuse: never the caller's failure
            metrics.IDENTITY_MAIL.labels(kind=kind, result="failed").inc()
            log.error("mail not rendered", extra={"mail_kind": kind, "error": type(error).__name__})
            return
        try:
            self._queue.put_nowait(_Outgoing(kind, message))
        except asyncio.QueueFull:
            self._dropped(kind, "queue_full")
            return
        if self._sender is None or self._sender.done():
            # Started with the service; started here too for a notifier used
            # without one (tests, scripts).
            self._sender = asyncio.create_task(self._run(), name="identity-mail-sender")

    @staticmethod
    def _dropped(kind: str, why: str) -> None:
        metrics.IDENTITY_MAIL.labels(kind=kind, result="dropped").inc()
        log.warning("mail dropped", extra={"mail_kind": kind, "reason": why})

    def _drop_queued(self) -> None:
        left = 0
        while True:
            try:
                outgoing = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            self._queue.task_done()
            metrics.IDENTITY_MAIL.labels(kind=outgoing.kind, result="dropped").inc()
            left += 1
        if left:
            log.warning("mail not sent before shutdown", extra={"mail_dropped": left})

    async def _run(self) -> None:
        while True:
            outgoing = await self._queue.get()
            try:
                await self._deliver(outgoing)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # never let one message end the sender
                metrics.IDENTITY_MAIL.labels(kind=outgoing.kind, result="failed").inc()
                log.error(
                    "mail not sent: unexpected error",
                    extra={"mail_kind": outgoing.kind, "error": type(error).__name__},
                )
            finally:
                self._queue.task_done()

    async def _deliver(self, outgoing: _Outgoing) -> None:
        config = self.config
        attempts = config.retries + 1
        for attempt in range(1, attempts + 1):
            started = time.monotonic()
            try:
                await self._send_once(outgoing.message)
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
                code = _smtp_code(error)
                permanent = code is not None and code >= 500
                last = permanent or attempt == attempts
                metrics.IDENTITY_MAIL.labels(
                    kind=outgoing.kind, result="failed" if last else "retried"
                ).inc()
                # The class and the SMTP code only: an error's text may quote
                # the server's answer, the recipient or the message.
                log.warning(
                    "mail not sent; giving up" if last else "mail not sent; trying again",
                    extra={
                        "mail_kind": outgoing.kind,
                        "attempt": attempt,
                        "attempts": attempts,
                        "error": type(error).__name__,
                        "smtp_code": code,
                        "elapsed_s": round(time.monotonic() - started, 3),
                    },
                )
                if last:
                    return
                delay = min(config.backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
                await asyncio.sleep(delay * (0.8 + 0.4 * random.random()))  # noqa: S311
            else:
                metrics.IDENTITY_MAIL.labels(kind=outgoing.kind, result="sent").inc()
                log.info("mail sent", extra={"mail_kind": outgoing.kind, "attempt": attempt})
                return

    async def _send_once(self, message: EmailMessage) -> None:
        config = self.config
        await aiosmtplib.send(
            message,
            hostname=config.host,
            port=config.port,
            username=config.user or None,
            password=config.password or None,
            use_tls=config.tls == SmtpTls.TLS,
            start_tls=config.tls == SmtpTls.STARTTLS,
            timeout=config.timeout_s,
            cert_bundle=config.ca_file,
        )
