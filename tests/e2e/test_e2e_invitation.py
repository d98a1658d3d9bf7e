"""An invitation through the REST gateway of `make up`, end to end: the demo
admin invites a user (POST /v1/users:invite), the invitation arrives at the
launcher's SMTP sink, its token sets the password (POST
/v1/auth:acceptInvitation, public), the user logs in, lists their own sessions
(GET /v1/me/sessions) and ends one (POST /v1/me/sessions/{id}:revoke): its
refresh token then fails."""

from __future__ import annotations

import re
import uuid

import pytest

from e2e.suite_harness import ADMIN_EMAIL, SuiteProcess, unique_email
from e2e.test_e2e_mail import wait_for_mail

pytestmark = pytest.mark.integration

TOKEN = re.compile(r"cdi_[A-Za-z0-9_\-]{43}")
NEW_PASSWORD = "E2e-Invited-Passw0rd-2026!"


def test_an_invited_user_accepts_logs_in_and_ends_their_own_session(
    suite: SuiteProcess,
) -> None:
    assert suite.output is not None
    rest = suite.rest()
    admin = rest.login(ADMIN_EMAIL)
    email = unique_email("invited")
    user = rest.call(
        "POST",
        "/v1/users:invite",
        {"user": {"email": email, "given_name": "Invited"}, "request_id": str(uuid.uuid4())},
        token=admin,
    ).ok()
    assert user["state"] == "INVITED"
    assert "password" not in str(user).lower()
    # A role, so the user holds the self-service permissions.
    binding = rest.call(
        "POST",
        "/v1/roleBindings",
        {"user_id": user["id"], "role_id": rest.role_ids(admin)["viewer"]},
        token=admin,
    ).ok()
    assert binding["user_id"] == user["id"]

    # Not yet accepted: the answer of a wrong password.
    early = rest.call("POST", "/v1/auth:login", {"email": email, "password": NEW_PASSWORD})
    assert early.status == 401, early.body

    _, message = wait_for_mail(suite.base / "mail", email)
    assert message["Subject"] == "Einladung zu Cardinsa"  # the demo company's de-DE
    plain = message.get_body(preferencelist=("plain",))
    assert plain is not None
    (token,) = TOKEN.findall(plain.get_content())

    accepted = rest.call(
        "POST",
        "/v1/auth:acceptInvitation",
        {"invitation_token": token, "new_password": NEW_PASSWORD},
    )
    assert accepted.ok() == {}
    replay = rest.call(
        "POST",
        "/v1/auth:acceptInvitation",
        {"invitation_token": token, "new_password": "Another-Passw0rd-2026!"},
    )
    assert replay.status == 401, replay.body

    pair = rest.call("POST", "/v1/auth:login", {"email": email, "password": NEW_PASSWORD}).ok()
    access, refresh, session_id = pair["access_token"], pair["refresh_token"], pair["session_id"]
    me = rest.call("GET", "/v1/me", token=access).ok()
    assert (me["email"], me["state"]) == (email, "ACTIVE")

    sessions = rest.call("GET", "/v1/me/sessions", token=access).ok()["sessions"]
    assert [s["id"] for s in sessions] == [session_id]
    rest.call("POST", f"/v1/me/sessions/{session_id}:revoke", {}, token=access).ok()
    refused = rest.call("POST", "/v1/auth:refresh", {"refresh_token": refresh})
    assert refused.status == 401, refused.body
    left = rest.call("GET", "/v1/me/sessions?show_revoked=true", token=access)
    # The access token of the ended session is revoked too (streamed to every
    # service): either refused, or it lists the session as revoked.
    if left.status == 200:
        assert all("revoke_time" in s for s in left.json()["sessions"])
    else:
        assert left.status == 401, left.body
    # The token reached the mail, not the suite's logs.
    assert not any(token in line for line in suite.output.snapshot())
