"""issue_campaign_coupon, the campaigns' way to give a coupon: a reward's terms, no points,
no stock, source "campaign"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from app import db
from app.clock import clock
from app.errors import NotFoundError
from app.services.rewards import coupons
from app.services.rewards.coupons import issue_campaign_coupon, issue_campaign_coupons
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


class TestIssueCampaignCoupons:
    async def test_one_coupon_and_event_each_and_a_taken_code_drawn_again(
        self, program: Program, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        clock.freeze(datetime(2026, 6, 1, tzinfo=UTC))
        for name in ("m1", "m2", "m3"):
            await program.member(name)
        reward = (
            await program.post(
                "/v1/rewards",
                json={"name": "Gift", "kind": "fixed_discount", "points_cost": 1, "value": 300},
            )
        ).json()
        ids = [await member_id(program, name) for name in ("m1", "m2", "m3")]
        async with db.transaction() as conn:
            first = await issue_campaign_coupon(
                conn, program.id, ids[0], reward["id"], 7, clock.now()
            )
        # The first draw of the next batch hits the code m1 already has.
        draws = iter([first.code, "22222222222A", "22222222222B", "22222222222C"])
        monkeypatch.setattr(coupons, "new_code", lambda: next(draws))
        async with db.transaction() as conn:
            codes = await issue_campaign_coupons(
                conn, program.id, ids[1:], reward["id"], 7, clock.now()
            )

        assert set(codes) == set(ids[1:])
        # The member whose code was taken got the next draw.
        assert sorted(codes.values()) == ["22222222222A", "22222222222B"]
        issued = [e for e in await feed(program) if e["type"] == "coupon.issued"]
        assert sorted(e["member_id"] for e in issued) == ["m1", "m2", "m3"]
        for event in issued:
            if event["member_id"] == "m1":
                continue
            code = event["data"]["coupon"]["code"]
            assert codes[ids[["m1", "m2", "m3"].index(event["member_id"])]] == code
            shown = (await program.get(f"/v1/coupons/{code}")).json()
            # The event carries the coupon as the API shows it.
            assert event["data"]["coupon"] == shown
            assert (shown["source"], shown["campaign_id"], shown["value"]) == ("campaign", 7, 300)
        for event in issued:
            sequences = [
                e["data"]["sequence"]
                for e in await feed(program)
                if e["member_id"] == event["member_id"]
            ]
            assert sequences == list(range(1, len(sequences) + 1))
