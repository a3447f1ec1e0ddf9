"""An orders batch is applied in SQL from the staged lines and their request hashes taken at
upload; Python works out only what the lines that earn points earn, and hashes any line
staged without a hash (before migration 0018). Both ways give the same outcomes."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from app import db
from app.clock import clock
from app.config import get_settings
from app.schemas.orders import OrderCreate
from app.services.checkout.orders import order_fingerprint
from app.services.imports import runner
from tests.conftest import Program
from tests.imports.support import (
    counts,
    error_codes,
    jsonl,
    order_line,
    report,
    run_worker,
    upload,
)


def order(order_id: str, **fields: Any) -> dict[str, Any]:
    # A time with an offset other than UTC, to be taken apart in SQL as in Python.
    return order_line(order_id, occurred_at="2025-06-01T10:00:00+08:00", **fields)


# Every outcome an orders line can have, earning and not, with items and without a time.
FILE = jsonl(
    order("o1"),
    order("o2", earn_points=True),
    order("o3", member="ghost"),
    order("o1", amount=5),
    {**order("o4"), "currency": "USD"},
    order("o5", member="m2", items=[{"sku": "TEA", "quantity": 2, "unit_price": 5000}]),
    {k: v for k, v in order("o6", member="m2", earn_points=True).items() if k != "occurred_at"},
    order("o7", member="m2", amount=0),
    order("o8", earn_points=True, member="ghost"),
)
CONFLICTING = jsonl(order("o1"), order("o5", member="m2", amount=1), order("o9", member="m2"))

_STORED = """
SELECT o.order_id, m.external_id, o.amount, o.currency, o.items, o.occurred_at,
       o.points_earned, o.breakdown, o.status, o.request_hash
  FROM orders AS o JOIN members AS m ON m.program_id = o.program_id AND m.id = o.member_id
 WHERE o.program_id = :program_id
 ORDER BY o.order_id
"""


async def stored_orders(program_id: int) -> list[tuple[Any, ...]]:
    async with db.read_only() as conn:
        rows = await conn.execute(_STORED, {"program_id": program_id})
        return [tuple(row) for row in rows]


async def forget_staged_hashes(program_id: int) -> int:
    """As if the file had been staged before the hash column existed."""
    async with db.transaction() as conn:
        result = await conn.execute(
            "UPDATE import_rows SET request_hash = NULL "
            "WHERE program_id = :program_id AND request_hash IS NOT NULL RETURNING line",
            {"program_id": program_id},
        )
        return len(result.all())


async def import_file(program: Program, body: bytes, *, hashed_at_upload: bool) -> dict[str, Any]:
    queued = await upload(program, "orders", body)
    if not hashed_at_upload:
        assert await forget_staged_hashes(program.id) > 0
    await run_worker()
    done = await report(program, queued["id"])
    assert done["status"] == "done", done
    return done


def outcome(done: dict[str, Any]) -> tuple[Any, ...]:
    return (*counts(done), error_codes(done))


class TestOrdersAppliedInSql:
    @pytest.mark.parametrize("batch_size", [2, 5000])
    async def test_same_outcomes_as_hashing_every_line_in_python(
        self,
        program: Program,
        other_program: Program,
        monkeypatch: pytest.MonkeyPatch,
        batch_size: int,
    ) -> None:
        monkeypatch.setattr(get_settings(), "import_batch_size", batch_size)
        clock.freeze(clock.now())  # o6 gives no time: it happened "now", the same in both
        sql, python = program, other_program
        for target in (sql, python):
            await target.member("m1")
            await target.member("m2")

        first = [
            await import_file(sql, FILE, hashed_at_upload=True),
            await import_file(python, FILE, hashed_at_upload=False),
        ]
        again = [
            await import_file(sql, FILE, hashed_at_upload=True),
            await import_file(python, FILE, hashed_at_upload=False),
        ]
        conflicting = [
            await import_file(sql, CONFLICTING, hashed_at_upload=True),
            await import_file(python, CONFLICTING, hashed_at_upload=False),
        ]

        assert (
            outcome(first[0])
            == outcome(first[1])
            == (
                5,
                0,
                0,
                4,
                [
                    (3, "member_not_found"),
                    (4, "duplicate_key"),
                    (5, "currency_mismatch"),
                    (9, "member_not_found"),
                ],
            )
        )
        assert outcome(again[0]) == outcome(again[1]) == (0, 0, 5, 4, outcome(first[0])[4])
        assert (
            outcome(conflicting[0])
            == outcome(conflicting[1])
            == (
                1,
                0,
                1,
                1,
                [(2, "order_conflict")],
            )
        )
        assert await stored_orders(sql.id) == await stored_orders(python.id)
        for target in (sql, python):
            # o2 earned 100 points for m1, o6 earned 100 for m2; the rest earned nothing.
            assert (await target.balance("m1"))["available"] == 100
            assert (await target.balance("m2"))["available"] == 100

    async def test_the_staged_hash_is_the_checkouts_request_hash(self, program: Program) -> None:
        await program.member("m1")
        line = order(
            "o1", items=[{"sku": "TEA", "category": "tea", "quantity": 1, "unit_price": 10000}]
        )
        await upload(program, "orders", jsonl(line))
        async with db.read_only() as conn:
            staged = (
                await conn.execute(
                    "SELECT request_hash FROM import_rows WHERE program_id = :program_id",
                    {"program_id": program.id},
                )
            ).scalar_one()
        assert staged == order_fingerprint(OrderCreate.model_validate(line))
        await run_worker()
        assert [row[-1] for row in await stored_orders(program.id)] == [staged]


class TestStatisticsRefresh:
    def test_each_first_batch_then_at_each_quarter_of_growth(self) -> None:
        size = 5000
        refreshed = [
            after
            for after in range(0, 10_000_000, size)
            if runner._refresh_statistics(after, after + size, size)
        ]
        assert refreshed[:10] == [after * size for after in range(10)]
        later = refreshed[10:]
        assert later[0] == 60000
        # Each refresh after the first ones comes once the lines have grown by about a
        # quarter (one batch of rounding), never twice within that.
        for before, after in itertools.pairwise(later):
            assert after + size >= before * 1.25 >= after - size
        assert len(refreshed) < 40

    def test_a_batch_that_skips_a_step_still_refreshes(self) -> None:
        # Rejected lines make a batch's line range longer than the batch size.
        assert runner._refresh_statistics(55_000, 200_000, 5000)
