"""The rewards panel of the dashboard: points spent per reward (net of voided coupons), the
top rewards, and how many coupons were used."""

from __future__ import annotations

from sqlalchemy import text

from app import db
from app.clock import clock
from app.schemas.insights import CouponUse, RewardsInsight, RewardSpend
from app.services.insights.insights import rate

TOP_REWARDS = 10

# A voided coupon gave its points back, so its redemption no longer counts as spent.
_TOP_REWARDS = text(
    """
SELECT r.id, r.name, count(d.id) AS redemptions, COALESCE(sum(d.points_spent), 0) AS points
  FROM rewards AS r
  JOIN reward_redemptions AS d
    ON d.program_id = r.program_id AND d.reward_id = r.id AND d.voided_at IS NULL
 WHERE r.program_id = :program_id
 GROUP BY r.id, r.name
 ORDER BY points DESC, redemptions DESC, r.id
 LIMIT :limit
"""
)
# The status a client sees: an active coupon past expires_at is expired.
_COUPONS = text(
    """
SELECT CASE WHEN status = 'active' AND expires_at <= :now THEN 'expired' ELSE status END
           AS status,
       count(*) AS coupons
  FROM coupons
 WHERE program_id = :program_id
 GROUP BY 1
"""
)


async def rewards_insight(program_id: int) -> RewardsInsight:
    """The top rewards by points spent, and coupons by status with the use rate: used out of
    those issued and not voided."""
    async with db.read_only() as conn:
        top = (
            await conn.execute(_TOP_REWARDS, {"program_id": program_id, "limit": TOP_REWARDS})
        ).all()
        counts = {
            row.status: row.coupons
            for row in (
                await conn.execute(_COUPONS, {"program_id": program_id, "now": clock.now()})
            ).all()
        }
    issued = sum(counts.values())
    used = counts.get("used", 0)
    return RewardsInsight(
        data=[
            RewardSpend(
                reward_id=row.id,
                name=row.name,
                redemptions=row.redemptions,
                points_spent=row.points,
            )
            for row in top
        ],
        note=None if top else "no redemptions yet",
        coupons=CouponUse(
            issued=issued,
            active=counts.get("active", 0),
            used=used,
            void=counts.get("void", 0),
            expired=counts.get("expired", 0),
            use_rate=rate(used, issued - counts.get("void", 0)),
        ),
    )
