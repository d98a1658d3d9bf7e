"""One account's whole life through the REST gateway of the running suite, in
the order a new employee lives it: the admin invites them, the invitation
arrives at the suite's SMTP sink, they set their password with its token, enrol
an authenticator app, log in with password and code, list their sessions and
end one. A role the company's MFA policy names works only with the second
factor: the same user's password-only login is refused its calls.

The flows have their own detailed tests (test_e2e_invitation, test_e2e_mfa_rest);
this one checks that they fit together for one user.
"""

from __future__ import annotations

import re
import time
import uuid

import pyotp
import pytest

from e2e.suite_harness import ADMIN_EMAIL, SuiteProcess, assert_error, unique_email
from e2e.test_e2e_mail import wait_for_mail

pytestmark = pytest.mark.integration

INVITATION_TOKEN = re.compile(r"cdi_[A-Za-z0-9_\-]{43}")
PASSWORD = "Journey-Passw0rd-2026!"


def test_invited_enrolled_logged_in_with_a_code_and_guarded_by_the_mfa_policy(
    suite: SuiteProcess,
) -> None:
    rest = suite.rest()
    admin = rest.login(ADMIN_EMAIL)
    email = unique_email("journey")

    # --- the admin invites; a custom role the MFA policy will guard ------------
    user = rest.call(
        "POST",
        "/v1/users:invite",
        {"user": {"email": email, "given_name": "Journey"}, "request_id": str(uuid.uuid4())},
        token=admin,
    ).ok()
    assert user["state"] == "INVITED"
    roles = rest.role_ids(admin)
    guarded = rest.call(
        "POST",
        "/v1/roles",
        {"name": f"journey-auditor-{uuid.uuid4().hex[:8]}", "permissions": ["audit_events.list"]},
        token=admin,
    ).ok()
    for role_id in (roles["viewer"], guarded["id"]):
        rest.call(
            "POST", "/v1/roleBindings", {"user_id": user["id"], "role_id": role_id}, token=admin
        ).ok()

    policy = rest.call(
        "PUT", "/v1/mfaPolicy", {"required_roles": [guarded["name"]]}, token=admin
    ).ok()
    assert policy["required_roles"] == [guarded["name"]]
    try:
        # --- the invitation arrives at the sink; its token sets the password ------
        _, message = wait_for_mail(suite.base / "mail", email)
        plain = message.get_body(preferencelist=("plain",))
        assert plain is not None
        (invitation,) = INVITATION_TOKEN.findall(plain.get_content())
        rest.call(
            "POST",
            "/v1/auth:acceptInvitation",
            {"invitation_token": invitation, "new_password": PASSWORD},
        ).ok()

        # --- enrolment with a password-only login --------------------------------
        first = rest.call("POST", "/v1/auth:login", {"email": email, "password": PASSWORD}).ok()
        assert first.get("access_token") and not first.get("challenge"), first
        weak = first["access_token"]
        # The guarded role's calls: refused to a login without a second factor.
        refused = rest.call("GET", "/v1/core/auditEvents", token=weak)
        assert_error(refused, 403, 7, reason="MFA_REQUIRED")
        enrolment = rest.call("POST", "/v1/me/mfa:enroll", {}, token=weak).ok()
        secret = enrolment["secret"]
        totp = pyotp.TOTP(secret)
        rest.call(
            "POST", "/v1/me/mfa:confirm", {"totp_code": totp.at(time.time() - 30)}, token=weak
        ).ok()

        # --- login with password + code ---------------------------------------
        challenged = rest.call(
            "POST", "/v1/auth:login", {"email": email, "password": PASSWORD}
        ).ok()
        assert not challenged.get("access_token")
        assert challenged["challenge"]["kind"] == "MFA_TOTP"
        wrong = rest.call(
            "POST",
            "/v1/auth:respondToChallenge",
            {"session": challenged["challenge"]["session"], "totp_code": "000000"},
        )
        assert_error(wrong, 401, 16, reason="INVALID_MFA_CODE")
        strong = rest.call(
            "POST",
            "/v1/auth:respondToChallenge",
            {"session": challenged["challenge"]["session"], "totp_code": totp.now()},
        ).ok()
        assert strong["amr"] == ["pwd", "otp"]
        rest.call("GET", "/v1/core/auditEvents", token=strong["access_token"]).ok()

        # --- own sessions: both logins listed; the first one ended ------------
        listed = rest.call("GET", "/v1/me/sessions", token=strong["access_token"]).ok()
        ids = {s["id"] for s in listed["sessions"]}
        assert ids == {first["session_id"], strong["session_id"]}, listed
        rest.call(
            "POST",
            f"/v1/me/sessions/{first['session_id']}:revoke",
            {},
            token=strong["access_token"],
        ).ok()
        ended = rest.call("POST", "/v1/auth:refresh", {"refresh_token": first["refresh_token"]})
        assert ended.status == 401, ended.body
        still = rest.call("GET", "/v1/me/sessions", token=strong["access_token"]).ok()
        assert [s["id"] for s in still["sessions"]] == [strong["session_id"]]
    finally:
        rest.call("PUT", "/v1/mfaPolicy", {"required_roles": []}, token=admin).ok()
