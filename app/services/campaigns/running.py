"""Running campaigns: from the worker on a schedule, and on demand.

A run walks the program's members in ascending id order, in batches. Each batch is one short
transaction that
1. locks the campaign row (so batches of one campaign, from any number of workers and
   on-demand calls, take turns, and each continues where the last one stopped: the run's
   cursor is on the campaign row);
2. picks the next members of the audience who are outside the cooldown;
3. locks their account rows in ascending id order (the ledger's lock order);
4. in one statement: a ``campaign_targetings`` row for each (unique per campaign, member
   and run: nobody is targeted twice by one run, whatever the timing), the bonus entries of
   the treated (through the ledger's multi-member credit) or their coupons (through the
   rewards package, at no points cost), and a ``campaign.targeted`` event
   for every member of both groups;
5. moves the cursor on (or ends the run).

Batches are small so that the member locks are held briefly and checkout traffic for those
members waits milliseconds, not the length of a run. The worker starts a run of each active
campaign at most once per ``RUN_INTERVAL``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import text

from app import db
from app.clock import clock
from app.db import Connection
from app.errors import ConflictError, NotFoundError
from app.schemas.campaigns import CampaignRunOut
from app.services.campaigns.assignment import holdout_bucket_sql
from app.services.campaigns.audience import audience_sql
from app.services.idempotency import IdempotencyRequest, Reply, run_recomputation
from app.services.ledger import accounts
from app.services.ledger.accounts import NEXT_SEQUENCES_CTE
from app.services.ledger.postings import credit_many_ctes
from app.services.programs.due_programs import looking_across_programs
from app.services.rewards import coupons
from app.services.tiers import tier_evaluation

RUN_INTERVAL = timedelta(days=1)
BATCH_SIZE = 1000


class CampaignNotRunnableError(ConflictError):
    code = "campaign_inactive"
    title = "The campaign is inactive or outside its active window"


_CAMPAIGN = """
SELECT c.id, c.program_id, c.audience, c.bonus_points, c.reward_id, c.notify_only, c.message,
       c.holdout_percent, c.cooldown_days, c.active, c.starts_at, c.ends_at, c.run_number,
       c.run_cursor, c.last_run_at, p.timezone
  FROM campaigns AS c JOIN programs AS p ON p.id = c.program_id
"""
_THIS_CAMPAIGN = text(
    _CAMPAIGN
    + " WHERE c.program_id = :program_id AND c.id = :id AND c.deleted_at IS NULL"
    + " FOR UPDATE OF c"
)
_DUE = """c.deleted_at IS NULL AND c.active
   AND (c.starts_at IS NULL OR c.starts_at <= :now)
   AND (c.ends_at IS NULL OR c.ends_at > :now)
   AND (c.run_cursor IS NOT NULL OR c.last_run_at IS NULL OR c.last_run_at <= :due_before)"""
# The worker first finds the programs with a campaign whose run is under way or due (the
# campaigns table is small), then takes one such campaign of one program; every statement
# after the first is about that program alone.
_PROGRAMS_WITH_DUE_CAMPAIGNS = text(
    f"SELECT DISTINCT c.program_id FROM campaigns AS c WHERE {_DUE} ORDER BY c.program_id"
)
_DUE_CAMPAIGN = text(
    _CAMPAIGN
    + f" WHERE c.program_id = :program_id AND {_DUE}"
    + " ORDER BY c.id LIMIT 1 FOR UPDATE OF c SKIP LOCKED"
)
_CUSTOM_PLANS = text("SET LOCAL plan_cache_mode = force_custom_plan")
_ADVANCE = text(
    "UPDATE campaigns SET run_number = :run_number, run_cursor = :cursor, "
    "last_run_at = :last_run_at WHERE program_id = :program_id AND id = :id"
)

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
        )
    }, targeted AS (
    INSERT INTO campaign_targetings (program_id, campaign_id, member_id, run_number, "group",
                                     points, entry_id, coupon_code, targeted_at)
    SELECT CAST(:program_id AS bigint), CAST(:campaign_id AS bigint), picked.member_id,
           CAST(:run_number AS integer), picked.grp, entry.points, entry.id,
           picked.coupon_code, CAST(:now AS timestamptz)
      FROM picked LEFT JOIN entry USING (member_id)
), targeted_event AS (
    INSERT INTO events (program_id, type, member_id, data, created_at)
    SELECT CAST(:program_id AS bigint), 'campaign.targeted', picked.member_id,
           jsonb_build_object('member_id', picked.external_id,
                              'sequence', coalesce(sequenced.version, acc.version - 1),
                              'campaign_id', CAST(:campaign_id AS bigint),
                              'group', picked.grp, 'message', CAST(:message AS text),
                              'coupon_code', picked.coupon_code),
           CAST(:now AS timestamptz)
      FROM picked LEFT JOIN sequenced USING (member_id) LEFT JOIN acc USING (member_id)
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
 WHERE {sql.where} AND m.id > :cursor
   AND NOT EXISTS (
       SELECT 1 FROM campaign_targetings AS t
        WHERE t.program_id = m.program_id AND t.campaign_id = CAST(:campaign_id AS bigint)
          AND t.member_id = m.id
          AND t.targeted_at > :cooldown_start)
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
    conn: Connection, campaign: Any, now: datetime, batch_size: int, *, start: bool
) -> BatchOutcome:
    """One batch of ``campaign``, whose row this transaction has locked. With ``start``, a
    run begins when none is under way; without, a finished run stays finished."""
    run_number, cursor, last_run_at = campaign.run_number, campaign.run_cursor, campaign.last_run_at
    if cursor is None:
        if not start:
            return BatchOutcome(0, 0, run_over=True)
        run_number, cursor, last_run_at = run_number + 1, 0, now
    statement, params = _candidates_sql(campaign, now)
    picked = (
        await conn.execute(text(statement), {**params, "cursor": cursor, "batch": batch_size})
    ).all()
    treated = holdout = 0
    if picked:
        member_ids = [row.member_id for row in picked]
        groups = {row.member_id: row.grp for row in picked}
        external_ids = {row.member_id: row.external_id for row in picked}
        locked = await accounts.lock_members(conn, member_ids)
        codes: dict[int, str] = {}
        if campaign.reward_id is not None:
            # One coupon per treated member, costing no points (rewards package).
            for member_id in locked:
                if groups[member_id] == "treated":
                    coupon = await coupons.issue_campaign_coupon(
                        conn, campaign.program_id, member_id, campaign.reward_id, campaign.id, now
                    )
                    codes[member_id] = coupon.code
        paid = [m for m in locked if groups[m] == "treated" and campaign.bonus_points]
        paid_set = set(paid)
        # The statement's joins are right only for the true row counts, which a plan made
        # for any parameters (a generic plan) cannot know.
        await conn.execute(_CUSTOM_PLANS)
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
        treated, holdout = outcome.treated, outcome.holdout
        # Bonus points count towards tiers, settled in the same transaction.
        if (
            campaign.bonus_points
            and treated
            and await tier_evaluation.program_has_tiers(campaign.program_id, conn)
        ):
            treated_ids = [m for m in locked if groups[m] == "treated"]
            await tier_evaluation.evaluate_locked(conn, treated_ids, now)
    run_over = len(picked) < batch_size
    await conn.execute(
        _ADVANCE,
        {
            "program_id": campaign.program_id,
            "id": campaign.id,
            "run_number": run_number,
            "cursor": None if run_over else picked[-1].member_id,
            "last_run_at": last_run_at,
        },
    )
    return BatchOutcome(treated, holdout, run_over)


def _runnable(campaign: Any, now: datetime) -> bool:
    return (
        campaign.active
        and (campaign.starts_at is None or campaign.starts_at <= now)
        and (campaign.ends_at is None or campaign.ends_at > now)
    )


async def run_campaign_now(
    program_id: int,
    campaign_id: int,
    batch_size: int = BATCH_SIZE,
    at: datetime | None = None,
) -> CampaignRunOut:
    """Run a campaign to the end of its run (starting one when none is under way), batch by
    batch, sharing the run with any worker or call running it at the same time. ``at``
    fixes the time of the run (default: the clock at each batch)."""
    treated = holdout = 0
    start = True
    while True:
        async with db.transaction() as conn:
            campaign = (
                await conn.execute(_THIS_CAMPAIGN, {"program_id": program_id, "id": campaign_id})
            ).first()
            if campaign is None:
                raise NotFoundError(f"No campaign {campaign_id} in this program.")
            now = at or clock.now()
            if not _runnable(campaign, now):
                raise CampaignNotRunnableError(
                    "Only an active campaign within its starts_at/ends_at window runs."
                )
            outcome = await _run_batch(conn, campaign, now, batch_size, start=start)
        start = False
        treated += outcome.treated
        holdout += outcome.holdout
        if outcome.run_over:
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


async def run_due_campaigns(now: datetime, batch_size: int = BATCH_SIZE) -> int:
    """Worker job: one batch of a campaign whose run is under way or due; returns how many
    members it targeted (at least 1 when it did any work, so the worker calls again)."""
    due = {"now": now, "due_before": now - RUN_INTERVAL}
    async with looking_across_programs() as conn:
        program_ids = (await conn.execute(_PROGRAMS_WITH_DUE_CAMPAIGNS, due)).scalars().all()
    for program_id in program_ids:
        async with db.transaction() as conn:
            campaign = (
                await conn.execute(_DUE_CAMPAIGN, {**due, "program_id": program_id})
            ).first()
            if campaign is None:  # another replica holds them, or it has just run
                continue
            outcome = await _run_batch(conn, campaign, now, batch_size, start=True)
        return max(outcome.treated + outcome.holdout, 1)
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
