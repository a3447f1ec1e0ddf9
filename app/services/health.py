"""Readiness: the database is reachable and migrated to head."""

from __future__ import annotations

import asyncio
from functools import lru_cache

from sqlalchemy import text

from app import db
from app.migrate import head_revision


@lru_cache(maxsize=1)
def _expected_revision() -> str | None:
    return head_revision()


async def readiness(limit_seconds: float = 2.0) -> tuple[bool, str]:
    try:
        async with asyncio.timeout(limit_seconds), db.read_only() as conn:
            current = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    except Exception as exc:  # any failure to reach the database means "not ready"
        return False, f"database unreachable: {type(exc).__name__}"
    expected = _expected_revision()
    if current != expected:
        return False, f"migrations behind: database at {current}, code expects {expected}"
    return True, f"database at {current}"
