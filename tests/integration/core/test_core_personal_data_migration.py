"""Migration core_0015 on a database with plaintext personal data: the values end
up encrypted (and hashed), the plain columns are gone, old request fingerprints
are cleared; the downgrade brings the plaintext back."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest_asyncio
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from cardinsa_core.cli import MIGRATIONS
from cardinsa_core.repository import personal_data
from cardinsa_foundation.migrations import downgrade, upgrade

SCHEMA = "core"
HOLDER_ID, STREET, DEPENDENT_ID = "MIG1234567890", "Altstraße 5", "MIGDEP12345"

_ROWS = """
INSERT INTO core.policyholders (id, company_id, kind, given_name, family_name, gender,
    legal_name, registration_number, national_id, email, phone, address_line1, address_line2,
    address_city, address_region, address_postal_code, address_country_code, display_name,
    version)
VALUES (:holder, :c, 'PERSON', 'A', 'B', '', '', '', :nid, '', '', :street, '', 'Köln', '',
    '50667', 'DE', 'A B', 1),
    (:empty, :c, 'PERSON', 'C', 'D', '', '', '', '', '', '', '', '', '', '', '', '', 'C D', 1);
INSERT INTO core.dependents (id, company_id, policyholder_id, relation, given_name,
    family_name, gender, national_id)
VALUES (:dep, :c, :holder, 'CHILD', 'E', 'B', '', :dnid);
INSERT INTO core.idempotency_keys (company_id, method, request_id, resource_id, request_hash)
VALUES (:c, 'CreatePolicyholder', 'r1', :resource, 'plain-sha256'),
       (:c, 'CreatePolicy', 'r2', :resource, 'kept');
"""


def engine_for(url: str) -> AsyncEngine:
    return create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")


@pytest_asyncio.fixture
async def blank_database(postgres_admin_url: str) -> AsyncIterator[str]:
    name = f"cardinsa_test_{uuid.uuid4().hex[:12]}"
    admin = engine_for(postgres_admin_url)
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(postgres_admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def test_core_0015_encrypts_existing_rows_and_the_downgrade_decrypts_them(
    blank_database: str,
) -> None:
    await upgrade(MIGRATIONS, blank_database, SCHEMA, revision="core_0014")
    ids = {k: uuid.uuid4() for k in ("c", "holder", "empty", "dep")}
    values = {**ids, "nid": HOLDER_ID, "street": STREET, "dnid": DEPENDENT_ID}
    values["resource"] = str(ids["holder"])
    engine = engine_for(blank_database)
    try:
        async with engine.connect() as connection:
            for statement in filter(str.strip, _ROWS.split(";")):
                await connection.execute(text(statement), values)
        await upgrade(MIGRATIONS, blank_database, SCHEMA)
        keys = personal_data.keys()
        async with engine.connect() as connection:
            columns = set(
                (
                    await connection.execute(
                        text(
                            "SELECT column_name FROM information_schema.columns "
                            "WHERE table_schema = 'core' AND table_name = 'policyholders'"
                        )
                    )
                ).scalars()
            )
            holder = (
                (
                    await connection.execute(
                        text("SELECT * FROM core.policyholders WHERE id = :i"), {"i": ids["holder"]}
                    )
                )
                .mappings()
                .one()
            )
            empty = (
                (
                    await connection.execute(
                        text("SELECT * FROM core.policyholders WHERE id = :i"), {"i": ids["empty"]}
                    )
                )
                .mappings()
                .one()
            )
            dependent = (
                (
                    await connection.execute(
                        text("SELECT * FROM core.dependents WHERE id = :i"), {"i": ids["dep"]}
                    )
                )
                .mappings()
                .one()
            )
            hashes = dict(
                (
                    await connection.execute(
                        text("SELECT method, request_hash FROM core.idempotency_keys")
                    )
                ).all()
            )
        assert not columns & {"national_id", "address_line1", "address_city"}
        nid = bytes(holder["national_id_encrypted"])
        assert HOLDER_ID.encode() not in nid and keys.cipher.is_current(nid)
        aad = b"core.policyholders.national_id"
        assert keys.cipher.decrypt_text(nid, aad=aad) == HOLDER_ID
        street = bytes(holder["address_line1_encrypted"])
        assert keys.cipher.decrypt_text(street, aad=b"core.policyholders.address_line1") == STREET
        assert holder["national_id_hash"] == keys.lookup.digest(HOLDER_ID)
        assert holder["address_country_code"] == "DE"
        assert empty["national_id_encrypted"] is None and empty["national_id_hash"] is None
        assert empty["address_line1_encrypted"] is None
        dep_blob = bytes(dependent["national_id_encrypted"])
        assert keys.cipher.decrypt_text(dep_blob, aad=b"core.dependents.national_id") == (
            DEPENDENT_ID
        )
        assert dependent["national_id_hash"] == keys.lookup.digest(DEPENDENT_ID)
        assert hashes == {"CreatePolicyholder": None, "CreatePolicy": "kept"}

        await downgrade(MIGRATIONS, blank_database, SCHEMA, "core_0014")
        async with engine.connect() as connection:
            back = (
                await connection.execute(
                    text(
                        "SELECT national_id, address_line1, address_city FROM core.policyholders "
                        "WHERE id = :i"
                    ),
                    {"i": ids["holder"]},
                )
            ).one()
            dep_back = (
                await connection.execute(
                    text("SELECT national_id FROM core.dependents WHERE id = :i"),
                    {"i": ids["dep"]},
                )
            ).scalar_one()
        assert tuple(back) == (HOLDER_ID, STREET, "Köln")
        assert dep_back == DEPENDENT_ID
        await upgrade(MIGRATIONS, blank_database, SCHEMA)
    finally:
        await engine.dispose()
