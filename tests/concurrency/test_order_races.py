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
        # One records the order; every other finds it recorded (200), none is refused.
        assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
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

    async def test_same_refund_id_with_keys_in_parallel_applies_once(
        self, program: Program
    ) -> None:
        # Duplicates that carry an Idempotency-Key each: one records the refund, every other
        # waits for it and then gets its own answer (a refund already recorded: 200).
        await program.member("m1")
        await program.post("/v1/orders", json=ORDER)
        responses = await asyncio.gather(
            *(
                program.post(
                    "/v1/orders/A-1/refunds",
                    json={"refund_id": "R", "amount": 10_000},
                    headers={"Idempotency-Key": f"refund-R-{i}"},
                )
                for i in range(10)
            )
        )
        assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
        assert (await program.balance("m1"))["available"] == 400

    async def test_one_refund_id_on_two_orders_at_once(self, program: Program) -> None:
        # Two members' orders refunded under the same refund_id at the same instant: they
        # lock different accounts, so the refunds' unique key decides; the loser is told
        # the refund_id is taken (409), never a 500, and nothing of it is applied.
        for member, order_id in (("m1", "A-1"), ("m2", "A-2")):
            await program.member(member)
            await program.post(
                "/v1/orders", json={**ORDER, "member_id": member, "order_id": order_id}
            )
        for attempt in range(5):
            refund_id = f"R-{attempt}"
            responses = await asyncio.gather(
                *(
                    program.post(
                        f"/v1/orders/{order_id}/refunds",
                        json={"refund_id": refund_id, "amount": 10_000},
                        headers={"Idempotency-Key": f"{order_id}-{refund_id}"},
                    )
                    for order_id in ("A-1", "A-2")
                )
            )
            assert sorted(r.status_code for r in responses) == [201, 409], [
                r.text for r in responses
            ]
            refused = next(r for r in responses if r.status_code == 409)
            assert refused.json()["code"] == "refund_conflict"
        balances = [(await program.balance(m))["available"] for m in ("m1", "m2")]
        assert sum(balances) == 2 * 500 - 5 * 100
