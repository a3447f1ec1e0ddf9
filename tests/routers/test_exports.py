from __future__ import annotations

import csv
import io

import orjson

from tests.conftest import Program
from tests.imports.support import run_import


def csv_rows(body: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body)))


def jsonl_rows(body: bytes) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in body.splitlines() if line]


class TestExportMembers:
    async def test_round_trip_into_a_new_program(
        self, program: Program, other_program: Program
    ) -> None:
        await program.member("a", name="Ann", email="ann@example.com", birthday="1990-05-17")
        await program.member("b", metadata={"store": "Shanghai", "tags": ["vip"]})
        await program.member("c", phone="+86 138 0013 8000")
        first = await program.get("/v1/exports/members?format=jsonl")
        assert first.status_code == 200
        assert first.headers["content-type"] == "application/x-ndjson"
        report = await run_import(other_program, "members", first.content)
        assert (report["created"], report["rejected"]) == (3, 0)
        again = await other_program.get("/v1/exports/members?format=jsonl")
        assert jsonl_rows(again.content) == jsonl_rows(first.content)
        as_csv = [(await p.get("/v1/exports/members")).text for p in (program, other_program)]
        assert as_csv[0] == as_csv[1]
        assert csv_rows(as_csv[0])[0] == [
            "external_id",
            "name",
            "email",
            "phone",
            "birthday",
            "metadata",
            "created_at",
        ]

    async def test_formula_cells_are_quoted_as_text(self, program: Program) -> None:
        for index, name in enumerate(("=1+2", "+SUM(A1)", "-3", "@cmd", "plain")):
            await program.member(f"m{index}", name=name)
        body = (await program.get("/v1/exports/members")).text
        lines = body.splitlines()
        assert lines[1].startswith('"m0","\'=1+2",')
        names = [row[1] for row in csv_rows(body)[1:]]
        assert names == ["'=1+2", "'+SUM(A1)", "'-3", "'@cmd", "plain"]
        # JSON Lines is not for spreadsheets: the names stay exactly as stored.
        jsonl = jsonl_rows((await program.get("/v1/exports/members?format=jsonl")).content)
        assert [row["name"] for row in jsonl] == ["=1+2", "+SUM(A1)", "-3", "@cmd", "plain"]

    async def test_needs_admin(self, program: Program) -> None:
        key = await program.key_with("members:read")
        response = await program.get("/v1/exports/members", key=key)
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"

    async def test_unknown_format(self, program: Program) -> None:
        response = await program.get("/v1/exports/members?format=xlsx")
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"


class TestExportLedger:
    async def test_entries_in_the_period_with_numbers_as_numbers(self, program: Program) -> None:
        await program.member("a", points=100)
        await program.post("/v1/members/a/points/redeem", json={"points": 30})
        body = (await program.get("/v1/exports/ledger")).text
        rows = csv_rows(body)
        assert [(r[1], r[2], r[3]) for r in rows[1:]] == [
            ("a", "earn", "100"),
            ("a", "redeem", "-30"),
        ]
        # A negative point count is a number, not a quoted formula.
        assert ",-30," in body.splitlines()[2]
        empty = await program.get(
            "/v1/exports/ledger?from=2000-01-01T00:00:00Z&to=2000-02-01T00:00:00Z"
        )
        assert csv_rows(empty.text)[1:] == []

    async def test_from_after_to(self, program: Program) -> None:
        response = await program.get(
            "/v1/exports/ledger?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z"
        )
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"

    async def test_only_this_program(self, program: Program, other_program: Program) -> None:
        await other_program.member("theirs", points=5)
        rows = csv_rows((await program.get("/v1/exports/ledger")).text)
        assert rows[1:] == []


class TestExportOrders:
    async def test_jsonl_rows(self, program: Program) -> None:
        await program.member("a")
        order = {"order_id": "o1", "member_id": "a", "amount": 12345, "currency": "CNY"}
        assert (await program.post("/v1/orders", json=order)).status_code == 201
        rows = jsonl_rows((await program.get("/v1/exports/orders?format=jsonl")).content)
        assert [(r["order_id"], r["member_id"], r["amount"]) for r in rows] == [("o1", "a", 12345)]
