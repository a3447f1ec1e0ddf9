"""Orders with coupon_codes through HTTP: the discount, earning on amount minus discounts,
every refusal writing nothing, retries, and a full refund freeing the coupons."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from app import db
from app.clock import clock
from app.services.checkout import earning
from app.services.rewards import coupon_orders
from app.services.rewards.coupons import Coupon
from tests.conftest import Program, assert_problem
from tests.routers.test_events import feed
from tests.routers.test_rewards import coupon, redeemed, reward, set_program_currency


async def issued_code(program: Program, member: str = "m1", **fields: Any) -> str:
    created = await reward(program, **fields)
    code: str = (await redeemed(program, member, created["id"]))["coupon"]["code"]
    return code


def order_body(order_id: str, codes: list[str], member: str = "m1", amount: int = 10_000) -> Any:
    return {
        "order_id": order_id,
        "member_id": member,
        "amount": amount,
        "currency": "CNY",
        "coupon_codes": codes,
    }


async def place(program: Program, order_id: str, codes: list[str], **kwargs: Any) -> Any:
    return await program.post("/v1/orders", json=order_body(order_id, codes, **kwargs))


class TestOrderWithCoupon:
    async def test_discount_and_points_on_the_rest(self, program: Program) -> None:
        await program.member("m1", points=1000)
        code = await issued_code(program)  # 2000 off, bought for 200 points
        response = await place(program, "A-1", [code.lower()])
        assert response.status_code == 201, response.text
        order = response.json()
        assert order["coupons"] == [{"code": code, "discount_amount": 2000}]
        assert order["amount"] == 10_000
        # base = floor((10000 - 2000) / 100 * 1)
        assert order["points_earned"] == 80
        assert order["breakdown"] == [{"source": "base", "points": 80}]
        used = await coupon(program, code)
        assert (used["status"], used["order_id"]) == ("used", "A-1")
        assert (await program.get("/v1/orders/A-1")).json()["coupons"] == order["coupons"]
        assert (await program.balance("m1"))["available"] == 800 + 80

    async def test_percent_and_gift_together(self, program: Program) -> None:
        await program.member("m1", points=1000)
        percent = await issued_code(program, kind="percent_discount", value=15)
        gift = await issued_code(program, kind="gift", value=None)
        response = await place(program, "A-1", [percent, gift], amount=9999)
        assert response.status_code == 201, response.text
        assert response.json()["coupons"] == [
            {"code": percent, "discount_amount": 1499},
            {"code": gift, "discount_amount": 0},
        ]

    async def test_discounts_beyond_the_amount_earn_nothing(self, program: Program) -> None:
        await program.member("m1", points=1000)
        first = await issued_code(program)
        second = await issued_code(program)
        response = await place(program, "A-1", [first, second], amount=3000)
        assert response.status_code == 201, response.text
        order = response.json()
        assert [c["discount_amount"] for c in order["coupons"]] == [2000, 2000]
        assert order["points_earned"] == 0

    async def test_a_category_rule_earns_on_the_discounted_price(self, program: Program) -> None:
        rule = {
            "name": "Tea x3",
            "active": True,
            "conditions": {"categories": ["tea"]},
            "effect": {"multiplier": "3"},
        }
        created = await program.post("/v1/earn-rules", json=rule)
        assert created.status_code == 201, created.text
        await program.member("m1", points=1000)
        code = await issued_code(program)  # 2000 off the 10000: every item paid at 80 %
        body = order_body("A-1", [code])
        body["items"] = [
            {"sku": "T1", "category": "tea", "quantity": 2, "unit_price": 3000},
            {"sku": "W1", "category": "ware", "quantity": 1, "unit_price": 4000},
        ]
        response = await program.post("/v1/orders", json=body)
        assert response.status_code == 201, response.text
        # base = floor(8000 / 100); the tea cost 6000 and was paid 4800: floor(48 * (3 - 1))
        assert response.json()["breakdown"] == [
            {"source": "base", "points": 80},
            {"source": f"rule:{created.json()['id']}", "points": 96},
        ]

    async def test_in_a_program_with_tiers(self, program: Program) -> None:
        # The earning depends on the member: the order reads the member first, then locks.
        tier = {"key": "gold", "name": "Gold", "threshold": 0, "earn_multiplier": "2"}
        assert (await program.post("/v1/tiers", json=tier)).status_code == 201
        await program.member("m1", points=1000)
        code = await issued_code(program)
        response = await place(program, "A-1", [code])
        assert response.status_code == 201, response.text
        assert response.json()["breakdown"] == [
            {"source": "base", "points": 80},
            {"source": "tier", "points": 80},
        ]
        assert (await place(program, "A-1", [code])).status_code == 200
        await self.assert_refused_twice(program, code)

    async def assert_refused_twice(self, program: Program, code: str) -> None:
        again = await place(program, "A-2", [code])
        assert_problem(again, 409, "coupon_not_usable")
        assert again.json()["reason"] == "used"

    async def test_referee_with_a_pending_referral(self, program: Program) -> None:
        await program.patch(
            "/v1/program", json={"referral": {"referrer_points": 10, "referee_points": 5}}
        )
        await program.member("friend")
        link = (await program.post("/v1/members/friend/referral-link")).json()
        await program.member("m1", points=1000, referral_code=link["code"])
        code = await issued_code(program)
        response = await place(program, "A-1", [code])
        assert response.status_code == 201, response.text
        assert response.json()["points_earned"] == 80
        await self.assert_refused_twice(program, code)
        assert (await program.balance("friend"))["available"] == 10

    async def test_with_a_hold_too(self, program: Program) -> None:
        await program.member("m1", points=1000)
        code = await issued_code(program)
        hold = (await program.post("/v1/members/m1/holds", json={"points": 300})).json()
        body = {**order_body("A-1", [code]), "redeem_hold_id": hold["hold_id"]}
        response = await program.post("/v1/orders", json=body)
        assert response.status_code == 201, response.text
        order = response.json()
        assert (order["points_redeemed"], order["points_earned"]) == (300, 80)
        assert order["coupons"] == [{"code": code, "discount_amount": 2000}]
        assert (await program.balance("m1"))["available"] == 1000 - 200 - 300 + 80
        again = await program.post("/v1/orders", json=body)
        assert (again.status_code, again.json()) == (200, order)

    async def test_plain_order_has_no_coupons_key(self, program: Program) -> None:
        await program.member("m1")
        response = await program.post(
            "/v1/orders",
            json={"order_id": "A-1", "member_id": "m1", "amount": 100, "currency": "CNY"},
        )
        assert "coupons" not in response.json()

    async def test_events(self, program: Program) -> None:
        await program.member("m1", points=1000)
        code = await issued_code(program)
        await place(program, "A-1", [code])
        events = await feed(program)
        used = [e for e in events if e["type"] == "coupon.used"]
        assert len(used) == 1
        assert used[0]["data"]["order_id"] == "A-1"
        assert used[0]["data"]["discount_amount"] == 2000
        assert used[0]["data"]["coupon"]["status"] == "used"


async def events_written(program: Program, event_type: str | None = None) -> int:
    """How many events (of this type) the program has; events are never updated or deleted.
    Read from the table, not the feed, so that it holds on Citus too, where the feed is not
    ready yet."""
    async with db.read_only() as conn:
        statement = text(
            "SELECT count(*) FROM events WHERE program_id = :program_id "
            "AND (CAST(:type AS text) IS NULL OR type = :type)"
        )
        params = {"program_id": program.id, "type": event_type}
        written: int = (await conn.execute(statement, params)).scalar_one()
    return written


class TestCouponNotUsable:
    async def refused(self, program: Program, codes: list[str], reason: str, **kw: Any) -> None:
        before = await events_written(program)
        response = await place(program, "A-X", codes, **kw)
        assert_problem(response, 409, "coupon_not_usable")
        assert response.json()["reason"] == reason
        assert (await program.get("/v1/orders/A-X")).status_code == 404
        assert await events_written(program) == before

    async def test_used(self, program: Program) -> None:
        await program.member("m1", points=1000)
        code = await issued_code(program)
        assert (await place(program, "A-1", [code])).status_code == 201
        await self.refused(program, [code], "used")

    async def test_void(self, program: Program) -> None:
        await program.member("m1", points=1000)
        code = await issued_code(program)
        await program.post(f"/v1/coupons/{code}/void")
        await self.refused(program, [code], "void")

    async def test_expired_before_the_worker_runs(self, program: Program) -> None:
        clock.freeze(datetime(2026, 6, 1, tzinfo=UTC))
        await program.member("m1", points=1000)
        code = await issued_code(program, coupon_ttl_days=1)
        clock.advance(timedelta(days=1))
        await self.refused(program, [code], "expired")

    async def test_wrong_member(self, program: Program) -> None:
        await program.member("m1", points=1000)
        await program.member("m2")
        code = await issued_code(program)
        await self.refused(program, [code], "wrong_member", member="m2")

    async def test_min_order_amount(self, program: Program) -> None:
        await program.member("m1", points=1000)
        code = await issued_code(program, min_order_amount=10_001)
        await self.refused(program, [code], "min_order_amount")

    async def test_currency(self, program: Program) -> None:
        await program.member("m1", points=1000)
        code = await issued_code(program)
        await set_program_currency(program, "HKD")
        before = await events_written(program)
        body = {**order_body("A-X", [code]), "currency": "HKD"}
        response = await program.post("/v1/orders", json=body)
        assert_problem(response, 409, "coupon_not_usable")
        assert response.json()["reason"] == "currency"
        assert await events_written(program) == before

    async def test_unknown(self, program: Program) -> None:
        await program.member("m1", points=1000)
        await self.refused(program, ["ZZZZZZZZZZZZ"], "unknown")
        await self.refused(program, ["not a code"], "unknown")

    async def test_another_programs_coupon_is_unknown(
        self, program: Program, other_program: Program
    ) -> None:
        await other_program.member("m1", points=1000)
        theirs = await issued_code(other_program)
        await program.member("m1", points=1000)
        await self.refused(program, [theirs], "unknown")
        assert (await coupon(other_program, theirs))["status"] == "active"

    async def test_one_bad_code_uses_none(self, program: Program) -> None:
        await program.member("m1", points=1000)
        good = await issued_code(program)
        await self.refused(program, [good, "ZZZZZZZZZZZZ"], "unknown")
        assert (await coupon(program, good))["status"] == "active"

    async def test_currency_mismatch_first(self, program: Program) -> None:
        await program.member("m1", points=1000)
        code = await issued_code(program)
        body = {**order_body("A-1", [code]), "currency": "USD"}
        assert_problem(await program.post("/v1/orders", json=body), 422, "currency_mismatch")


class TestCouponCodesValidation:
    async def test_at_most_five_and_no_repeats(self, program: Program) -> None:
        await program.member("m1")
        for codes in (["A" * 12] * 2, [f"{n:012d}" for n in range(6)], []):
            assert_problem(await place(program, "A-1", codes), 422, "validation_error")

    async def test_same_code_spelled_twice(self, program: Program) -> None:
        await program.member("m1", points=1000)
        code = await issued_code(program)
        spelled = code.replace("1", "I") if "1" in code else code.replace("0", "O")
        if spelled == code:
            spelled = "-".join([code[:6], code[6:]])
        assert_problem(await place(program, "A-1", [code, spelled]), 422, "validation_error")


class TestRetriedOrder:
    async def test_same_order_again_is_200_and_no_second_use(self, program: Program) -> None:
        await program.member("m1", points=1000)
        code = await issued_code(program)
        first = await place(program, "A-1", [code])
        again = await place(program, "A-1", [code])
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json() == first.json()
        assert await events_written(program, "coupon.used") == 1
        assert (await program.balance("m1"))["available"] == 800 + 80

    async def test_different_coupons_is_order_conflict(self, program: Program) -> None:
        await program.member("m1", points=1000)
        code = await issued_code(program)
        other = await issued_code(program)
        assert (await place(program, "A-1", [code])).status_code == 201
        assert_problem(await place(program, "A-1", [other]), 409, "order_conflict")
        assert (await coupon(program, other))["status"] == "active"

    async def test_with_idempotency_key_replays(self, program: Program) -> None:
        await program.member("m1", points=1000)
        code = await issued_code(program)
        headers = {"Idempotency-Key": "order-1"}
        body = order_body("A-1", [code])
        first = await program.post("/v1/orders", json=body, headers=headers)
        again = await program.post("/v1/orders", json=body, headers=headers)
        assert (first.status_code, again.status_code) == (201, 201)
        assert again.headers["Idempotency-Replayed"] == "true"


class TestRefundFreesCoupons:
    async def test_full_refund_reactivates(self, program: Program) -> None:
        await program.member("m1", points=1000)
        code = await issued_code(program)
        await place(program, "A-1", [code])
        partial = await program.post(
            "/v1/orders/A-1/refunds", json={"refund_id": "R-1", "amount": 4000}
        )
        assert partial.status_code == 201
        assert (await coupon(program, code))["status"] == "used"
        rest = await program.post(
            "/v1/orders/A-1/refunds", json={"refund_id": "R-2", "amount": 6000}
        )
        assert rest.status_code == 201
        freed = await coupon(program, code)
        assert (freed["status"], freed["order_id"]) == ("active", None)
        # The order keeps what it used; the coupon can be used again.
        assert (await program.get("/v1/orders/A-1")).json()["coupons"][0]["code"] == code
        assert (await place(program, "A-2", [code])).status_code == 201
        reactivated = [e for e in await feed(program) if e["type"] == "coupon.reactivated"]
        assert [e["data"]["coupon"]["code"] for e in reactivated] == [code]

    async def test_expired_coupon_stays_used(self, program: Program) -> None:
        clock.freeze(datetime(2026, 6, 1, tzinfo=UTC))
        await program.member("m1", points=1000)
        code = await issued_code(program, coupon_ttl_days=1)
        await place(program, "A-1", [code])
        clock.advance(timedelta(days=2))
        await program.post("/v1/orders/A-1/refunds", json={"refund_id": "R-1", "amount": 10_000})
        assert (await coupon(program, code))["status"] == "used"


def _never_read(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the coupons were read before the order statement")


class TestPricedInTheStatement:
    """In a program whose earning is its base rate alone, an order with coupons is one
    statement that prices itself (no read before it); any other program reads the coupons
    first and prices the order in the service. Both must record the same order."""

    async def test_one_round_trip(self, program: Program, monkeypatch: Any) -> None:
        await program.member("m1", points=1000)
        code = await issued_code(program)
        monkeypatch.setattr(coupon_orders, "read_for_order", _never_read)
        response = await place(program, "A-1", [code])
        assert response.status_code == 201, response.text
        order = response.json()
        assert order["coupons"] == [{"code": code, "discount_amount": 2000}]
        assert (order["points_earned"], order["breakdown"]) == (
            80,
            [{"source": "base", "points": 80}],
        )
        assert (await program.balance("m1"))["available"] == 800 + 80

    async def test_a_refused_coupon_is_read_to_say_why(
        self, program: Program, monkeypatch: Any
    ) -> None:
        await program.member("m1", points=1000)
        code = await issued_code(program, min_order_amount=10_001)
        reads = []
        read_for_order = coupon_orders.read_for_order

        async def counted(*args: Any) -> Any:
            reads.append(args)
            return await read_for_order(*args)

        monkeypatch.setattr(coupon_orders, "read_for_order", counted)
        before = await events_written(program)
        response = await place(program, "A-1", [code])
        assert_problem(response, 409, "coupon_not_usable")
        assert response.json()["reason"] == "min_order_amount"
        assert len(reads) == 1
        assert await events_written(program) == before
        assert (await coupon(program, code))["status"] == "active"

    @pytest.mark.parametrize(
        ("amount", "rewards"),
        [
            (10_000, [{}]),  # 2000 off
            (1_500, [{}]),  # 2000 off an order of 1500: 1500
            (9_999, [{"kind": "percent_discount", "value": 15}, {"kind": "gift", "value": None}]),
            (3_000, [{}, {}]),  # more off than the amount: earns nothing
            (10_000, [{"kind": "free_shipping", "value": None}]),
            (7_777, [{"kind": "percent_discount", "value": 100}]),
            (12_345, [{"min_order_amount": 12_345}, {"kind": "percent_discount", "value": 1}]),
        ],
    )
    async def test_same_order_either_way(
        self, program: Program, monkeypatch: Any, amount: int, rewards: list[dict[str, Any]]
    ) -> None:
        # A rate with a fraction, so that the floor of the points is put to the test.
        assert (await program.patch("/v1/program", json={"earn_rate": "0.37"})).is_success
        await program.member("m1", points=10_000)
        recorded = []
        for priced in (True, False):
            codes = [await issued_code(program, **fields) for fields in rewards]
            with monkeypatch.context() as patched:
                if priced:
                    patched.setattr(coupon_orders, "read_for_order", _never_read)
                else:
                    patched.setattr(earning, "base_rate_fraction", lambda context: None)
                response = await place(program, f"A-{priced}", list(reversed(codes)), amount=amount)
            assert response.status_code == 201, response.text
            recorded.append(await self.as_recorded(program, response.json(), codes))
        assert recorded[0] == recorded[1]

    async def as_recorded(
        self, program: Program, order: dict[str, Any], codes: list[str]
    ) -> dict[str, Any]:
        """The order, its coupons and their events, with the codes as their place in
        ``codes`` and without what differs from order to order."""
        place_of = {code: number for number, code in enumerate(codes)}
        async with db.read_only() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT code, status, discount_amount FROM coupons "
                        "WHERE program_id = :program_id AND order_id = :order_id"
                    ),
                    {"program_id": program.id, "order_id": order["order_id"]},
                )
            ).all()
        used = [
            e["data"]
            for e in await feed(program)
            if e["type"] == "coupon.used" and e["data"]["order_id"] == order["order_id"]
        ]
        return {
            "amount": order["amount"],
            "points_earned": order["points_earned"],
            "breakdown": order["breakdown"],
            "coupons": [{**c, "code": place_of[c["code"]]} for c in order["coupons"]],
            "rows": sorted((place_of[r.code], r.status, r.discount_amount) for r in rows),
            "events": sorted(
                (place_of[e["coupon"]["code"]], e["discount_amount"], e["coupon"]["status"])
                for e in used
            ),
        }


class TestDiscountInSql:
    async def test_the_same_as_discount_on(self, program: Program) -> None:
        kinds = ("fixed_discount", "percent_discount", "free_shipping", "gift", "custom")
        values = (None, 0, 1, 15, 99, 100, 2000)
        template = Coupon.from_row(
            {field.name: None for field in dataclasses.fields(Coupon)}
            | {"kind": "gift", "value": None}
        )
        statement = text(
            "SELECT "
            + coupon_orders.DISCOUNT_SQL.format(c="c")
            + " AS discount FROM (VALUES (CAST(:kind AS text), CAST(:value AS bigint))) "
            "AS c(kind, value)"
        )
        async with db.read_only() as conn:
            for kind in kinds:
                for value in values:
                    for amount in (1, 99, 1_500, 9_999, 10**12):
                        in_sql = (
                            await conn.execute(
                                statement, {"kind": kind, "value": value, "amount": amount}
                            )
                        ).scalar_one()
                        coupon = dataclasses.replace(template, kind=kind, value=value)
                        assert in_sql == coupon.discount_on(amount), (kind, value, amount)
