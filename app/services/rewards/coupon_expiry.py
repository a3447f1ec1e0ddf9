"""Worker job: coupons past ``expires_at`` are marked expired, one ``coupon.expired`` event
each. Readers and uses already treat such a coupon as expired (coupons.Coupon.status_at);
the job catches the row up and tells the feed and webhooks."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text

from app import db
from app.services.events.events import write_event
from app.services.programs.due_programs import looking_across_programs
from app.services.rewards.coupons import COUPON_COLUMNS, Coupon

# One program at a time (so each statement after this one runs on one shard on Citus); the
# program with the oldest due coupon first.
_DUE_PROGRAM = text(
    """
SELECT program_id FROM coupons
 WHERE status = 'active' AND expires_at <= :now
 ORDER BY expires_at
 LIMIT 1
"""
)
_DUE_HOLDERS = text(
    """
SELECT DISTINCT member_id FROM coupons
 WHERE program_id = :program_id AND status = 'active' AND expires_at <= :now
   AND member_id IS NOT NULL
 ORDER BY member_id
 LIMIT :batch
"""
)
_LOCK_HOLDERS = text(
    "SELECT member_id FROM accounts "
    "WHERE program_id = :program_id AND member_id = ANY(:member_ids) "
    "ORDER BY member_id FOR UPDATE"
)
_EXPIRE_HELD = text(
    f"""
WITH due AS (
    UPDATE coupons SET status = 'expired'
     WHERE program_id = :program_id AND member_id = ANY(:member_ids) AND status = 'active'
       AND expires_at <= :now
 RETURNING *
)
SELECT {COUPON_COLUMNS.replace("c.status", "'expired' AS status")}
  FROM due AS c
  LEFT JOIN members AS m ON m.program_id = :program_id AND m.id = c.member_id
 ORDER BY c.id
"""
)
_EXPIRE_UNHELD = text(
    f"""
WITH due AS (
    UPDATE coupons SET status = 'expired'
     WHERE program_id = :program_id
       AND id IN (SELECT id FROM coupons
                   WHERE program_id = :program_id AND member_id IS NULL AND status = 'active'
                     AND expires_at <= :now
                   ORDER BY id LIMIT :batch FOR UPDATE SKIP LOCKED)
 RETURNING *
)
SELECT {COUPON_COLUMNS.replace("c.status", "'expired' AS status")}
  FROM due AS c
  LEFT JOIN members AS m ON m.program_id = :program_id AND m.id = c.member_id
 ORDER BY c.id
"""
)


async def expire_due_coupons(now: datetime, batch_size: int = 500) -> int:
    """Worker job: mark one program's active coupons past ``expires_at`` expired, one
    ``coupon.expired`` event each. Members' accounts are locked first, in id order, as any
    other write for them does; a coupon of no member needs no account."""
    async with looking_across_programs() as conn:
        program_id = (await conn.execute(_DUE_PROGRAM, {"now": now})).scalar()
    if program_id is None:
        return 0
    async with db.transaction() as conn:
        due = {"program_id": program_id, "now": now}
        holders = (await conn.execute(_DUE_HOLDERS, {**due, "batch": batch_size})).scalars()
        member_ids = holders.all()
        rows = []
        if member_ids:
            await conn.execute(_LOCK_HOLDERS, {"program_id": program_id, "member_ids": member_ids})
            rows = (await conn.execute(_EXPIRE_HELD, {**due, "member_ids": member_ids})).all()
        else:
            rows = (await conn.execute(_EXPIRE_UNHELD, {**due, "batch": batch_size})).all()
        for row in rows:
            coupon = Coupon.from_row(row)
            await write_event(
                conn,
                coupon.program_id,
                "coupon.expired",
                coupon.member_id,
                {"member_id": coupon.member, "coupon": coupon.wire(now)},
                now,
            )
    return len(rows)
