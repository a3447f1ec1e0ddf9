"""Failures in the middle of a unit of work leave nothing behind."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from app import db
from app.services.ledger import postings as ledger
from tests.conftest import Program


class TestDebitFailsHalfway:
    async def test_rolls_back_the_account_update(
        self, program: Program, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        await program.member("m1", points=100)
        # The lock-and-deduct statement runs; the statement that writes the entry then fails.
        broken = text("SELECT 1 / 0")
        monkeypatch.setitem(ledger._DEBIT, False, broken)
        response = await program.post("/v1/members/m1/points/redeem", json={"points": 40})
        assert response.status_code == 500
        assert response.json()["code"] == "internal_error"
        assert "division" not in response.text
        assert (await program.balance("m1"))["available"] == 100


class TestLedgerIsAppendOnly:
    async def test_database_refuses_update_and_delete(self, program: Program) -> None:
        await program.member("m1", points=10)
        for statement in (
            "UPDATE point_entries SET points = 1000 WHERE program_id = :p",
            "DELETE FROM point_entries WHERE program_id = :p",
        ):
            with pytest.raises(db.DatabaseError, match="append-only"):
                async with db.transaction() as conn:
                    await conn.execute(text(statement), {"p": program.id})
        assert (await program.balance("m1"))["available"] == 10


class TestAuditFindsStrayRows:
    async def test_row_pointing_at_another_programs_member(
        self, program: Program, other_program: Program
    ) -> None:
        from app.services.ledger.audit import audit

        await program.member("m1", points=5)
        stray = text(
            "INSERT INTO events (program_id, type, member_id, data, created_at) "
            "SELECT :other, 'points.earned', m.id, '{}'::jsonb, now() FROM members AS m "
            "WHERE m.program_id = :mine RETURNING id"
        )
        async with db.transaction() as conn:
            event_id = (
                await conn.execute(stray, {"other": other_program.id, "mine": program.id})
            ).scalar_one()
        try:
            found = await audit(other_program.id)
            assert [(v.invariant, v.detail) for v in found] == [
                (5, "1 events row(s) point at no member of this program")
            ]
        finally:
            async with db.transaction() as conn:
                await conn.execute(text("DELETE FROM events WHERE id = :id"), {"id": event_id})
