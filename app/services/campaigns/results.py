"""What a campaign changed: treated against held-out members, within a window after each
was first targeted.

A member "returned" when they placed a counted order (not fully refunded, as in insights)
within ``window_days`` after their first targeting by the campaign; revenue is the net amount
(amount - refunded) of those orders. The lift is treated minus holdout; the return rates'
difference gets a 95% interval (Wald, unpooled; docs/campaigns.md gives the formula):

    d = p1 - p2,  se = sqrt(p1 (1 - p1) / n1 + p2 (1 - p2) / n2),  d +/- 1.96 se

Statistics are not money: the interval is computed in floating point and printed with 4
decimal places; rates and per-member revenue are exact decimals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from sqlalchemy import text

from app import db
from app.errors import NotFoundError
from app.schemas.campaigns import CampaignCost, CampaignResultsOut, GroupResult, Lift

Z_95 = 1.96
Verdict = Literal["positive", "negative", "too_early_to_tell"]
_RATE = Decimal("0.0001")
_MONEY = Decimal("0.01")

_EXISTS = text(
    "SELECT 1 FROM campaigns WHERE program_id = :program_id AND id = :id AND deleted_at IS NULL"
)
# Orders are read by time (the covering index on (program, occurred_at)), between the first
# targeting and the end of the last one's window (:first_at, :last_at, read beforehand), and
# matched to members by hash joins: a run targets its members within minutes, so this reads
# a few weeks of the program's orders once instead of probing each member's orders.
_SPAN = text(
    """
SELECT min(targeted_at) AS first_at, max(targeted_at) + CAST(:window AS interval) AS last_at
  FROM campaign_targetings
 WHERE program_id = :program_id AND campaign_id = :campaign_id
"""
)
# While a run fills campaign_targetings its statistics lag behind, and a plan made for a
# campaign of a few members nests loops over the whole of it (more than the statement
# timeout for 200,000 members); hash joins are right for any size, so nested loops are off.
_HASH_JOINS_ONLY = text("SET LOCAL enable_nestloop = off")
_GROUPS = text(
    """
WITH first AS MATERIALIZED (
    SELECT DISTINCT ON (t.member_id) t.member_id, t."group" AS grp, t.targeted_at
      FROM campaign_targetings AS t
     WHERE t.program_id = :program_id AND t.campaign_id = :campaign_id
     ORDER BY t.member_id, t.targeted_at
), bought AS (
    SELECT o.member_id, sum(o.amount - o.refunded_amount) AS revenue
      FROM orders AS o
      JOIN first AS f ON f.member_id = o.member_id
     WHERE o.program_id = :program_id
       AND o.occurred_at > :first_at AND o.occurred_at <= :last_at
       AND o.occurred_at > f.targeted_at
       AND o.occurred_at <= f.targeted_at + CAST(:window AS interval)
       AND o.refunded_amount < o.amount
     GROUP BY o.member_id
)
SELECT f.grp, count(*) AS members, count(b.member_id) AS returned,
       coalesce(sum(b.revenue), 0) AS revenue
  FROM first AS f LEFT JOIN bought AS b USING (member_id)
 GROUP BY f.grp
"""
)
_COST = text(
    """
SELECT (SELECT coalesce(sum(points), 0) FROM campaign_targetings
         WHERE program_id = :program_id AND campaign_id = :campaign_id) AS points_granted,
       c.issued, c.used, c.discount_amount
  FROM (SELECT count(*) AS issued, count(*) FILTER (WHERE status = 'used') AS used,
               coalesce(sum(discount_amount) FILTER (WHERE status = 'used'), 0)
                   AS discount_amount
          FROM coupons
         WHERE program_id = :program_id AND campaign_id = :campaign_id) AS c
"""
)


@dataclass(frozen=True, slots=True)
class GroupCounts:
    members: int = 0
    returned: int = 0
    revenue: int = 0


def difference_interval(
    treated_returned: int, treated: int, holdout_returned: int, holdout: int
) -> tuple[float, float] | None:
    """95% interval for p1 - p2 (Wald, unpooled); None when a group is empty."""
    if treated == 0 or holdout == 0:
        return None
    p1, p2 = treated_returned / treated, holdout_returned / holdout
    se = math.sqrt(p1 * (1 - p1) / treated + p2 * (1 - p2) / holdout)
    return (p1 - p2 - Z_95 * se, p1 - p2 + Z_95 * se)


def _rate(part: int, whole: int) -> Decimal | None:
    return None if whole == 0 else (Decimal(part) / Decimal(whole)).quantize(_RATE, ROUND_HALF_UP)


def _per_member(revenue: int, members: int) -> Decimal | None:
    if members == 0:
        return None
    return (Decimal(revenue) / Decimal(members)).quantize(_MONEY, ROUND_HALF_UP)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _group(counts: GroupCounts) -> GroupResult:
    return GroupResult(
        members=counts.members,
        returned=counts.returned,
        return_rate=_text(_rate(counts.returned, counts.members)),
        revenue=counts.revenue,
        revenue_per_member=_text(_per_member(counts.revenue, counts.members)),
    )


def _interval_text(value: float) -> str:
    return str(Decimal(repr(value)).quantize(_RATE, ROUND_HALF_UP))


def build_results(
    window_days: int,
    treated: GroupCounts,
    holdout: GroupCounts,
    cost: CampaignCost | None = None,
) -> CampaignResultsOut:
    interval = difference_interval(
        treated.returned, treated.members, holdout.returned, holdout.members
    )
    verdict: Verdict = "too_early_to_tell"
    if interval is not None and interval[0] > 0:
        verdict = "positive"
    elif interval is not None and interval[1] < 0:
        verdict = "negative"
    both = treated.members > 0 and holdout.members > 0
    return CampaignResultsOut(
        window_days=window_days,
        treated=_group(treated),
        holdout=_group(holdout),
        lift=Lift(
            return_rate=_text(
                _rate(
                    treated.returned * holdout.members - holdout.returned * treated.members,
                    treated.members * holdout.members,
                )
                if both
                else None
            ),
            return_rate_ci95=[_interval_text(interval[0]), _interval_text(interval[1])]
            if interval is not None
            else None,
            revenue_per_member=_text(
                _per_member(
                    treated.revenue * holdout.members - holdout.revenue * treated.members,
                    treated.members * holdout.members,
                )
                if both
                else None
            ),
        ),
        verdict=verdict,
        cost=cost
        or CampaignCost(points_granted=0, coupons_issued=0, coupons_used=0, discount_amount=0),
    )


async def campaign_results(
    program_id: int, campaign_id: int, window_days: int
) -> CampaignResultsOut:
    params = {"program_id": program_id, "campaign_id": campaign_id}
    window = timedelta(days=window_days)
    # A transaction only to scope SET LOCAL; it writes nothing.
    async with db.transaction() as conn:
        if (
            await conn.execute(_EXISTS, {"program_id": program_id, "id": campaign_id})
        ).first() is None:
            raise NotFoundError(f"No campaign {campaign_id} in this program.")
        span = (await conn.execute(_SPAN, {**params, "window": window})).one()
        rows = []
        if span.first_at is not None:
            await conn.execute(_HASH_JOINS_ONLY)
            rows = (
                await conn.execute(
                    _GROUPS,
                    {
                        **params,
                        "window": window,
                        "first_at": span.first_at,
                        "last_at": span.last_at,
                    },
                )
            ).all()
        spent = (await conn.execute(_COST, params)).one()
    counts = {
        row.grp: GroupCounts(int(row.members), int(row.returned), int(row.revenue)) for row in rows
    }
    return build_results(
        window_days,
        counts.get("treated", GroupCounts()),
        counts.get("holdout", GroupCounts()),
        CampaignCost(
            points_granted=int(spent.points_granted),
            coupons_issued=int(spent.issued),
            coupons_used=int(spent.used),
            discount_amount=int(spent.discount_amount),
        ),
    )
