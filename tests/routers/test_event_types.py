"""Every event type of the checkout, tier and referral features appears exactly once for the
change that causes it, with the right member, and sequences that only grow per member."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from app.clock import clock
from app.worker import run_once
from tests.conftest import Program
from tests.routers.test_events import feed


def by_type(events: list[dict[str, Any]]) -> Counter[str]:
    return Counter(event["type"] for event in events)


class TestCheckoutEvents:
    async def test_order_hold_refund_release_expiry(self, program: Program) -> None:
        clock.freeze(datetime(2026, 4, 1, 10, tzinfo=UTC))
        await program.patch("/v1/program", json={"pending_days": 2, "points_expiry_days": 1})
        await program.member("m1", points=100)
        hold = (await program.post("/v1/members/m1/holds", json={"points": 30})).json()
        await program.post(
            "/v1/orders",
            json={
                "order_id": "A-1",
                "member_id": "m1",
                "amount": 5_000,
                "currency": "CNY",
                "redeem_hold_id": hold["hold_id"],
            },
        )
        released = (await program.post("/v1/members/m1/holds", json={"points": 5})).json()
        await program.post(f"/v1/holds/{released['hold_id']}/release")
        await program.post("/v1/members/m1/holds", json={"points": 5, "ttl_seconds": 60})
        await program.post("/v1/orders/A-1/refunds", json={"refund_id": "R-1", "amount": 1_000})
        clock.advance(timedelta(days=3))
        await run_once(clock.now())  # expires the hold, releases A-1, expires the earn lot

        events = await feed(program)
        counts = by_type(events)
        assert counts == Counter(
            {
                "member.created": 1,
                "points.earned": 1,
                "hold.created": 3,
                "order.created": 1,
                "hold.captured": 1,
                "points.redeemed": 1,
                "hold.released": 1,
                "order.refunded": 1,
                "hold.expired": 1,
                "points.released": 1,
                "points.expired": 1,
                # The worker's reminder before the lot expired, and the insights refresh
                # seeing m1's first order (prospect -> new).
                "points.expiring": 1,
                "member.segment_changed": 1,
                "member.lifecycle_changed": 1,
            }
        )
        assert {event["member_id"] for event in events} == {"m1"}
        sequences = [event["data"]["sequence"] for event in events]
        assert sequences == sorted(sequences)
        released_event = next(e for e in events if e["type"] == "points.released")
        assert released_event["data"]["order_id"] == "A-1"
        assert released_event["data"]["points"] == 50 - 10


class TestTierAndReferralEvents:
    async def test_tier_changed_and_referral_lifecycle(self, program: Program) -> None:
        await program.post("/v1/tiers", json={"key": "gold", "name": "Gold", "threshold": 300})
        await program.patch(
            "/v1/program",
            json={
                "referral": {"referrer_points": 50, "referee_points": 20, "min_order_amount": 1_000}
            },
        )
        await program.member("alice")
        code = (await program.post("/v1/members/alice/referral-link")).json()["code"]
        await program.put("/v1/members/bob", json={"referral_code": code})
        await program.put("/v1/members/carol", json={"referral_code": code})
        await program.post(
            "/v1/orders",
            json={"order_id": "B-1", "member_id": "bob", "amount": 40_000, "currency": "CNY"},
        )
        events = await feed(program)
        counts = by_type(events)
        assert counts["tier.changed"] == 1
        assert counts["referral.created"] == 2
        assert counts["referral.rewarded"] == 1
        tier = next(e for e in events if e["type"] == "tier.changed")
        assert (tier["member_id"], tier["data"]["to"]) == ("bob", "gold")
        rewarded = next(e for e in events if e["type"] == "referral.rewarded")
        assert rewarded["data"]["referral"]["referee_id"] == "bob"

    async def test_referral_rejected(self, program: Program) -> None:
        clock.freeze(datetime(2026, 4, 1, 10, tzinfo=UTC))
        await program.patch(
            "/v1/program",
            json={"pending_days": 7, "referral": {"referrer_points": 50, "referee_points": 20}},
        )
        await program.member("alice")
        code = (await program.post("/v1/members/alice/referral-link")).json()["code"]
        await program.put("/v1/members/bob", json={"referral_code": code})
        await program.post(
            "/v1/orders",
            json={"order_id": "B-1", "member_id": "bob", "amount": 4_000, "currency": "CNY"},
        )
        await program.post("/v1/orders/B-1/refunds", json={"refund_id": "R", "amount": 4_000})
        events = await feed(program, type="referral.rejected")
        assert [(e["member_id"], e["data"]["referral"]["status"]) for e in events] == [
            ("bob", "rejected")
        ]
