"""Personal data at rest and data-subject requests, against real PostgreSQL.

- National ids and postal addresses are stored only as envelope ciphertexts:
  not in the table's raw columns, not in a ``pg_dump`` of the database; exact
  search on the national id still works (keyed hash).
- ``reencrypt`` rewrites every row under a new key (old key as previous), is
  idempotent, and the old key alone can no longer read the rows.
- ExportPersonalData returns everything about a holder, audited;
  ErasePersonalData is refused while a policy runs or a claim is open, then
  pseudonymises the holder and keeps policies and claims.
"""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import uuid

import grpc
import pytest
from core_harness import Tenant
from google.protobuf import json_format
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from support.grpc_errors import error_info

from cardinsa.core.v1 import claim_service_pb2 as cb
from cardinsa.core.v1 import policy_service_pb2 as pb
from cardinsa.core.v1 import policyholder_service_pb2 as hb
from cardinsa.core.v1 import resources_pb2
from cardinsa_core.cli import reencrypt
from cardinsa_core.repository import personal_data
from cardinsa_core.settings import DEV_PERSONAL_DATA_KEY, CoreSettings
from cardinsa_foundation.db import app_role_url
from cardinsa_foundation.envelope import EnvelopeCipher, EnvelopeError
from cardinsa_foundation.local_postgres import client_program

NEW_KEY = "rotated-personal-data-key-0123456789abcdef"
STREET = "Geheimweg 17"


async def _holder(
    tenant: Tenant, national_id: str, dependent_id: str
) -> resources_pb2.Policyholder:
    return await tenant.harness.policyholders.CreatePolicyholder(
        hb.CreatePolicyholderRequest(
            policyholder=resources_pb2.Policyholder(
                kind=resources_pb2.Policyholder.PERSON,
                given_name="Greta",
                family_name=f"Schmidt{uuid.uuid4().hex[:6]}",
                national_id=national_id,
                email=f"greta-{uuid.uuid4().hex[:8]}@example.de",
                address=resources_pb2.Address(
                    line1=STREET, city="Berlin", postal_code="10115", country_code="DE"
                ),
                dependents=[
                    resources_pb2.Dependent(
                        relation=resources_pb2.Dependent.CHILD,
                        given_name="Lena",
                        family_name="Schmidt",
                        national_id=dependent_id,
                    )
                ],
            )
        ),
        metadata=await tenant.md(),
    )


async def _rows(url: str, sql: str, **params: object) -> list[dict[str, object]]:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            result = await connection.execute(text(sql), params)
            return [dict(row._mapping) for row in result]
    finally:
        await engine.dispose()


async def _event_types(url: str, holder_id: str) -> list[str]:
    rows = await _rows(
        url,
        "SELECT type FROM core.outbox_events WHERE subject = :s ORDER BY sequence",
        s=f"policyholders/{holder_id}",
    )
    return [str(r["type"]) for r in rows]


def _pg_dump(url: str) -> str:
    """The whole database as ``pg_dump`` writes it (plain SQL)."""
    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    done = subprocess.run(
        [str(client_program("pg_dump")), "--no-owner", f"--dbname={libpq}"],
        capture_output=True,
        check=True,
        timeout=120,
    )
    return done.stdout.decode("utf-8", "replace")


async def test_no_plaintext_national_id_in_the_table_or_a_dump(
    tenant: Tenant, core_database: str
) -> None:
    national_id, dependent_id = f"DE{uuid.uuid4().int % 10**11:011d}", f"KID{uuid.uuid4().hex[:9]}"
    holder = await _holder(tenant, national_id, dependent_id)
    assert holder.national_id == national_id.upper()
    assert holder.dependents[0].national_id == dependent_id.upper()
    assert holder.address.line1 == STREET

    columns = await _rows(
        core_database,
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = 'core' AND table_name IN ('policyholders', 'dependents')",
    )
    names = {c["column_name"] for c in columns}
    assert "national_id" not in names and "address_line1" not in names
    assert {"national_id_encrypted", "national_id_hash", "address_line1_encrypted"} <= names

    (row,) = await _rows(
        core_database,
        "SELECT p::text AS whole, national_id_encrypted, national_id_hash "
        "FROM core.policyholders p WHERE id = :id",
        id=uuid.UUID(holder.id),
    )
    assert national_id.upper() not in str(row["whole"]) and STREET not in str(row["whole"])
    blob = bytes(row["national_id_encrypted"])  # type: ignore[arg-type]
    assert national_id.upper().encode() not in blob
    keys = personal_data.keys()
    assert keys.cipher.is_current(blob)
    assert row["national_id_hash"] == keys.lookup.digest(national_id.upper())
    # The hash is keyed: a plain SHA-256 or an HMAC under another key differs.
    assert row["national_id_hash"] != hashlib.sha256(national_id.upper().encode()).digest()
    assert row["national_id_hash"] != hmac.digest(b"guess", national_id.upper().encode(), "sha256")

    dump = _pg_dump(core_database)
    assert "CREATE TABLE core.policyholders" in dump  # the dump has the schema and rows
    assert holder.id in dump
    for secret in (national_id.upper(), dependent_id.upper(), STREET):
        assert secret not in dump

    # Exact-match search still works, also written with dashes and spaces.
    spaced = f"{national_id[:2].lower()}-{national_id[2:6]} {national_id[6:]}"
    for value in (national_id, spaced):
        page = await tenant.harness.policyholders.ListPolicyholders(
            hb.ListPolicyholdersRequest(filter=f'national_id = "{value}"'),
            metadata=await tenant.md(),
        )
        assert [h.id for h in page.policyholders] == [holder.id]
    for refused in (f'national_id = "{national_id[:5]}*"', f'national_id:"{national_id[2:]}"'):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await tenant.harness.policyholders.ListPolicyholders(
                hb.ListPolicyholdersRequest(filter=refused), metadata=await tenant.md()
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_reencrypt_moves_every_row_to_the_new_key(
    tenant: Tenant,
    core_database: str,
    core_settings: CoreSettings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    national_id = f"RK{uuid.uuid4().int % 10**10:010d}"
    holder = await _holder(tenant, national_id, f"RD{uuid.uuid4().hex[:8]}")
    url = app_role_url(core_database)
    rotated = CoreSettings(
        _env_file=None,
        environment="test",
        database_url=url,
        personal_data_key=NEW_KEY,
        personal_data_previous_keys=DEV_PERSONAL_DATA_KEY,
    )
    back = CoreSettings(
        _env_file=None,
        environment="test",
        database_url=url,
        personal_data_previous_keys=NEW_KEY,
    )
    old_only = EnvelopeCipher(DEV_PERSONAL_DATA_KEY, purpose=personal_data.PURPOSE)
    new_id = EnvelopeCipher(NEW_KEY, purpose=personal_data.PURPOSE).current_key_id
    query = (
        "SELECT national_id_encrypted AS n, address_line1_encrypted AS a "
        "FROM core.policyholders WHERE id = :id"
    )
    try:
        reports = await reencrypt(rotated, batch_size=3)
        by_table = {r.table: r for r in reports}
        assert by_table["policyholders"].rewritten >= 1 and by_table["dependents"].rewritten >= 1
        out = capsys.readouterr().out
        assert "policyholders:" in out and "re-encrypted" in out
        assert NEW_KEY not in out and national_id not in out

        (row,) = await _rows(core_database, query, id=uuid.UUID(holder.id))
        for blob in (row["n"], row["a"]):
            assert personal_data.keys().cipher.key_id_of(bytes(blob)) == new_id  # type: ignore[arg-type]
            with pytest.raises(EnvelopeError):
                old_only.decrypt(bytes(blob), aad=b"core.policyholders.national_id")  # type: ignore[arg-type]
        unencrypted = await _rows(
            core_database,
            "SELECT count(*) AS n FROM core.dependents WHERE national_id_encrypted IS NOT NULL "
            "AND substr(national_id_encrypted, 3, 16) <> convert_to(:k, 'UTF8')",
            k=new_id,
        )
        assert unencrypted == [{"n": 0}]
        # The service (keys as after the rotation) reads and searches them.
        seen = await tenant.harness.policyholders.ListPolicyholders(
            hb.ListPolicyholdersRequest(filter=f'national_id = "{national_id}"'),
            metadata=await tenant.md(),
        )
        assert [h.national_id for h in seen.policyholders] == [national_id]
        # Idempotent: a second run finds nothing to do.
        again = await reencrypt(rotated, batch_size=3)
        assert all(r.rewritten == 0 for r in again)
    finally:
        # Every tenant's rows back under the development key for the other tests.
        await reencrypt(back, batch_size=500)
        personal_data.use_settings(core_settings)
    (row,) = await _rows(core_database, query, id=uuid.UUID(holder.id))
    assert old_only.decrypt_text(bytes(row["n"]), aad=b"core.policyholders.national_id") == (  # type: ignore[arg-type]
        national_id
    )


async def test_export_returns_everything_about_the_holder_and_is_audited(
    tenant: Tenant, core_database: str
) -> None:
    national_id = f"EX{uuid.uuid4().int % 10**10:010d}"
    holder = await _holder(tenant, national_id, f"ED{uuid.uuid4().hex[:8]}")
    policy = await tenant.in_force(holder)
    claim = await tenant.claim(policy)
    other = await tenant.holder()  # not part of the export

    export = await tenant.harness.policyholders.ExportPersonalData(
        hb.ExportPersonalDataRequest(policyholder_id=holder.id), metadata=await tenant.md()
    )
    data = json_format.MessageToDict(export.data)
    assert export.policyholder_id == holder.id and export.export_time.seconds > 0
    assert data["policyholder"]["national_id"] == national_id
    assert data["policyholder"]["address_line1"] == STREET
    assert "national_id_hash" not in data["policyholder"]
    assert "company_id" not in data["policyholder"]
    assert [d["id"] for d in data["dependents"]] == [holder.dependents[0].id]
    assert [p["id"] for p in data["policies"]] == [policy.id]
    assert [c["id"] for c in data["claims"]] == [claim.id]
    assert data["policy_status_changes"] and data["claim_log_entries"]
    assert {e["action"] for e in data["audit_events"]} >= {"policyholder.create"}
    assert other.id not in str(data)

    audit = await _rows(
        core_database,
        "SELECT action, actor_id FROM core.audit_events WHERE entity_id = :id "
        "AND action = 'policyholder.export'",
        id=holder.id,
    )
    assert len(audit) == 1 and audit[0]["actor_id"]
    assert await _event_types(core_database, holder.id) == [
        "cardinsa.core.policyholder.export_personal_data.v1"
    ]


async def test_erasure_is_refused_while_in_force_or_a_claim_is_open(
    tenant: Tenant, core_database: str
) -> None:
    holders, md = tenant.harness.policyholders, await tenant.md()
    national_id = f"ER{uuid.uuid4().int % 10**10:010d}"
    holder = await _holder(tenant, national_id, f"EK{uuid.uuid4().hex[:8]}")
    policy = await tenant.in_force(holder)
    claim = await tenant.claim(policy)
    erase = hb.ErasePersonalDataRequest(policyholder_id=holder.id)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await holders.ErasePersonalData(erase, metadata=md)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(caught.value).reason == "POLICY_IN_FORCE"

    await tenant.harness.policies.CancelPolicy(
        pb.CancelPolicyRequest(
            policy_id=policy.id,
            reason=resources_pb2.Policy.MEMBER_REQUEST,
            effective_date=policy.effective_date,
        ),
        metadata=md,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await holders.ErasePersonalData(erase, metadata=md)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(caught.value).reason == "CLAIM_OPEN"

    await tenant.harness.claims.WithdrawClaim(
        cb.WithdrawClaimRequest(claim_id=claim.id, reason="asked to"), metadata=md
    )
    erased = await holders.ErasePersonalData(erase, metadata=md)
    pseudonym = f"erased-{holder.id[:8]}"
    assert erased.given_name == erased.family_name == erased.display_name == pseudonym
    assert not erased.national_id and not erased.email and not erased.address.line1
    assert erased.date_of_birth.year == 0
    assert erased.delete_time.seconds > 0

    (row,) = await _rows(
        core_database,
        "SELECT national_id_encrypted, national_id_hash, address_line1_encrypted, email "
        "FROM core.policyholders WHERE id = :id",
        id=uuid.UUID(holder.id),
    )
    assert row == {
        "national_id_encrypted": None,
        "national_id_hash": None,
        "address_line1_encrypted": None,
        "email": "",
    }
    deps = await _rows(
        core_database,
        "SELECT given_name, national_id_encrypted, national_id_hash, date_of_birth "
        "FROM core.dependents WHERE policyholder_id = :id",
        id=uuid.UUID(holder.id),
    )
    assert deps == [
        {
            "given_name": f"erased-{holder.dependents[0].id[:8]}",
            "national_id_encrypted": None,
            "national_id_hash": None,
            "date_of_birth": None,
        }
    ]
    # The financial records stay, still the holder's.
    kept = await tenant.harness.policies.GetPolicy(
        pb.GetPolicyRequest(policy_id=policy.id), metadata=md
    )
    assert kept.policyholder_id == holder.id
    kept_claim = await tenant.harness.claims.GetClaim(
        cb.GetClaimRequest(claim_id=claim.id), metadata=md
    )
    assert kept_claim.id == claim.id
    # The old national id finds nothing any more.
    page = await holders.ListPolicyholders(
        hb.ListPolicyholdersRequest(filter=f'national_id = "{national_id}"', show_deleted=True),
        metadata=md,
    )
    assert not page.policyholders
    audit = await _rows(
        core_database,
        "SELECT count(*) AS n FROM core.audit_events WHERE entity_id = :id "
        "AND action = 'policyholder.erase'",
        id=holder.id,
    )
    assert audit == [{"n": 1}]
    assert await _event_types(core_database, holder.id) == [
        "cardinsa.core.policyholder.erase_personal_data.v1"
    ]


async def test_only_the_dedicated_permissions_export_and_erase(tenant: Tenant) -> None:
    holders = tenant.harness.policyholders
    holder = await tenant.holder()
    for role in ("agent", "viewer", "underwriter", "claims-adjuster"):
        md = await tenant.md(role)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await holders.ExportPersonalData(
                hb.ExportPersonalDataRequest(policyholder_id=holder.id), metadata=md
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED, role
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await holders.ErasePersonalData(
                hb.ErasePersonalDataRequest(policyholder_id=holder.id), metadata=md
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED, role
    seen = await holders.GetPolicyholder(
        hb.GetPolicyholderRequest(policyholder_id=holder.id), metadata=await tenant.md()
    )
    assert seen.given_name == holder.given_name  # nothing was erased
