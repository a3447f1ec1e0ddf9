"""Running campaigns: from the worker on a schedule, and on demand.

A run splits the program's members into lanes (``member_id % lanes = lane``, ``lanes`` being
``PATRON_WORKER_LANES`` when the run starts) and walks each lane in ascending id order, in
batches; run_lanes.py keeps each lane's position. Lanes advance side by side: an on-demand
run walks all of them at once, each worker loop takes a lane nobody else holds. Each batch is
one short transaction that
1. locks the campaign row FOR SHARE and its lane row FOR UPDATE (batches of one lane take
   turns and continue each other's walk; nobody can end or restart the run meanwhile);
2. picks the lane's next members of the audience who are outside the cooldown;
3. locks their account rows in ascending id order (the ledger's lock order);
4. issues the coupons of the treated, when the action is a coupon (the rewards package, set
   based, at no points cost);
5. in one statement: a ``campaign_targetings`` row for each (unique per campaign, member
   and run: nobody is targeted twice by one run, whatever the timing), the bonus entries of
   the treated (through the ledger's multi-member credit), and a ``campaign.targeted`` event
   for every member of both groups;
6. moves the lane's cursor on (or closes the lane).
The run ends (its campaign row says so) once every lane is closed.

Batches are small so that the member locks are held briefly and checkout traffic for those
members waits milliseconds, not the length of a run. The worker starts a run of each active
campaign at most once per ``RUN_INTERVAL``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import TextClause, text

from app import db
from app.clock import clock
from app.config import get_settings
from app.db import Connection
from app.errors import ConflictError, NotFoundError
from app.schemas.campaigns import CampaignRunOut
from app.services.campaigns import run_lanes
from app.services.campaigns.assignment import holdout_bucket_sql
from app.services.campaigns.audience import audience_sql
from app.services.campaigns.run_lanes import LanePosition
from app.services.idempotency import IdempotencyRequest, Reply, run_recomputation
from app.services.ledger import accounts
from app.services.ledger.accounts import NEXT_SEQUENCES_CTE
from app.services.ledger.postings import EARNED_EVENT_ROWS, credit_many_ctes
from app.services.members.member_batches import ALL_MEMBERS, Lane
from app.services.programs.due_programs import looking_across_programs
from app.services.rewards import coupons
from app.services.tiers import tier_evaluation

RUN_INTERVAL = timedelta(days=1)
BATCH_SIZE = 1000


class CampaignNotRunnableError(ConflictError):
    code = "campaign_inactive"
    title = "The campaign is inactive or outside its active window"


_CUSTOM_PLANS = text("SET LOCAL plan_cache_mode = force_custom_plan")

_ACT = text(
    f"""
WITH picked AS (
    SELECT p.member_id, p.external_id, p.grp, p.coupon_code
      FROM unnest(CAST(:member_ids AS bigint[]), CAST(:external_ids AS text[]),
                  CAST(:groups AS text[]), CAST(:coupon_codes AS text[]))
           AS p(member_id, external_id, grp, coupon_code)
), unpaid AS (
    -- Members who get no bonus entry: they take their event's sequence number here.
    SELECT u.member_id FROM unnest(CAST(:unpaid_member_ids AS bigint[])) AS u(member_id)
), {NEXT_SEQUENCES_CTE.format(name="sequenced", members="unpaid")}, due AS (
    -- Its own array (not a filter of picked), so that the planner knows how many rows come.
    SELECT d.member_id, CAST(:bonus_points AS bigint) AS points
      FROM unnest(CAST(:bonus_member_ids AS bigint[])) AS d(member_id)
), {
        credit_many_ctes(
            "'bonus'",
            "CAST(:reason AS text)",
            "CAST(:actor AS text)",
            campaign_id="CAST(:campaign_id AS bigint)",
            sequences=2,
            earned_event=False,
        )
    }, targeted AS (
    INSERT INTO campaign_targetings (program_id, campaign_id, member_id, run_number, "group",
                                     points, entry_id, coupon_code, targeted_at)
    SELECT CAST(:program_id AS bigint), CAST(:campaign_id AS bigint), picked.member_id,
           CAST(:run_number AS integer), picked.grp, entry.points, entry.id,
           picked.coupon_code, CAST(:now AS timestamptz)
      FROM picked LEFT JOIN entry USING (member_id)
), member_events AS (
    -- Both events of a member from one INSERT, in the order of their sequence numbers, so
    -- that their ids (and so the feed) follow the sequence on every engine.
    INSERT INTO events (program_id, type, member_id, data, created_at)
    SELECT e.program_id, e.type, e.member_id, e.data, e.created_at
      FROM (
        SELECT CAST(:program_id AS bigint) AS program_id, 'campaign.targeted' AS type,
               picked.member_id,
               jsonb_build_object('member_id', picked.external_id,
                                  'sequence', coalesce(sequenced.version, acc.version - 1),
                                  'campaign_id', CAST(:campaign_id AS bigint),
                                  'group', picked.grp, 'message', CAST(:message AS text),
                                  'coupon_code', picked.coupon_code) AS data,
               CAST(:now AS timestamptz) AS created_at
          FROM picked LEFT JOIN sequenced USING (member_id) LEFT JOIN acc USING (member_id)
        UNION ALL
        {EARNED_EVENT_ROWS}
      ) AS e
     ORDER BY e.member_id, CAST(e.data->>'sequence' AS bigint)
)
SELECT count(*) FILTER (WHERE grp = 'treated') AS treated,
       count(*) FILTER (WHERE grp = 'holdout') AS holdout
  FROM picked
"""
)


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    treated: int
    holdout: int
    run_over: bool


def _candidates_sql(campaign: Any, now: datetime) -> tuple[str, dict[str, Any]]:
    today = now.astimezone(ZoneInfo(campaign.timezone)).date()
    audience = campaign.audience
    if isinstance(audience, str | bytes):
        audience = orjson.loads(audience)
    sql = audience_sql(audience, campaign.program_id, today, campaign.timezone)
    bucket = holdout_bucket_sql("CAST(:campaign_id AS bigint)", "m.id")
    statement = f"""
SELECT m.id AS member_id, m.external_id,
       CASE WHEN {bucket} < :holdout_percent THEN 'holdout' ELSE 'treated' END AS grp
  FROM members AS m {sql.joins}
 WHERE {sql.where} AND m.id > :cursor AND m.id % :lanes = :lane
   AND NOT EXISTS (
       -- OFFSET 0 keeps this a lookup per candidate (an index probe each) rather than an
       -- anti-join: while a run fills the table its statistics lag behind, and an
       -- anti-join planned for an empty table compares every candidate with every
       -- targeting so far (seconds per batch halfway through a 200,000-member run).
       SELECT 1 FROM campaign_targetings AS t
        WHERE t.program_id = :program_id AND t.campaign_id = CAST(:campaign_id AS bigint)
          AND t.member_id = m.id
          AND t.targeted_at > :cooldown_start
       OFFSET 0)
 ORDER BY m.id
 LIMIT :batch
"""
    params = {
        **sql.params,
        "campaign_id": campaign.id,
        "holdout_percent": campaign.holdout_percent,
        "cooldown_start": now - timedelta(days=campaign.cooldown_days),
    }
    return statement, params


async def _run_batch(
    conn: Connection, campaign: Any, position: LanePosition, now: datetime, batch_size: int
) -> BatchOutcome:
    """The next batch of one lane of ``campaign``'s run; this transaction holds the
    campaign row (FOR SHARE) and the lane's row."""
    # Every statement of a batch is planned for its own parameters. A plan made for any
    # parameters (a generic plan) cannot know the true row counts the joins below depend on,
    # nor how many members the audience's conditions select: a generic plan of the candidates
    # walks the program's members in id order and tests each one, which is fine while the
    # audience is dense and takes seconds per batch once it is sparse (a segment the
    # insights refresh has just shrunk, say).
    await conn.execute(_CUSTOM_PLANS)
    statement, params = _candidates_sql(campaign, now)
    picked = (
        await conn.execute(
            text(statement),
            {
                **params,
                "cursor": position.cursor,
                "lane": position.lane,
                "lanes": position.lanes,
                "batch": batch_size,
            },
        )
    ).all()
    treated = holdout = 0
    if picked:
        treated, holdout = await _act(conn, campaign, position.run_number, picked, now)
    run_over = len(picked) < batch_size
    await run_lanes.advance(conn, campaign, position, None if run_over else picked[-1].member_id)
    return BatchOutcome(treated, holdout, run_over)


async def _act(
    conn: Connection, campaign: Any, run_number: int, picked: list[Any], now: datetime
) -> tuple[int, int]:
    """Lock the picked members, give the treated the action, record every targeting and
    its event; returns (treated, held out)."""
    groups = {row.member_id: row.grp for row in picked}
    external_ids = {row.member_id: row.external_id for row in picked}
    locked = await accounts.lock_members(
        conn, campaign.program_id, [row.member_id for row in picked]
    )
    treated_ids = [m for m in locked if groups[m] == "treated"]
    codes: dict[int, str] = {}
    if campaign.reward_id is not None and treated_ids:
        # One coupon per treated member, costing no points (rewards package).
        codes = await coupons.issue_campaign_coupons(
            conn, campaign.program_id, treated_ids, campaign.reward_id, campaign.id, now
        )
    paid = treated_ids if campaign.bonus_points else []
    paid_set = set(paid)
    outcome = (
        await conn.execute(
            _ACT,
            {
                "member_ids": locked,
                "external_ids": [external_ids[m] for m in locked],
                "bonus_member_ids": paid,
                "unpaid_member_ids": [m for m in locked if m not in paid_set],
                "groups": [groups[m] for m in locked],
                "coupon_codes": [codes.get(m) for m in locked],
                "bonus_points": campaign.bonus_points,
                "reason": f"campaign {campaign.id}",
                "actor": f"campaign:{campaign.id}",
                "campaign_id": campaign.id,
                "program_id": campaign.program_id,
                "run_number": run_number,
                "message": campaign.message,
                "now": now,
            },
        )
    ).one()
    # Bonus points count towards tiers, settled in the same transaction.
    if (
        campaign.bonus_points
        and treated_ids
        and await tier_evaluation.program_has_tiers(campaign.program_id, conn)
    ):
        await tier_evaluation.evaluate_locked(conn, campaign.program_id, treated_ids, now)
    return int(outcome.treated), int(outcome.holdout)


async def _lock_runnable(
    conn: Connection,
    lock: TextClause,
    program_id: int,
    campaign_id: int,
    at: datetime | None,
) -> tuple[Any, datetime]:
    """The campaign's row under ``lock`` (run_lanes.LOCK_CAMPAIGN or SHARE_CAMPAIGN) and the
    time of the step; 404 when there is no such campaign, 409 when it may not run now."""
    campaign = (await conn.execute(lock, {"program_id": program_id, "id": campaign_id})).first()
    if campaign is None:
        raise NotFoundError(f"No campaign {campaign_id} in this program.")
    now = at or clock.now()
    if not run_lanes.runnable(campaign, now):
        raise CampaignNotRunnableError(
            "Only an active campaign within its starts_at/ends_at window runs."
        )
    return campaign, now


async def _start_or_join(
    program_id: int, campaign_id: int, lanes: int, at: datetime | None
) -> tuple[int, list[int]]:
    """Start a run of the campaign unless one is under way; returns the run's number and
    its lanes with members left."""
    async with db.transaction() as conn:
        campaign, now = await _lock_runnable(
            conn, run_lanes.LOCK_CAMPAIGN, program_id, campaign_id, at
        )
        run_number: int = campaign.run_number
        if campaign.run_cursor is None:
            run_number = await run_lanes.start_run(conn, campaign, lanes, now)
        return run_number, await run_lanes.lanes_left(conn, program_id, campaign_id, run_number)


async def _walk_lane(
    program_id: int,
    campaign_id: int,
    run_number: int,
    lane: int,
    batch_size: int,
    at: datetime | None,
) -> tuple[int, int]:
    """Batches of one lane of run ``run_number`` until it is done; returns (treated, held
    out) of the members these batches targeted."""
    treated = holdout = 0
    while True:
        async with db.transaction() as conn:
            campaign, now = await _lock_runnable(
                conn, run_lanes.SHARE_CAMPAIGN, program_id, campaign_id, at
            )
            position = await run_lanes.lock_lane(conn, campaign, lane, run_number)
            if position is None:
                return treated, holdout
            outcome = await _run_batch(conn, campaign, position, now, batch_size)
        treated += outcome.treated
        holdout += outcome.holdout
        if outcome.run_over:
            return treated, holdout


async def _end_run(program_id: int, campaign_id: int, run_number: int) -> None:
    async with db.transaction() as conn:
        found = await conn.execute(
            run_lanes.LOCK_CAMPAIGN, {"program_id": program_id, "id": campaign_id}
        )
        if found.first() is not None:
            await run_lanes.end_run(conn, program_id, campaign_id, run_number)


async def run_campaign_now(
    program_id: int,
    campaign_id: int,
    batch_size: int = BATCH_SIZE,
    at: datetime | None = None,
    lanes: int | None = None,
) -> CampaignRunOut:
    """Run a campaign to the end of its run (starting one, in ``lanes`` lanes, default
    ``PATRON_WORKER_LANES``, when none is under way), its lanes side by side, sharing the
    run with any worker or call running it at the same time. ``at`` fixes the time of the
    run (default: the clock at each batch)."""
    run_number, open_lanes = await _start_or_join(
        program_id, campaign_id, lanes or get_settings().worker_lanes, at
    )
    walks = [
        asyncio.create_task(_walk_lane(program_id, campaign_id, run_number, lane, batch_size, at))
        for lane in open_lanes
    ]
    try:
        counted = await asyncio.gather(*walks)
    except BaseException:
        # One lane failing (the campaign stopped, the database gone) stops the others.
        for walk in walks:
            walk.cancel()
        await asyncio.gather(*walks, return_exceptions=True)
        raise
    await _end_run(program_id, campaign_id, run_number)
    treated = sum(t for t, _ in counted)
    holdout = sum(h for _, h in counted)
    return CampaignRunOut(targeted=treated + holdout, treated=treated, holdout=holdout)


async def run_campaign(
    program_id: int, campaign_id: int, request: IdempotencyRequest | None
) -> Reply:
    """``POST /v1/campaigns/{id}/run``: the run is many transactions; with a key, its
    answer is stored and a repeat replays it instead of running again."""

    async def compute() -> Reply:
        result = await run_campaign_now(program_id, campaign_id)
        return Reply(result.model_dump_json(), created=False)

    return await run_recomputation(program_id, request, compute)


async def run_due_campaigns(
    now: datetime, batch_size: int = BATCH_SIZE, lane: Lane = ALL_MEMBERS
) -> int:
    """Worker job: one step of the campaigns' runs, in the first program (of those found by
    one look across programs) that has one: a batch of a lane left in a run under way (one
    of the worker lane's own share, ``run lane % lane.count = lane.index``, else any lane
    nobody holds), else the start of a due run, else the end of a run whose lanes are done.
    Returns how many members it targeted, at least 1 when it did any work (so the worker
    calls again), 0 when nothing was left."""
    due_before = now - RUN_INTERVAL
    async with looking_across_programs() as conn:
        params = {"now": now, "due_before": due_before}
        program_ids = (await conn.execute(run_lanes.PROGRAMS_WITH_RUNS, params)).scalars().all()
    for program_id in program_ids:
        for share in dict.fromkeys((lane, ALL_MEMBERS)):
            async with db.transaction() as conn:
                claimed = await run_lanes.claim_open_lane(
                    conn, program_id, now, share.index, share.count
                )
                if claimed is not None:
                    campaign, position = claimed
                    outcome = await _run_batch(conn, campaign, position, now, batch_size)
                    return max(outcome.treated + outcome.holdout, 1)
        async with db.transaction() as conn:
            lanes = get_settings().worker_lanes
            if await run_lanes.start_due_run(conn, program_id, now, due_before, lanes):
                return 1
        async with db.transaction() as conn:
            if await run_lanes.end_a_done_run(conn, program_id):
                return 1
    return 0


_TARGETED_MEMBERS = text(
    """
SELECT DISTINCT ON (t.member_id) m.external_id, t."group" AS grp, t.targeted_at
  FROM campaign_targetings AS t
  JOIN members AS m ON m.id = t.member_id AND m.program_id = t.program_id
 WHERE t.program_id = :program_id AND t.campaign_id = :campaign_id
 ORDER BY t.member_id, t.targeted_at
"""
)


async def targeted_members(program_id: int, campaign_id: int) -> list[tuple[str, str, datetime]]:
    """(external id, group, first targeted at) of every member the campaign targeted."""
    async with db.read_only() as conn:
        rows = (
            await conn.execute(
                _TARGETED_MEMBERS, {"program_id": program_id, "campaign_id": campaign_id}
            )
        ).all()
    return [(row.external_id, row.grp, row.targeted_at) for row in rows]
