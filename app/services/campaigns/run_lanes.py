"""The bookkeeping of a campaign's run in lanes: starting a run, finding a lane with members
left, moving a lane's cursor on, and ending the run once every lane is done.

A run splits the program's members into ``lanes`` lanes (``member_id % lanes = lane``), each
walked in ascending member id by batches. The campaign row says whether a run is under way
(``run_cursor`` 0) or not (NULL), and which run is the latest (``run_number``); each lane's
``campaign_run_lanes`` row says how far that lane got.

Locks, always in this order: the campaign row, then a lane row, then (in the batch) the
members' account rows in ascending id. Starting and ending a run lock the campaign row
``FOR UPDATE``; a batch locks it ``FOR SHARE`` (so batches of different lanes run side by
side while nobody can start, end or change the run under them) and its lane row
``FOR UPDATE`` (so batches of one lane, from any worker or call, take turns).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text

from app.db import Connection

_CAMPAIGN = """
SELECT c.id, c.program_id, c.audience, c.bonus_points, c.reward_id, c.notify_only, c.message,
       c.holdout_percent, c.cooldown_days, c.active, c.starts_at, c.ends_at, c.run_number,
       c.run_cursor, c.last_run_at, p.timezone
  FROM campaigns AS c JOIN programs AS p ON p.id = c.program_id
"""
_RUNNABLE = """c.deleted_at IS NULL AND c.active
   AND (c.starts_at IS NULL OR c.starts_at <= :now)
   AND (c.ends_at IS NULL OR c.ends_at > :now)"""

LOCK_CAMPAIGN = text(
    _CAMPAIGN
    + " WHERE c.program_id = :program_id AND c.id = :id AND c.deleted_at IS NULL"
    + " FOR UPDATE OF c"
)
SHARE_CAMPAIGN = text(
    _CAMPAIGN
    + " WHERE c.program_id = :program_id AND c.id = :id AND c.deleted_at IS NULL"
    + " FOR SHARE OF c"
)
# The worker takes one campaign whose run is due and not under way, one program at a time.
_DUE_TO_START = text(
    _CAMPAIGN
    + f" WHERE c.program_id = :program_id AND {_RUNNABLE} AND c.run_cursor IS NULL"
    + "   AND (c.last_run_at IS NULL OR c.last_run_at <= :due_before)"
    + " ORDER BY c.id LIMIT 1 FOR UPDATE OF c SKIP LOCKED"
)
# A lane with members left in a run under way, among the lanes ``lane % :lanes = :lane``
# (the worker's own share of the lanes), skipping lanes another batch holds.
_OPEN_LANE = text(
    _CAMPAIGN.replace("SELECT c.id", "SELECT l.lane, l.lanes, l.cursor AS lane_cursor, c.id")
    + " JOIN campaign_run_lanes AS l"
    + "   ON l.program_id = c.program_id AND l.campaign_id = c.id"
    + f" WHERE c.program_id = :program_id AND {_RUNNABLE} AND c.run_cursor IS NOT NULL"
    + "   AND l.run_number = c.run_number AND l.cursor IS NOT NULL"
    + "   AND l.lane % :lanes = :lane"
    + " ORDER BY c.id, l.lane LIMIT 1"
    + " FOR UPDATE OF l SKIP LOCKED FOR SHARE OF c SKIP LOCKED"
)
_LOCK_LANE = text(
    "SELECT lane, lanes, cursor AS lane_cursor FROM campaign_run_lanes"
    " WHERE program_id = :program_id AND campaign_id = :id AND lane = :lane"
    "   AND run_number = :run_number"
    " FOR UPDATE"
)
_LANES_LEFT = text(
    "SELECT lane FROM campaign_run_lanes"
    " WHERE program_id = :program_id AND campaign_id = :id AND run_number = :run_number"
    "   AND cursor IS NOT NULL ORDER BY lane"
)
# A run under way whose lanes are all done: it only needs ending.
_DONE_RUN = text(
    _CAMPAIGN
    + " WHERE c.program_id = :program_id AND c.deleted_at IS NULL"
    + "   AND c.run_cursor IS NOT NULL"
    + "   AND NOT EXISTS (SELECT 1 FROM campaign_run_lanes AS l"
    + "                    WHERE l.program_id = c.program_id AND l.campaign_id = c.id"
    + "                      AND l.run_number = c.run_number AND l.cursor IS NOT NULL)"
    + " ORDER BY c.id LIMIT 1 FOR UPDATE OF c SKIP LOCKED"
)
# The worker's look across programs (its own short transaction, due_programs): the programs
# with a run under way, or a run due to start. Everything after it is about one program.
PROGRAMS_WITH_RUNS = text(
    "SELECT DISTINCT c.program_id FROM campaigns AS c"
    " WHERE c.deleted_at IS NULL AND (c.run_cursor IS NOT NULL"
    f"   OR ({_RUNNABLE} AND (c.last_run_at IS NULL OR c.last_run_at <= :due_before)))"
    " ORDER BY c.program_id"
)
_START = text(
    "UPDATE campaigns SET run_number = :run_number, run_cursor = 0, last_run_at = :now"
    " WHERE program_id = :program_id AND id = :id"
)
_OPEN_LANES = text(
    """
INSERT INTO campaign_run_lanes (campaign_id, lane, program_id, lanes, run_number, cursor)
SELECT :id, g, :program_id, :lanes, :run_number, 0
  FROM generate_series(0, CAST(:lanes AS integer) - 1) AS g
    ON CONFLICT (campaign_id, lane, program_id)
    DO UPDATE SET lanes = excluded.lanes, run_number = excluded.run_number, cursor = 0
"""
)
_DROP_EXTRA_LANES = text(
    "DELETE FROM campaign_run_lanes"
    " WHERE program_id = :program_id AND campaign_id = :id AND lane >= :lanes"
)
_ADVANCE = text(
    "UPDATE campaign_run_lanes SET cursor = :cursor"
    " WHERE program_id = :program_id AND campaign_id = :id AND lane = :lane"
)
_END = text(
    "UPDATE campaigns SET run_cursor = NULL"
    " WHERE program_id = :program_id AND id = :id AND run_number = :run_number"
    "   AND run_cursor IS NOT NULL"
    "   AND NOT EXISTS (SELECT 1 FROM campaign_run_lanes AS l"
    "                    WHERE l.program_id = :program_id AND l.campaign_id = :id"
    "                      AND l.run_number = :run_number AND l.cursor IS NOT NULL)"
)


@dataclass(frozen=True, slots=True)
class LanePosition:
    """A lane of a run, locked by this transaction, and the last member id it handled."""

    lane: int
    lanes: int
    run_number: int
    cursor: int


def runnable(campaign: Any, now: datetime) -> bool:
    return bool(
        campaign.active
        and (campaign.starts_at is None or campaign.starts_at <= now)
        and (campaign.ends_at is None or campaign.ends_at > now)
    )


async def start_run(conn: Connection, campaign: Any, lanes: int, now: datetime) -> int:
    """Start the next run of ``campaign`` (whose row this transaction holds FOR UPDATE, with
    no run under way) in ``lanes`` lanes; returns its number."""
    run_number: int = campaign.run_number + 1
    keys = {"program_id": campaign.program_id, "id": campaign.id}
    await conn.execute(_START, {**keys, "run_number": run_number, "now": now})
    await conn.execute(_OPEN_LANES, {**keys, "lanes": lanes, "run_number": run_number})
    await conn.execute(_DROP_EXTRA_LANES, {**keys, "lanes": lanes})
    return run_number


async def start_due_run(
    conn: Connection, program_id: int, now: datetime, due_before: datetime, lanes: int
) -> bool:
    """Start the run of one campaign of the program that is due (none under way, the last
    one started before ``due_before``); False when none is."""
    params = {"program_id": program_id, "now": now, "due_before": due_before}
    campaign = (await conn.execute(_DUE_TO_START, params)).first()
    if campaign is None:
        return False
    await start_run(conn, campaign, lanes, now)
    return True


async def lanes_left(
    conn: Connection, program_id: int, campaign_id: int, run_number: int
) -> list[int]:
    rows = await conn.execute(
        _LANES_LEFT, {"program_id": program_id, "id": campaign_id, "run_number": run_number}
    )
    return list(rows.scalars())


async def lock_lane(
    conn: Connection, campaign: Any, lane: int, run_number: int
) -> LanePosition | None:
    """Lock one lane of run ``run_number`` (after the campaign row); None when that run is
    no longer the campaign's latest under way, or the lane is done."""
    if campaign.run_cursor is None or campaign.run_number != run_number:
        return None
    row = (
        await conn.execute(
            _LOCK_LANE,
            {
                "program_id": campaign.program_id,
                "id": campaign.id,
                "lane": lane,
                "run_number": run_number,
            },
        )
    ).first()
    if row is None or row.lane_cursor is None:
        return None
    return LanePosition(row.lane, row.lanes, run_number, row.lane_cursor)


async def claim_open_lane(
    conn: Connection, program_id: int, now: datetime, lane: int, lanes: int
) -> tuple[Any, LanePosition] | None:
    """For the worker: a runnable campaign of the program with a lane left in its run (among
    the worker lane's share), both locked; None when there is none free."""
    params = {"program_id": program_id, "now": now, "lane": lane, "lanes": lanes}
    row = (await conn.execute(_OPEN_LANE, params)).first()
    if row is None:
        return None
    return row, LanePosition(row.lane, row.lanes, row.run_number, row.lane_cursor)


async def advance(
    conn: Connection, campaign: Any, position: LanePosition, cursor: int | None
) -> None:
    """Move the lane on to ``cursor`` (the last member id handled), or close it (None)."""
    await conn.execute(
        _ADVANCE,
        {
            "program_id": campaign.program_id,
            "id": campaign.id,
            "lane": position.lane,
            "cursor": cursor,
        },
    )


async def end_run(conn: Connection, program_id: int, campaign_id: int, run_number: int) -> None:
    """End run ``run_number`` if every lane of it is done (a no-op otherwise, or if it ended
    already). The caller holds the campaign row FOR UPDATE."""
    await conn.execute(
        _END, {"program_id": program_id, "id": campaign_id, "run_number": run_number}
    )


async def end_a_done_run(conn: Connection, program_id: int) -> bool:
    """For the worker: end one run under way in the program whose lanes are all done; False
    when none is."""
    campaign = (await conn.execute(_DONE_RUN, {"program_id": program_id})).first()
    if campaign is None:
        return False
    await end_run(conn, campaign.program_id, campaign.id, campaign.run_number)
    return True
