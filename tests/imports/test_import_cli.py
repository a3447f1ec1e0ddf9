"""`patron import`, run as a process against the test database."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.conftest import Program
from tests.imports.support import jsonl
from tests.test_cli import patron


class TestImportCommand:
    async def test_dry_run_then_real_run_report_alike(
        self, program: Program, database_url: str, tmp_path: Path
    ) -> None:
        await program.member("old", name="Old")
        file = tmp_path / "members.jsonl"
        file.write_bytes(
            jsonl({"external_id": "new", "name": "N"}, {"external_id": "old", "name": "O"}, "x")
        )
        args = ("import", "members", str(file), "--program", str(program.id))
        dry = await asyncio.to_thread(patron, database_url, *args, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert (await program.get("/v1/members/new")).status_code == 404
        real = await asyncio.to_thread(patron, database_url, *args)
        assert real.returncode == 0, real.stderr
        dry_report, real_report = json.loads(dry.stdout), json.loads(real.stdout)
        for report in (dry_report, real_report):
            assert (report["created"], report["updated"], report["rejected"]) == (1, 1, 1)
            assert report["errors"] == [
                {"line": 3, "code": "malformed_json", "message": report["errors"][0]["message"]}
            ]
        assert (dry_report["dry_run"], real_report["dry_run"]) == (True, False)
        assert (await program.get("/v1/members/new")).json()["name"] == "N"

    async def test_unknown_program(self, database_url: str, tmp_path: Path) -> None:
        file = tmp_path / "m.jsonl"
        file.write_bytes(jsonl({"external_id": "a"}))
        result = await asyncio.to_thread(
            patron, database_url, "import", "members", str(file), "--program", "999999999"
        )
        assert result.returncode == 2
        assert "no program" in result.stderr

    async def test_missing_file(self, program: Program, database_url: str) -> None:
        result = await asyncio.to_thread(
            patron,
            database_url,
            "import",
            "members",
            "/nonexistent.jsonl",
            "--program",
            str(program.id),
        )
        assert result.returncode == 2
        assert "cannot read" in result.stderr
