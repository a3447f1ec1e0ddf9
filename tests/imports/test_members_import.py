from __future__ import annotations

from tests.conftest import Program
from tests.imports.support import counts, error_codes, jsonl, run_import


class TestMembersImport:
    async def test_counts_on_a_hand_built_file(self, program: Program) -> None:
        await program.member("old-1", name="Old Name", email="old@example.com")
        await program.member("old-2", name="Same")
        body = jsonl(
            {"external_id": "new-1", "name": "Li Wei", "birthday": "1990-05-17"},
            {"external_id": "old-1", "name": "New Name"},
            {"external_id": "old-2", "name": "Same"},
            b"{not json",
            {"external_id": "new-2", "shoe_size": 42},
            {"external_id": "new-1", "name": "Again"},
            {"external_id": "new-3", "created_at": "2020-01-02T03:04:05+00:00"},
            {"external_id": "bad id!"},
        )
        report = await run_import(program, "members", body)
        assert counts(report) == (2, 1, 1, 4)
        assert report["rows_total"] == 8 and report["rows_done"] == 8
        assert error_codes(report) == [
            (4, "malformed_json"),
            (5, "unknown_field"),
            (6, "duplicate_key"),
            (8, "validation_error"),
        ]
        updated = (await program.get("/v1/members/old-1")).json()
        # A field the line left out keeps its stored value (PUT's meaning).
        assert (updated["name"], updated["email"]) == ("New Name", "old@example.com")
        created = (await program.get("/v1/members/new-3")).json()
        assert created["created_at"] == "2020-01-02T03:04:05+00:00"
        assert (await program.get("/v1/members/new-1")).json()["name"] == "Li Wei"

    async def test_same_file_twice_is_unchanged(self, program: Program) -> None:
        body = jsonl(
            {"external_id": "a", "name": "A", "metadata": {"store": "Shanghai"}},
            {"external_id": "b", "email": "b@example.com"},
        )
        first = await run_import(program, "members", body)
        second = await run_import(program, "members", body)
        assert counts(first) == (2, 0, 0, 0)
        assert counts(second) == (0, 0, 2, 0)
