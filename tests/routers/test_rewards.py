"""Rewards and coupons through HTTP: the catalog, a member's view, redeeming, coupon lookup,
validation, void and expiry, the member app's routes and the events."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from app import db
from app.clock import clock
from app.worker import run_once
from tests.conftest import Program, assert_problem
from tests.routers.test_events import feed

DISCOUNT = {"name": "20 off", "kind": "fixed_discount", "points_cost": 200, "value": 2000}


async def reward(program: Program, **fields: Any) -> dict[str, Any]:
    response = await program.post("/v1/rewards", json={**DISCOUNT, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def redeem(program: Program, member: str, reward_id: int, **kwargs: Any) -> Any:
    return await program.post(f"/v1/members/{member}/rewards/{reward_id}/redeem", **kwargs)


async def redeemed(program: Program, member: str, reward_id: int) -> dict[str, Any]:
    response = await redeem(program, member, reward_id)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def coupon(program: Program, code: str) -> dict[str, Any]:
    response = await program.get(f"/v1/coupons/{code}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def validate(program: Program, code: str, member: str = "m1", amount: int = 10_000) -> Any:
    return await program.post(
        f"/v1/coupons/{code}/validate",
        json={"member_id": member, "amount": amount, "currency": "CNY"},
    )


async def set_program_currency(program: Program, currency: str) -> None:
    """The API offers no currency change; a shop's move to another currency is done in SQL."""
    async with db.transaction() as conn:
        await conn.execute(
            text("UPDATE programs SET currency = :c WHERE id = :p"),
            {"c": currency, "p": program.id},
        )


class TestCreateReward:
    async def test_returns_the_reward(self, program: Program) -> None:
        created = await reward(program, min_order_amount=5000, stock=10, per_member_limit=2)
        assert created["kind"] == "fixed_discount"
        assert (created["value"], created["currency"]) == (2000, "CNY")
        assert (created["stock"], created["stock_remaining"], created["redeemed_count"]) == (
            10,
            10,
            0,
        )
        assert created["coupon_ttl_days"] == 90
        assert created["active"] is True
        assert created["tiers"] is None
        assert (await program.get(f"/v1/rewards/{created['id']}")).json() == created

    async def test_percent_needs_1_to_100(self, program: Program) -> None:
        for value in (0, 101):
            response = await program.post(
                "/v1/rewards", json={**DISCOUNT, "kind": "percent_discount", "value": value}
            )
            assert_problem(response, 422, "validation_error")
        assert (await reward(program, kind="percent_discount", value=100))["value"] == 100

    async def test_discount_needs_a_value(self, program: Program) -> None:
        response = await program.post("/v1/rewards", json={**DISCOUNT, "value": None})
        assert_problem(response, 422, "validation_error")

    async def test_gift_has_no_value(self, program: Program) -> None:
        response = await program.post("/v1/rewards", json={**DISCOUNT, "kind": "gift"})
        assert_problem(response, 422, "validation_error")
        assert (await reward(program, kind="gift", value=None))["value"] is None

    async def test_currency_must_be_the_programs(self, program: Program) -> None:
        response = await program.post("/v1/rewards", json={**DISCOUNT, "currency": "USD"})
        assert_problem(response, 422, "currency_mismatch")
        assert (await reward(program, currency="CNY"))["currency"] == "CNY"

    async def test_tiers_must_exist(self, program: Program) -> None:
        response = await program.post("/v1/rewards", json={**DISCOUNT, "tiers": ["gold"]})
        assert_problem(response, 422, "validation_error")

    async def test_dates_in_order(self, program: Program) -> None:
        response = await program.post(
            "/v1/rewards",
            json={
                **DISCOUNT,
                "starts_at": "2026-06-02T00:00:00+00:00",
                "ends_at": "2026-06-01T00:00:00+00:00",
            },
        )
        assert_problem(response, 422, "validation_error")

    async def test_bounds(self, program: Program) -> None:
        for fields in (
            {"points_cost": 0},
            {"points_cost": 10**9 + 1},
            {"coupon_ttl_days": 0},
            {"coupon_ttl_days": 3651},
            {"points_cost": "200"},
            {"stock": -1},
            {"unknown": 1},
        ):
            response = await program.post("/v1/rewards", json={**DISCOUNT, **fields})
            assert_problem(response, 422, "validation_error")

    async def test_idempotency_key_replays(self, program: Program) -> None:
        headers = {"Idempotency-Key": "r-1"}
        first = await program.post("/v1/rewards", json=DISCOUNT, headers=headers)
        again = await program.post("/v1/rewards", json=DISCOUNT, headers=headers)
        assert (first.status_code, again.status_code) == (201, 201)
        assert again.headers["Idempotency-Replayed"] == "true"
        assert again.json() == first.json()
        listed = (await program.get("/v1/rewards")).json()["data"]
        assert len(listed) == 1


class TestUpdateReward:
    async def test_changes_fields(self, program: Program) -> None:
        created = await reward(program)
        response = await program.patch(
            f"/v1/rewards/{created['id']}", json={"name": "30 off", "value": 3000, "stock": 5}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["name"], body["value"], body["stock_remaining"]) == ("30 off", 3000, 5)

    async def test_kind_and_value_checked_together(self, program: Program) -> None:
        created = await reward(program)
        response = await program.patch(
            f"/v1/rewards/{created['id']}", json={"kind": "percent_discount"}
        )
        assert_problem(response, 422, "validation_error")
        response = await program.patch(
            f"/v1/rewards/{created['id']}", json={"kind": "gift", "value": None}
        )
        assert response.status_code == 200, response.text

    async def test_stock_not_below_redeemed(self, program: Program) -> None:
        await program.member("m1", points=1000)
        created = await reward(program, stock=5)
        await redeemed(program, "m1", created["id"])
        response = await program.patch(f"/v1/rewards/{created['id']}", json={"stock": 0})
        assert_problem(response, 422, "validation_error")

    async def test_null_name_refused(self, program: Program) -> None:
        created = await reward(program)
        response = await program.patch(f"/v1/rewards/{created['id']}", json={"name": None})
        assert_problem(response, 422, "validation_error")

    async def test_unknown(self, program: Program) -> None:
        assert_problem(await program.patch("/v1/rewards/999999", json={}), 404, "not_found")


class TestDeleteReward:
    async def test_deactivates_and_issued_coupons_stay_valid(self, program: Program) -> None:
        await program.member("m1", points=1000)
        created = await reward(program)
        issued = await redeemed(program, "m1", created["id"])
        assert (await program.delete(f"/v1/rewards/{created['id']}")).status_code == 204
        assert (await program.get(f"/v1/rewards/{created['id']}")).json()["active"] is False
        assert (await validate(program, issued["coupon"]["code"])).json()["valid"] is True
        assert_problem(await redeem(program, "m1", created["id"]), 409, "reward_inactive")
        listed = (await program.get("/v1/members/m1/rewards")).json()["data"]
        assert listed == []

    async def test_unknown(self, program: Program) -> None:
        assert_problem(await program.delete("/v1/rewards/999999"), 404, "not_found")


class TestListRewards:
    async def test_newest_first_with_cursor(self, program: Program) -> None:
        ids = [(await reward(program, name=f"r{n}"))["id"] for n in range(3)]
        first = (await program.get("/v1/rewards", params={"limit": 2})).json()
        assert [r["id"] for r in first["data"]] == ids[::-1][:2]
        rest = (
            await program.get("/v1/rewards", params={"limit": 2, "cursor": first["next_cursor"]})
        ).json()
        assert [r["id"] for r in rest["data"]] == ids[:1]
        assert rest["next_cursor"] is None


class TestMemberRewards:
    async def test_eligible_and_reasons(self, program: Program) -> None:
        clock.freeze(datetime(2026, 6, 1, tzinfo=UTC))
        await program.post("/v1/tiers", json={"key": "gold", "name": "Gold", "threshold": 10**6})
        await program.member("m1", points=300)
        cheap = await reward(program, name="cheap", points_cost=100)
        dear = await reward(program, name="dear", points_cost=301)
        gone = await reward(program, name="gone", points_cost=1, stock=0)
        once = await reward(program, name="once", points_cost=1, per_member_limit=1)
        vip = await reward(program, name="vip", points_cost=1, tiers=["gold"])
        later = await reward(program, name="later", points_cost=1, starts_at="2026-07-01T00:00:00Z")
        await redeemed(program, "m1", once["id"])
        listed = (await program.get("/v1/members/m1/rewards")).json()["data"]
        verdicts = {r["id"]: (r["eligible"], r["reason"]) for r in listed}
        assert verdicts == {
            cheap["id"]: (True, None),
            dear["id"]: (False, "insufficient_points"),
            gone["id"]: (False, "out_of_stock"),
            once["id"]: (False, "reward_limit_reached"),
            vip["id"]: (False, "reward_not_eligible"),
            later["id"]: (False, "reward_not_eligible"),
        }

    async def test_unknown_member(self, program: Program) -> None:
        assert_problem(await program.get("/v1/members/ghost/rewards"), 404, "not_found")


class TestRedeem:
    async def test_spends_points_and_issues_a_coupon(self, program: Program) -> None:
        clock.freeze(datetime(2026, 6, 1, tzinfo=UTC))
        await program.member("m1", points=500)
        created = await reward(program, stock=3, min_order_amount=5000, coupon_ttl_days=30)
        body = await redeemed(program, "m1", created["id"])
        assert (body["reward_id"], body["member_id"], body["points_spent"]) == (
            created["id"],
            "m1",
            200,
        )
        issued = body["coupon"]
        assert len(issued["code"]) == 12
        assert (issued["kind"], issued["value"], issued["min_order_amount"]) == (
            "fixed_discount",
            2000,
            5000,
        )
        assert datetime.fromisoformat(issued["expires_at"]) == clock.now() + timedelta(days=30)
        assert (await program.balance("m1"))["available"] == 300
        assert (await program.balance("m1"))["lifetime_redeemed"] == 200
        entry = (await program.get("/v1/members/m1/points/transactions")).json()["data"][0]
        assert (entry["kind"], entry["points"], entry["redemption_id"]) == (
            "redeem",
            -200,
            body["redemption_id"],
        )
        after = (await program.get(f"/v1/rewards/{created['id']}")).json()
        assert (after["redeemed_count"], after["stock_remaining"]) == (1, 2)
        shown = await coupon(program, issued["code"])
        assert (shown["status"], shown["source"], shown["member_id"]) == ("active", "reward", "m1")
        assert (shown["reward_id"], shown["campaign_id"], shown["order_id"]) == (
            created["id"],
            None,
            None,
        )

    async def test_insufficient_points(self, program: Program) -> None:
        await program.member("m1", points=199)
        created = await reward(program, stock=1)
        assert_problem(await redeem(program, "m1", created["id"]), 409, "insufficient_points")
        after = (await program.get(f"/v1/rewards/{created['id']}")).json()
        assert after["stock_remaining"] == 1
        assert (await program.get("/v1/members/m1/coupons")).json()["data"] == []

    async def test_out_of_stock(self, program: Program) -> None:
        await program.member("m1", points=1000)
        created = await reward(program, stock=1)
        await redeemed(program, "m1", created["id"])
        assert_problem(await redeem(program, "m1", created["id"]), 409, "out_of_stock")
        assert (await program.balance("m1"))["available"] == 800

    async def test_reward_limit_reached(self, program: Program) -> None:
        await program.member("m1", points=1000)
        created = await reward(program, per_member_limit=2)
        await redeemed(program, "m1", created["id"])
        await redeemed(program, "m1", created["id"])
        assert_problem(await redeem(program, "m1", created["id"]), 409, "reward_limit_reached")

    async def test_not_eligible_by_tier(self, program: Program) -> None:
        await program.post("/v1/tiers", json={"key": "gold", "name": "Gold", "threshold": 500})
        await program.member("m1", points=100)
        await program.member("m2", points=600)
        created = await reward(program, points_cost=50, tiers=["gold"])
        assert_problem(await redeem(program, "m1", created["id"]), 409, "reward_not_eligible")
        assert (await redeem(program, "m2", created["id"])).status_code == 201

    async def test_not_eligible_outside_dates(self, program: Program) -> None:
        clock.freeze(datetime(2026, 6, 1, tzinfo=UTC))
        await program.member("m1", points=1000)
        created = await reward(
            program, starts_at="2026-06-02T00:00:00Z", ends_at="2026-06-03T00:00:00Z"
        )
        assert_problem(await redeem(program, "m1", created["id"]), 409, "reward_not_eligible")
        clock.freeze(datetime(2026, 6, 2, 12, tzinfo=UTC))
        assert (await redeem(program, "m1", created["id"])).status_code == 201
        clock.freeze(datetime(2026, 6, 3, tzinfo=UTC))
        assert_problem(await redeem(program, "m1", created["id"]), 409, "reward_not_eligible")

    async def test_inactive(self, program: Program) -> None:
        await program.member("m1", points=1000)
        created = await reward(program, active=False)
        assert_problem(await redeem(program, "m1", created["id"]), 409, "reward_inactive")

    async def test_unknown_reward_and_member(self, program: Program) -> None:
        await program.member("m1", points=1000)
        created = await reward(program)
        assert_problem(await redeem(program, "m1", 999999), 404, "not_found")
        assert_problem(await redeem(program, "ghost", created["id"]), 404, "not_found")

    async def test_idempotency_key_replays(self, program: Program) -> None:
        await program.member("m1", points=1000)
        created = await reward(program)
        headers = {"Idempotency-Key": "redeem-1"}
        first = await redeem(program, "m1", created["id"], headers=headers)
        again = await redeem(program, "m1", created["id"], headers=headers)
        assert (first.status_code, again.status_code) == (201, 201)
        assert again.headers["Idempotency-Replayed"] == "true"
        assert again.json() == first.json()
        assert (await program.balance("m1"))["available"] == 800

    async def test_unknown_body_fields_refused(self, program: Program) -> None:
        await program.member("m1", points=1000)
        created = await reward(program)
        response = await redeem(program, "m1", created["id"], json={"points": 1})
        # The redeem takes no body; one sent is ignored, never read as a price.
        assert response.status_code == 201
        assert response.json()["points_spent"] == 200


class TestGetCoupon:
    async def test_case_insensitive(self, program: Program) -> None:
        await program.member("m1", points=1000)
        code = (await redeemed(program, "m1", (await reward(program))["id"]))["coupon"]["code"]
        assert (await coupon(program, code.lower()))["code"] == code

    async def test_unknown(self, program: Program) -> None:
        for code in ("ZZZZZZZZZZZZ", "short", "!" * 12):
            assert_problem(await program.get(f"/v1/coupons/{code}"), 404, "coupon_invalid")

    async def test_expired_before_the_worker_runs(self, program: Program) -> None:
        clock.freeze(datetime(2026, 6, 1, tzinfo=UTC))
        await program.member("m1", points=1000)
        issued = await redeemed(program, "m1", (await reward(program, coupon_ttl_days=1))["id"])
        clock.advance(timedelta(days=1))
        assert (await coupon(program, issued["coupon"]["code"]))["status"] == "expired"


class TestMemberCoupons:
    async def test_lists_and_filters(self, program: Program) -> None:
        clock.freeze(datetime(2026, 6, 1, tzinfo=UTC))
        await program.member("m1", points=1000)
        short = await reward(program, coupon_ttl_days=1)
        long = await reward(program, coupon_ttl_days=30)
        first = await redeemed(program, "m1", short["id"])
        second = await redeemed(program, "m1", long["id"])
        clock.advance(timedelta(days=2))
        listed = (await program.get("/v1/members/m1/coupons")).json()["data"]
        assert [c["code"] for c in listed] == [
            second["coupon"]["code"],
            first["coupon"]["code"],
        ]
        active = (await program.get("/v1/members/m1/coupons?status=active")).json()["data"]
        assert [c["code"] for c in active] == [second["coupon"]["code"]]
        expired = (await program.get("/v1/members/m1/coupons?status=expired")).json()["data"]
        assert [c["code"] for c in expired] == [first["coupon"]["code"]]

    async def test_bad_status(self, program: Program) -> None:
        await program.member("m1")
        response = await program.get("/v1/members/m1/coupons?status=lost")
        assert_problem(response, 422, "validation_error")

    async def test_unknown_member(self, program: Program) -> None:
        assert_problem(await program.get("/v1/members/ghost/coupons"), 404, "not_found")


class TestValidate:
    async def test_fixed_discount(self, program: Program) -> None:
        await program.member("m1", points=1000)
        code = (await redeemed(program, "m1", (await reward(program))["id"]))["coupon"]["code"]
        assert (await validate(program, code, amount=10_000)).json() == {
            "valid": True,
            "discount_amount": 2000,
            "reason": None,
        }
        assert (await validate(program, code, amount=1500)).json()["discount_amount"] == 1500

    async def test_percent_discount_floors(self, program: Program) -> None:
        await program.member("m1", points=1000)
        created = await reward(program, kind="percent_discount", value=15)
        code = (await redeemed(program, "m1", created["id"]))["coupon"]["code"]
        assert (await validate(program, code, amount=999)).json()["discount_amount"] == 149

    async def test_gift_discounts_nothing(self, program: Program) -> None:
        await program.member("m1", points=1000)
        created = await reward(program, kind="gift", value=None)
        code = (await redeemed(program, "m1", created["id"]))["coupon"]["code"]
        assert (await validate(program, code)).json() == {
            "valid": True,
            "discount_amount": 0,
            "reason": None,
        }

    async def test_reasons(self, program: Program) -> None:
        clock.freeze(datetime(2026, 6, 1, tzinfo=UTC))
        await program.member("m1", points=1000)
        await program.member("m2")
        created = await reward(program, min_order_amount=5000, coupon_ttl_days=1)
        code = (await redeemed(program, "m1", created["id"]))["coupon"]["code"]
        assert (await validate(program, code, member="m2")).json()["reason"] == "wrong_member"
        low = (await validate(program, code, amount=4999)).json()
        assert low == {"valid": False, "discount_amount": 0, "reason": "min_order_amount"}
        assert (await validate(program, "ZZZZZZZZZZZZ")).json()["reason"] == "unknown"
        clock.advance(timedelta(days=1))
        assert (await validate(program, code)).json()["reason"] == "expired"

    async def test_currency_of_the_coupon(self, program: Program) -> None:
        # A shop that moved to another currency: coupons issued before keep theirs.
        await program.member("m1", points=1000)
        code = (await redeemed(program, "m1", (await reward(program))["id"]))["coupon"]["code"]
        await set_program_currency(program, "HKD")
        response = await program.post(
            f"/v1/coupons/{code}/validate",
            json={"member_id": "m1", "amount": 10_000, "currency": "HKD"},
        )
        assert response.json() == {"valid": False, "discount_amount": 0, "reason": "currency"}

    async def test_void_coupon_is_not_valid(self, program: Program) -> None:
        await program.member("m1", points=1000)
        code = (await redeemed(program, "m1", (await reward(program))["id"]))["coupon"]["code"]
        assert (await program.post(f"/v1/coupons/{code}/void")).status_code == 200
        assert (await validate(program, code)).json()["reason"] == "void"

    async def test_writes_nothing(self, program: Program) -> None:
        await program.member("m1", points=1000)
        code = (await redeemed(program, "m1", (await reward(program))["id"]))["coupon"]["code"]
        before = await feed(program)
        await validate(program, code)
        assert await feed(program) == before
        assert (await coupon(program, code))["status"] == "active"

    async def test_currency_mismatch(self, program: Program) -> None:
        await program.member("m1", points=1000)
        code = (await redeemed(program, "m1", (await reward(program))["id"]))["coupon"]["code"]
        response = await program.post(
            f"/v1/coupons/{code}/validate",
            json={"member_id": "m1", "amount": 100, "currency": "USD"},
        )
        assert_problem(response, 422, "currency_mismatch")

    async def test_unknown_member(self, program: Program) -> None:
        assert_problem(await validate(program, "ZZZZZZZZZZZZ", member="ghost"), 404, "not_found")

    async def test_unknown_fields_refused(self, program: Program) -> None:
        await program.member("m1")
        response = await program.post(
            "/v1/coupons/ZZZZZZZZZZZZ/validate",
            json={"member_id": "m1", "amount": 1, "currency": "CNY", "discount": 5},
        )
        assert_problem(response, 422, "validation_error")


class TestVoid:
    async def test_gives_points_and_stock_back(self, program: Program) -> None:
        await program.member("m1", points=500)
        created = await reward(program, stock=1, per_member_limit=1)
        issued = await redeemed(program, "m1", created["id"])
        response = await program.post(f"/v1/coupons/{issued['coupon']['code']}/void")
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "void"
        balance = await program.balance("m1")
        assert (balance["available"], balance["lifetime_redeemed"]) == (500, 0)
        entry = (await program.get("/v1/members/m1/points/transactions")).json()["data"][0]
        assert (entry["kind"], entry["points"], entry["redemption_id"]) == (
            "restore",
            200,
            issued["redemption_id"],
        )
        after = (await program.get(f"/v1/rewards/{created['id']}")).json()
        assert (after["redeemed_count"], after["stock_remaining"]) == (0, 1)
        # The stock and the member's limit are free again.
        assert (await redeem(program, "m1", created["id"])).status_code == 201

    async def test_twice_is_not_usable(self, program: Program) -> None:
        await program.member("m1", points=500)
        code = (await redeemed(program, "m1", (await reward(program))["id"]))["coupon"]["code"]
        assert (await program.post(f"/v1/coupons/{code}/void")).status_code == 200
        response = await program.post(f"/v1/coupons/{code}/void")
        assert_problem(response, 409, "coupon_not_usable")
        assert response.json()["reason"] == "void"
        assert (await program.balance("m1"))["available"] == 500

    async def test_expired_is_not_usable(self, program: Program) -> None:
        clock.freeze(datetime(2026, 6, 1, tzinfo=UTC))
        await program.member("m1", points=500)
        created = await reward(program, coupon_ttl_days=1)
        code = (await redeemed(program, "m1", created["id"]))["coupon"]["code"]
        clock.advance(timedelta(days=1, seconds=1))
        response = await program.post(f"/v1/coupons/{code}/void")
        assert_problem(response, 409, "coupon_not_usable")
        assert response.json()["reason"] == "expired"
        assert (await program.balance("m1"))["available"] == 300

    async def test_used_is_not_usable(self, program: Program) -> None:
        await program.member("m1", points=500)
        code = (await redeemed(program, "m1", (await reward(program))["id"]))["coupon"]["code"]
        order = {"order_id": "A-1", "member_id": "m1", "amount": 10_000, "currency": "CNY"}
        placed = await program.post("/v1/orders", json={**order, "coupon_codes": [code]})
        assert placed.status_code == 201, placed.text
        response = await program.post(f"/v1/coupons/{code}/void")
        assert_problem(response, 409, "coupon_not_usable")
        assert response.json()["reason"] == "used"
        assert (await program.balance("m1"))["available"] == 300 + 80

    async def test_idempotency_key_replays(self, program: Program) -> None:
        await program.member("m1", points=500)
        code = (await redeemed(program, "m1", (await reward(program))["id"]))["coupon"]["code"]
        headers = {"Idempotency-Key": "void-1"}
        first = await program.post(f"/v1/coupons/{code}/void", headers=headers)
        again = await program.post(f"/v1/coupons/{code}/void", headers=headers)
        assert (first.status_code, again.status_code) == (200, 200)
        assert again.headers["Idempotency-Replayed"] == "true"
        assert (await program.balance("m1"))["available"] == 500

    async def test_unknown(self, program: Program) -> None:
        assert_problem(await program.post("/v1/coupons/ZZZZZZZZZZZZ/void"), 404, "coupon_invalid")


class TestExpiryJob:
    async def test_marks_expired_once(self, program: Program) -> None:
        clock.freeze(datetime(2026, 6, 1, tzinfo=UTC))
        await program.member("m1", points=500)
        created = await reward(program, coupon_ttl_days=1)
        code = (await redeemed(program, "m1", created["id"]))["coupon"]["code"]
        clock.advance(timedelta(days=1))
        first = await run_once(clock.now())
        again = await run_once(clock.now())
        # Other tests' coupons share the database: at least this one, and none the second time.
        assert first["expire_coupons"] >= 1
        assert again["expire_coupons"] == 0
        assert (await coupon(program, code))["status"] == "expired"
        expired = [e for e in await feed(program) if e["type"] == "coupon.expired"]
        assert len(expired) == 1
        assert expired[0]["data"]["coupon"]["code"] == code
        # Expiry keeps the points spent and the unit of stock taken.
        assert (await program.balance("m1"))["available"] == 300

    async def test_every_programs_coupons_in_one_run(
        self, program: Program, other_program: Program
    ) -> None:
        """The job works one program per transaction and runs until none is due."""
        clock.freeze(datetime(2026, 6, 1, tzinfo=UTC))
        codes = []
        for shop in (program, other_program):
            await shop.member("m1", points=500)
            created = await reward(shop, coupon_ttl_days=1)
            codes.append((await redeemed(shop, "m1", created["id"]))["coupon"]["code"])
        clock.advance(timedelta(days=1))
        assert (await run_once(clock.now()))["expire_coupons"] >= 2
        assert (await coupon(program, codes[0]))["status"] == "expired"
        assert (await coupon(other_program, codes[1]))["status"] == "expired"


async def member_token(program: Program, member: str) -> dict[str, str]:
    response = await program.post(f"/v1/members/{member}/tokens", json={})
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


class TestMemberApp:
    async def test_redeem_and_list_with_a_member_token(self, program: Program) -> None:
        await program.member("m1", points=500)
        await program.member("m2", points=500)
        created = await reward(program)
        headers = await member_token(program, "m1")
        client = program.client
        response = await client.post(f"/v1/me/rewards/{created['id']}/redeem", headers=headers)
        assert response.status_code == 201, response.text
        assert response.json()["member_id"] == "m1"
        assert (await program.balance("m1"))["available"] == 300
        assert (await program.balance("m2"))["available"] == 500
        mine = (await client.get("/v1/me/coupons", headers=headers)).json()
        assert mine == (await program.get("/v1/members/m1/coupons")).json()
        assert len(mine["data"]) == 1
        catalog = (await client.get("/v1/me/rewards", headers=headers)).json()
        assert catalog == (await program.get("/v1/members/m1/rewards")).json()

    async def test_refusals_as_for_the_admin_route(self, program: Program) -> None:
        await program.member("m1", points=100)
        created = await reward(program)
        headers = await member_token(program, "m1")
        response = await program.client.post(
            f"/v1/me/rewards/{created['id']}/redeem", headers=headers
        )
        assert_problem(response, 409, "insufficient_points")
        response = await program.client.post("/v1/me/rewards/999999/redeem", headers=headers)
        assert_problem(response, 404, "not_found")

    async def test_api_key_refused(self, program: Program) -> None:
        await program.member("m1", points=500)
        created = await reward(program)
        response = await program.post(f"/v1/me/rewards/{created['id']}/redeem")
        assert_problem(response, 403, "forbidden")

    async def test_idempotency_key_is_per_member(self, program: Program) -> None:
        await program.member("m1", points=500)
        await program.member("m2", points=500)
        created = await reward(program)
        path = f"/v1/me/rewards/{created['id']}/redeem"
        key = {"Idempotency-Key": "same"}
        one = await program.client.post(path, headers={**await member_token(program, "m1"), **key})
        two = await program.client.post(path, headers={**await member_token(program, "m2"), **key})
        assert (one.status_code, two.status_code) == (201, 201)
        assert (one.json()["member_id"], two.json()["member_id"]) == ("m1", "m2")
        again = await program.client.post(
            path, headers={**await member_token(program, "m1"), **key}
        )
        assert again.headers["Idempotency-Replayed"] == "true"
        assert again.json() == one.json()
        assert (await program.balance("m1"))["available"] == 300


class TestEvents:
    async def test_each_once(self, program: Program) -> None:
        await program.member("m1", points=1000)
        created = await reward(program)
        first = await redeemed(program, "m1", created["id"])
        await redeemed(program, "m1", created["id"])
        await program.post(f"/v1/coupons/{first['coupon']['code']}/void")
        events = await feed(program)
        counts = Counter(e["type"] for e in events)
        assert (
            counts["reward.redeemed"],
            counts["coupon.issued"],
            counts["coupon.voided"],
            counts["points.redeemed"],
        ) == (2, 2, 1, 2)
        voided = next(e for e in events if e["type"] == "coupon.voided")
        assert voided["member_id"] == "m1"
        assert voided["data"]["coupon"]["status"] == "void"
        assert voided["data"]["entry"]["kind"] == "restore"
        redeemed_event = next(e for e in events if e["type"] == "reward.redeemed")
        assert redeemed_event["data"]["redemption"] == first


class TestRewardsInsight:
    async def test_points_spent_top_rewards_and_use_rate(self, program: Program) -> None:
        clock.freeze(datetime(2026, 6, 1, tzinfo=UTC))
        await program.member("m1", points=10_000)
        tea = await reward(program, name="Tea", kind="gift", value=None, points_cost=300)
        off = await reward(program, name="20 off", points_cost=100)
        await reward(program, name="Never taken")
        kept = [await redeemed(program, "m1", tea["id"]) for _ in range(2)]
        voided = await redeemed(program, "m1", off["id"])
        await redeemed(program, "m1", off["id"])
        await program.post(f"/v1/coupons/{voided['coupon']['code']}/void")
        await program.post(f"/v1/coupons/{kept[0]['coupon']['code']}/void")
        body = (await program.get("/v1/insights/rewards")).json()
        assert [(r["name"], r["redemptions"], r["points_spent"]) for r in body["data"]] == [
            ("Tea", 1, 300),
            ("20 off", 1, 100),
        ]
        assert body["coupons"] == {
            "issued": 4,
            "active": 2,
            "used": 0,
            "void": 2,
            "expired": 0,
            "use_rate": "0",
        }

    async def test_empty(self, program: Program) -> None:
        body = (await program.get("/v1/insights/rewards")).json()
        assert body["data"] == []
        assert body["note"] == "no redemptions yet"
        assert body["coupons"]["issued"] == 0
