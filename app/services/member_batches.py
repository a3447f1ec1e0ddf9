"""The shape every per-member worker job shares: pick due members, lock their account rows in
ascending id order (skipping any a checkout holds right now, so jobs never wait on traffic),
then do the batch's work set-based, all in one short transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import TextClause, text

from app import db

# Account locks in ascending member id; a member busy at checkout is skipped this time.
LOCK_ACCOUNTS = text(
    """
SELECT member_id FROM accounts
 WHERE member_id = ANY(:member_ids)
 ORDER BY member_id
   FOR UPDATE SKIP LOCKED
"""
)


async def run_batch(due: TextClause, work: TextClause, now: datetime, batch_size: int) -> int:
    """``due`` (params ``now``, ``batch``) yields member ids; ``work`` (params
    ``member_ids``, ``now``) handles the locked ones and returns a count, which this returns
    (0 when nothing was due or every due member was busy)."""
    async with db.transaction() as conn:
        candidates = (await conn.execute(due, {"now": now, "batch": batch_size})).scalars()
        member_ids = sorted(set(candidates))
        if not member_ids:
            return 0
        locked = (await conn.execute(LOCK_ACCOUNTS, {"member_ids": member_ids})).scalars().all()
        if not locked:
            return 0
        handled: int = (
            await conn.execute(work, {"member_ids": list(locked), "now": now})
        ).scalar_one()
    return handled
