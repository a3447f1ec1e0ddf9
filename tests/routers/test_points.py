"""The points endpoints through HTTP: earn, redeem, adjust, balances and history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.clock import clock
from tests.conftest import Program


class TestEarn:
    async def test_credits_available_points(self, program: Program) -> None:
        await program.member("m1")
        response = await program.post(
            "/v1/members/m1/points/earn", json={"points": 120, "reason": "Review"}
        )
        assert response.status_code == 201
        entry = response.json()
        assert entry["kind"] == "earn"
        assert entry["points"] == 120
        assert entry["status"] == "available"
        assert entry["reason"] == "Review"
        balance = await program.balance("m1")
        assert balance["available"] == 120
        assert balance["lifetime_earned"] == 120

    async def test_unknown_member_is_not_found(self, program: Program) -> None:
        response = await program.post(
            "/v1/members/ghost/points/earn", json={"points": 1, "reason": "x"}
        )
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
        assert response.headers["content-type"] == "application/problem+json"


class TestRedeem:
    async def test_spends_available_points(self, program: Program) -> None:
        await program.member("m1", points=100)
        response = await program.post("/v1/members/m1/points/redeem", json={"points": 40})
        assert response.status_code == 201
        assert response.json()["points"] == -40
        balance = await program.balance("m1")
        assert balance["available"] == 60
        assert balance["lifetime_redeemed"] == 40

    async def test_insufficient(self, program: Program) -> None:
        await program.member("m1", points=10)
        response = await program.post("/v1/members/m1/points/redeem", json={"points": 11})
        assert response.status_code == 409
        assert response.json()["code"] == "insufficient_points"
        assert (await program.balance("m1"))["available"] == 10

    async def test_spends_soonest_expiring_first(self, program: Program) -> None:
        clock.freeze(datetime(2026, 1, 10, 12, tzinfo=UTC))
        await program.member("m1", points=100)  # never expires
        await program.patch("/v1/program", json={"points_expiry_days": 30})
        await program.post("/v1/members/m1/points/earn", json={"points": 50, "reason": "x"})
        await program.patch("/v1/program", json={"points_expiry_days": 10})
        await program.post("/v1/members/m1/points/earn", json={"points": 20, "reason": "x"})
        await program.post("/v1/members/m1/points/redeem", json={"points": 30})
        expiring = (await program.balance("m1"))["expiring"]
        # The 10-day lot (20) is gone, then 10 of the 30-day lot (50); the lot that never
        # expires is untouched.
        assert expiring == [{"points": 40, "expires_at": "2026-02-10T00:00:00+00:00"}]


class TestAdjust:
    async def test_positive_and_negative(self, program: Program) -> None:
        await program.member("m1", points=10)
        up = await program.post("/v1/members/m1/points/adjust", json={"points": 5, "reason": "a"})
        down = await program.post(
            "/v1/members/m1/points/adjust", json={"points": -12, "reason": "b"}
        )
        assert (up.status_code, down.status_code) == (201, 201)
        assert down.json()["kind"] == "adjust"
        assert down.json()["points"] == -12
        balance = await program.balance("m1")
        assert balance["available"] == 3
        # Adjustments are corrections, not earnings or redemptions.
        assert balance["lifetime_earned"] == 10
        assert balance["lifetime_redeemed"] == 0

    async def test_zero_is_invalid(self, program: Program) -> None:
        await program.member("m1")
        response = await program.post(
            "/v1/members/m1/points/adjust", json={"points": 0, "reason": "a"}
        )
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"

    async def test_negative_beyond_balance_is_insufficient(self, program: Program) -> None:
        await program.member("m1", points=3)
        response = await program.post(
            "/v1/members/m1/points/adjust", json={"points": -4, "reason": "a"}
        )
        assert response.status_code == 409
        assert response.json()["code"] == "insufficient_points"

    async def test_needs_admin(self, program: Program) -> None:
        await program.member("m1", points=3)
        key = await program.key_with("points:write")
        response = await program.post(
            "/v1/members/m1/points/adjust", key=key, json={"points": 1, "reason": "a"}
        )
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"


class TestExpiringBuckets:
    async def test_groups_by_day_soonest_first_at_most_five(self, program: Program) -> None:
        start = datetime(2026, 3, 1, 9, tzinfo=UTC)
        clock.freeze(start)
        await program.member("m1")
        await program.patch("/v1/program", json={"points_expiry_days": 30})
        for day in range(7):
            clock.freeze(start + timedelta(days=day))
            for _ in range(2):
                await program.post(
                    "/v1/members/m1/points/earn", json={"points": day + 1, "reason": "x"}
                )
        expiring = (await program.balance("m1"))["expiring"]
        assert len(expiring) == 5
        assert [bucket["points"] for bucket in expiring] == [2, 4, 6, 8, 10]
        assert expiring[0]["expires_at"] == "2026-04-01T00:00:00+00:00"

    async def test_expiry_follows_program_timezone(self, program: Program) -> None:
        # 20:00 UTC on 1 March is already 2 March in Shanghai (UTC+8).
        clock.freeze(datetime(2026, 3, 1, 20, tzinfo=UTC))
        await program.member("m1")
        await program.patch(
            "/v1/program", json={"points_expiry_days": 1, "timezone": "Asia/Shanghai"}
        )
        await program.post("/v1/members/m1/points/earn", json={"points": 5, "reason": "x"})
        expiring = (await program.balance("m1"))["expiring"]
        # Valid through 3 March local time: expires at local midnight, 16:00 UTC on 3 March.
        assert expiring == [{"points": 5, "expires_at": "2026-03-03T16:00:00+00:00"}]


class TestTransactions:
    async def test_newest_first_with_cursor(self, program: Program) -> None:
        await program.member("m1")
        for points in range(1, 6):
            await program.post("/v1/members/m1/points/earn", json={"points": points, "reason": "x"})
        first = await program.get("/v1/members/m1/points/transactions", params={"limit": 2})
        assert first.status_code == 200
        page = first.json()
        assert [e["points"] for e in page["data"]] == [5, 4]
        second = await program.get(
            "/v1/members/m1/points/transactions",
            params={"limit": 2, "cursor": page["next_cursor"]},
        )
        third = await program.get(
            "/v1/members/m1/points/transactions",
            params={"limit": 2, "cursor": second.json()["next_cursor"]},
        )
        assert [e["points"] for e in second.json()["data"]] == [3, 2]
        assert [e["points"] for e in third.json()["data"]] == [1]
        assert third.json()["next_cursor"] is None

    async def test_bad_cursor_and_limit(self, program: Program) -> None:
        await program.member("m1")
        bad_cursor = await program.get(
            "/v1/members/m1/points/transactions", params={"cursor": "!!"}
        )
        bad_limit = await program.get("/v1/members/m1/points/transactions", params={"limit": 101})
        assert bad_cursor.status_code == 422
        assert bad_cursor.json()["code"] == "validation_error"
        assert bad_limit.status_code == 422

    async def test_unknown_member(self, program: Program) -> None:
        response = await program.get("/v1/members/ghost/points/transactions")
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
