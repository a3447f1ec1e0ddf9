"""A batch's foreign-key checks made once for the batch instead of once per inserted row.

PostgreSQL checks a foreign key with one trigger call per inserted row, and each call also
locks the referenced row: a batch of 5,000 new members made 30,000 calls (members ->
programs; accounts and insight rows -> members and programs), about 70% of the batch's
time. The batch statements already guarantee what those calls check, for the whole batch at
once:

- every row belongs to the import's program, whose row is locked here ``FOR KEY SHARE`` (the
  lock each per-row check takes), so the program cannot go away before the batch commits;
- every member a row points to was either inserted by the same statement or joined from
  ``members`` by the statement itself, and a member row is never deleted except with its
  program, nor its key changed.

So the insert statements run with the per-row checks off (``session_replication_role =
replica``, for that statement only, set back right after it). The constraints stay in the
schema and every other write keeps its checks. Turning them off is allowed to a superuser,
or from PostgreSQL 15 to a role granted ``SET`` on the parameter; without that privilege
the statements simply run with the per-row checks, as before. On Citus too (cluster.py): the
setting made on the coordinator does not reach the shards that run the inserts.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import TextClause, text

from app.db import Connection, Result
from app.services.imports.cluster import on_citus

_PRIVILEGE = text(
    "SELECT current_setting('is_superuser') = 'on' AS superuser, "
    "CAST(current_setting('server_version_num') AS integer) AS version"
)
# has_parameter_privilege exists from PostgreSQL 15.
_GRANTED = text("SELECT has_parameter_privilege('session_replication_role', 'SET')")
_LOCK_PROGRAM = text("SELECT id FROM programs WHERE id = :program_id FOR KEY SHARE")
_CHECKS_OFF = text("SET LOCAL session_replication_role = replica")
_CHECKS_ON = text("SET LOCAL session_replication_role = origin")

# Whether this process's database role may turn the checks off (it does not change while
# the process runs).
_allowed: bool | None = None


async def _checks_may_be_skipped(conn: Connection) -> bool:
    global _allowed
    if _allowed is None:
        row = (await conn.execute(_PRIVILEGE)).one()
        if row.superuser:
            _allowed = True
        elif row.version >= 150000:
            _allowed = bool((await conn.execute(_GRANTED)).scalar())
        else:
            _allowed = False
    return _allowed


async def insert_checked_once(
    conn: Connection, program_id: int, statement: TextClause, params: dict[str, Any]
) -> Result:
    """Run a batch's insert statement (rows of ``program_id`` that point only at the program
    and at members the statement itself inserted or joined) with the foreign keys checked
    once for the batch rather than per row."""
    if await on_citus(conn) or not await _checks_may_be_skipped(conn):
        return await conn.execute(statement, params)
    if (await conn.execute(_LOCK_PROGRAM, {"program_id": program_id})).first() is None:
        # Not reachable while the import's row is locked (it goes with its program); the
        # statement's own checks then report it.
        return await conn.execute(statement, params)
    await conn.execute(_CHECKS_OFF)
    # On an error the transaction (or the dry run's savepoint) rolls the setting back too.
    result = await conn.execute(statement, params)
    await conn.execute(_CHECKS_ON)
    return result
