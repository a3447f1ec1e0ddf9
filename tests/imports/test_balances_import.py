from __future__ import annotations

from datetime import timedelta

from app.clock import clock
from tests.conftest import Program
from tests.imports.support import counts, error_codes, jsonl, run_import


class TestBalancesImport:
    async def test_counts_on_a_hand_built_file(self, program: Program) -> None:
        for member in ("m1", "m2", "m3"):
            await program.member(member)
        expires = (clock.now() + timedelta(days=90)).replace(microsecond=0).isoformat()
        past = (clock.now() - timedelta(days=1)).isoformat()
        body = jsonl(
            {"external_id": "m1", "points": 500, "expires_at": expires},
            {"external_id": "m2", "points": 120},
            {"external_id": "ghost", "points": 10},
            {"external_id": "m1", "points": 500},
            {"external_id": "m3", "points": 0},
            {"external_id": "m3", "points": 5, "expires_at": past},
            "[1, 2]",
            {"external_id": "m3", "points": "7"},
        )
        report = await run_import(program, "balances", body)
        assert counts(report) == (2, 0, 0, 6)
        assert error_codes(report) == [
            (3, "member_not_found"),
            (4, "duplicate_key"),
            (5, "validation_error"),
            (6, "already_expired"),
            (7, "malformed_json"),
            (8, "validation_error"),
        ]
        m1 = await program.balance("m1")
        assert m1["available"] == 500
        assert m1["expiring"] == [{"points": 500, "expires_at": expires}]
        assert (await program.balance("m2"))["available"] == 120
        entries = (await program.get("/v1/members/m1/points/transactions")).json()["data"]
        assert [(e["kind"], e["points"]) for e in entries] == [("import", 500)]

    async def test_same_balance_again_is_unchanged_and_another_is_refused(
        self, program: Program
    ) -> None:
        await program.member("m1", points=30)
        first = await run_import(program, "balances", jsonl({"external_id": "m1", "points": 70}))
        again = await run_import(program, "balances", jsonl({"external_id": "m1", "points": 70}))
        other = await run_import(program, "balances", jsonl({"external_id": "m1", "points": 99}))
        assert counts(first) == (1, 0, 0, 0)
        assert counts(again) == (0, 0, 1, 0)
        assert counts(other) == (0, 0, 0, 1)
        assert error_codes(other) == [(1, "balance_conflict")]
        assert (await program.balance("m1"))["available"] == 100

    async def test_a_member_of_another_program_is_not_found(
        self, program: Program, other_program: Program
    ) -> None:
        await other_program.member("theirs")
        report = await run_import(
            program, "balances", jsonl({"external_id": "theirs", "points": 5})
        )
        assert error_codes(report) == [(1, "member_not_found")]
        assert (await other_program.balance("theirs"))["available"] == 0
