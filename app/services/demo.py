"""``patron demo``: a believable shop, so that /dashboard, /docs and every insight show real
shapes on first look.

A tea shop that opened 18 months ago: a few hundred members who joined over that time, each
with a habit (a regular, an occasional buyer, one who bought once, one who stopped coming, a
newcomer), their orders and some refunds, three VIP tiers on spend, two earn rules, referrals
between members, NPS feedback, and segments computed at the end. Everything goes through the
services, with the clock set to each moment in turn, so every row is what the API would have
written that day (and the ledger audit holds). Seeded from a fixed random seed: the same shop
every time.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from app.clock import clock
from app.errors import PatronError
from app.schemas.campaigns import Audience, CampaignAction, CampaignCreate
from app.schemas.earn_rules import EarnRuleConditions, EarnRuleCreate, EarnRuleEffect
from app.schemas.insights import FeedbackCreate
from app.schemas.orders import OrderCreate, OrderItem
from app.schemas.rewards import RewardCreate
from app.schemas.tiers import TierCreate, TierPolicy
from app.services.campaigns import campaigns, running
from app.services.checkout import orders
from app.services.checkout.earn_rules import create_earn_rule
from app.services.insights import insights
from app.services.members.members import upsert_member
from app.services.programs.programs import create_program, update_program
from app.services.referrals import referrals
from app.services.rewards import catalog, redemptions
from app.services.tiers import tiers

MEMBERS = 240
MONTHS = 18
ACTOR = "demo"

_GIVEN = ["Wei", "Fang", "Min", "Yang", "Jing", "Lei", "Xin", "Li", "Tao", "Hui", "Ming", "Yan"]
_FAMILY = ["Li", "Wang", "Zhang", "Liu", "Chen", "Yang", "Zhao", "Huang", "Zhou", "Wu", "Xu"]
# (sku, category, unit price in fen)
_PRODUCTS = [
    ("TEA-LONGJING", "tea", 12800),
    ("TEA-PUER", "tea", 8800),
    ("TEA-OOLONG", "tea", 6800),
    ("TEA-JASMINE", "tea", 3900),
    ("CUP-CELADON", "ware", 8300),
    ("POT-YIXING", "ware", 26800),
    ("SNACK-MOONCAKE", "snacks", 2800),
    ("SNACK-DATES", "snacks", 1900),
]
# Habit: (share of members, orders per month while active, months active or None = to now)
_HABITS: dict[str, tuple[float, float, int | None]] = {
    "regular": (0.18, 1.2, None),
    "occasional": (0.30, 0.35, None),
    "once": (0.22, 0.0, None),
    "lapsed": (0.20, 0.9, 5),
    "newcomer": (0.10, 0.8, None),
}


@dataclass
class _Member:
    external_id: str
    habit: str
    joined: datetime
    referrer: str | None = None
    orders: list[str] = field(default_factory=list)


async def seed_demo(now: datetime | None = None) -> tuple[int, str]:
    """Create the demo program and its history; returns (program id, admin key)."""
    end = now or clock.now()
    start = end - timedelta(days=round(MONTHS * 30.4))
    program_id, key = await create_program("Demo Tea House", "CNY")
    try:
        await _configure(program_id, start)
        shop = _plan(random.Random(7), start, end)
        for moment, action in shop:
            clock.freeze(moment)
            await action(program_id)
    finally:
        clock.reset()
    await referrals.pay_due_referrals(end)
    customers = [f"cust-{number:04d}" for number in range(1, MEMBERS + 1)]
    await seed_demo_rewards(program_id, customers)
    await seed_demo_campaigns(program_id, customers)
    await insights.refresh_program(program_id, end)
    return program_id, key


async def _configure(program_id: int, start: datetime) -> None:
    clock.freeze(start)
    await update_program(
        program_id,
        {
            "timezone": "Asia/Shanghai",
            "points_expiry_days": 365,
            "referral": {
                "referrer_points": 300,
                "referee_points": 100,
                "min_order_amount": 5000,
                "link_template": "https://tea.example/invite/{code}",
            },
        },
    )
    for key, name, threshold, multiplier, benefits in (
        ("green", "Green Leaf", 0, "1", ["Birthday points"]),
        ("silver", "Silver Needle", 80_000, "1.25", ["Free shipping"]),
        ("gold", "Golden Peony", 250_000, "1.5", ["Free shipping", "Tasting invitations"]),
    ):
        body = TierCreate(
            key=key,
            name=name,
            threshold=threshold,
            earn_multiplier=Decimal(multiplier),
            benefits=benefits,
        )
        await tiers.create_tier(program_id, body, None)
    await tiers.put_policy(program_id, TierPolicy(metric="spend", window_days=365, grace_days=30))
    for rule in (
        EarnRuleCreate(
            name="Double points on tea at weekends",
            active=True,
            conditions=EarnRuleConditions(categories=["tea"], weekdays=[6, 7]),
            effect=EarnRuleEffect(multiplier=Decimal(2)),
        ),
        EarnRuleCreate(
            name="Birthday month bonus",
            active=True,
            conditions=EarnRuleConditions(birthday_month=True),
            effect=EarnRuleEffect(bonus_points=200),
        ),
    ):
        await create_earn_rule(program_id, rule, None)


Action = Any  # an async callable taking the program id


def _plan(rng: random.Random, start: datetime, end: datetime) -> list[tuple[datetime, Action]]:
    """Every step of the shop's history, in time order."""
    span = (end - start).total_seconds()
    steps: list[tuple[datetime, Action]] = []
    members: list[_Member] = []
    habits = list(_HABITS)
    weights = [_HABITS[habit][0] for habit in habits]
    for number in range(1, MEMBERS + 1):
        habit = rng.choices(habits, weights)[0]
        if habit == "newcomer":
            joined = end - timedelta(days=rng.uniform(1, 60))
        else:
            # More members joined as the shop grew: later dates are likelier.
            joined = start + timedelta(seconds=span * rng.random() ** 0.7 * 0.92)
        member = _Member(f"cust-{number:04d}", habit, joined)
        earlier = [m for m in members if m.joined < joined and m.habit in ("regular", "occasional")]
        if earlier and rng.random() < 0.15:
            member.referrer = rng.choice(earlier).external_id
        members.append(member)
        steps.append((joined, _join(member, rng)))
        steps.extend(_orders_of(member, rng, end))
        if rng.random() < 0.45:
            moment = min(joined + timedelta(days=rng.uniform(3, 200)), end)
            steps.append((moment, _feedback(member.external_id, _score(rng, habit))))
    steps.sort(key=lambda step: step[0])
    return steps


def _join(member: _Member, rng: random.Random) -> Action:
    name = f"{rng.choice(_FAMILY)} {rng.choice(_GIVEN)}"
    birthday = date(rng.randint(1965, 2004), rng.randint(1, 12), rng.randint(1, 28))

    async def join(program_id: int) -> None:
        fields: dict[str, Any] = {
            "name": name,
            "email": f"{member.external_id}@example.com",
            "birthday": birthday,
            "metadata": {"source": "demo"},
        }
        if member.referrer is not None:
            link = await referrals.referral_link(program_id, member.referrer)
            fields["referral_code"] = orjson.loads(link.body)["code"]
        await upsert_member(program_id, member.external_id, fields)

    return join


def _orders_of(member: _Member, rng: random.Random, end: datetime) -> list[tuple[datetime, Action]]:
    _, per_month, months_active = _HABITS[member.habit]
    stop = end
    if months_active is not None:
        stop = min(end, member.joined + timedelta(days=30.4 * months_active))
    moments = [member.joined + timedelta(hours=rng.uniform(1, 72))]
    if per_month > 0:
        moment = moments[0]
        while True:
            moment += timedelta(days=rng.expovariate(per_month / 30.4))
            if moment >= stop:
                break
            moments.append(moment)
    steps: list[tuple[datetime, Action]] = []
    for index, moment in enumerate(moments):
        if moment >= end:
            break
        order_id = f"{member.external_id}-{index + 1}"
        items = _basket(rng)
        steps.append((moment, _order(member.external_id, order_id, items)))
        if rng.random() < 0.06:
            amount = sum(item.quantity * item.unit_price for item in items)
            refund = amount if rng.random() < 0.5 else items[0].unit_price
            later = min(moment + timedelta(days=rng.uniform(1, 14)), end)
            steps.append((later, _refund(order_id, min(refund, amount))))
    return steps


def _basket(rng: random.Random) -> list[OrderItem]:
    chosen = rng.sample(_PRODUCTS, rng.choices([1, 2, 3], [5, 3, 1])[0])
    return [
        OrderItem(
            sku=sku, category=category, quantity=rng.choice([1, 1, 1, 2, 3]), unit_price=price
        )
        for sku, category, price in chosen
    ]


def _order(member: str, order_id: str, items: list[OrderItem]) -> Action:
    async def order(program_id: int) -> None:
        body = OrderCreate(
            order_id=order_id,
            member_id=member,
            amount=sum(item.quantity * item.unit_price for item in items),
            currency="CNY",
            items=items,
        )
        await orders.create_order(program_id, ACTOR, body, None)

    return order


def _refund(order_id: str, amount: int) -> Action:
    async def refund(program_id: int) -> None:
        await orders.create_refund(program_id, order_id, f"{order_id}-R", amount, ACTOR, None)

    return refund


def _score(rng: random.Random, habit: str) -> int:
    # Regulars are mostly promoters; those who stopped coming are the detractors.
    if habit == "regular":
        return rng.choice([8, 9, 9, 10, 10, 10])
    if habit == "lapsed":
        return rng.choice([2, 4, 5, 6, 7, 8])
    return rng.choice([5, 6, 7, 8, 9, 10])


def _feedback(member: str, score: int) -> Action:
    async def feedback(program_id: int) -> None:
        body = FeedbackCreate(score=score, channel="email")
        await insights.record_feedback(program_id, member, body, None)

    return feedback


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


async def seed_demo_campaigns(program_id: int, members: list[str]) -> None:
    """The shop's members tagged as a campaign cohort, two campaigns that ran weeks ago and
    have ended, and the orders their members placed in the 30 days after, so both have
    results to show."""
    rng = random.Random(13)
    now = clock.now()
    for member in members:
        await upsert_member(
            program_id, member, {"metadata": {"source": "demo", "cohort": "spring"}}
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
