"""`cardinsa_identity.cli reencrypt` over the real database: every stored signing
key and every TOTP secret moves to the new encryption secret, and the rotation
is undone for the other tests of the session."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select
from support.identity_harness import IdentityHarness
from support.mfa_helpers import enrol

from cardinsa_foundation.db import app_role_url
from cardinsa_identity.cli import reencrypt
from cardinsa_identity.domain.mfa import totp_context
from cardinsa_identity.domain.signing_keys import PrivateKeyCipher, SigningKeyDecryptionError
from cardinsa_identity.repository.models import SigningKeyRow, UserMfaRow

NEW = "rotated-signing-key-secret-0123456789abcdefgh"


async def _blobs(identity: IdentityHarness) -> dict[str, bytes]:
    async with identity.app.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
        rows = (await session.scalars(select(SigningKeyRow))).all()
        return {r.kid: r.private_key_encrypted for r in rows}


async def _factors(identity: IdentityHarness) -> dict[object, bytes]:
    async with identity.app.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
        rows = (await session.scalars(select(UserMfaRow))).all()
        return {r.user_id: r.secret_encrypted for r in rows}


async def test_reencrypt_moves_every_signing_key_to_the_new_secret(
    identity: IdentityHarness, identity_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dev = identity.settings.signing_key_encryption_key.get_secret_value()
    common = {
        "_env_file": None,
        "environment": "test",
        "database_url": app_role_url(identity_database),
    }
    rotated = identity.settings.__class__(
        **common, signing_key_encryption_key=NEW, signing_key_encryption_previous_keys=dev
    )
    back = identity.settings.__class__(
        **common, signing_key_encryption_key=dev, signing_key_encryption_previous_keys=NEW
    )
    user = await identity.create_user(identity.admin_a, roles=["viewer"])
    factor = await enrol(identity, user)
    before = await _blobs(identity)
    factors = await _factors(identity)
    assert before and factors
    try:
        assert await reencrypt(rotated) == len(before) + len(factors)
        out = capsys.readouterr().out
        assert f"signing keys: {len(before)}/{len(before)}" in out and NEW not in out
        assert f"totp secrets: {len(factors)} checked, {len(factors)} re-encrypted" in out
        assert factor.secret not in out
        after = await _blobs(identity)
        new_only = PrivateKeyCipher(NEW)
        for kid, blob in after.items():
            assert new_only.decrypt(kid, blob).kid == kid
            assert not new_only.needs_reencryption(blob)
            with pytest.raises(SigningKeyDecryptionError):
                PrivateKeyCipher(dev).decrypt(kid, blob)
        for user_id, blob in (await _factors(identity)).items():
            assert not new_only.needs_reencryption(blob)
            with pytest.raises(SigningKeyDecryptionError):
                PrivateKeyCipher(dev).open_sealed(blob, totp_context(user_id))
        user_id = uuid.UUID(user.user_id)
        moved = (await _factors(identity))[user_id]
        assert new_only.open_sealed(moved, totp_context(user_id)).decode() == factor.secret
        assert await reencrypt(rotated) == 0  # idempotent
    finally:
        await reencrypt(back)
    for kid, blob in (await _blobs(identity)).items():
        assert PrivateKeyCipher(dev).decrypt(kid, blob).kid == kid
    for user_id, blob in (await _factors(identity)).items():
        assert PrivateKeyCipher(dev).open_sealed(blob, totp_context(user_id))
