from __future__ import annotations

from typing import Any

from app import db
from tests.conftest import Program
from tests.imports.support import BUSINESS_TABLES, jsonl, run_import


async def row_counts(program_id: int) -> dict[str, int]:
    async with db.read_only() as conn:
        return {
            table: (
                await conn.execute(
                    f"SELECT count(*) FROM {table} WHERE program_id = :program_id",
                    {"program_id": program_id},
                )
            ).scalar_one()
            for table in BUSINESS_TABLES
        }


def outcome(report: dict[str, Any]) -> dict[str, Any]:
    keys = ("rows_total", "rows_done", "created", "updated", "unchanged", "rejected", "errors")
    return {key: report[key] for key in keys}


async def dry_then_real(program: Program, kind: str, body: bytes) -> None:
    before = await row_counts(program.id)
    dry = await run_import(program, kind, body, dry_run=True)
    assert await row_counts(program.id) == before
    real = await run_import(program, kind, body)
    assert outcome(dry) == outcome(real)
    assert dry["dry_run"] is True and real["dry_run"] is False
    assert await row_counts(program.id) != before


class TestDryRun:
    async def test_members(self, program: Program) -> None:
        await program.member("old", name="Old")
        body = jsonl(
            {"external_id": "new", "name": "N"},
            {"external_id": "old", "name": "Changed"},
            {"external_id": "new"},
            "oops",
        )
        await dry_then_real(program, "members", body)

    async def test_balances(self, program: Program) -> None:
        await program.member("m1", points=10)
        await program.member("m2")
        body = jsonl(
            {"external_id": "m1", "points": 40},
            {"external_id": "m2", "points": 60},
            {"external_id": "nobody", "points": 1},
        )
        await dry_then_real(program, "balances", body)
        assert (await program.balance("m1"))["available"] == 50

    async def test_orders(self, program: Program) -> None:
        await program.member("m1")
        body = jsonl(
            {
                "order_id": "o1",
                "member_id": "m1",
                "amount": 5000,
                "currency": "CNY",
                "earn_points": True,
            },
            {"order_id": "o2", "member_id": "nobody", "amount": 1, "currency": "CNY"},
        )
        await dry_then_real(program, "orders", body)
