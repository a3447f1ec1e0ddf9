"""Every tenant table is keyed by program: its primary key, unique constraints and unique
indexes, and its foreign keys to other tenant tables include ``program_id`` (architecture.md,
"Tenancy"), so that the schema distributes by ``program_id`` on Citus and every statement can
route to one shard. Read from the migrated database's catalog, so a migration that forgets it
fails here, whatever the models say.

``EXISTING`` lists what the schema still lacks (nothing since migration 0015). A new table or
key must not join it, and an entry that is fixed must leave it: the list only shrinks.
"""

from __future__ import annotations

import asyncpg
import pytest

from app.citus import REFERENCE_TABLES

# Tables shared by all programs (reference tables on Citus); every other table is a tenant
# table and carries program_id.
GLOBAL_TABLES = REFERENCE_TABLES | {"alembic_version"}

EXISTING: frozenset[str] = frozenset()

# Every table of the schema with its columns, and every key of it: primary keys and unique
# constraints (contype p/u), unique indexes that back no constraint, and foreign keys (f)
# with the table they refer to.
_KEYS = """
SELECT c.relname AS table_name, k.kind, k.columns, k.referred
  FROM pg_class AS c
  JOIN pg_namespace AS n ON n.oid = c.relnamespace AND n.nspname = 'public'
  JOIN LATERAL (
        SELECT CASE con.contype WHEN 'p' THEN 'primary key' WHEN 'u' THEN 'unique'
                                ELSE 'foreign key' END AS kind,
               array(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY AS u(num, i)
                       JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum = u.num
                      ORDER BY u.i) AS columns,
               ref.relname::text AS referred
          FROM pg_constraint AS con
          LEFT JOIN pg_class AS ref ON ref.oid = con.confrelid
         WHERE con.conrelid = c.oid AND con.contype IN ('p', 'u', 'f')
        UNION ALL
        SELECT 'unique index', array(
                   SELECT a.attname::text FROM unnest(ix.indkey) WITH ORDINALITY AS u(num, i)
                     JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum = u.num
                    ORDER BY u.i), NULL
          FROM pg_index AS ix
         WHERE ix.indrelid = c.oid AND ix.indisunique
           AND NOT EXISTS (SELECT 1 FROM pg_constraint AS con WHERE con.conindid = ix.indexrelid)
        UNION ALL
        SELECT 'table', array(SELECT a.attname::text FROM pg_attribute AS a
                               WHERE a.attrelid = c.oid AND a.attnum > 0
                                 AND NOT a.attisdropped), NULL
       ) AS k ON true
 WHERE c.relkind IN ('r', 'p')
"""


async def tenancy_violations(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch(_KEYS)
    columns = {row["table_name"]: row["columns"] for row in rows if row["kind"] == "table"}
    tenant = {name for name in columns if name not in GLOBAL_TABLES}
    found = set()
    for name in sorted(tenant):
        if "program_id" not in columns[name]:
            found.add(f"{name}: no program_id column")
    for row in rows:
        name, kind, keys = row["table_name"], row["kind"], row["columns"]
        if name not in tenant or kind == "table" or "program_id" in keys:
            continue
        if kind == "foreign key":
            if row["referred"] not in tenant:
                continue  # a reference to a table shared by all programs
            found.add(f"{name}: foreign key ({', '.join(keys)}) -> {row['referred']}")
        else:
            found.add(f"{name}: {kind} ({', '.join(keys)})")
    return found


class TestTenantKeysCarryProgram:
    async def test_no_new_key_without_program_id(self, database_url: str) -> None:
        conn = await asyncpg.connect(database_url)
        try:
            new = await tenancy_violations(conn) - EXISTING
        finally:
            await conn.close()
        assert not new, (
            "tenant tables need program_id in every primary key, unique constraint or index "
            "and foreign key to another tenant table: " + "; ".join(sorted(new))
        )

    async def test_the_list_of_existing_ones_only_shrinks(self, database_url: str) -> None:
        conn = await asyncpg.connect(database_url)
        try:
            fixed = EXISTING - await tenancy_violations(conn)
        finally:
            await conn.close()
        assert not fixed, f"fixed: remove from EXISTING: {sorted(fixed)}"

    async def test_a_tenant_table_keyed_without_program_fails(self, database_url: str) -> None:
        """The check itself: a key by id alone, a unique column, a foreign key without the
        program, and a table without program_id are caught."""
        conn = await asyncpg.connect(database_url)
        try:
            with pytest.raises(_Undo):
                async with conn.transaction():
                    await conn.execute(
                        "CREATE TABLE stamp_cards (id bigint PRIMARY KEY, program_id bigint)"
                    )
                    await conn.execute(
                        "CREATE TABLE stamps (id bigint, program_id bigint NOT NULL, "
                        "card_id bigint REFERENCES stamp_cards (id), code text UNIQUE, "
                        "PRIMARY KEY (id, program_id))"
                    )
                    await conn.execute("CREATE TABLE notes (id bigint PRIMARY KEY)")
                    caught = await tenancy_violations(conn) - EXISTING
                    raise _Undo
        finally:
            await conn.close()
        assert caught == {
            "stamp_cards: primary key (id)",
            "stamps: foreign key (card_id) -> stamp_cards",
            "stamps: unique (code)",
            "notes: no program_id column",
            "notes: primary key (id)",
        }


class _Undo(Exception):
    """Rolls the test's tables back."""
