"""Insights: RFM segments and lifecycle stages, the overview figures, feedback and NPS.

Segments and lifecycle stages are computed in SQL for a whole program at once (one statement
into a temporary table: aggregate each member's counted orders, score recency, frequency and
monetary value in quintiles with window functions, map the scores to a segment and a
lifecycle stage; then ``member_insights`` is updated where a row changed). Every statement
names its one program, so on Citus each runs on that program's shard.
A refresh runs from the worker for every program whose insights are older than
``REFRESH_INTERVAL``, one program per transaction, and on demand
(``POST /v1/insights/refresh``). Each refresh holds its program's ``insight_refreshes`` row
locked, so worker replicas and on-demand refreshes never compute the same program at once;
the rows are written only where they changed.

An order counts as a purchase when it is not fully refunded (``refunded_amount < amount``);
what it is worth is ``amount - refunded_amount``. docs/insights.md defines every figure.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import text

from app import db
from app.clock import clock
from app.db import Connection
from app.errors import NotFoundError, ValidationError
from app.models.insights import SEGMENTS
from app.schemas.insights import (
    ChartData,
    ExpiryMonth,
    FeedbackCreate,
    FeedbackOut,
    FunnelStage,
    OverviewOut,
    RefreshOut,
    SegmentOut,
    TierCount,
)
from app.services.checkout.money import decimal_text
from app.services.idempotency import IdempotencyRequest, Reply, run_once, run_recomputation
from app.services.programs.due_programs import looking_across_programs

log = logging.getLogger("patron.insights")

# How old a program's insights may get before the worker recomputes them. Scores depend only
# on the orders (recency is ranked, and every member's recency ages alike), lifecycle stages
# on the day; an hour keeps both fresh without recomputing large programs all the time.
REFRESH_INTERVAL = timedelta(hours=1)
# Programs looked at by one job call (each refreshed in its own transaction).
REFRESH_BATCH = 200
# A refresh of a large program runs longer than the service's default statement timeout,
# and a refresh asked for while another one of the same program runs (after an import, or
# through the API) waits for that one's claim as long (the default lock timeout gave up after
# 15 s while a refresh of 1,000,000 members ran). Set before the claim.
# Grouping by member over the member-ordered index streams; the planner, which cannot know
# how many members buy, tends to prefer hashing a million groups, which is 3-4x slower.
_REFRESH_SETTINGS = (
    "SET LOCAL statement_timeout = '30min'",
    "SET LOCAL lock_timeout = '30min'",
    "SET LOCAL work_mem = '256MB'",
    "SET LOCAL enable_hashagg = off",
)
_OVERVIEW_SETTINGS = ("SET LOCAL work_mem = '64MB'",)

DEFAULT_PERIOD = timedelta(days=30)
MAX_PERIOD = timedelta(days=3660)
EXPIRING_WINDOW = timedelta(days=30)

# The RFM map: segment by recency score (rows) and FM score (columns 1-5), where
# FM = floor((frequency score + monetary score) / 2). docs/insights.md shows it as a table.
SEGMENT_GRID: dict[int, tuple[str, str, str, str, str]] = {
    5: ("new", "potential_loyalists", "potential_loyalists", "champions", "champions"),
    4: ("promising", "potential_loyalists", "potential_loyalists", "loyal", "champions"),
    3: ("need_attention", "need_attention", "need_attention", "loyal", "loyal"),
    2: ("hibernating", "hibernating", "at_risk", "at_risk", "cant_lose"),
    1: ("lost", "lost", "at_risk", "cant_lose", "cant_lose"),
}
# Row-major from R = 1, so that the SQL picks grid[(r - 1) * 5 + fm].
_GRID_FLAT = [SEGMENT_GRID[r][fm - 1] for r in range(1, 6) for fm in range(1, 6)]


def segment_for(recency: int, frequency: int, monetary: int) -> str:
    """The segment of a member with these quintile scores (each 1-5)."""
    return SEGMENT_GRID[recency][(frequency + monetary) // 2 - 1]


# A quintile score 1-5 from the share of the program's other buyers that rank strictly
# below (percent_rank): equal values always get equal scores, the lowest value scores 1 and
# the top fifth 5. When every buyer has the same value there is nothing to rank them by, and
# they all get the middle score, 3. ``{value} {direction}`` orders from worst to best.
_SCORE = (
    "CASE WHEN min({value}) OVER buyers = max({value}) OVER buyers THEN 3 ELSE "
    "least(5, 1 + floor(5 * percent_rank() OVER (buyers ORDER BY {value} {direction}))) "
    "END::smallint"
)

# The computation, into a temporary table: ``CREATE TABLE AS`` may use parallel workers for
# the aggregation (a statement that writes a real table may not). The stage also says, per
# member, whether a row exists and whether it changed, so the writes that follow touch only
# those rows and never read the table they write. One program per statement, every tenant
# table filtered by the constant ``:program_id`` and joined on it: on Citus the whole
# statement then runs on that program's shard, and on one PostgreSQL the orders are read by
# ix_orders_program_id_member_id in member order.
_STAGE_SQL = f"""
CREATE TEMPORARY TABLE insight_stage ON COMMIT DROP AS
WITH prog AS (
    SELECT id, timezone, lifecycle_mature_days, lifecycle_churn_days,
           lifecycle_churn_interval_multiple
      FROM programs WHERE id = :program_id
), stats AS (
    SELECT o.member_id, count(*) AS orders_count,
           sum(o.amount - o.refunded_amount) AS net_spend,
           min(o.occurred_at) AS first_order_at, max(o.occurred_at) AS last_order_at
      FROM orders AS o
     WHERE o.program_id = :program_id AND o.refunded_amount < o.amount
     GROUP BY o.member_id
), aged AS (
    -- Recency in whole days in the program's time zone, so that same-day buyers tie.
    SELECT stats.*,
           greatest(0, (CAST(:now AS timestamptz) AT TIME ZONE prog.timezone)::date
                       - (stats.last_order_at AT TIME ZONE prog.timezone)::date) AS days_since
      FROM stats CROSS JOIN prog
), scored AS (
    SELECT s.*,
           {_SCORE.format(value="s.days_since", direction="DESC")} AS r,
           {_SCORE.format(value="s.orders_count", direction="")} AS f,
           {_SCORE.format(value="s.net_spend", direction="")} AS m
      FROM aged AS s
    WINDOW buyers AS ()
), lapsing AS (
    SELECT s.*, s.last_order_at + greatest(
               make_interval(days => prog.lifecycle_churn_days),
               CASE WHEN s.orders_count > 1 THEN
                   (s.last_order_at - s.first_order_at) / (s.orders_count - 1)
                   * prog.lifecycle_churn_interval_multiple END) AS churns_at
      FROM scored AS s CROSS JOIN prog
), computed AS (
SELECT mb.id AS member_id, mb.program_id,
       CAST(CASE WHEN s.member_id IS NULL THEN 'prospects'
            ELSE (CAST(:grid AS text[]))[(s.r - 1) * 5 + (s.f + s.m) / 2] END AS text) AS segment,
       CAST(CASE WHEN s.member_id IS NULL THEN 'prospect'
            WHEN CAST(:now AS timestamptz) > s.churns_at THEN 'churned'
            WHEN s.orders_count = 1 THEN 'new'
            WHEN CAST(:now AS timestamptz) - s.first_order_at
                 >= make_interval(days => prog.lifecycle_mature_days)
                THEN 'mature'
            ELSE 'growing' END AS text) AS lifecycle,
       s.r, s.f, s.m, CAST(coalesce(s.orders_count, 0) AS integer) AS orders_count,
       CAST(coalesce(s.net_spend, 0) AS bigint) AS net_spend, s.first_order_at, s.last_order_at,
       s.churns_at
  FROM members AS mb CROSS JOIN prog
  LEFT JOIN lapsing AS s ON s.member_id = mb.id
 WHERE mb.program_id = :program_id
)
SELECT c.*, cur.member_id IS NOT NULL AS has_row, cur.segment AS old_segment,
       cur.lifecycle AS old_lifecycle,
       (cur.segment, cur.lifecycle, cur.recency_score, cur.frequency_score,
        cur.monetary_score, cur.orders_count, cur.net_spend, cur.first_order_at,
        cur.last_order_at, cur.churns_at)
       IS DISTINCT FROM
       (c.segment, c.lifecycle, c.r, c.f, c.m, c.orders_count, c.net_spend, c.first_order_at,
        c.last_order_at, c.churns_at) AS changed
  FROM computed AS c
  LEFT JOIN member_insights AS cur
    ON cur.program_id = c.program_id AND cur.member_id = c.member_id
   AND cur.program_id = :program_id
"""

# member.segment_changed and member.lifecycle_changed, once for each change a refresh finds
# (written before the rows are updated, from the stage, which holds both values). They report
# a reclassification, not a change to the account: ``sequence`` is the member's current one,
# read without locking the account (a refresh must not hold up checkouts).
_CHANGE_EVENTS_SQL = """
INSERT INTO events (program_id, type, member_id, data, created_at)
SELECT s.program_id, t.type, s.member_id,
       jsonb_build_object('member_id', m.external_id, 'sequence', a.version,
                          'from', t.old_value, 'to', t.new_value),
       CAST(:now AS timestamptz)
  FROM insight_stage AS s
  JOIN members AS m ON m.program_id = s.program_id AND m.id = s.member_id
  JOIN accounts AS a ON a.program_id = s.program_id AND a.member_id = s.member_id
 CROSS JOIN LATERAL (VALUES ('member.segment_changed', s.old_segment, s.segment),
                            ('member.lifecycle_changed', s.old_lifecycle, s.lifecycle))
       AS t(type, old_value, new_value)
 WHERE s.has_row AND s.changed AND t.old_value <> t.new_value AND m.erased_at IS NULL
   AND m.program_id = :program_id AND a.program_id = :program_id
"""

_UPDATE_CHANGED_SQL = """
UPDATE member_insights AS mi
   SET segment = s.segment, lifecycle = s.lifecycle, recency_score = s.r,
       frequency_score = s.f, monetary_score = s.m, orders_count = s.orders_count,
       net_spend = s.net_spend, first_order_at = s.first_order_at,
       last_order_at = s.last_order_at, churns_at = s.churns_at, changed_at = :now
  FROM insight_stage AS s
 WHERE s.has_row AND s.changed AND mi.program_id = :program_id
   AND mi.program_id = s.program_id AND mi.member_id = s.member_id
"""

# Members without a row yet: those created outside the API (the API gives every new member
# a prospect row), or before insights existed.
_INSERT_MISSING_SQL = """
INSERT INTO member_insights (member_id, program_id, segment, lifecycle, recency_score,
                             frequency_score, monetary_score, orders_count, net_spend,
                             first_order_at, last_order_at, churns_at, changed_at)
SELECT s.member_id, s.program_id, s.segment, s.lifecycle, s.r, s.f, s.m, s.orders_count,
       s.net_spend, s.first_order_at, s.last_order_at, s.churns_at, :now
  FROM insight_stage AS s
 WHERE NOT s.has_row
ON CONFLICT (member_id, program_id) DO NOTHING
"""
# After this many rows changed, the planner's statistics of member_insights are refreshed in
# the same transaction rather than whenever autovacuum gets to it.
_ANALYZE_AFTER_CHANGES = 50_000

_STAGED_MEMBERS = text("SELECT count(*) FROM insight_stage")

_RECORD_REFRESH = text(
    """
INSERT INTO insight_refreshes (program_id, refreshed_at, members, duration_ms)
VALUES (:program_id, :now, :members, :duration_ms)
ON CONFLICT (program_id) DO UPDATE
   SET refreshed_at = EXCLUDED.refreshed_at, members = EXCLUDED.members,
       duration_ms = EXCLUDED.duration_ms
RETURNING program_id, refreshed_at, members, duration_ms
"""
)

_DUE_SQL = """
SELECT p.id FROM programs AS p LEFT JOIN insight_refreshes AS r ON r.program_id = p.id
 WHERE r.refreshed_at IS NULL OR r.refreshed_at <= :due_before
 ORDER BY r.refreshed_at NULLS FIRST, p.id
 LIMIT :batch
"""

# The claim on a program's refresh is its ``insight_refreshes`` row, locked for the whole
# refresh. A row lock rather than an advisory lock: on Citus an advisory lock is held only by
# the node the session is connected to, and services may connect to any node, while the row
# lock is taken on the program's shard, wherever the statement comes from. A program never
# refreshed has no row yet: the refresh inserts it first (the values are overwritten by the
# refresh's own record before anyone else can see them), and a second refresh's insert of
# the same key waits for the first to commit.
_PROGRAM_EXISTS = text("SELECT 1 FROM programs WHERE id = :program_id")
_CLAIM_NEW = text(
    "INSERT INTO insight_refreshes (program_id, refreshed_at, members, duration_ms) "
    "VALUES (:program_id, :now, 0, 0) ON CONFLICT (program_id) DO NOTHING RETURNING refreshed_at"
)
_CLAIM = text(
    "SELECT refreshed_at FROM insight_refreshes WHERE program_id = :program_id FOR UPDATE"
)
# The worker's claim skips a program another replica is refreshing.
_TRY_CLAIM = text(
    "SELECT refreshed_at FROM insight_refreshes WHERE program_id = :program_id "
    "FOR UPDATE SKIP LOCKED"
)


async def _apply_refresh_settings(conn: Connection) -> None:
    for statement in _REFRESH_SETTINGS:
        await conn.execute(text(statement))


async def _refresh(conn: Connection, program_id: int, now: datetime) -> Any:
    """Recompute the insights of this program, whose claim the caller holds (taken after
    ``_apply_refresh_settings``)."""
    started = time.perf_counter()
    params = {"program_id": program_id, "now": now, "grid": _GRID_FLAT}
    await conn.execute(text(_STAGE_SQL), params)
    await conn.execute(text("ANALYZE insight_stage"))
    staged = time.perf_counter()
    await conn.execute_count(text(_CHANGE_EVENTS_SQL), params)
    updated = await conn.execute_count(text(_UPDATE_CHANGED_SQL), params)
    inserted = await conn.execute_count(text(_INSERT_MISSING_SQL), params)
    if updated + inserted >= _ANALYZE_AFTER_CHANGES:
        await conn.execute(text("ANALYZE member_insights"))
    members = (await conn.execute(_STAGED_MEMBERS)).scalar_one()
    duration_ms = round((time.perf_counter() - started) * 1000)
    log.info(
        "insights refreshed for program %d in %d ms (computed in %d ms); %d rows updated, "
        "%d inserted",
        program_id,
        duration_ms,
        round((staged - started) * 1000),
        updated,
        inserted,
    )
    return (
        await conn.execute(
            _RECORD_REFRESH,
            {
                "program_id": program_id,
                "now": now,
                "members": members,
                "duration_ms": duration_ms,
            },
        )
    ).one()


async def refresh_program(program_id: int, now: datetime | None = None) -> RefreshOut:
    """Recompute one program's segments and lifecycle stages now (waits for a refresh of the
    same program that is already running, then runs again on what it committed)."""
    at = now or clock.now()
    async with db.transaction() as conn:
        params = {"program_id": program_id, "now": at}
        if (await conn.execute(_PROGRAM_EXISTS, params)).first() is None:
            raise NotFoundError("No such program.")
        await _apply_refresh_settings(conn)
        await conn.execute(_CLAIM_NEW, params)
        await conn.execute(_CLAIM, params)
        row = await _refresh(conn, program_id, at)
    return RefreshOut(
        members=row.members, refreshed_at=row.refreshed_at, duration_ms=row.duration_ms
    )


async def refresh_program_on_request(program_id: int, request: IdempotencyRequest | None) -> Reply:
    """``POST /v1/insights/refresh``: a refresh, safe to repeat (it computes the same result
    from the same orders); with a key, a repeat replays the first reply."""

    async def compute() -> Reply:
        return Reply((await refresh_program(program_id)).model_dump_json(), created=False)

    return await run_recomputation(program_id, request, compute)


async def _claim_due(
    conn: Connection, program_id: int, now: datetime, due_before: datetime
) -> bool:
    """Whether this transaction now holds the program's claim and its insights are still due.
    False when another replica holds the claim, or refreshed the program since our look."""
    params = {"program_id": program_id, "now": now}
    claimed = (await conn.execute(_TRY_CLAIM, params)).first()
    if claimed is not None:
        # Read under the lock: another replica may have refreshed the program and committed
        # between our look and our lock.
        return bool(claimed.refreshed_at <= due_before)
    # No row we could lock: either none yet (ours now, inserted) or one another replica holds.
    return (await conn.execute(_CLAIM_NEW, params)).first() is not None


async def refresh_due_insights(now: datetime) -> int:
    """Worker job: refresh up to ``REFRESH_BATCH`` programs whose insights are older than
    ``REFRESH_INTERVAL``, one program per transaction; returns how many. Programs another
    replica is refreshing are skipped (their ``insight_refreshes`` row is locked), so
    replicas share the work."""
    due_before = now - REFRESH_INTERVAL
    async with looking_across_programs() as conn:
        candidates = list(
            (
                await conn.execute(
                    text(_DUE_SQL), {"due_before": due_before, "batch": REFRESH_BATCH}
                )
            ).scalars()
        )
    refreshed = 0
    for program_id in candidates:
        async with db.transaction() as conn:
            await _apply_refresh_settings(conn)
            if not await _claim_due(conn, program_id, now, due_before):
                continue
            await _refresh(conn, program_id, now)
        refreshed += 1
    return refreshed


# --- Overview ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReferralFunnel:
    invited: int
    qualified: int
    rewarded: int


_FUNNEL = text(
    """
SELECT count(*) AS invited,
       count(*) FILTER (WHERE order_pk IS NOT NULL) AS qualified,
       count(*) FILTER (WHERE status IN ('rewarded', 'capped')) AS rewarded
  FROM referrals
 WHERE program_id = :program_id AND created_at >= :start AND created_at < :end
"""
)
_REFERRAL_REVENUE = text(
    """
SELECT coalesce(sum(mi.net_spend), 0)
  FROM referrals AS r
  JOIN member_insights AS mi ON mi.program_id = :program_id AND mi.member_id = r.referee_id
 WHERE r.program_id = :program_id AND r.order_pk IS NOT NULL
"""
)


async def _referral_funnel(
    conn: Connection, program_id: int, start: datetime, end: datetime
) -> ReferralFunnel | None:
    """Referrals made in the period, by how far they got: ``qualified`` counts those whose
    referee placed a qualifying order (whatever happened after), ``rewarded`` those paid
    (capped included). None when the period has no referral at all."""
    row = (
        await conn.execute(_FUNNEL, {"program_id": program_id, "start": start, "end": end})
    ).one()
    if row.invited == 0:
        return None
    return ReferralFunnel(row.invited, row.qualified, row.rewarded)


async def _referral_revenue(conn: Connection, program_id: int) -> int:
    """Net spend of referred members who became customers, credited to the lifetime value of
    their referrers (domain.md: CLV is repeat purchases plus what referrals bring)."""
    revenue: int = (await conn.execute(_REFERRAL_REVENUE, {"program_id": program_id})).scalar_one()
    return int(revenue)


# The overview is two statements run side by side on two connections that share one
# snapshot (pg_export_snapshot), so the figures are consistent and both cores work.
# The first reads the period: its orders (by the index on program and time), feedback, and the
# lots expiring soon.
_OVERVIEW_PERIOD_SQL = """
SELECT p.currency, p.point_value_minor, buyers.*, nps.*,
       (SELECT coalesce(sum(l.remaining), 0) FROM point_lots AS l
         WHERE l.program_id = :program_id AND l.remaining > 0 AND l.expires_at < :expiring_before)
           AS points_expiring
  FROM programs AS p
 CROSS JOIN LATERAL (
    SELECT count(*) AS active_members,
           count(*) FILTER (WHERE b.orders > 1) AS repeat_members,
           coalesce(sum(b.orders), 0) AS orders,
           coalesce(sum(b.revenue), 0) AS revenue
      FROM (SELECT o.member_id, count(*) AS orders,
                   sum(o.amount - o.refunded_amount) AS revenue
              FROM orders AS o
             WHERE o.program_id = :program_id AND o.occurred_at >= :start AND o.occurred_at < :end
               AND o.refunded_amount < o.amount
             GROUP BY o.member_id) AS b) AS buyers
 CROSS JOIN LATERAL (
    SELECT count(*) AS responses,
           count(*) FILTER (WHERE latest.score >= 9) AS promoters,
           count(*) FILTER (WHERE latest.score <= 6) AS detractors
      FROM (SELECT DISTINCT ON (f.member_id) f.score
              FROM member_feedback AS f
             WHERE f.program_id = :program_id AND f.created_at >= :start AND f.created_at < :end
             ORDER BY f.member_id, f.created_at DESC, f.id DESC) AS latest) AS nps
 WHERE p.id = :program_id
"""

# The second reads the state: members, balances, and the per-member order history kept by
# the last refresh (lifetime value, and churn: ``churns_at``, when each customer lapses under
# the lifecycle rule).
_OVERVIEW_STATE_SQL = """
SELECT mc.members, mc.new_members,
       (SELECT r.refreshed_at FROM insight_refreshes AS r WHERE r.program_id = :program_id)
           AS refreshed_at,
       a.*, history.*
  FROM programs AS p
 CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE m.created_at < :end) AS members,
           count(*) FILTER (WHERE m.created_at >= :start AND m.created_at < :end) AS new_members
      FROM members AS m WHERE m.program_id = :program_id) AS mc
 CROSS JOIN LATERAL (
    SELECT coalesce(sum(greatest(ac.available + ac.held, 0) + ac.pending), 0)
               AS points_outstanding,
           coalesce(sum(ac.lifetime_earned), 0) AS lifetime_earned,
           coalesce(sum(ac.lifetime_redeemed), 0) AS lifetime_redeemed
      FROM accounts AS ac WHERE ac.program_id = :program_id) AS a
 CROSS JOIN LATERAL (
    SELECT coalesce(sum(mi.net_spend), 0) AS lifetime_spend,
           count(*) FILTER (WHERE mi.orders_count > 0) AS customers,
           count(*) FILTER (WHERE mi.first_order_at < :start AND mi.churns_at >= :start)
               AS customers_at_start,
           count(*) FILTER (WHERE mi.first_order_at < :start AND mi.churns_at >= :start
                              AND mi.churns_at < :end) AS churned
      FROM member_insights AS mi WHERE mi.program_id = :program_id) AS history
 WHERE p.id = :program_id
"""

_SNAPSHOT_ID = re.compile(r"^[0-9A-F]+-[0-9A-F]+(-[0-9]+)?$")


def _fraction(numerator: int, denominator: int, places: str = "0.0001") -> Decimal:
    if denominator == 0:
        return Decimal(0)
    return (Decimal(numerator) / Decimal(denominator)).quantize(
        Decimal(places), rounding=ROUND_HALF_UP
    )


def rate(numerator: int, denominator: int) -> str:
    """A share in [0, 1] as a decimal string, rounded half up to 4 places ("0" when the
    denominator is 0)."""
    return decimal_text(min(Decimal(1), max(Decimal(0), _fraction(numerator, denominator))))


def net_promoter_score(promoters: int, detractors: int, responses: int) -> str:
    """% promoters - % detractors, in [-100, 100], rounded half up to 1 place."""
    if responses == 0:
        return "0"
    score = (Decimal(100) * (promoters - detractors) / Decimal(responses)).quantize(
        Decimal("0.1"), rounding=ROUND_HALF_UP
    )
    return decimal_text(score)


def resolve_period(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """The period [start, end): default the 30 days up to now; naive times are UTC."""
    end = _aware(end) if end is not None else clock.now()
    start = _aware(start) if start is not None else end - DEFAULT_PERIOD
    if start >= end:
        raise ValidationError("`from` must be before `to`.", loc=["query", "from"])
    if end - start > MAX_PERIOD:
        raise ValidationError("The period may span at most 3660 days.", loc=["query", "from"])
    return start, end


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def overview(program_id: int, start: datetime, end: datetime) -> OverviewOut:
    now = clock.now()
    params = {
        "program_id": program_id,
        "start": start,
        "end": end,
        "expiring_before": now + EXPIRING_WINDOW,
    }
    async with db.transaction() as first:
        await first.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        snapshot = (await first.execute(text("SELECT pg_export_snapshot()"))).scalar_one()
        if not _SNAPSHOT_ID.match(snapshot):
            raise RuntimeError(f"unexpected snapshot id {snapshot!r}")
        # Read only and lock free, so it cannot wait on anything the first one holds.
        with db.allow_second_connection():
            async with db.transaction() as second:
                await second.execute(
                    text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                )
                await second.execute(text(f"SET TRANSACTION SNAPSHOT '{snapshot}'"))
                for statement in _OVERVIEW_SETTINGS:
                    await first.execute(text(statement))
                    await second.execute(text(statement))
                period_result, state_result = await asyncio.gather(
                    first.execute(text(_OVERVIEW_PERIOD_SQL), params),
                    second.execute(text(_OVERVIEW_STATE_SQL), params),
                )
                period, state = period_result.first(), state_result.first()
                if period is None or state is None:
                    raise NotFoundError("No such program.")
                funnel = await _referral_funnel(first, program_id, start, end)
                referral_revenue = await _referral_revenue(first, program_id)
    value = (Decimal(state.points_outstanding) * period.point_value_minor).to_integral_value(
        rounding=ROUND_FLOOR
    )
    return OverviewOut.model_validate(
        {
            "from": start,
            "to": end,
            "currency": period.currency,
            "members": state.members,
            "new_members": state.new_members,
            "active_members": period.active_members,
            "repeat_purchase_rate": rate(period.repeat_members, period.active_members),
            "churn_rate": rate(state.churned, state.customers_at_start),
            "average_order_value": period.revenue // period.orders if period.orders else 0,
            "customer_lifetime_value": (
                (state.lifetime_spend + referral_revenue) // state.customers
                if state.customers
                else 0
            ),
            "points_outstanding": state.points_outstanding,
            "points_outstanding_value": int(value),
            "points_expiring_30d": period.points_expiring,
            "redemption_rate": rate(state.lifetime_redeemed, state.lifetime_earned),
            "referral_conversion_rate": (
                rate(funnel.qualified, funnel.invited) if funnel is not None else "0"
            ),
            "nps": net_promoter_score(period.promoters, period.detractors, period.responses),
            "nps_responses": period.responses,
            "insights_refreshed_at": state.refreshed_at,
        }
    )


# --- Segments and the dashboard's charts ------------------------------------------------


async def segments(program_id: int) -> list[SegmentOut]:
    """Every segment, in the order of api.md, as of the last refresh. Members with no row
    yet (created since) count as prospects."""
    async with db.transaction() as conn:
        await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        rows = (
            await conn.execute(
                text(
                    "SELECT segment, count(*) AS members, coalesce(sum(net_spend), 0) AS revenue "
                    "FROM member_insights WHERE program_id = :program_id GROUP BY segment"
                ),
                {"program_id": program_id},
            )
        ).all()
        total_members = (
            await conn.execute(
                text("SELECT count(*) FROM members WHERE program_id = :program_id"),
                {"program_id": program_id},
            )
        ).scalar_one()
    counts = {row.segment: (row.members, row.revenue) for row in rows}
    counted = sum(members for members, _ in counts.values())
    prospects, prospect_revenue = counts.get("prospects", (0, 0))
    counts["prospects"] = (prospects + max(total_members - counted, 0), prospect_revenue)
    total_revenue = sum(revenue for _, revenue in counts.values())
    return [
        SegmentOut(
            segment=segment,
            members=counts.get(segment, (0, 0))[0],
            share_of_members=rate(counts.get(segment, (0, 0))[0], total_members),
            share_of_revenue=rate(counts.get(segment, (0, 0))[1], total_revenue),
            revenue=counts.get(segment, (0, 0))[1],
        )
        for segment in SEGMENTS
    ]


async def points_by_expiry_month(program_id: int) -> ChartData[ExpiryMonth]:
    """Points outstanding in lots, by the month (program time zone) they expire in, soonest
    first, then the points that never expire."""
    async with db.read_only() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT to_char(l.expires_at AT TIME ZONE p.timezone, 'YYYY-MM') AS month, "
                    "sum(l.remaining) AS points "
                    "FROM point_lots AS l JOIN programs AS p ON p.id = l.program_id "
                    "WHERE l.program_id = :program_id AND l.remaining > 0 "
                    "GROUP BY 1 ORDER BY 1 NULLS LAST"
                ),
                {"program_id": program_id},
            )
        ).all()
    data = [ExpiryMonth(month=row.month or "never", points=row.points) for row in rows]
    return ChartData[ExpiryMonth](data=data, note=None if data else "no points outstanding")


_MEMBERS_PER_TIER = text(
    """
SELECT t.key, t.name, count(a.member_id) AS members
  FROM tiers AS t
  LEFT JOIN accounts AS a ON a.program_id = t.program_id AND a.tier_key = t.key
 WHERE t.program_id = :program_id
 GROUP BY t.key, t.name, t.threshold
 ORDER BY t.threshold
"""
)


async def members_per_tier(program_id: int) -> ChartData[TierCount]:
    """Members per VIP tier, lowest threshold first."""
    async with db.read_only() as conn:
        rows = (await conn.execute(_MEMBERS_PER_TIER, {"program_id": program_id})).all()
    if not rows:
        return ChartData[TierCount](data=[], note="no tiers yet")
    return ChartData[TierCount](
        data=[TierCount(key=r.key, name=r.name, members=r.members) for r in rows]
    )


async def referral_funnel(
    program_id: int, start: datetime, end: datetime
) -> ChartData[FunnelStage]:
    async with db.read_only() as conn:
        funnel = await _referral_funnel(conn, program_id, start, end)
    if funnel is None:
        return ChartData[FunnelStage](data=[], note="no referrals yet")
    return ChartData[FunnelStage](
        data=[
            FunnelStage(stage="invited", count=funnel.invited),
            FunnelStage(stage="qualified", count=funnel.qualified),
            FunnelStage(stage="rewarded", count=funnel.rewarded),
        ]
    )


# --- Feedback ---------------------------------------------------------------------------

# An erased member's new comments are dropped like the rest of their personal data. The
# insert is a CTE reading the member's CTE: Citus plans an INSERT ... SELECT straight from a
# tenant table for every shard, and this form one step per CTE, each on the one shard.
_FEEDBACK_SQL = text(
    """
WITH m AS (
    SELECT program_id, id, erased_at FROM members
     WHERE program_id = :program_id AND external_id = :member
), saved AS (
    INSERT INTO member_feedback (program_id, member_id, score, comment, channel, created_at)
    SELECT m.program_id, m.id, CAST(:score AS integer),
           CASE WHEN m.erased_at IS NULL THEN CAST(:comment AS text) END,
           CAST(:channel AS text), CAST(:now AS timestamptz)
      FROM m
    RETURNING id, score, comment, channel, created_at
)
SELECT id, score, comment, channel, created_at FROM saved
"""
)


async def record_feedback(
    program_id: int, member: str, body: FeedbackCreate, request: IdempotencyRequest | None
) -> Reply:
    async def work(conn: Connection) -> Reply:
        row = (
            await conn.execute(
                _FEEDBACK_SQL,
                {
                    "program_id": program_id,
                    "member": member,
                    "score": body.score,
                    "comment": body.comment,
                    "channel": body.channel,
                    "now": clock.now(),
                },
            )
        ).first()
        if row is None:
            raise NotFoundError(f"No member {member!r} in this program.")
        out = FeedbackOut(
            id=row.id,
            member_id=member,
            score=row.score,
            comment=row.comment,
            channel=row.channel,
            created_at=row.created_at,
        )
        return Reply(out.model_dump_json())

    return await run_once(program_id, request, work)
