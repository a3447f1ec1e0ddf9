"""A worker killed (SIGKILL) in the middle of an import: the next worker resumes it, and the
result is the same as one clean run of the same file."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

from app import db
from tests.conftest import Program, assert_ledger_consistent, service_process_env
from tests.imports.support import jsonl, report, run_import, run_worker, upload

MEMBERS = 600

# The worker's import job alone, in a process of its own, until the import is done.
_WORKER = """
import asyncio
from app import db
from app.clock import clock
from app.services.imports import runner

async def main():
    db.configure(db.make_engine(db.resolve_database_url()))
    while True:
        if not await runner.run_imports(clock.now()):
            await asyncio.sleep(0.05)

asyncio.run(main())
"""


async def ledger_state(program_id: int) -> list[Any]:
    async with db.read_only() as conn:
        return [
            tuple(row)
            for row in await conn.execute(
                """
SELECT m.external_id, a.available, a.lifetime_earned, count(e.id), count(l.id)
  FROM members AS m
  JOIN accounts AS a ON a.program_id = :program_id AND a.member_id = m.id
  LEFT JOIN point_entries AS e ON e.program_id = :program_id AND e.member_id = m.id
  LEFT JOIN point_lots AS l ON l.program_id = :program_id AND l.entry_id = e.id
 WHERE m.program_id = :program_id
 GROUP BY 1, 2, 3 ORDER BY 1
""",
                {"program_id": program_id},
            )
        ]


class TestWorkerKilledMidImport:
    async def test_resumes_without_doubling(
        self, program: Program, other_program: Program, database_url: str
    ) -> None:
        members = jsonl(*({"external_id": f"m{i}"} for i in range(MEMBERS)))
        balances = jsonl(*({"external_id": f"m{i}", "points": i + 1} for i in range(MEMBERS)))
        for target in (program, other_program):
            await run_import(target, "members", members)
        clean = await run_import(other_program, "balances", balances)

        queued = await upload(program, "balances", balances)
        env = {
            **os.environ,
            "PATRON_DATABASE_URL": database_url,
            "PATRON_IMPORT_BATCH_SIZE": "20",
            **service_process_env(),
        }
        worker = await asyncio.create_subprocess_exec(sys.executable, "-c", _WORKER, env=env)
        try:
            for _ in range(600):
                progress = await report(program, queued["id"])
                if progress["rows_done"] > 0:
                    break
                await asyncio.sleep(0.05)
            worker.send_signal(signal.SIGKILL)
        finally:
            await worker.wait()
        killed = await report(program, queued["id"])
        assert killed["status"] == "running"
        assert 0 < killed["rows_done"] < MEMBERS
        await assert_ledger_consistent(program.id)

        await run_worker()
        resumed = await report(program, queued["id"])
        keys = ("status", "rows_total", "rows_done", "created", "updated", "unchanged", "rejected")
        assert {k: resumed[k] for k in keys} == {k: clean[k] for k in keys}
        assert await ledger_state(program.id) == await ledger_state(other_program.id)
