from __future__ import annotations

from tests.conftest import Program
from tests.imports.support import counts, error_codes, jsonl, run_import
from tests.imports.support import order_line as order


class TestOrdersImport:
    async def test_counts_on_a_hand_built_file(self, program: Program) -> None:
        await program.member("m1")
        await program.member("m2")
        body = jsonl(
            order("o1"),
            order("o2", earn_points=True),
            order("o3", member="ghost"),
            order("o1", amount=5),
            {**order("o4"), "currency": "USD"},
            {**order("o5"), "coupon": "X"},
            {**order("o6"), "redeem_hold_id": "h"},
            b"\xff\xfe",
            order("o7", member="m2", amount=20000),
        )
        report = await run_import(program, "orders", body)
        assert counts(report) == (3, 0, 0, 6)
        assert error_codes(report) == [
            (3, "member_not_found"),
            (4, "duplicate_key"),
            (5, "currency_mismatch"),
            (6, "unknown_field"),
            (7, "unsupported_field"),
            (8, "malformed_json"),
        ]
        # Only the order that asked for points earned them (rate 1 point per yuan).
        assert (await program.balance("m1"))["available"] == 100
        assert (await program.balance("m2"))["available"] == 0
        stored = (await program.get("/v1/orders/o1")).json()
        assert (stored["amount"], stored["points_earned"]) == (10000, 0)

    async def test_same_file_twice_is_unchanged_and_other_content_conflicts(
        self, program: Program
    ) -> None:
        await program.member("m1")
        body = jsonl(order("o1", earn_points=True), order("o2"))
        first = await run_import(program, "orders", body)
        second = await run_import(program, "orders", body)
        changed = await run_import(program, "orders", jsonl(order("o2", amount=1)))
        assert counts(first) == (2, 0, 0, 0)
        assert counts(second) == (0, 0, 2, 0)
        assert error_codes(changed) == [(1, "order_conflict")]
        assert (await program.balance("m1"))["available"] == 100

    async def test_history_feeds_segments_and_tiers(self, program: Program) -> None:
        policy = await program.put(
            "/v1/tier-policy", json={"metric": "spend", "window_days": None, "grace_days": 0}
        )
        assert policy.status_code == 200, policy.text
        created = await program.post(
            "/v1/tiers", json={"key": "gold", "name": "Gold", "threshold": 15000}
        )
        assert created.status_code == 201, created.text
        await program.member("m1")
        body = jsonl(
            order("o1", occurred_at="2025-01-01T10:00:00+00:00"),
            order("o2", occurred_at="2025-03-01T10:00:00+00:00"),
        )
        await run_import(program, "orders", body)
        member = (await program.get("/v1/members/m1")).json()
        assert member["tier"] == {"key": "gold", "name": "Gold"}
        assert member["lifecycle"] != "prospect"
        assert (await program.balance("m1"))["available"] == 0
