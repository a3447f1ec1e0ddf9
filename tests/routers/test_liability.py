"""The points liability roll-forward, against a computation of the test's own from the raw
ledger rows."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from app import db
from app.clock import clock
from app.worker import run_once
from tests.conftest import Program

CATEGORY = {
    "earn": "earned",
    "order": "earned",
    "bonus": "earned",
    "referral": "earned",
    "import": "earned",
    "redeem": "redeemed",
    "restore": "redeemed",
    "expire": "expired",
    "adjust": "adjusted",
    "refund": "adjusted",
}
MONTHS = [datetime(2026, month, 1, tzinfo=UTC) for month in range(1, 6)]


async def ledger_rows(program_id: int) -> list[Any]:
    async with db.read_only() as conn:
        return list(
            await conn.execute(
                """
SELECT e.kind, e.points, CASE WHEN e.status = 'available' THEN e.created_at
                              ELSE r.released_at END AS available_from
  FROM point_entries AS e LEFT JOIN point_releases AS r ON r.entry_id = e.id
 WHERE e.program_id = :program_id
""",
                {"program_id": program_id},
            )
        )


def expected_rows(entries: list[Any]) -> list[dict[str, int]]:
    """Per month: flows by category (redeemed and expired as positive numbers) and the
    closing balance as the plain sum of every entry available before the month's end."""
    rows = []
    for start, end in zip(MONTHS, [*MONTHS[1:], datetime(2026, 6, 1, tzinfo=UTC)], strict=True):
        flows: dict[str, int] = defaultdict(int)
        for entry in entries:
            if entry.available_from is not None and start <= entry.available_from < end:
                sign = -1 if CATEGORY[entry.kind] in ("redeemed", "expired") else 1
                flows[CATEGORY[entry.kind]] += sign * entry.points
        closing = sum(
            e.points for e in entries if e.available_from is not None and e.available_from < end
        )
        rows.append(
            {
                **{k: flows[k] for k in ("earned", "redeemed", "expired", "adjusted")},
                "closing": closing,
            }
        )
    return rows


async def busy_months(program: Program) -> None:
    await program.patch("/v1/program", json={"points_expiry_days": 40, "point_value_minor": "2"})
    clock.freeze(datetime(2026, 1, 10, 12, tzinfo=UTC))
    await program.member("a", points=1000)
    await program.member("b", points=300)
    order = {"order_id": "o1", "member_id": "a", "amount": 50000, "currency": "CNY"}
    assert (await program.post("/v1/orders", json=order)).status_code == 201
    clock.freeze(datetime(2026, 2, 5, 12, tzinfo=UTC))
    redeem = await program.post("/v1/members/a/points/redeem", json={"points": 300})
    assert redeem.status_code == 201, redeem.text
    adjust = await program.post(
        "/v1/members/b/points/adjust", json={"points": -50, "reason": "correction"}
    )
    assert adjust.status_code == 201, adjust.text
    refund = await program.post("/v1/orders/o1/refunds", json={"refund_id": "r1", "amount": 10000})
    assert refund.status_code == 201, refund.text
    clock.freeze(datetime(2026, 3, 15, 12, tzinfo=UTC))
    await run_once(clock.now())  # the January lots expire
    await program.post("/v1/members/b/points/earn", json={"points": 200, "reason": "bonus"})
    clock.freeze(datetime(2026, 4, 20, 12, tzinfo=UTC))
    await program.post("/v1/members/b/points/adjust", json={"points": 25, "reason": "goodwill"})
    clock.freeze(datetime(2026, 5, 31, 12, tzinfo=UTC))
    await run_once(clock.now())


class TestLiabilityRollForward:
    async def test_rows_match_the_ledger(self, program: Program) -> None:
        await busy_months(program)
        response = await program.get(
            "/v1/insights/liability",
            params={"from": "2026-01-01T00:00:00+00:00", "to": "2026-06-01T00:00:00+00:00"},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        rows = body["rows"]
        assert [r["period_start"] for r in rows] == [m.isoformat() for m in MONTHS]
        expected = expected_rows(await ledger_rows(program.id))
        previous_closing = 0
        for row, want in zip(rows, expected, strict=True):
            assert row["opening"] == previous_closing
            assert row["closing"] == (
                row["opening"] + row["earned"] - row["redeemed"] - row["expired"] + row["adjusted"]
            )
            assert {k: row[k] for k in want} == want
            assert row["closing_value"] == row["closing"] * 2
            previous_closing = row["closing"]
        # January's lots expire in March, March's in May.
        assert [r["expired"] > 0 for r in rows] == [False, False, True, False, True]
        balances = [await program.balance(m) for m in ("a", "b")]
        assert rows[-1]["closing"] == sum(b["available"] + b["held"] for b in balances)
        # Breakage: expired / (expired + redeemed) over the history.
        expired = sum(r["expired"] for r in rows)
        assert body["breakage_basis"]["expired_points"] == expired
        assert body["breakage_basis"]["redeemed_points"] == 300
        assert body["breakage_rate"] == str(round(expired / (expired + 300), 4)).rstrip("0")

    async def test_opening_carries_history_before_the_range(self, program: Program) -> None:
        await busy_months(program)
        response = await program.get(
            "/v1/insights/liability",
            params={"from": "2026-03-01T00:00:00+00:00", "to": "2026-05-01T00:00:00+00:00"},
        )
        rows = response.json()["rows"]
        expected = expected_rows(await ledger_rows(program.id))
        assert rows[0]["opening"] == expected[1]["closing"]
        assert [r["closing"] for r in rows] == [expected[2]["closing"], expected[3]["closing"]]

    async def test_weeks(self, program: Program) -> None:
        await busy_months(program)
        response = await program.get(
            "/v1/insights/liability",
            params={
                "from": "2026-01-05T00:00:00+00:00",
                "to": "2026-02-02T00:00:00+00:00",
                "interval": "week",
            },
        )
        rows = response.json()["rows"]
        assert len(rows) == 4
        assert rows[0]["earned"] == 1000 + 300 + 500 and rows[0]["opening"] == 0

    async def test_pending_points_are_apart(self, program: Program) -> None:
        await program.patch("/v1/program", json={"pending_days": 30})
        clock.freeze(datetime(2026, 1, 10, tzinfo=UTC))
        await program.member("a")
        order = {"order_id": "o1", "member_id": "a", "amount": 10000, "currency": "CNY"}
        await program.post("/v1/orders", json=order)
        clock.freeze(datetime(2026, 2, 15, tzinfo=UTC))
        await run_once(clock.now())  # released now: the points count as earned in February
        response = await program.get(
            "/v1/insights/liability",
            params={"from": "2026-01-01T00:00:00+00:00", "to": "2026-03-01T00:00:00+00:00"},
        )
        rows = response.json()["rows"]
        assert [(r["pending"], r["earned"], r["closing"]) for r in rows] == [
            (100, 0, 0),
            (0, 100, 100),
        ]


class TestLiabilityErrors:
    async def test_from_after_to(self, program: Program) -> None:
        response = await program.get(
            "/v1/insights/liability",
            params={"from": "2026-03-01T00:00:00+00:00", "to": "2026-01-01T00:00:00+00:00"},
        )
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"

    async def test_unknown_interval(self, program: Program) -> None:
        response = await program.get("/v1/insights/liability", params={"interval": "day"})
        assert response.status_code == 422

    async def test_needs_admin(self, program: Program) -> None:
        key = await program.key_with("points:read")
        response = await program.get("/v1/insights/liability", key=key)
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"
