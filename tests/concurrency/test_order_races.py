"""Orders and refunds racing from parallel connections; audited after each test."""

from __future__ import annotations

import asyncio

from tests.conftest import Program

ORDER = {"order_id": "A-1", "member_id": "m1", "amount": 50_000, "currency": "CNY"}


class TestSameOrderConcurrently:
    async def test_twenty_posts_make_one_order(self, program: Program) -> None:
        await program.member("m1")
        responses = await asyncio.gather(
            *(program.post("/v1/orders", json=ORDER) for _ in range(20))
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] * 19 + [201]
        assert len({r.json()["points_earned"] for r in responses}) == 1
        balance = await program.balance("m1")
        assert balance["available"] == 500
        entries = (await program.get("/v1/members/m1/points/transactions")).json()["data"]
        assert [e["kind"] for e in entries] == ["order"]

    async def test_with_a_hold_captures_once(self, program: Program) -> None:
        await program.member("m1", points=300)
        hold = (await program.post("/v1/members/m1/holds", json={"points": 100})).json()
        body = {**ORDER, "redeem_hold_id": hold["hold_id"]}
        responses = await asyncio.gather(
            *(program.post("/v1/orders", json=body) for _ in range(10))
        )
        assert sum(1 for r in responses if r.status_code == 201) == 1
        balance = await program.balance("m1")
        assert (balance["available"], balance["held"], balance["lifetime_redeemed"]) == (
            700,
            0,
            100,
        )


class TestParallelRefunds:
    async def test_never_exceed_the_order(self, program: Program) -> None:
        await program.member("m1")
        await program.post("/v1/orders", json=ORDER)
        responses = await asyncio.gather(
            *(
                program.post(
                    "/v1/orders/A-1/refunds", json={"refund_id": f"R-{i}", "amount": 7_000}
                )
                for i in range(12)
            )
        )
        accepted = [r for r in responses if r.status_code == 201]
        refused = [r for r in responses if r.status_code == 422]
        assert len(accepted) == 7  # 7 x 7,000 <= 50,000 < 8 x 7,000
        assert len(refused) == 5
        assert all(r.json()["code"] == "refund_exceeds_order" for r in refused)
        order = (await program.get("/v1/orders/A-1")).json()
        assert sum(r["amount"] for r in order["refunds"]) == 49_000
        assert sum(r.json()["points_reversed"] for r in accepted) == 490
        assert (await program.balance("m1"))["available"] == 10

    async def test_same_refund_id_in_parallel_applies_once(self, program: Program) -> None:
        await program.member("m1")
        await program.post("/v1/orders", json=ORDER)
        responses = await asyncio.gather(
            *(
                program.post("/v1/orders/A-1/refunds", json={"refund_id": "R", "amount": 10_000})
                for _ in range(10)
            )
        )
        assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
        assert (await program.balance("m1"))["available"] == 400
