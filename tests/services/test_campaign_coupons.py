"""issue_campaign_coupon, the campaigns' way to give a coupon: a reward's terms, no points,
no stock, source "campaign"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from app import db
from app.clock import clock
from app.errors import NotFoundError
from app.services.rewards.coupons import issue_campaign_coupon
from tests.conftest import Program
from tests.routers.test_events import feed


async def member_id(program: Program, external_id: str) -> int:
    async with db.read_only() as conn:
        found: int = (
            await conn.execute(
                text("SELECT id FROM members WHERE program_id = :p AND external_id = :m"),
                {"p": program.id, "m": external_id},
            )
        ).scalar_one()
    return found


class TestIssueCampaignCoupon:
    async def test_a_rewards_terms_without_points_or_stock(self, program: Program) -> None:
        clock.freeze(datetime(2026, 6, 1, tzinfo=UTC))
        await program.member("m1", points=10)
        reward = (
            await program.post(
                "/v1/rewards",
                json={
                    "name": "Win-back",
                    "kind": "percent_discount",
                    "points_cost": 500,
                    "value": 20,
                    "stock": 1,
                    "coupon_ttl_days": 14,
                },
            )
        ).json()
        # Read before the transaction: a task holds one connection at a time.
        m1 = await member_id(program, "m1")
        async with db.transaction() as conn:
            issued = await issue_campaign_coupon(
                conn, program.id, m1, reward["id"], 42, clock.now()
            )
        shown = (await program.get(f"/v1/coupons/{issued.code}")).json()
        assert (shown["source"], shown["campaign_id"], shown["reward_id"]) == (
            "campaign",
            42,
            reward["id"],
        )
        assert (shown["kind"], shown["value"], shown["member_id"]) == ("percent_discount", 20, "m1")
        assert datetime.fromisoformat(shown["expires_at"]) == clock.now() + timedelta(days=14)
        assert (await program.balance("m1"))["available"] == 10
        after = (await program.get(f"/v1/rewards/{reward['id']}")).json()
        assert after["stock_remaining"] == 1
        issued_events = [e for e in await feed(program) if e["type"] == "coupon.issued"]
        assert [e["data"]["coupon"]["code"] for e in issued_events] == [issued.code]
        # Void gives nothing back: nothing was paid.
        assert (await program.post(f"/v1/coupons/{issued.code}/void")).status_code == 200
        assert (await program.balance("m1"))["available"] == 10

    async def test_reward_of_another_program(
        self, program: Program, other_program: Program
    ) -> None:
        theirs = (
            await other_program.post(
                "/v1/rewards", json={"name": "x", "kind": "gift", "points_cost": 1}
            )
        ).json()
        with pytest.raises(NotFoundError):
            async with db.transaction() as conn:
                await issue_campaign_coupon(conn, program.id, None, theirs["id"], 1, clock.now())
