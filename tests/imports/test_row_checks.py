"""A batch's foreign keys are checked once per batch when the database role may turn the
per-row checks off, and per row otherwise: both give the same outcomes and the same rows."""

from __future__ import annotations

from typing import Any

import pytest

from app.services.imports import row_checks
from tests.conftest import Program
from tests.imports.support import counts, error_codes, jsonl, run_import


def _files() -> tuple[bytes, bytes]:
    members = jsonl(
        {"external_id": "m1", "name": "Ann"},
        {"external_id": "m2", "email": "b@example.com"},
        {"external_id": "m1", "name": "Again"},
    )
    orders = jsonl(
        *(
            {
                "order_id": f"o{n}",
                "member_id": f"m{1 + n % 2}",
                "amount": 1000 * (n + 1),
                "currency": "CNY",
                "occurred_at": "2025-06-01T10:00:00+08:00",
                "earn_points": n % 2 == 0,
            }
            for n in range(6)
        ),
        {"order_id": "o9", "member_id": "ghost", "amount": 5, "currency": "CNY"},
    )
    return members, orders


async def _import_both(program: Program) -> list[Any]:
    members, orders = _files()
    first = await run_import(program, "members", members)
    second = await run_import(program, "orders", orders)
    balances = [(await program.balance(m))["available"] for m in ("m1", "m2")]
    return [
        counts(first),
        error_codes(first),
        counts(second),
        error_codes(second),
        balances,
    ]


@pytest.mark.parametrize("per_row", [False, True])
async def test_same_outcome_with_the_checks_per_batch_or_per_row(
    program: Program, monkeypatch: pytest.MonkeyPatch, per_row: bool
) -> None:
    if per_row:
        monkeypatch.setattr(row_checks, "_allowed", False)
    else:
        monkeypatch.setattr(row_checks, "_allowed", True)

    outcome = await _import_both(program)

    assert outcome[:4] == [
        (2, 0, 0, 1),
        [(3, "duplicate_key")],
        (6, 0, 0, 1),
        [(7, "member_not_found")],
    ]
    # 1 point per yuan (100 fen) on the orders that asked for points: o0, o2, o4 (all m1).
    assert outcome[4] == [10 + 30 + 50, 0]


async def test_an_imported_order_sent_again_by_a_checkout_is_the_same_order(
    program: Program,
) -> None:
    await program.member("m1")
    line = {
        "order_id": "A-1",
        "member_id": "m1",
        "amount": 25900,
        "currency": "CNY",
        "items": [{"sku": "TEA-01", "category": "tea", "quantity": 2, "unit_price": 12950}],
        "occurred_at": "2025-06-01T10:00:00+08:00",
        "earn_points": True,
    }
    await run_import(program, "orders", jsonl(line))
    again = {name: value for name, value in line.items() if name != "earn_points"}

    response = await program.post("/v1/orders", json=again)

    assert response.status_code in (200, 201), response.text
    assert response.json()["points_earned"] == 259
    assert (await program.balance("m1"))["available"] == 259
