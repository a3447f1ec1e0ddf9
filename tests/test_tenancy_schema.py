"""Every tenant table is keyed by program: its primary key, unique constraints and unique
indexes, and its foreign keys to other tenant tables include ``program_id`` (architecture.md,
"Tenancy"), so that the schema distributes by ``program_id`` on Citus and every statement can
route to one shard. Read from the migrated database's catalog, so a migration that forgets it
fails here, whatever the models say.

``EXISTING`` lists what today's schema still lacks (issue 16: the migration that adds
``program_id`` to these keys is not written yet). A new table or key must not join it, and
an entry that is fixed must leave it: the list only shrinks.
"""

from __future__ import annotations

import asyncpg
import pytest

# Tables shared by all programs (reference tables on Citus). Everything else is a tenant
# table and carries program_id.
GLOBAL_TABLES = frozenset(
    {
        "alembic_version",
        "programs",
        "member_token_keys",
        "rate_limit_windows",
        "webhook_fanout_cursor",
        # Looked up by the key's hash before the program is known; a reference table.
        "api_keys",
    }
)

EXISTING = frozenset(
    {
        "accounts: foreign key (member_id) -> members",
        "accounts: primary key (member_id)",
        "birthday_bonuses: foreign key (entry_id) -> point_entries",
        "birthday_bonuses: foreign key (member_id) -> members",
        "birthday_bonuses: primary key (member_id, year)",
        "earn_rules: primary key (id)",
        "events: primary key (id)",
        "holds: foreign key (member_id) -> members",
        "holds: primary key (id)",
        "member_feedback: foreign key (member_id) -> members",
        "member_feedback: primary key (id)",
        "member_insights: foreign key (member_id) -> members",
        "member_insights: primary key (member_id)",
        "members: primary key (id)",
        "order_release_queue: primary key (member_id, order_pk)",
        "orders: foreign key (member_id) -> members",
        "orders: primary key (id)",
        "point_entries: foreign key (hold_id) -> holds",
        "point_entries: foreign key (referral_id) -> referrals",
        "point_entries: primary key (id)",
        "point_lots: primary key (id)",
        "point_releases: primary key (entry_id)",
        "referrals: foreign key (order_pk) -> orders",
        "referrals: foreign key (referee_id) -> members",
        "referrals: foreign key (referrer_id) -> members",
        "referrals: primary key (id)",
        "refunds: foreign key (order_pk) -> orders",
        "refunds: primary key (id)",
        "tier_changes: foreign key (member_id) -> members",
        "tier_changes: primary key (id)",
        "tiers: primary key (id)",
        "webhook_deliveries: foreign key (endpoint_id) -> webhook_endpoints",
        "webhook_deliveries: foreign key (event_id) -> events",
        "webhook_deliveries: primary key (id)",
        "webhook_deliveries: unique (endpoint_id, event_id)",
        "webhook_endpoints: primary key (id)",
    }
)

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
        """The check itself: a new table keyed by id alone, and a foreign key by member alone,
        are caught."""
        conn = await asyncpg.connect(database_url)
        try:
            with pytest.raises(_Undo):
                async with conn.transaction():
                    await conn.execute(
                        "CREATE TABLE stamps (id bigint PRIMARY KEY, program_id bigint NOT NULL, "
                        "member_id bigint REFERENCES members (id), code text UNIQUE)"
                    )
                    await conn.execute("CREATE TABLE notes (id bigint PRIMARY KEY)")
                    caught = await tenancy_violations(conn) - EXISTING
                    raise _Undo
        finally:
            await conn.close()
        assert caught == {
            "stamps: primary key (id)",
            "stamps: foreign key (member_id) -> members",
            "stamps: unique (code)",
            "notes: no program_id column",
            "notes: primary key (id)",
        }


class _Undo(Exception):
    """Rolls the test's tables back."""
