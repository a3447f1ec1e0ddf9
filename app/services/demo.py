"""A demo program with members and points, so a newcomer sees real data in /docs at once."""

from __future__ import annotations

import random

from app.services import ledger
from app.services.members.members import upsert_member
from app.services.programs.programs import create_program

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
    return program_id, key
