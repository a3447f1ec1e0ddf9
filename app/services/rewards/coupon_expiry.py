"""Worker job: coupons past ``expires_at`` are marked expired, one ``coupon.expired`` event
each. Readers and uses already treat such a coupon as expired (coupons.Coupon.status_at);
the job catches the row up and tells the feed and webhooks."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text

from app import db
from app.services.events.events import write_event
from app.services.rewards.coupons import COUPON_COLUMNS, Coupon

_DUE_HOLDERS = text(
    """
SELECT DISTINCT member_id FROM coupons
 WHERE status = 'active' AND expires_at <= :now AND member_id IS NOT NULL
 ORDER BY member_id
 LIMIT :batch
"""
)
_LOCK_HOLDERS = text(
    "SELECT member_id FROM accounts WHERE member_id = ANY(:member_ids) "
    "ORDER BY member_id FOR UPDATE"
)
_EXPIRE_HELD = text(
    f"""
WITH due AS (
    UPDATE coupons SET status = 'expired'
     WHERE member_id = ANY(:member_ids) AND status = 'active' AND expires_at <= :now
 RETURNING *
)
SELECT {COUPON_COLUMNS.replace("c.status", "'expired' AS status")}
  FROM due AS c LEFT JOIN members AS m ON m.id = c.member_id
 ORDER BY c.id
"""
)
_EXPIRE_UNHELD = text(
    f"""
WITH due AS (
    UPDATE coupons SET status = 'expired'
     WHERE id IN (SELECT id FROM coupons
                   WHERE member_id IS NULL AND status = 'active' AND expires_at <= :now
                   ORDER BY id LIMIT :batch FOR UPDATE SKIP LOCKED)
 RETURNING *
)
SELECT {COUPON_COLUMNS.replace("c.status", "'expired' AS status")}
  FROM due AS c LEFT JOIN members AS m ON m.id = c.member_id
 ORDER BY c.id
"""
)


async def expire_due_coupons(now: datetime, batch_size: int = 500) -> int:
    """Worker job: mark active coupons past ``expires_at`` expired, one ``coupon.expired``
    event each. Members' accounts are locked first, in id order, as any other write for them
    does; a coupon of no member needs no account."""
    async with db.transaction() as conn:
        holders = (await conn.execute(_DUE_HOLDERS, {"now": now, "batch": batch_size})).scalars()
        member_ids = holders.all()
        rows = []
        if member_ids:
            await conn.execute(_LOCK_HOLDERS, {"member_ids": member_ids})
            rows = (await conn.execute(_EXPIRE_HELD, {"member_ids": member_ids, "now": now})).all()
        else:
            rows = (await conn.execute(_EXPIRE_UNHELD, {"now": now, "batch": batch_size})).all()
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
