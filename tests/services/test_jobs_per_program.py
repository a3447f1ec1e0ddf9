"""The worker's jobs work one program at a time: with work due in two programs, one worker run
handles both, and every statement a job runs that locks rows names the program it is about
(``program_id = $n``), so on Citus it runs on that program's shard alone. ``programs`` is a
reference table on Citus; locking its row is the per-program claim of some jobs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import TextClause

from app import db, worker
from app.clock import clock
from tests.conftest import Program
from tests.services.test_member_batch_jobs import PENDING_DAYS, place_pending_orders, queued_orders
from tests.webhook_support import deliveries, register, remove_endpoints

_LOCKS = re.compile(r"\bFOR (UPDATE|NO KEY UPDATE|SHARE|KEY SHARE)\b", re.IGNORECASE)
_ONE_PROGRAM = re.compile(r"\bprogram_id = (\$\d+|:program_id|%\(program_id\)s)")
_PROGRAMS_ROW = re.compile(r"\bFROM programs\b")


@contextmanager
def statements_run(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every SQL statement the services run inside the block, as sent to PostgreSQL."""
    seen: list[str] = []
    compile_statement = db.compiled

    def recording(statement: TextClause | str) -> tuple[str, tuple[str, ...]]:
        found = compile_statement(statement)
        seen.append(found[0])
        return found

    with monkeypatch.context() as patch:
        patch.setattr(db, "compiled", recording)
        yield seen


async def hold(program: Program, member: str) -> None:
    await program.member(member, points=50)
    response = await program.post(
        f"/v1/members/{member}/holds", json={"points": 10, "ttl_seconds": 60}
    )
    assert response.status_code == 201, response.text


class TestTwoProgramsInOneRun:
    async def test_every_job_claims_within_one_program(
        self, program: Program, other_program: Program, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        endpoints = []
        for shop in (program, other_program):
            await place_pending_orders(shop, members=3, orders_each=2)
            await hold(shop, "holder")
            # Nothing listens there: each delivery is attempted once and rescheduled.
            endpoints.append(await register(shop, "http://127.0.0.1:9/hooks"))
        try:
            clock.advance(timedelta(days=PENDING_DAYS))
            with statements_run(monkeypatch) as statements:
                handled = await worker.run_once(clock.now())
            # At least these two programs' work (earlier tests may have left some elsewhere).
            assert handled["release_pending_points"] >= 12
            assert handled["expire_holds"] >= 2
            for shop in (program, other_program):
                assert await queued_orders(shop) == []
                balance = await shop.balance("holder")
                assert (balance["held"], balance["available"]) == (0, 50)
            for endpoint in endpoints:
                rows = await deliveries(endpoint["id"])
                assert rows and all(row.attempts == 1 for row in rows)
            locking = [s for s in statements if _LOCKS.search(s)]
            assert any("SKIP LOCKED" in s for s in locking)
            spread = [s for s in locking if not (_ONE_PROGRAM.search(s) or _PROGRAMS_ROW.search(s))]
            assert spread == []
        finally:
            for shop in (program, other_program):
                await remove_endpoints(shop.id)
