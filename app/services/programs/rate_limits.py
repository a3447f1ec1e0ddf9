"""Fixed-window rate limits counted in PostgreSQL, so one limit holds across every worker and
replica of a deployment (no extra service needed)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import text

from app import db
from app.errors import RateLimitedError

_COUNT = text(
    """
INSERT INTO rate_limit_windows (subject, window_start, count) VALUES (:subject, :start, 1)
ON CONFLICT (subject, window_start)
DO UPDATE SET count = rate_limit_windows.count + 1
RETURNING count
"""
)


async def hit(subject: str, limit: int, now: datetime, window_seconds: int = 60) -> None:
    """Count one request for ``subject``; raise 429 when the window's limit is passed."""
    epoch = now.timestamp()
    start_epoch = epoch - epoch % window_seconds
    start = datetime.fromtimestamp(start_epoch, tz=now.tzinfo)
    async with db.single_statement() as conn:
        count = (
            await conn.execute(_COUNT, {"subject": subject[:120], "start": start})
        ).scalar_one()
    if count > limit:
        retry_after = max(1, math.ceil(start_epoch + window_seconds - epoch))
        raise RateLimitedError(
            retry_after, f"At most {limit} requests a minute; try again in {retry_after} s."
        )


async def purge_old_windows(now: datetime, batch_size: int = 5000) -> int:
    """Worker job: forget windows that ended more than an hour ago."""
    async with db.transaction() as conn:
        deleted = await conn.execute_count(
            text(
                "DELETE FROM rate_limit_windows WHERE ctid IN (SELECT ctid FROM "
                "rate_limit_windows WHERE window_start < :cutoff LIMIT :batch)"
            ),
            {"cutoff": now - timedelta(hours=1), "batch": batch_size},
        )
    return deleted
