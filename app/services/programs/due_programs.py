"""The one kind of statement allowed to look at every program: a worker job's cheap look for
the programs that have work due. Everything a job then locks or changes is about one program.

On Citus such a look is a multi-shard query; the test session refuses those (they mean a
statement forgot its program), so the look says it means it, for its own short transaction
only (``citus.multi_task_query_log_level``; on plain PostgreSQL a harmless placeholder
setting).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text

from app import db
from app.db import Connection

_ACROSS_PROGRAMS = text("SET LOCAL citus.multi_task_query_log_level TO 'off'")


@asynccontextmanager
async def looking_across_programs() -> AsyncIterator[Connection]:
    """A short read-only transaction for the look across programs."""
    async with db.transaction() as conn:
        await conn.execute(_ACROSS_PROGRAMS)
        yield conn
