"""``patron migrate --citus``: the schema distributed on a Citus cluster.

Every tenant table is distributed by ``program_id`` in one co-location group (so a statement
about one program, joins and foreign keys included, runs on one shard's node); the tables
shared by all programs are reference tables, copied to every node. Tables are distributed in
foreign-key order, each once: running it again after a new migration distributes only the
tables that are new.
"""

from __future__ import annotations

import asyncpg

from app.db import to_plain_url
from app.models import Base

# Shared by all programs. api_keys carries program_id but is looked up by the key's hash
# before the program is known.
REFERENCE_TABLES = frozenset({"programs", "api_keys", "member_token_keys", "rate_limit_windows"})
DISTRIBUTION_COLUMN = "program_id"
# Alembic's own table, copied to every node too, so that a service connected to any node (Citus
# keeps its metadata on all of them) sees the schema's version and reports ready.
VERSION_TABLE = "alembic_version"


_FOREIGN_KEYS = """
SELECT conrelid::regclass::text AS table_name, conname AS name,
       pg_get_constraintdef(oid) AS definition
  FROM pg_constraint
 WHERE contype = 'f' AND connamespace = 'public'::regnamespace
"""


async def distribute(database_url: str) -> list[str]:
    """Distribute what is not distributed yet; returns what it did, one line per table.

    Citus takes a foreign key only between tables it already manages, so the foreign keys
    are dropped first and added back once every table is distributed, in one transaction.
    """
    conn = await asyncpg.connect(to_plain_url(database_url))
    try:
        done = {
            row[0]
            for row in await conn.fetch(
                "SELECT logicalrelid::regclass::text FROM pg_dist_partition"
            )
        }
        todo = [t.name for t in Base.metadata.sorted_tables if t.name not in done]
        if VERSION_TABLE not in done:
            todo.append(VERSION_TABLE)
        if not todo:
            return []
        actions = []
        async with conn.transaction():
            # Distributing in one transaction needs the shards' commands to go over one
            # connection per node.
            await conn.execute("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'")
            # The one trigger left on a tenant table keeps point_entries append-only: it only
            # raises, reading and writing nothing, so it runs as safely on every shard.
            await conn.execute("SET LOCAL citus.enable_unsafe_triggers TO on")
            foreign_keys = await conn.fetch(_FOREIGN_KEYS)
            for key in foreign_keys:
                await conn.execute(f"ALTER TABLE {key['table_name']} DROP CONSTRAINT {key['name']}")
            for name in todo:
                if name in REFERENCE_TABLES or name == VERSION_TABLE:
                    await conn.execute("SELECT create_reference_table($1)", name)
                    actions.append(f"{name}: reference table")
                else:
                    await conn.execute(
                        "SELECT create_distributed_table($1, $2, colocate_with => 'default')",
                        name,
                        DISTRIBUTION_COLUMN,
                    )
                    actions.append(f"{name}: distributed by {DISTRIBUTION_COLUMN}")
            for key in foreign_keys:
                await conn.execute(
                    f"ALTER TABLE {key['table_name']} ADD CONSTRAINT {key['name']} "
                    f"{key['definition']}"
                )
        return actions
    finally:
        await conn.close()
