"""Orders and refunds through HTTP, with pending windows and jobs moved by the test clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from app import db
from app.clock import clock
from app.services.checkout import earning
from app.worker import run_once
from tests.conftest import Program, assert_problem

START = datetime(2026, 4, 1, 10, tzinfo=UTC)


def order_body(order_id: str, member: str = "m1", amount: int = 10_000, **extra: Any) -> dict:
    return {"order_id": order_id, "member_id": member, "amount": amount, "currency": "CNY", **extra}


async def place(program: Program, order_id: str, **kwargs: Any) -> dict[str, Any]:
    response = await program.post("/v1/orders", json=order_body(order_id, **kwargs))
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


class TestCreateOrder:
    async def test_earns_base_points_available_at_once(self, program: Program) -> None:
        clock.freeze(START)
        await program.member("m1")
        order = await place(program, "A-1", amount=12_345)  # 123.45 CNY at 1 point per yuan
        assert order["points_earned"] == 123
        assert order["breakdown"] == [{"source": "base", "points": 123}]
        assert order["status"] == "available"
        assert order["refunds"] == []
        assert order["points_redeemed"] == 0
        balance = await program.balance("m1")
        assert (balance["available"], balance["lifetime_earned"]) == (123, 123)
        entry = (await program.get("/v1/members/m1/points/transactions")).json()["data"][0]
        assert (entry["kind"], entry["points"], entry["order_id"]) == ("order", 123, "A-1")

    async def test_pending_until_window_passes(self, program: Program) -> None:
        clock.freeze(START)
        await program.patch("/v1/program", json={"pending_days": 7})
        await program.member("m1")
        order = await place(program, "A-1")
        assert order["status"] == "pending"
        assert datetime.fromisoformat(order["available_at"]) == START + timedelta(days=7)
        balance = await program.balance("m1")
        assert (balance["available"], balance["pending"]) == (0, 100)
        spend = await program.post("/v1/members/m1/points/redeem", json={"points": 1})
        assert spend.status_code == 409

        clock.freeze(START + timedelta(days=7) - timedelta(seconds=1))
        await run_once(clock.now())
        assert (await program.balance("m1"))["pending"] == 100

        clock.freeze(START + timedelta(days=7))
        await run_once(clock.now())
        balance = await program.balance("m1")
        assert (balance["available"], balance["pending"]) == (100, 0)
        shown = await program.get("/v1/orders/A-1")
        assert shown.json()["status"] == "available"
        entry = (await program.get("/v1/members/m1/points/transactions")).json()["data"][0]
        assert entry["status"] == "available"

    async def test_late_order_past_its_window_is_available(self, program: Program) -> None:
        clock.freeze(START)
        await program.patch("/v1/program", json={"pending_days": 7})
        await program.member("m1")
        order = await place(program, "A-1", occurred_at=(START - timedelta(days=8)).isoformat())
        assert order["status"] == "available"
        assert (await program.balance("m1"))["available"] == 100

    async def test_same_order_again_is_200_with_same_order(self, program: Program) -> None:
        await program.member("m1")
        first = await place(program, "A-1")
        again = await program.post("/v1/orders", json=order_body("A-1"))
        assert again.status_code == 200
        assert again.json() == first
        assert (await program.balance("m1"))["available"] == 100

    async def test_same_order_id_other_body_conflicts(self, program: Program) -> None:
        await program.member("m1")
        await place(program, "A-1")
        response = await program.post("/v1/orders", json=order_body("A-1", amount=9_999))
        assert response.status_code == 409
        assert response.json()["code"] == "order_conflict"

    async def test_currency_mismatch(self, program: Program) -> None:
        await program.member("m1")
        response = await program.post("/v1/orders", json={**order_body("A-1"), "currency": "USD"})
        assert response.status_code == 422
        assert response.json()["code"] == "currency_mismatch"

    async def test_unknown_member(self, program: Program) -> None:
        response = await program.post("/v1/orders", json=order_body("A-1", member="ghost"))
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"

    async def test_zero_amount_earns_nothing(self, program: Program) -> None:
        await program.member("m1")
        order = await place(program, "A-0", amount=0)
        assert (order["points_earned"], order["breakdown"]) == (0, [])

    async def test_idempotency_key_replays_the_201(self, program: Program) -> None:
        await program.member("m1")
        headers = {"Idempotency-Key": "order-A-1"}
        first = await program.post("/v1/orders", json=order_body("A-1"), headers=headers)
        second = await program.post("/v1/orders", json=order_body("A-1"), headers=headers)
        assert (first.status_code, second.status_code) == (201, 201)
        assert second.headers["Idempotency-Replayed"] == "true"
        assert first.text == second.text


class TestOrderWithHold:
    async def test_captures_the_hold_atomically(self, program: Program) -> None:
        await program.member("m1", points=500)
        hold = (await program.post("/v1/members/m1/holds", json={"points": 200})).json()
        order = await place(program, "A-1", redeem_hold_id=hold["hold_id"])
        assert order["points_redeemed"] == 200
        assert order["points_earned"] == 100
        shown = (await program.get(f"/v1/holds/{hold['hold_id']}")).json()
        assert shown["status"] == "captured"
        assert shown["order_id"] == "A-1"
        balance = await program.balance("m1")
        assert (balance["available"], balance["held"], balance["lifetime_redeemed"]) == (
            400,
            0,
            200,
        )

    async def test_hold_of_another_member_is_refused(self, program: Program) -> None:
        await program.member("m1")
        await program.member("m2", points=50)
        hold = (await program.post("/v1/members/m2/holds", json={"points": 20})).json()
        response = await program.post(
            "/v1/orders", json=order_body("A-1", redeem_hold_id=hold["hold_id"])
        )
        assert response.status_code == 409
        assert response.json()["code"] == "hold_not_active"
        assert (await program.get("/v1/orders/A-1")).status_code == 404

    async def test_expired_hold_is_refused_and_nothing_recorded(self, program: Program) -> None:
        clock.freeze(START)
        await program.member("m1", points=50)
        hold = (
            await program.post("/v1/members/m1/holds", json={"points": 20, "ttl_seconds": 10})
        ).json()
        clock.advance(timedelta(seconds=11))
        response = await program.post(
            "/v1/orders", json=order_body("A-1", redeem_hold_id=hold["hold_id"])
        )
        assert response.status_code == 409
        assert response.json()["code"] == "hold_not_active"
        assert (await program.get("/v1/orders/A-1")).status_code == 404

    async def test_retried_order_answers_200_with_the_same_order(self, program: Program) -> None:
        # A checkout that times out and retries must get its order back, never a
        # hold_not_active that invites it to create a new hold and spend points twice.
        await program.member("m1", points=500)
        hold = (await program.post("/v1/members/m1/holds", json={"points": 200})).json()
        first = await place(program, "A-1", redeem_hold_id=hold["hold_id"])
        again = await program.post(
            "/v1/orders", json=order_body("A-1", redeem_hold_id=hold["hold_id"])
        )
        assert again.status_code == 200, again.text
        assert again.json() == first
        balance = await program.balance("m1")
        assert (balance["available"], balance["lifetime_redeemed"]) == (400, 200)

    async def test_retried_order_with_another_body_conflicts(self, program: Program) -> None:
        await program.member("m1", points=500)
        hold = (await program.post("/v1/members/m1/holds", json={"points": 200})).json()
        await place(program, "A-1", redeem_hold_id=hold["hold_id"])
        changed = order_body("A-1", amount=20_000, redeem_hold_id=hold["hold_id"])
        assert_problem(await program.post("/v1/orders", json=changed), 409, "order_conflict")
        assert (await program.balance("m1"))["lifetime_redeemed"] == 200

    async def test_retry_with_key_replays_the_201(self, program: Program) -> None:
        await program.member("m1", points=500)
        hold = (await program.post("/v1/members/m1/holds", json={"points": 200})).json()
        headers = {"Idempotency-Key": "order-A-1"}
        body = order_body("A-1", redeem_hold_id=hold["hold_id"])
        first = await program.post("/v1/orders", json=body, headers=headers)
        again = await program.post("/v1/orders", json=body, headers=headers)
        assert (first.status_code, again.status_code) == (201, 201)
        assert again.headers["Idempotency-Replayed"] == "true"
        assert again.json() == first.json()


class TestGetOrder:
    async def test_not_found_and_other_program(
        self, program: Program, other_program: Program
    ) -> None:
        await program.member("m1")
        await place(program, "A-1")
        assert (await program.get("/v1/orders/nope")).status_code == 404
        other = await other_program.get("/v1/orders/A-1")
        assert other.status_code == 404
        assert other.json()["code"] == "not_found"


class TestRefunds:
    async def test_partial_then_rest_reverses_exactly(self, program: Program) -> None:
        await program.member("m1", points=1000)
        hold = (await program.post("/v1/members/m1/holds", json={"points": 301})).json()
        await place(program, "A-1", amount=10_001, redeem_hold_id=hold["hold_id"])
        totals = {"reversed": 0, "restored": 0}
        for index, amount in enumerate((3_333, 3_333, 3_335)):
            response = await program.post(
                "/v1/orders/A-1/refunds", json={"refund_id": f"R-{index}", "amount": amount}
            )
            assert response.status_code == 201, response.text
            totals["reversed"] += response.json()["points_reversed"]
            totals["restored"] += response.json()["points_restored"]
        assert totals == {"reversed": 100, "restored": 301}
        balance = await program.balance("m1")
        # 1000 - 301 redeemed + 100 earned - 100 reversed + 301 restored
        assert balance["available"] == 1000
        assert (balance["lifetime_earned"], balance["lifetime_redeemed"]) == (1000, 0)
        order = (await program.get("/v1/orders/A-1")).json()
        assert [r["refund_id"] for r in order["refunds"]] == ["R-0", "R-1", "R-2"]

    async def test_beyond_the_order_is_refused(self, program: Program) -> None:
        await program.member("m1")
        await place(program, "A-1", amount=1_000)
        await program.post("/v1/orders/A-1/refunds", json={"refund_id": "R-1", "amount": 600})
        response = await program.post(
            "/v1/orders/A-1/refunds", json={"refund_id": "R-2", "amount": 401}
        )
        assert response.status_code == 422
        assert response.json()["code"] == "refund_exceeds_order"

    async def test_same_refund_id_is_200_same_refund(self, program: Program) -> None:
        await program.member("m1")
        await place(program, "A-1")
        first = await program.post(
            "/v1/orders/A-1/refunds", json={"refund_id": "R-1", "amount": 5_000}
        )
        again = await program.post(
            "/v1/orders/A-1/refunds", json={"refund_id": "R-1", "amount": 5_000}
        )
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json() == first.json()
        assert (await program.balance("m1"))["available"] == 50

    async def test_same_refund_id_other_amount_conflicts(self, program: Program) -> None:
        await program.member("m1")
        await place(program, "A-1")
        await program.post("/v1/orders/A-1/refunds", json={"refund_id": "R-1", "amount": 10})
        response = await program.post(
            "/v1/orders/A-1/refunds", json={"refund_id": "R-1", "amount": 20}
        )
        assert response.status_code == 409
        assert response.json()["code"] == "refund_conflict"

    async def test_pending_points_are_reversed_from_pending(self, program: Program) -> None:
        clock.freeze(START)
        await program.patch("/v1/program", json={"pending_days": 14})
        await program.member("m1")
        await place(program, "A-1")
        response = await program.post(
            "/v1/orders/A-1/refunds", json={"refund_id": "R-1", "amount": 4_000}
        )
        assert response.json()["points_reversed"] == 40
        balance = await program.balance("m1")
        assert (balance["available"], balance["pending"]) == (0, 60)
        clock.advance(timedelta(days=14))
        await run_once(clock.now())
        balance = await program.balance("m1")
        assert (balance["available"], balance["pending"]) == (60, 0)

    async def test_clawback_leaves_a_debt_that_earnings_repay(self, program: Program) -> None:
        await program.member("m1")
        await place(program, "A-1")
        await program.post("/v1/members/m1/points/redeem", json={"points": 80})
        response = await program.post(
            "/v1/orders/A-1/refunds", json={"refund_id": "R-1", "amount": 10_000}
        )
        assert response.status_code == 201
        assert (await program.balance("m1"))["available"] == -80
        blocked = await program.post("/v1/members/m1/points/redeem", json={"points": 1})
        assert blocked.status_code == 409
        await program.post("/v1/members/m1/points/earn", json={"points": 100, "reason": "x"})
        balance = await program.balance("m1")
        assert balance["available"] == 20
        spent = await program.post("/v1/members/m1/points/redeem", json={"points": 20})
        assert spent.status_code == 201

    async def test_unknown_order(self, program: Program) -> None:
        response = await program.post(
            "/v1/orders/nope/refunds", json={"refund_id": "R-1", "amount": 1}
        )
        assert response.status_code == 404


class TestPointsExpiry:
    async def test_expire_job_removes_what_is_left_of_due_lots(self, program: Program) -> None:
        clock.freeze(START)
        await program.patch("/v1/program", json={"points_expiry_days": 30})
        await program.member("m1", points=100)
        await program.post("/v1/members/m1/points/redeem", json={"points": 30})
        clock.advance(timedelta(days=31))
        await run_once(clock.now())
        balance = await program.balance("m1")
        assert balance["available"] == 0
        assert balance["expiring"] == []
        entry = (await program.get("/v1/members/m1/points/transactions")).json()["data"][0]
        assert (entry["kind"], entry["points"]) == ("expire", -70)
        await run_once(clock.now())
        entries = (await program.get("/v1/members/m1/points/transactions")).json()["data"]
        assert sum(1 for e in entries if e["kind"] == "expire") == 1

    async def test_held_points_do_not_expire_under_the_hold(self, program: Program) -> None:
        clock.freeze(datetime(2026, 3, 30, 10, tzinfo=UTC))
        await program.patch("/v1/program", json={"points_expiry_days": 1})
        await program.member("m1", points=100)  # valid through 31 March
        clock.freeze(datetime(2026, 3, 31, 23, tzinfo=UTC))
        hold = (
            await program.post("/v1/members/m1/holds", json={"points": 60, "ttl_seconds": 86400})
        ).json()
        clock.freeze(datetime(2026, 4, 1, 1, tzinfo=UTC))
        await run_once(clock.now())
        balance = await program.balance("m1")
        assert (balance["available"], balance["held"]) == (0, 60)
        await program.post(f"/v1/holds/{hold['hold_id']}/release")
        await run_once(clock.now())
        assert (await program.balance("m1"))["available"] == 0


class TestEarningSetupChanges:
    """Each process caches a program's earning setup (rules, rate, tiers) for the one-statement
    order; the statement proceeds only while programs.config_version is the cached one, so a
    change made anywhere applies to the very next order."""

    async def _rule(self, program: Program, multiplier: str) -> int:
        response = await program.post(
            "/v1/earn-rules",
            json={
                "name": "tea",
                "active": True,
                "conditions": {"categories": ["tea"]},
                "effect": {"multiplier": multiplier},
            },
        )
        assert response.status_code == 201, response.text
        rule_id: int = response.json()["id"]
        return rule_id

    @staticmethod
    def _tea() -> dict[str, Any]:
        item = {"sku": "T", "category": "tea", "quantity": 1, "unit_price": 10_000}
        return {"items": [item], "amount": 10_000}

    async def test_a_changed_rule_applies_to_the_next_order(self, program: Program) -> None:
        await program.member("m1")
        rule = await self._rule(program, "2")
        first = await place(program, "A-1", **self._tea())
        assert first["breakdown"] == [
            {"source": "base", "points": 100},
            {"source": f"rule:{rule}", "points": 100},
        ]
        patched = await program.patch(
            f"/v1/earn-rules/{rule}", json={"effect": {"multiplier": "3"}}
        )
        assert patched.status_code == 200, patched.text
        second = await place(program, "A-2", **self._tea())
        assert second["breakdown"][1] == {"source": f"rule:{rule}", "points": 200}
        assert (await program.delete(f"/v1/earn-rules/{rule}")).status_code == 204
        third = await place(program, "A-3", **self._tea())
        assert third["breakdown"] == [{"source": "base", "points": 100}]

    async def test_a_changed_earn_rate_applies_to_the_next_order(self, program: Program) -> None:
        await program.member("m1")
        assert (await place(program, "A-1"))["points_earned"] == 100
        response = await program.patch("/v1/program", json={"earn_rate": "2.5"})
        assert response.status_code == 200, response.text
        assert (await place(program, "A-2"))["points_earned"] == 250

    async def test_a_new_tier_applies_to_the_next_order(self, program: Program) -> None:
        await program.member("m1")
        await place(program, "A-1")
        response = await program.post(
            "/v1/tiers",
            json={"key": "gold", "name": "Gold", "threshold": 0, "earn_multiplier": "1.5"},
        )
        assert response.status_code == 201, response.text
        order = await place(program, "A-2")
        assert order["breakdown"] == [
            {"source": "base", "points": 100},
            {"source": "tier", "points": 50},
        ]

    async def test_the_cached_setup_follows_the_programs_version(self, program: Program) -> None:
        await program.member("m1")
        await place(program, "A-1")
        before = earning._program_earning[program.id].config_version
        await self._rule(program, "2")
        await place(program, "A-2")
        after = earning._program_earning[program.id].config_version
        assert after > before


class TestConfigVersion:
    """The triggers of migration 0011 keep programs.config_version."""

    async def _version(self, program: Program) -> int:
        async with db.read_only() as conn:
            version: int = (
                await conn.execute(
                    text("SELECT config_version FROM programs WHERE id = :id"), {"id": program.id}
                )
            ).scalar_one()
        return version

    async def test_moves_with_what_an_order_earns(self, program: Program) -> None:
        seen = [await self._version(program)]
        rule = await program.post(
            "/v1/earn-rules",
            json={"name": "r", "active": True, "conditions": {}, "effect": {"bonus_points": 5}},
        )
        seen.append(await self._version(program))
        await program.patch(f"/v1/earn-rules/{rule.json()['id']}", json={"active": False})
        seen.append(await self._version(program))
        await program.post("/v1/tiers", json={"key": "s", "name": "S", "threshold": 10})
        seen.append(await self._version(program))
        await program.patch("/v1/program", json={"earn_rate": "3"})
        seen.append(await self._version(program))
        await program.patch("/v1/program", json={"timezone": "Asia/Shanghai"})
        seen.append(await self._version(program))
        assert seen == sorted(seen) and len(set(seen)) == len(seen), seen

    async def test_stays_for_settings_read_by_the_statement_itself(self, program: Program) -> None:
        before = await self._version(program)
        response = await program.patch(
            "/v1/program", json={"pending_days": 7, "points_expiry_days": 30}
        )
        assert response.status_code == 200, response.text
        assert await self._version(program) == before
