"""The demo program: members with points, a reward catalog and redemptions, all audited."""

from __future__ import annotations

from sqlalchemy import text

from app import db
from app.services.demo import seed_demo
from app.services.ledger.audit import audit


class TestDemo:
    async def test_has_a_catalog_and_redemptions(self, database_url: str) -> None:
        program_id, key = await seed_demo()
        assert key
        async with db.read_only() as conn:
            rewards = (
                await conn.execute(
                    text("SELECT count(*) FROM rewards WHERE program_id = :p"), {"p": program_id}
                )
            ).scalar_one()
            coupons = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM coupons WHERE program_id = :p AND source = 'reward'"
                    ),
                    {"p": program_id},
                )
            ).scalar_one()
        assert rewards == 4
        assert coupons > 0
        assert await audit(program_id) == []
