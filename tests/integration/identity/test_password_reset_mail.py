"""Password reset by e-mail, end to end: an identity server whose settings say
``notifier=smtp`` (wired by ``build`` as in production) sends to a real SMTP
server on 127.0.0.1 (`make up`'s sink); the token is read from the delivered
message and completes the reset. The answer does not tell whether the address
has an account, and the token reaches no log."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from google.protobuf import field_mask_pb2
from support.identity_harness import PASSWORD, IdentityHarness, unique_email
from support.smtp_sink import Sink, part, smtp_sink

from cardinsa.identity.v1 import (
    auth_service_pb2,
    auth_service_pb2_grpc,
    resources_pb2,
    user_service_pb2,
    user_service_pb2_grpc,
)
from cardinsa_foundation.db import app_role_url
from cardinsa_identity.application.mail import SmtpNotifier
from cardinsa_identity.main import IdentityApp, build
from cardinsa_identity.settings import NotifierKind, SmtpTls

pytestmark = pytest.mark.integration

TOKEN = re.compile(r"cdp_[A-Za-z0-9_\-]+")


@dataclass
class MailedIdentity:
    app: IdentityApp
    sink: Sink
    auth: auth_service_pb2_grpc.AuthServiceStub
    users: user_service_pb2_grpc.UserServiceStub

    async def delivered(self) -> None:
        """Until every queued reset was issued and every message sent."""
        await self.app.auth.wait_for_background()
        notifier = self.app.ctx.notifier
        assert isinstance(notifier, SmtpNotifier)
        await asyncio.wait_for(notifier.wait_until_sent(), 15)


@pytest_asyncio.fixture
async def mailed(
    identity: IdentityHarness, identity_database: str, tmp_path: Path
) -> AsyncIterator[MailedIdentity]:
    async with smtp_sink(tmp_path) as sink:
        settings = identity.settings.model_copy(
            update={
                "notifier": NotifierKind.SMTP,
                "smtp_host": "127.0.0.1",
                "smtp_port": sink.port,
                "smtp_tls": SmtpTls.NONE,
                "smtp_retry_backoff_s": 0.05,
                "mail_from": "Cardinsa Test <no-reply@cardinsa.test>",
            }
        )
        # No notifier passed: build wires the one the settings name.
        app = build(settings, app_role_url(identity_database), port=0, metrics_port=0)
        assert isinstance(app.ctx.notifier, SmtpNotifier)
        await app.start()
        channel = grpc.aio.insecure_channel(app.server.address)
        try:
            yield MailedIdentity(
                app,
                sink,
                auth_service_pb2_grpc.AuthServiceStub(channel),
                user_service_pb2_grpc.UserServiceStub(channel),
            )
        finally:
            await channel.close()
            await app.stop()


async def create_user(identity: IdentityHarness, locale: str) -> tuple[str, str]:
    """A user of company A with ``locale``: (email, id)."""
    token = await identity.token(identity.admin_a)
    user = await identity.users.CreateUser(
        user_service_pb2.CreateUserRequest(
            user=resources_pb2.User(
                email=unique_email("mailed"), given_name="Mail", family_name="Test", locale=locale
            ),
            password=PASSWORD,
            password_permanent=True,
        ),
        metadata=identity.bearer(token),
    )
    return str(user.email), str(user.id)


async def test_the_reset_token_arrives_by_mail_and_completes_the_reset(
    identity: IdentityHarness, mailed: MailedIdentity, caplog: pytest.LogCaptureFixture
) -> None:
    german, _ = await create_user(identity, "de-DE")
    english, _ = await create_user(identity, "")  # no locale: the default (English)
    stranger = unique_email("nobody")
    caplog.set_level(logging.DEBUG)

    timings: dict[str, float] = {}
    for email in (german, english, stranger):
        started = time.monotonic()
        reply = await mailed.auth.RequestPasswordReset(
            auth_service_pb2.RequestPasswordResetRequest(email=email)
        )
        timings[email] = time.monotonic() - started
        assert reply.ByteSize() == 0  # the same (empty) answer for every address
    # The answer never waits for the mail: every call well under one SMTP round trip
    # with retries would take, and none much slower than the stranger's.
    assert max(timings.values()) < 1.0, timings
    await mailed.delivered()

    assert mailed.sink.messages_to(stranger) == []
    (de_mail,) = mailed.sink.messages_to(german)
    (en_mail,) = mailed.sink.messages_to(english)
    assert de_mail["Subject"] == "Ihr Cardinsa-Passwort zurücksetzen"
    assert en_mail["Subject"] == "Reset your Cardinsa password"
    assert de_mail["From"] == "Cardinsa Test <no-reply@cardinsa.test>"
    for mail in (de_mail, en_mail):
        assert mail.get_content_type() == "multipart/alternative"
        assert TOKEN.search(part(mail, "html"))
    (token,) = TOKEN.findall(part(de_mail, "plain"))

    new_password = "mailed reset passphrase 77"
    await mailed.auth.ConfirmPasswordReset(
        auth_service_pb2.ConfirmPasswordResetRequest(reset_token=token, new_password=new_password)
    )
    assert (await identity.login(german, new_password)).access_token
    assert token not in caplog.text, "the reset token reached the log"
    for record in caplog.records:
        assert token not in str(record.__dict__)


async def test_a_contact_change_is_mailed_to_the_old_address(
    identity: IdentityHarness, mailed: MailedIdentity
) -> None:
    old, user_id = await create_user(identity, "de")
    account = await identity.token(identity.admin_a)
    new = unique_email("moved")
    await mailed.users.UpdateUser(
        user_service_pb2.UpdateUserRequest(
            user=resources_pb2.User(id=user_id, email=new),
            update_mask=field_mask_pb2.FieldMask(paths=["email"]),
        ),
        metadata=identity.bearer(account),
    )
    await mailed.delivered()
    # First the new address confirms (nothing to the old one yet) ...
    assert mailed.sink.messages_to(old) == []
    (confirmation,) = mailed.sink.messages_to(new)
    assert confirmation["Subject"] == "Bestätigen Sie Ihre neue Cardinsa-E-Mail-Adresse"
    (token,) = re.findall(r"cde_[A-Za-z0-9_\-]{43}", part(confirmation, "plain"))
    await mailed.auth.ConfirmEmailChange(
        auth_service_pb2.ConfirmEmailChangeRequest(email_change_token=token)
    )
    await mailed.delivered()
    # ... then the old address is told, without the new one.
    (notice,) = mailed.sink.messages_to(old)
    assert notice["Subject"] == "Die E-Mail-Adresse Ihres Cardinsa-Kontos wurde geändert"
    assert "Wenn Sie das nicht waren" in part(notice, "plain")
    assert new not in notice.as_string()  # never the new value
    assert len(mailed.sink.messages_to(new)) == 1


async def test_an_unreachable_mail_server_does_not_fail_the_request(
    identity: IdentityHarness, mailed: MailedIdentity, caplog: pytest.LogCaptureFixture
) -> None:
    email, _ = await create_user(identity, "")
    notifier = mailed.app.ctx.notifier
    assert isinstance(notifier, SmtpNotifier)
    # Point the running notifier at a port nobody listens on.
    notifier.config = replace(notifier.config, port=1, retries=1)
    caplog.set_level(logging.DEBUG)
    reply = await mailed.auth.RequestPasswordReset(
        auth_service_pb2.RequestPasswordResetRequest(email=email)
    )
    assert reply.ByteSize() == 0
    await mailed.delivered()
    assert mailed.sink.messages_to(email) == []
    given_up = [r for r in caplog.records if r.getMessage() == "mail not sent; giving up"]
    assert len(given_up) == 1
    assert not TOKEN.search(caplog.text)
