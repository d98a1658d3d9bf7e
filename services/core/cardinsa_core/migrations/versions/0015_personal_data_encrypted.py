"""Personal data encrypted at rest: national ids and postal addresses.

The plain columns ``national_id`` (policyholders, dependents) and
``address_line1``, ``address_line2``, ``address_city``, ``address_region``,
``address_postal_code`` (policyholders) become ``<name>_encrypted`` (bytea,
an envelope blob under the configured ``personal_data_key``; NULL when empty),
and national ids get ``national_id_hash`` (HMAC-SHA256 under
``personal_data_hash_key``) for exact-match search. Existing rows are encrypted
here, in batches, with the keys of the settings this migration runs with (the
service must run with the same ones), and the plain columns are dropped, so no
plaintext remains. The stored fingerprints of CreatePolicyholder request ids (a
plain SHA-256 over the request, national id included) are cleared: from now on
they are computed over keyed hashes of those values. The downgrade decrypts the
values back.

Revision ID: core_0015
Revises: core_0014
Create Date: 2026-12-07 21:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cardinsa_core.repository.personal_data import PURPOSE, keys

revision: str = "core_0015"
down_revision: str | None = "core_0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "core"
BATCH = 500
ENCRYPTED: dict[str, tuple[str, ...]] = {
    "policyholders": (
        "national_id",
        "address_line1",
        "address_line2",
        "address_city",
        "address_region",
        "address_postal_code",
    ),
    "dependents": ("national_id",),
}


def _aad(table: str, column: str) -> bytes:
    return f"{SCHEMA}.{table}.{column}".encode()


def upgrade() -> None:
    bind = op.get_bind()
    pd = keys()
    assert pd.cipher.purpose == PURPOSE
    for table, columns in ENCRYPTED.items():
        for column in columns:
            op.add_column(table, sa.Column(f"{column}_encrypted", sa.LargeBinary()), schema=SCHEMA)
        op.add_column(table, sa.Column("national_id_hash", sa.LargeBinary()), schema=SCHEMA)
        qualified = f"{SCHEMA}.{table}"
        # A data change over every tenant: lift FORCE for this transaction only.
        op.execute(f"ALTER TABLE {qualified} NO FORCE ROW LEVEL SECURITY")
        select = sa.text(
            f"SELECT id, {', '.join(columns)} FROM {qualified} "  # noqa: S608 - constants only
            "WHERE id > :after ORDER BY id LIMIT :batch"
        )
        sets = ", ".join(f"{c}_encrypted = :{c}" for c in columns)
        update = sa.text(
            f"UPDATE {qualified} SET {sets}, national_id_hash = :hash WHERE id = :id"  # noqa: S608
        )
        after = "00000000-0000-0000-0000-000000000000"
        while True:
            rows = bind.execute(select, {"after": after, "batch": BATCH}).all()
            if not rows:
                break
            params = []
            for row in rows:
                values = dict(zip(columns, row[1:], strict=True))
                param: dict[str, object] = {
                    c: pd.cipher.encrypt_text(v, aad=_aad(table, c)) if v else None
                    for c, v in values.items()
                }
                param["hash"] = (
                    pd.lookup.digest(values["national_id"]) if values["national_id"] else None
                )
                param["id"] = row[0]
                params.append(param)
            bind.execute(update, params)
            after = str(rows[-1][0])
        op.execute(f"ALTER TABLE {qualified} FORCE ROW LEVEL SECURITY")
        if table == "policyholders":
            op.drop_index(
                "ix_policyholders_company_id_national_id", table_name=table, schema=SCHEMA
            )
        for column in columns:
            op.drop_column(table, column, schema=SCHEMA)
        op.create_index(
            op.f(f"ix_{table}_company_id_national_id_hash"),
            table,
            ["company_id", "national_id_hash"],
            schema=SCHEMA,
        )
    keys_table = f"{SCHEMA}.idempotency_keys"
    op.execute(f"ALTER TABLE {keys_table} NO FORCE ROW LEVEL SECURITY")
    op.execute(
        f"UPDATE {keys_table} SET request_hash = NULL "  # noqa: S608 - constants only
        "WHERE method = 'CreatePolicyholder'"
    )
    op.execute(f"ALTER TABLE {keys_table} FORCE ROW LEVEL SECURITY")


def downgrade() -> None:
    bind = op.get_bind()
    pd = keys()
    for table, columns in ENCRYPTED.items():
        for column in columns:
            op.add_column(
                table,
                sa.Column(column, sa.Text(), nullable=False, server_default=""),
                schema=SCHEMA,
            )
        qualified = f"{SCHEMA}.{table}"
        op.execute(f"ALTER TABLE {qualified} NO FORCE ROW LEVEL SECURITY")
        blobs = ", ".join(f"{c}_encrypted" for c in columns)
        rows = bind.execute(sa.text(f"SELECT id, {blobs} FROM {qualified}")).all()  # noqa: S608
        sets = ", ".join(f"{c} = :{c}" for c in columns)
        update = sa.text(f"UPDATE {qualified} SET {sets} WHERE id = :id")  # noqa: S608
        params = []
        for row in rows:
            param: dict[str, object] = {
                c: pd.cipher.decrypt_text(bytes(b), aad=_aad(table, c)) if b is not None else ""
                for c, b in zip(columns, row[1:], strict=True)
            }
            param["id"] = row[0]
            params.append(param)
        if params:
            bind.execute(update, params)
        op.execute(f"ALTER TABLE {qualified} FORCE ROW LEVEL SECURITY")
        for column in columns:
            op.alter_column(table, column, server_default=None, schema=SCHEMA)
        op.drop_index(f"ix_{table}_company_id_national_id_hash", table_name=table, schema=SCHEMA)
        for column in columns:
            op.drop_column(table, f"{column}_encrypted", schema=SCHEMA)
        op.drop_column(table, "national_id_hash", schema=SCHEMA)
        if table == "policyholders":
            op.create_index(
                "ix_policyholders_company_id_national_id",
                table,
                ["company_id", "national_id"],
                schema=SCHEMA,
            )
