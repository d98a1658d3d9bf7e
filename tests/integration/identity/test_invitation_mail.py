"""Invitations and e-mail changes by real e-mail: an identity server whose
settings say ``notifier=smtp`` sends to a real SMTP server on 127.0.0.1 (`make
up`'s sink); the tokens are read from the delivered messages and complete the
flows. The tokens reach no log."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from support.identity_harness import IdentityHarness, unique_email
from support.smtp_sink import Sink, part, smtp_sink

from cardinsa.identity.v1 import (
    auth_service_pb2,
    auth_service_pb2_grpc,
    me_service_pb2,
    me_service_pb2_grpc,
    resources_pb2,
    user_service_pb2,
    user_service_pb2_grpc,
)
from cardinsa_foundation.db import app_role_url
from cardinsa_identity.application.mail import SmtpNotifier
from cardinsa_identity.domain.permissions import BUILT_IN_ROLES
from cardinsa_identity.main import IdentityApp, build
from cardinsa_identity.settings import NotifierKind, SmtpTls

pytestmark = pytest.mark.integration

INVITATION = re.compile(r"cdi_[A-Za-z0-9_\-]{43}")
EMAIL_CHANGE = re.compile(r"cde_[A-Za-z0-9_\-]{43}")
NEW_PASSWORD = "a mailed invitation passphrase 5"


@dataclass
class Mailed:
    app: IdentityApp
    sink: Sink
    auth: auth_service_pb2_grpc.AuthServiceStub
    users: user_service_pb2_grpc.UserServiceStub
    me: me_service_pb2_grpc.MeServiceStub

    async def delivered(self) -> None:
        notifier = self.app.ctx.notifier
        assert isinstance(notifier, SmtpNotifier)
        await asyncio.wait_for(notifier.wait_until_sent(), 15)


@pytest_asyncio.fixture
async def mailed(
    identity: IdentityHarness, identity_database: str, tmp_path: Path
) -> AsyncIterator[Mailed]:
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
        app = build(settings, app_role_url(identity_database), port=0, metrics_port=0)
        await app.start()
        channel = grpc.aio.insecure_channel(app.server.address)
        try:
            yield Mailed(
                app,
                sink,
                auth_service_pb2_grpc.AuthServiceStub(channel),
                user_service_pb2_grpc.UserServiceStub(channel),
                me_service_pb2_grpc.MeServiceStub(channel),
            )
        finally:
            await channel.close()
            await app.stop()


@pytest.mark.parametrize(
    ("locale", "subject"),
    [("de-AT", "Einladung zu Cardinsa"), ("", "You are invited to Cardinsa")],
)
async def test_the_invitation_arrives_by_mail_and_sets_the_password(
    identity: IdentityHarness,
    mailed: Mailed,
    caplog: pytest.LogCaptureFixture,
    locale: str,
    subject: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = identity.bearer(await identity.token(identity.admin_a))
    user = await mailed.users.InviteUser(
        user_service_pb2.InviteUserRequest(
            user=resources_pb2.User(
                email=unique_email("mail-invite"), display_name="Ina <b>Vited</b>", locale=locale
            )
        ),
        metadata=admin,
    )
    await mailed.delivered()
    (mail,) = mailed.sink.messages_to(user.email)
    assert mail["Subject"] == subject
    assert mail.get_content_type() == "multipart/alternative"
    plain, html = part(mail, "plain"), part(mail, "html")
    (token,) = INVITATION.findall(plain)
    assert token in html
    # The name is escaped in the HTML part.
    assert "Ina <b>Vited</b>" in plain
    assert "<b>Vited</b>" not in html and "&lt;b&gt;Vited&lt;/b&gt;" in html

    await mailed.auth.AcceptInvitation(
        auth_service_pb2.AcceptInvitationRequest(invitation_token=token, new_password=NEW_PASSWORD)
    )
    assert (await identity.login(user.email, NEW_PASSWORD)).access_token
    assert token not in caplog.text, "the invitation token reached the log"
    for record in caplog.records:
        assert token not in str(record.__dict__)


async def test_an_email_change_is_confirmed_from_the_new_inbox_and_told_to_the_old(
    identity: IdentityHarness, mailed: Mailed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    weakest = min(BUILT_IN_ROLES.values(), key=lambda r: len(r.permissions)).name
    user = await identity.create_user(identity.admin_a, roles=[weakest])
    token = (await identity.login(user.email)).access_token
    new = unique_email("mail-moved")
    await mailed.me.ChangeMyEmail(
        me_service_pb2.ChangeMyEmailRequest(current_password=user.password, new_email=new),
        metadata=identity.bearer(token),
    )
    await mailed.delivered()
    (confirm,) = mailed.sink.messages_to(new)
    assert confirm["Subject"] == "Confirm your new Cardinsa e-mail address"
    (change_token,) = EMAIL_CHANGE.findall(part(confirm, "plain"))
    assert mailed.sink.messages_to(user.email) == []

    await mailed.auth.ConfirmEmailChange(
        auth_service_pb2.ConfirmEmailChangeRequest(email_change_token=change_token)
    )
    await mailed.delivered()
    (notice,) = mailed.sink.messages_to(user.email)
    assert notice["Subject"] == "The e-mail address of your Cardinsa account changed"
    assert "this wasn't you" in part(notice, "plain")
    assert new not in notice.as_string()
    assert not EMAIL_CHANGE.search(notice.as_string())
    assert (await identity.login(new)).access_token
    assert change_token not in caplog.text
