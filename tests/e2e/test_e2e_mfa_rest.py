"""A second factor and the first-login password change, through the REST
gateway of the running suite.

A user enrols TOTP under /v1/me (secret and provisioning URI, the QR code as
PNG), confirms it with a first code, then logs in with the password (a
challenge, no tokens) and answers with a code (tokens whose ``amr`` has
``otp``). A role the company's MFA policy names is refused without a second
factor by identity and by core alike (the check is the shared authorization
layer). A user whose password an admin set chooses a new one at first login.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import pyotp
import pytest

from e2e.suite_harness import (
    ADMIN_EMAIL,
    PASSWORD,
    SuiteProcess,
    assert_error,
    unique_email,
)

pytestmark = pytest.mark.integration

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


def totp(secret: str, steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * steps)


def test_enrol_totp_log_in_with_a_code_and_a_role_that_needs_mfa(suite: SuiteProcess) -> None:
    rest = suite.rest()
    admin = rest.login(ADMIN_EMAIL)

    # A custom role holding the audit logs, which the company's policy guards.
    role = rest.call(
        "POST",
        "/v1/roles",
        {"name": f"auditor-{uuid.uuid4().hex[:8]}", "permissions": ["audit_events.list"]},
        token=admin,
    ).ok()
    user = rest.create_user(admin, "viewer", "mfa")
    rest.call(
        "POST", "/v1/roleBindings", {"user_id": user["id"], "role_id": role["id"]}, token=admin
    ).ok()
    policy = rest.call("PUT", "/v1/mfaPolicy", {"required_roles": [role["name"]]}, token=admin).ok()
    assert policy["required_roles"] == [role["name"]]
    try:
        # --- without a second factor: the guarded role's calls are refused ---------
        weak = rest.login(user["email"])
        assert claims(weak)["amr"] == ["pwd"]
        for path in ("/v1/identity/auditEvents", "/v1/core/auditEvents"):
            refused = rest.call("GET", path, token=weak)
            assert_error(refused, 403, 7, reason="MFA_REQUIRED")
        assert rest.call("GET", "/v1/me", token=weak).ok()["id"] == user["id"]

        # --- enrolment under /v1/me ---------------------------------------------------
        assert rest.call("GET", "/v1/me/mfa", token=weak).ok().get("enabled", False) is False
        enrolment = rest.call("POST", "/v1/me/mfa:enroll", {}, token=weak).ok()
        secret = enrolment["secret"]
        assert enrolment["provisioning_uri"].startswith("otpauth://totp/")
        qr = rest.call("GET", "/v1/me/mfa/qrCode", token=weak)
        assert qr.status == 200, (qr.status, qr.body[:500])
        assert qr.header("content-type") == "image/png"
        assert qr.body.startswith(PNG_MAGIC)
        wrong = rest.call("POST", "/v1/me/mfa:confirm", {"totp_code": "000000"}, token=weak)
        assert_error(wrong, 400, 3, reason="INVALID_MFA_CODE")
        confirmed = rest.call(
            "POST", "/v1/me/mfa:confirm", {"totp_code": totp(secret, -1)}, token=weak
        ).ok()
        assert len(confirmed["recovery_codes"]) == 10
        state = rest.call("GET", "/v1/me/mfa", token=weak).ok()
        assert state["enabled"] is True and state["recovery_codes_remaining"] == 10

        # --- login: password → challenge, code → tokens with otp ----------------------
        first = rest.call(
            "POST", "/v1/auth:login", {"email": user["email"], "password": PASSWORD}
        ).ok()
        assert not first.get("access_token")
        assert first["challenge"]["kind"] == "MFA_TOTP"
        replayed_code = totp(secret)
        tokens = rest.call(
            "POST",
            "/v1/auth:respondToChallenge",
            {"session": first["challenge"]["session"], "totp_code": replayed_code},
        ).ok()
        assert tokens["amr"] == ["pwd", "otp"]
        assert claims(tokens["access_token"])["amr"] == ["otp", "pwd"]
        strong = tokens["access_token"]
        for path in ("/v1/identity/auditEvents", "/v1/core/auditEvents"):
            rest.call("GET", path, token=strong).ok()

        # The challenge is single-use, and the code too.
        again = rest.call(
            "POST",
            "/v1/auth:respondToChallenge",
            {"session": first["challenge"]["session"], "totp_code": totp(secret, 1)},
        )
        assert_error(again, 401, 16, reason="INVALID_CHALLENGE")
        second = rest.call(
            "POST", "/v1/auth:login", {"email": user["email"], "password": PASSWORD}
        ).ok()
        replay = rest.call(
            "POST",
            "/v1/auth:respondToChallenge",
            {"session": second["challenge"]["session"], "totp_code": replayed_code},
        )
        assert_error(replay, 401, 16, reason="INVALID_MFA_CODE")

        # A refresh keeps otp; an unknown email still looks like a wrong password.
        refreshed = rest.call(
            "POST", "/v1/auth:refresh", {"refresh_token": tokens["refresh_token"]}
        ).ok()
        assert claims(refreshed["access_token"])["amr"] == ["otp", "pwd"]
        for email in (user["email"], unique_email("nobody")):
            # From an address of its own: the gateway limits logins per address.
            bad = suite.rest().call(
                "POST", "/v1/auth:login", {"email": email, "password": "wrong" * 4}
            )
            assert_error(bad, 401, 16, reason="INVALID_CREDENTIALS")
    finally:
        rest.call("PUT", "/v1/mfaPolicy", {"required_roles": []}, token=admin).ok()


def test_a_password_set_by_an_admin_is_replaced_at_first_login(suite: SuiteProcess) -> None:
    rest = suite.rest()
    admin = rest.login(ADMIN_EMAIL)
    email = unique_email("first-login")
    rest.call(
        "POST", "/v1/users", {"user": {"email": email}, "password": PASSWORD}, token=admin
    ).ok()
    first = rest.call("POST", "/v1/auth:login", {"email": email, "password": PASSWORD}).ok()
    assert not first.get("access_token")
    assert first["challenge"]["kind"] == "NEW_PASSWORD_REQUIRED"
    same = rest.call(
        "POST",
        "/v1/auth:respondToChallenge",
        {"session": first["challenge"]["session"], "new_password": PASSWORD},
    )
    assert_error(same, 400, 3, reason="PASSWORD_NOT_CHANGED")
    mine = "my own passphrase for cardinsa 7"
    tokens = rest.call(
        "POST",
        "/v1/auth:respondToChallenge",
        {"session": first["challenge"]["session"], "new_password": mine},
    ).ok()
    assert tokens["access_token"] and tokens["amr"] == ["pwd"]
    assert rest.login(email, mine)
    old = rest.call("POST", "/v1/auth:login", {"email": email, "password": PASSWORD})
    assert_error(old, 401, 16, reason="INVALID_CREDENTIALS")
