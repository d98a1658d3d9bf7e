"""TOTP codes, recovery codes, sealed secrets, the amr claims and the
MFA_REQUIRED answer of the shared authorization layer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from cardinsa_foundation.auth import principal_from_claims
from cardinsa_foundation.authorization import Access, MethodRule
from cardinsa_foundation.context import PrincipalKind
from cardinsa_foundation.errors import PermissionDenied
from cardinsa_identity.application.context import grants_under_policy
from cardinsa_identity.domain.mfa import (
    hash_recovery_code,
    is_well_formed_recovery_code,
    matching_step,
    new_recovery_codes,
    new_totp_secret,
    qr_code_png,
)
from cardinsa_identity.domain.permissions import SELF_SERVICE
from cardinsa_identity.domain.signing_keys import PrivateKeyCipher, SigningKeyDecryptionError
from cardinsa_identity.domain.tokens import build_access_claims

NOW = datetime(2026, 12, 7, 12, 0, 10, tzinfo=UTC)


def test_a_code_is_accepted_in_its_window_and_only_after_the_last_used_step() -> None:
    secret = new_totp_secret()
    totp = pyotp.TOTP(secret)
    step = totp.timecode(NOW)
    assert matching_step(secret, totp.at(NOW), NOW, None) == step
    assert matching_step(secret, totp.at(NOW - timedelta(seconds=30)), NOW, None) == step - 1
    assert matching_step(secret, totp.at(NOW + timedelta(seconds=30)), NOW, None) == step + 1
    assert matching_step(secret, totp.at(NOW + timedelta(seconds=90)), NOW, None) is None
    # Replay: the step already used (or an older one) is refused.
    assert matching_step(secret, totp.at(NOW), NOW, step) is None
    assert matching_step(secret, totp.at(NOW + timedelta(seconds=30)), NOW, step) == step + 1
    for malformed in (
        "",
        "12345",
        "1234567",
        "abcdef",
        "12 34 5x",
        "\uff11\uff12\uff13\uff14\uff15\uff16",
    ):  # the last: full-width digits
        assert matching_step(secret, malformed, NOW, None) is None
    spaced = totp.at(NOW)
    assert matching_step(secret, f"{spaced[:3]} {spaced[3:]}", NOW, None) == step


def test_recovery_codes_are_random_well_formed_and_hashed_case_blind() -> None:
    codes = new_recovery_codes()
    assert len(set(codes)) == 10
    for c in codes:
        assert is_well_formed_recovery_code(c)
        assert hash_recovery_code(c) == hash_recovery_code(c.upper().replace("-", ""))
    assert not is_well_formed_recovery_code("0000-00000")
    assert not is_well_formed_recovery_code("x" * 200)


def test_a_sealed_secret_opens_only_in_its_own_context_and_under_an_old_secret() -> None:
    old = PrivateKeyCipher("o" * 40)
    blob = old.seal(b"JBSWY3DPEHPK3PXP", "totp:user-1")
    assert b"JBSWY3DPEHPK3PXP" not in blob
    assert old.open_sealed(blob, "totp:user-1") == b"JBSWY3DPEHPK3PXP"
    with pytest.raises(SigningKeyDecryptionError) as moved:
        old.open_sealed(blob, "totp:user-2")
    assert "JBSW" not in str(moved.value)
    rotated = PrivateKeyCipher("n" * 40, previous_secrets=["o" * 40])
    assert rotated.open_sealed(blob, "totp:user-1") == b"JBSWY3DPEHPK3PXP"
    with pytest.raises(SigningKeyDecryptionError):
        PrivateKeyCipher("n" * 40).open_sealed(blob, "totp:user-1")


def test_the_qr_code_is_a_png() -> None:
    assert qr_code_png("otpauth://totp/Cardinsa:a%40b.c?secret=JBSWY3DPEHPK3PXP").startswith(
        b"\x89PNG\r\n\x1a\n"
    )


def test_roles_the_policy_names_count_only_with_otp() -> None:
    roles = [("auditor", ["audit_events.list", "me.get"], False), ("viewer", [], True)]
    names, perms, held = grants_under_policy(roles, {"auditor", "platform-admin"}, ["pwd"])
    assert names == ["viewer"]
    assert "audit_events.list" not in perms and held == {"audit_events.list"}
    assert perms >= SELF_SERVICE
    names, perms, held = grants_under_policy(roles, {"auditor"}, ["pwd", "otp"])
    assert names == ["auditor", "viewer"] and "audit_events.list" in perms and not held
    # A platform admin without otp is no platform admin.
    names, _, held = grants_under_policy([("platform-admin", [], True)], {"platform-admin"}, [])
    assert names == [] and "companies.create" in held


def test_a_held_back_permission_is_answered_mfa_required() -> None:
    claims = build_access_claims(
        issuer="i",
        audience="a",
        subject="s",
        kind=PrincipalKind.USER,
        company_id="c",
        roles=["viewer"],
        permissions=["me.get"],
        ttl=timedelta(minutes=5),
        amr=["pwd"],
        mfa_permissions=["audit_events.list"],
    )
    assert claims["amr"] == ["pwd"] and claims["mfa_perms"] == ["audit_events.list"]
    principal = principal_from_claims(claims)
    assert principal.amr == {"pwd"}
    rule = MethodRule("/x/Y", Access.PERMISSION, "audit_events.list")
    with pytest.raises(PermissionDenied) as refused:
        rule.check(principal)
    assert refused.value.reason == "MFA_REQUIRED"
    with pytest.raises(PermissionDenied) as missing:
        MethodRule("/x/Z", Access.PERMISSION, "users.create").check(principal)
    assert missing.value.reason == "PERMISSION_MISSING"
    plain = build_access_claims(
        issuer="i",
        audience="a",
        subject="s",
        kind=PrincipalKind.USER,
        company_id="c",
        roles=[],
        permissions=[],
        ttl=timedelta(minutes=5),
    )
    assert "amr" not in plain and "mfa_perms" not in plain
