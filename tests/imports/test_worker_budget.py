"""The worker gives a long import a share of each cycle, not the whole worker."""

from __future__ import annotations

import asyncio
from datetime import datetime

from app.worker import Budgeted, run_within_budget


async def test_a_job_with_work_left_stops_at_its_budget_and_says_so() -> None:
    calls: list[datetime] = []

    async def endless(now: datetime) -> int:
        calls.append(now)
        await asyncio.sleep(0.01)
        return 1

    more = await run_within_budget("endless", Budgeted(endless, seconds=0.1))

    assert more is True
    assert 2 <= len(calls) < 100


async def test_a_job_that_runs_out_of_work_stops_and_says_it_is_done() -> None:
    remaining = [3]

    async def three_batches(now: datetime) -> int:
        if remaining[0] == 0:
            return 0
        remaining[0] -= 1
        return 1

    more = await run_within_budget("three", Budgeted(three_batches, seconds=60))

    assert more is False
    assert remaining == [0]
