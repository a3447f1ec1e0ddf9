"""Whether the database is a Citus cluster, asked once per process.

A few of the import's speed-ups are single-node PostgreSQL only: on Citus an ``ANALYZE`` of
a distributed table inside the batch's transaction counts as parallel DDL on every shard
(after it the transaction may no longer read a reference table such as ``programs``), and
``session_replication_role`` set on the coordinator does not reach the shards that run the
inserts. There the import plans with the statistics autovacuum keeps and keeps the per-row
foreign-key checks.
"""

from __future__ import annotations

from sqlalchemy import text

from app.db import Connection

_CITUS = text("SELECT 1 FROM pg_extension WHERE extname = 'citus'")

# The extension is installed with the schema; it does not come or go while a process runs.
_on_citus: bool | None = None


async def on_citus(conn: Connection) -> bool:
    global _on_citus
    if _on_citus is None:
        _on_citus = (await conn.execute(_CITUS)).first() is not None
    return _on_citus
