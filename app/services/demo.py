"""A demo program with members and points, so a newcomer sees real data in /docs at once."""

from __future__ import annotations

import contextlib
import random

import orjson

from app.errors import PatronError
from app.schemas.rewards import RewardCreate
from app.services import ledger
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
