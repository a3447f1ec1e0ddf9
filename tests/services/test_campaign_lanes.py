"""Campaign runs in lanes: every member of every lane once, runs that end exactly on a batch
boundary, worker loops and on-demand calls sharing a run's lanes, and a batch that fails
half-way leaving nobody half-targeted."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app import db
from app.clock import clock
from app.services.campaigns import run_lanes, running
from app.services.members.member_batches import Lane
from app.worker import run_in_lanes_until_done, run_job_until_done
from tests.campaign_support import add_members_in_bulk, create, targetings
from tests.conftest import Program
from tests.insights_support import rows

NOW = datetime(2026, 6, 15, 12, tzinfo=UTC)


async def lane_rows(program_id: int, campaign_id: int) -> list[Any]:
    return await rows(
        "SELECT lane, lanes, run_number, cursor FROM campaign_run_lanes"
        " WHERE program_id = :p AND campaign_id = :c ORDER BY lane",
        p=program_id,
        c=campaign_id,
    )


async def run_state(program_id: int, campaign_id: int) -> Any:
    found = await rows(
        "SELECT run_number, run_cursor FROM campaigns WHERE program_id = :p AND id = :c",
        p=program_id,
        c=campaign_id,
    )
    return found[0]


async def bonus_entries(program_id: int, campaign_id: int) -> list[Any]:
    return await rows(
        "SELECT member_id FROM point_entries WHERE program_id = :p AND campaign_id = :c",
        p=program_id,
        c=campaign_id,
    )


class TestLanes:
    @pytest.mark.parametrize(("members", "lanes", "batch"), [(60, 3, 7), (1, 4, 5)])
    async def test_every_member_of_every_lane_once(
        self, program: Program, members: int, lanes: int, batch: int
    ) -> None:
        clock.freeze(NOW)
        await add_members_in_bulk(program.id, members)
        campaign = await create(program, action={"bonus_points": 4}, holdout_percent=20)

        result = await running.run_campaign_now(
            program.id, campaign["id"], batch_size=batch, lanes=lanes
        )

        found = await targetings(program.id, campaign["id"])
        assert Counter(row.member_id for row in found) == Counter(
            {row.member_id: 1 for row in found}
        )
        assert len(found) == members == result.targeted
        treated = [row.member_id for row in found if row.group == "treated"]
        assert result.treated == len(treated)
        assert sorted(row.member_id for row in await bonus_entries(program.id, campaign["id"])) == (
            sorted(treated)
        )
        assert [
            (row.lane, row.lanes, row.cursor) for row in await lane_rows(program.id, campaign["id"])
        ] == [(lane, lanes, None) for lane in range(lanes)]
        state = await run_state(program.id, campaign["id"])
        assert (state.run_number, state.run_cursor) == (1, None)

    async def test_a_lane_ending_on_a_batch_boundary(self, program: Program) -> None:
        clock.freeze(NOW)
        # 2 lanes of 10 members each (ids alternate between lanes), batches of 5: each lane's
        # second batch is full, and only a third, empty batch can tell the lane is done.
        await add_members_in_bulk(program.id, 20)
        campaign = await create(program, action={"bonus_points": 1})
        ids = [
            row.id
            for row in await rows("SELECT id FROM members WHERE program_id = :p", p=program.id)
        ]
        per_lane = Counter(member_id % 2 for member_id in ids)
        assert per_lane == {0: 10, 1: 10}

        result = await running.run_campaign_now(program.id, campaign["id"], batch_size=5, lanes=2)

        assert result.targeted == 20
        assert len(await targetings(program.id, campaign["id"])) == 20
        assert (await run_state(program.id, campaign["id"])).run_cursor is None

    async def test_the_next_run_reuses_the_lane_rows_with_another_count(
        self, program: Program
    ) -> None:
        clock.freeze(NOW)
        await add_members_in_bulk(program.id, 30)
        campaign = await create(program, cooldown_days=0)
        await running.run_campaign_now(program.id, campaign["id"], batch_size=4, lanes=3)
        clock.advance(timedelta(seconds=1))
        second = await running.run_campaign_now(program.id, campaign["id"], batch_size=4, lanes=2)

        assert second.targeted == 30
        assert [
            (row.lane, row.lanes, row.run_number)
            for row in await lane_rows(program.id, campaign["id"])
        ] == [(0, 2, 2), (1, 2, 2)]
        found = await targetings(program.id, campaign["id"])
        assert Counter(row.run_number for row in found) == {1: 30, 2: 30}


class TestWorkerLanes:
    async def test_worker_loops_share_the_lanes_of_a_run(self, program: Program) -> None:
        clock.freeze(NOW)
        await add_members_in_bulk(program.id, 300)
        campaign = await create(program, action={"bonus_points": 2}, holdout_percent=10)
        # The run starts in 3 lanes; two worker loops (lanes 0 and 1 of 2) walk them.
        async with db.transaction() as conn:
            locked = (
                await conn.execute(
                    run_lanes.LOCK_CAMPAIGN, {"program_id": program.id, "id": campaign["id"]}
                )
            ).one()
            await run_lanes.start_run(conn, locked, 3, NOW)

        async def job(now: datetime, *, lane: Lane) -> int:
            return await running.run_due_campaigns(now, batch_size=16, lane=lane)

        handled = await run_in_lanes_until_done("run_campaigns", job, NOW, lanes=2)

        found = await targetings(program.id, campaign["id"])
        assert len(found) == 300
        assert set(Counter(row.member_id for row in found).values()) == {1}
        assert handled >= 300
        assert (await run_state(program.id, campaign["id"])).run_cursor is None
        treated = sum(1 for row in found if row.group == "treated")
        assert len(await bonus_entries(program.id, campaign["id"])) == treated

    async def test_a_loop_takes_other_lanes_when_its_own_are_done(self, program: Program) -> None:
        clock.freeze(NOW)
        await add_members_in_bulk(program.id, 50)
        campaign = await create(program)

        # Only the loop of worker lane 0 of 2 runs: it starts the run (in 2 lanes, the
        # default) and, its own lane done, walks lane 1 too.
        async def batch(now: datetime) -> int:
            return await running.run_due_campaigns(now, batch_size=8, lane=Lane(0, 2))

        await run_job_until_done("run_campaigns", batch, NOW)

        assert len(await targetings(program.id, campaign["id"])) == 50
        assert [row.cursor for row in await lane_rows(program.id, campaign["id"])] == [None, None]
        assert (await run_state(program.id, campaign["id"])).run_cursor is None


class TestFailureMidBatch:
    async def test_a_failed_batch_leaves_nobody_half_targeted(
        self, program: Program, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        clock.freeze(NOW)
        await add_members_in_bulk(program.id, 40)
        campaign = await create(program, action={"bonus_points": 9}, holdout_percent=25)
        batches = 0
        advance = run_lanes.advance

        async def fail_in_the_third_batch(*args: Any, **kwargs: Any) -> None:
            # After the batch's targetings, entries and events are written, before its
            # transaction commits.
            nonlocal batches
            batches += 1
            if batches == 3:
                raise RuntimeError("worker lost")
            await advance(*args, **kwargs)

        monkeypatch.setattr(run_lanes, "advance", fail_in_the_third_batch)
        with pytest.raises(RuntimeError, match="worker lost"):
            await running.run_campaign_now(program.id, campaign["id"], batch_size=10, lanes=1)

        found = await targetings(program.id, campaign["id"])
        assert len(found) == 20
        done = {row.member_id for row in found}
        # Nothing of the failed batch stayed: no entry, no event for anyone not recorded.
        entries = {row.member_id for row in await bonus_entries(program.id, campaign["id"])}
        assert entries == {row.member_id for row in found if row.group == "treated"}
        events = await rows(
            "SELECT member_id FROM events WHERE program_id = :p AND type = 'campaign.targeted'",
            p=program.id,
        )
        assert {row.member_id for row in events} == done and len(events) == 20

        monkeypatch.setattr(run_lanes, "advance", advance)
        rest = await running.run_campaign_now(program.id, campaign["id"], batch_size=10, lanes=1)

        assert rest.targeted == 20
        found = await targetings(program.id, campaign["id"])
        assert len(found) == 40
        assert set(Counter(row.member_id for row in found).values()) == {1}
        assert {row.run_number for row in found} == {1}
        treated = {row.member_id for row in found if row.group == "treated"}
        entries = {row.member_id for row in await bonus_entries(program.id, campaign["id"])}
        assert entries == treated
        balances = await rows(
            "SELECT member_id, available FROM accounts WHERE program_id = :p", p=program.id
        )
        assert {row.member_id: row.available for row in balances} == {
            row.member_id: 9 if row.member_id in treated else 0 for row in balances
        }
