"""`cardinsa_identity.cli reencrypt` over the real database: every stored signing
key moves to the new encryption secret, and the rotation is undone for the other
tests of the session."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from support.identity_harness import IdentityHarness

from cardinsa_foundation.db import app_role_url
from cardinsa_identity.cli import reencrypt
from cardinsa_identity.domain.signing_keys import PrivateKeyCipher, SigningKeyDecryptionError
from cardinsa_identity.repository.models import SigningKeyRow

NEW = "rotated-signing-key-secret-0123456789abcdefgh"


async def _blobs(identity: IdentityHarness) -> dict[str, bytes]:
    async with identity.app.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
        rows = (await session.scalars(select(SigningKeyRow))).all()
        return {r.kid: r.private_key_encrypted for r in rows}


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
    before = await _blobs(identity)
    assert before
    try:
        assert await reencrypt(rotated) == len(before)
        out = capsys.readouterr().out
        assert f"signing keys: {len(before)}/{len(before)}" in out and NEW not in out
        after = await _blobs(identity)
        new_only = PrivateKeyCipher(NEW)
        for kid, blob in after.items():
            assert new_only.decrypt(kid, blob).kid == kid
            assert not new_only.needs_reencryption(blob)
            with pytest.raises(SigningKeyDecryptionError):
                PrivateKeyCipher(dev).decrypt(kid, blob)
        assert await reencrypt(rotated) == 0  # idempotent
    finally:
        await reencrypt(back)
    for kid, blob in (await _blobs(identity)).items():
        assert PrivateKeyCipher(dev).decrypt(kid, blob).kid == kid
