"""A demo program with members and points, so a newcomer sees real data in /docs at once."""

from __future__ import annotations

import contextlib
import random
from datetime import timedelta

import orjson

from app.clock import clock
from app.errors import PatronError
from app.schemas.campaigns import Audience, CampaignAction, CampaignCreate
from app.schemas.orders import OrderCreate
from app.schemas.rewards import RewardCreate
from app.services import ledger
from app.services.campaigns import campaigns, running
from app.services.checkout import orders
from app.services.members.members import upsert_member
from app.services.programs.programs import create_program
from app.services.rewards import catalog, redemptions

_NAMES = [
    "Li Wei",
    "Wang Fang",
    "Zhang Min",
    "Liu Yang",
    "Chen Jing",
    "Yang Lei",
    "Zhao Xin",
    "Huang Li",
    "Zhou Tao",
    "Wu Hui",
    "Xu Ming",
    "Sun Yan",
    "Ma Jun",
    "Zhu Hong",
    "Hu Bin",
    "Guo Qiang",
    "He Na",
    "Lin Feng",
    "Gao Yu",
    "Luo Ping",
]


async def seed_demo() -> tuple[int, str]:
    program_id, key = await create_program("Demo Shop", "CNY")
    rng = random.Random(7)
    for number, name in enumerate(_NAMES, start=1):
        external_id = f"demo-{number:03d}"
        await upsert_member(
            program_id,
            external_id,
            {"name": name, "email": f"{external_id}@example.com"},
        )
        for _ in range(rng.randint(1, 4)):
            await ledger.credit(
                ledger.Posting(
                    program_id,
                    external_id,
                    rng.randint(50, 800),
                    "earn",
                    "points.earned",
                    "demo",
                    reason="Welcome purchase",
                ),
                None,
            )
        if rng.random() < 0.5:
            await ledger.debit(
                ledger.Posting(
                    program_id,
                    external_id,
                    40,
                    "redeem",
                    "points.redeemed",
                    "demo",
                    reason="Coupon",
                ),
                None,
            )
    await seed_demo_rewards(program_id, [f"demo-{n:03d}" for n in range(1, len(_NAMES) + 1)])
    await seed_demo_campaigns(program_id)
    return program_id, key


# A small catalog: (name, kind, points_cost, value, stock).
_CATALOG = [
    ("10 yuan off", "fixed_discount", 100, 1000, None),
    ("15% off your next order", "percent_discount", 300, 15, 50),
    ("Free shipping", "free_shipping", 80, None, None),
    ("Tea cup gift", "gift", 250, None, 20),
]


async def seed_demo_rewards(program_id: int, members: list[str]) -> None:
    """A reward catalog and some redemptions, so the rewards panel and the member coupons
    have something to show. Members who cannot afford a reward are skipped."""
    rng = random.Random(11)
    reward_ids = []
    for name, kind, cost, value, stock in _CATALOG:
        body = RewardCreate(name=name, kind=kind, points_cost=cost, value=value, stock=stock)
        stored = await catalog.create_reward(program_id, body, None)
        reward_ids.append(orjson.loads(stored.body)["id"])
    for member in members:
        for reward_id in rng.sample(reward_ids, k=rng.randint(0, 2)):
            with contextlib.suppress(PatronError):
                await redemptions.redeem_reward(program_id, member, reward_id, "demo", None)


# Two finished campaigns: (name, action, days ago it ran, return rate of the treated, of the
# held out). The rates drive the demo's orders, so the dashboard shows one campaign that
# worked and one that is too early to tell.
_CAMPAIGNS = [
    ("Win back: 100 points", CampaignAction(bonus_points=100), 45, 0.45, 0.20),
    ("Thank-you note", CampaignAction(notify_only=True), 38, 0.30, 0.27),
]
_CAMPAIGN_MEMBERS = 240


async def seed_demo_campaigns(program_id: int) -> None:
    """Members in a campaign cohort, two campaigns that ran weeks ago and have ended, and the
    orders their members placed in the 30 days after, so both have results to show."""
    rng = random.Random(13)
    now = clock.now()
    for number in range(1, _CAMPAIGN_MEMBERS + 1):
        await upsert_member(
            program_id,
            f"cohort-{number:03d}",
            {"name": f"Cohort member {number}", "metadata": {"cohort": "spring"}},
        )
    for name, action, days_ago, treated_rate, holdout_rate in _CAMPAIGNS:
        ran_at = now - timedelta(days=days_ago)
        body = CampaignCreate(
            name=name,
            audience=Audience(metadata={"cohort": "spring"}),
            action=action,
            message=f"{name} (demo)",
            holdout_percent=20,
            starts_at=ran_at - timedelta(days=1),
            ends_at=now - timedelta(days=2),
        )
        created = await campaigns.create_campaign(program_id, body, None)
        campaign_id = orjson.loads(created.body)["id"]
        await running.run_campaign_now(program_id, campaign_id, at=ran_at)
        for member, group, targeted_at in await running.targeted_members(program_id, campaign_id):
            rate = treated_rate if group == "treated" else holdout_rate
            if rng.random() >= rate:
                continue
            order = OrderCreate(
                order_id=f"demo-c{campaign_id}-{member}",
                member_id=member,
                amount=rng.randint(30, 300) * 100,
                currency="CNY",
                occurred_at=targeted_at + timedelta(days=rng.uniform(1, 29)),
            )
            await orders.create_order(program_id, "demo", order, None)
