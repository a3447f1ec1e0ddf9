"""Redeeming a reward: points buy a coupon.

One transaction: lock the member's account (the fixed lock order), then the reward row; check
the reward is active and offered to this member, the member's limit and the stock; record the
redemption and take its unit of stock; write the ``redeem`` entry (soonest-expiring lots
first) carrying the redemption's id; issue the coupon. The account lock serialises one
member's redemptions (so the per-member limit holds) and the reward lock serialises
everyone's (so stock never goes below zero); the debit refuses a balance that is too low, so
under any concurrency there are never more redemptions than stock, never more than a
member's limit and never a negative balance.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import text

from app.clock import clock
from app.db import Connection
from app.errors import (
    InsufficientPointsError,
    NotFoundError,
    OutOfStockError,
    RewardInactiveError,
    RewardLimitReachedError,
    RewardNotEligibleError,
)
from app.services import idempotency
from app.services.events.events import write_event
from app.services.idempotency import IdempotencyRequest, Reply
from app.services.ledger.accounts import lock_account
from app.services.ledger.postings import Posting, debit_in
from app.services.rewards.catalog import eligibility
from app.services.rewards.coupons import CouponTerms, dumps, issue_coupon

_LOCK_REWARD = text(
    """
SELECT r.*, p.currency,
       (SELECT count(*) FROM reward_redemptions AS d
         WHERE d.program_id = :program_id AND d.member_id = :member_id
           AND d.reward_id = r.id AND d.voided_at IS NULL)
           AS held_by_member
  FROM rewards AS r JOIN programs AS p ON p.id = r.program_id
 WHERE r.program_id = :program_id AND r.id = :reward_id
   FOR UPDATE OF r
"""
)
_RECORD = text(
    """
WITH taken AS (
    UPDATE rewards SET redeemed_count = redeemed_count + 1
     WHERE program_id = :program_id AND id = :reward_id
)
INSERT INTO reward_redemptions (program_id, reward_id, member_id, points_spent, created_at)
VALUES (:program_id, :reward_id, :member_id, :points, :now)
RETURNING id
"""
)

_REFUSALS = {
    "reward_not_eligible": RewardNotEligibleError,
    "reward_limit_reached": RewardLimitReachedError,
    "out_of_stock": OutOfStockError,
    "insufficient_points": InsufficientPointsError,
}


async def redeem_reward(
    program_id: int,
    member: str,
    reward_id: int,
    actor: str,
    request: IdempotencyRequest | None,
) -> Reply:
    """POST .../rewards/{reward_id}/redeem: 201 with the redemption and its coupon."""

    async def work(conn: Connection) -> Reply:
        return Reply(await redeem_in(conn, program_id, member, reward_id, actor))

    return await idempotency.run_once(program_id, request, work)


async def redeem_in(
    conn: Connection, program_id: int, member: str, reward_id: int, actor: str
) -> str:
    """The redemption inside an open transaction; returns its JSON."""
    now = clock.now()
    account = await lock_account(conn, program_id, member=member)
    if account is None:
        raise NotFoundError(f"No member {member!r} in this program.")
    reward = (
        await conn.execute(
            _LOCK_REWARD,
            {"program_id": program_id, "reward_id": reward_id, "member_id": account.member_id},
        )
    ).first()
    if reward is None:
        raise NotFoundError(f"No reward {reward_id} in this program.")
    if not reward.active:
        raise RewardInactiveError(f"Reward {reward_id} is not active.")
    verdict = eligibility(
        reward,
        tier_key=account.tier_key,
        available=account.available,
        held_by_member=reward.held_by_member,
        now=now,
    )
    if verdict.reason is not None:
        raise _REFUSALS[verdict.reason](f"Member {member!r} cannot redeem reward {reward_id}.")
    redemption_id: int = (
        await conn.execute(
            _RECORD,
            {
                "program_id": program_id,
                "reward_id": reward_id,
                "member_id": account.member_id,
                "points": reward.points_cost,
                "now": now,
            },
        )
    ).scalar_one()
    await debit_in(
        conn,
        Posting(
            program_id=program_id,
            member=member,
            points=reward.points_cost,
            kind="redeem",
            event_type="points.redeemed",
            actor=actor,
            reason=f"reward {reward_id}: {reward.name}"[:500],
            redemption_id=redemption_id,
        ),
        None,
        now,
    )
    coupon = await issue_coupon(
        conn,
        program_id=program_id,
        member_id=account.member_id,
        terms=CouponTerms(reward.kind, reward.value, reward.currency, reward.min_order_amount),
        expires_at=now + timedelta(days=reward.coupon_ttl_days),
        now=now,
        reward_id=reward_id,
        redemption_id=redemption_id,
    )
    redemption: dict[str, Any] = {
        "redemption_id": redemption_id,
        "reward_id": reward_id,
        "member_id": member,
        "points_spent": reward.points_cost,
        "coupon": {
            "code": coupon.code,
            "kind": coupon.kind,
            "value": coupon.value,
            "min_order_amount": coupon.min_order_amount,
            "expires_at": coupon.expires_at,
        },
        "created_at": now,
    }
    await write_event(
        conn,
        program_id,
        "reward.redeemed",
        account.member_id,
        {"member_id": member, "redemption": redemption},
        now,
    )
    return dumps(redemption)
