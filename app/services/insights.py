"""Insights: RFM segments and lifecycle stages, the overview figures, feedback and NPS.

Segments and lifecycle stages are computed in SQL for whole programs at once (one statement
into a temporary table: aggregate each member's counted orders, score recency, frequency and
monetary value in quintiles with window functions, map the scores to a segment and a
lifecycle stage; then ``member_insights`` is updated where a row changed).
A refresh runs from the worker for every program whose insights are older than
``REFRESH_INTERVAL``, and on demand (``POST /v1/insights/refresh``). Each refresh holds a
transaction-level advisory lock per program, so worker replicas and on-demand refreshes never
compute the same program at once; the rows are written only where they changed.

An order counts as a purchase when it is not fully refunded (``refunded_amount < amount``);
what it is worth is ``amount - refunded_amount``. docs/insights.md defines every figure.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app import db
from app.clock import clock
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
from app.services.idempotency import IdempotencyRequest, StoredResponse, run_once

# How old a program's insights may get before the worker recomputes them. Scores depend only
# on the orders (recency is ranked, and every member's recency ages alike), lifecycle stages
# on the day; an hour keeps both fresh without recomputing large programs all the time.
REFRESH_INTERVAL = timedelta(hours=1)
# Programs refreshed together by one job call (one statement; small programs cost little).
REFRESH_BATCH = 200
# First key of the two-key advisory locks that serialise refreshes of a program.
_LOCK_CLASS = 0x1A51  # "insights"
# A refresh of a large program runs longer than the service's default statement timeout.
_REFRESH_SETTINGS = (
    "SET LOCAL statement_timeout = '30min'",
    "SET LOCAL work_mem = '256MB'",
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
# the aggregation (a statement that writes a real table may not), and the stage then
# updates only the rows that changed.
_STAGE_SQL = f"""
CREATE TEMPORARY TABLE insight_stage ON COMMIT DROP AS
WITH prog AS (
    SELECT id, timezone, lifecycle_mature_days, lifecycle_churn_days,
           lifecycle_churn_interval_multiple
      FROM programs WHERE id = ANY(CAST(:ids AS bigint[]))
), stats AS (
    SELECT o.member_id, count(*) AS orders_count,
           sum(o.amount - o.refunded_amount) AS net_spend,
           min(o.occurred_at) AS first_order_at, max(o.occurred_at) AS last_order_at
      FROM orders AS o
     WHERE o.program_id = ANY(CAST(:ids AS bigint[])) AND o.refunded_amount < o.amount
     GROUP BY o.member_id
), aged AS (
    -- Recency in whole days in the program's time zone, so that same-day buyers tie.
    SELECT stats.*, mb.program_id,
           greatest(0, (CAST(:now AS timestamptz) AT TIME ZONE prog.timezone)::date
                       - (stats.last_order_at AT TIME ZONE prog.timezone)::date) AS days_since
      FROM stats JOIN members AS mb ON mb.id = stats.member_id
      JOIN prog ON prog.id = mb.program_id
), scored AS (
    SELECT s.*,
           {_SCORE.format(value="s.days_since", direction="DESC")} AS r,
           {_SCORE.format(value="s.orders_count", direction="")} AS f,
           {_SCORE.format(value="s.net_spend", direction="")} AS m
      FROM aged AS s
    WINDOW buyers AS (PARTITION BY s.program_id)
)
SELECT mb.id AS member_id, mb.program_id,
       CAST(CASE WHEN s.member_id IS NULL THEN 'prospects'
            ELSE (CAST(:grid AS text[]))[(s.r - 1) * 5 + (s.f + s.m) / 2] END AS text) AS segment,
       CAST(CASE WHEN s.member_id IS NULL THEN 'prospect'
            WHEN CAST(:now AS timestamptz) - s.last_order_at > greatest(
                     make_interval(days => prog.lifecycle_churn_days),
                     CASE WHEN s.orders_count > 1 THEN
                         (s.last_order_at - s.first_order_at) / (s.orders_count - 1)
                         * prog.lifecycle_churn_interval_multiple END)
                THEN 'churned'
            WHEN s.orders_count = 1 THEN 'new'
            WHEN CAST(:now AS timestamptz) - s.first_order_at
                 >= make_interval(days => prog.lifecycle_mature_days)
                THEN 'mature'
            ELSE 'growing' END AS text) AS lifecycle,
       s.r, s.f, s.m, CAST(coalesce(s.orders_count, 0) AS integer) AS orders_count,
       CAST(coalesce(s.net_spend, 0) AS bigint) AS net_spend, s.first_order_at, s.last_order_at
  FROM members AS mb JOIN prog ON prog.id = mb.program_id
  LEFT JOIN scored AS s ON s.member_id = mb.id
"""

_UPDATE_CHANGED_SQL = """
UPDATE member_insights AS mi
   SET segment = s.segment, lifecycle = s.lifecycle, recency_score = s.r,
       frequency_score = s.f, monetary_score = s.m, orders_count = s.orders_count,
       net_spend = s.net_spend, first_order_at = s.first_order_at,
       last_order_at = s.last_order_at, changed_at = :now
  FROM insight_stage AS s
 WHERE mi.member_id = s.member_id
   AND (mi.segment, mi.lifecycle, mi.recency_score, mi.frequency_score, mi.monetary_score,
        mi.orders_count, mi.net_spend, mi.first_order_at, mi.last_order_at)
       IS DISTINCT FROM
       (s.segment, s.lifecycle, s.r, s.f, s.m, s.orders_count, s.net_spend, s.first_order_at,
        s.last_order_at)
"""

# Members without a row yet: those created outside the API (the API gives every new member
# a prospect row), or before insights existed.
_INSERT_MISSING_SQL = """
INSERT INTO member_insights (member_id, program_id, segment, lifecycle, recency_score,
                             frequency_score, monetary_score, orders_count, net_spend,
                             first_order_at, last_order_at, changed_at)
SELECT s.member_id, s.program_id, s.segment, s.lifecycle, s.r, s.f, s.m, s.orders_count,
       s.net_spend, s.first_order_at, s.last_order_at, :now
  FROM insight_stage AS s
 WHERE NOT EXISTS (SELECT 1 FROM member_insights AS mi WHERE mi.member_id = s.member_id)
ON CONFLICT (member_id) DO NOTHING
"""
# After this many rows changed, the planner's statistics of member_insights are refreshed in
# the same transaction rather than whenever autovacuum gets to it.
_ANALYZE_AFTER_CHANGES = 50_000

_RECORD_REFRESH_SQL = """
INSERT INTO insight_refreshes (program_id, refreshed_at, members, duration_ms)
SELECT p.id, CAST(:now AS timestamptz),
       (SELECT count(*) FROM members AS m WHERE m.program_id = p.id), :duration_ms
  FROM programs AS p WHERE p.id = ANY(CAST(:ids AS bigint[]))
ON CONFLICT (program_id) DO UPDATE
   SET refreshed_at = EXCLUDED.refreshed_at, members = EXCLUDED.members,
       duration_ms = EXCLUDED.duration_ms
RETURNING program_id, refreshed_at, members, duration_ms
"""

_DUE_SQL = """
SELECT p.id FROM programs AS p LEFT JOIN insight_refreshes AS r ON r.program_id = p.id
 WHERE r.refreshed_at IS NULL OR r.refreshed_at <= :due_before
 ORDER BY r.refreshed_at NULLS FIRST, p.id
 LIMIT :batch
"""

# Re-read after the locks are held: another replica may have refreshed a program and
# committed between our first look and our lock.
_STILL_DUE_SQL = """
SELECT p.id FROM programs AS p LEFT JOIN insight_refreshes AS r ON r.program_id = p.id
 WHERE p.id = ANY(CAST(:ids AS bigint[]))
   AND (r.refreshed_at IS NULL OR r.refreshed_at <= :due_before)
"""


def _lock_key(column: str) -> str:
    return f"{_LOCK_CLASS}, CAST({column} % 2147483647 AS integer)"


async def _refresh(conn: AsyncConnection, program_ids: list[int], now: datetime) -> list[Any]:
    """Recompute the insights of these programs, whose locks the caller holds."""
    for statement in _REFRESH_SETTINGS:
        await conn.execute(text(statement))
    started = time.perf_counter()
    params = {"ids": program_ids, "now": now, "grid": _GRID_FLAT}
    await conn.execute(text(_STAGE_SQL), params)
    await conn.execute(text("ANALYZE insight_stage"))
    changed = (await conn.execute(text(_UPDATE_CHANGED_SQL), params)).rowcount or 0
    changed += (await conn.execute(text(_INSERT_MISSING_SQL), params)).rowcount or 0
    if changed >= _ANALYZE_AFTER_CHANGES:
        await conn.execute(text("ANALYZE member_insights"))
    duration_ms = round((time.perf_counter() - started) * 1000)
    return list(
        (
            await conn.execute(
                text(_RECORD_REFRESH_SQL),
                {"ids": program_ids, "now": now, "duration_ms": duration_ms},
            )
        ).all()
    )


async def refresh_program(program_id: int, now: datetime | None = None) -> RefreshOut:
    """Recompute one program's segments and lifecycle stages now (waits for a refresh of the
    same program that is already running, then runs again on what it committed)."""
    at = now or clock.now()
    async with db.transaction() as conn:
        await conn.execute(
            text(f"SELECT pg_advisory_xact_lock({_lock_key(':id')})"), {"id": program_id}
        )
        rows = await _refresh(conn, [program_id], at)
    if not rows:
        raise NotFoundError("No such program.")
    row = rows[0]
    return RefreshOut(
        members=row.members, refreshed_at=row.refreshed_at, duration_ms=row.duration_ms
    )


async def refresh_due_insights(now: datetime) -> int:
    """Worker job: refresh up to ``REFRESH_BATCH`` programs whose insights are older than
    ``REFRESH_INTERVAL``; returns how many. Programs another replica is refreshing are
    skipped (their advisory lock is taken), so replicas share the work."""
    due_before = now - REFRESH_INTERVAL
    async with db.transaction() as conn:
        candidates = list(
            (
                await conn.execute(
                    text(_DUE_SQL), {"due_before": due_before, "batch": REFRESH_BATCH}
                )
            ).scalars()
        )
        if not candidates:
            return 0
        locked = list(
            (
                await conn.execute(
                    text(
                        "SELECT id FROM unnest(CAST(:ids AS bigint[])) AS id "
                        f"WHERE pg_try_advisory_xact_lock({_lock_key('id')})"
                    ),
                    {"ids": candidates},
                )
            ).scalars()
        )
        if not locked:
            return 0
        due = list(
            (
                await conn.execute(text(_STILL_DUE_SQL), {"ids": locked, "due_before": due_before})
            ).scalars()
        )
        if not due:
            return 0
        await _refresh(conn, due, now)
    return len(due)


# --- Overview ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReferralFunnel:
    invited: int
    qualified: int
    rewarded: int


async def _referral_funnel(
    conn: AsyncConnection, program_id: int, start: datetime, end: datetime
) -> ReferralFunnel | None:
    """Referrals created in the period, by how far they got; None while the program has no
    referrals to count (the referrals table does not exist yet).

    When it does, this becomes one query (statuses of api.md):
    ``SELECT count(*) AS invited,
    count(*) FILTER (WHERE status IN ('qualified', 'rewarded', 'capped')) AS qualified,
    count(*) FILTER (WHERE status IN ('rewarded', 'capped')) AS rewarded
    FROM referrals WHERE program_id = :program_id AND created_at >= :from AND
    created_at < :to`` -- and the overview's referral_conversion_rate, the dashboard's funnel
    and CLV's referral revenue (``_referral_revenue``) follow from it.
    """
    return None


async def _referral_revenue(conn: AsyncConnection, program_id: int) -> int:
    """Net spend of referred members, credited to the lifetime value of their referrers
    (domain.md: CLV is repeat purchases plus what referrals bring). 0 until referrals exist:
    then ``SELECT sum(mi.net_spend) FROM referrals AS r JOIN member_insights AS mi ON
    mi.member_id = r.referee_id WHERE r.program_id = :program_id AND r.status IN
    ('qualified', 'rewarded', 'capped')``."""
    return 0


_OVERVIEW_ORDERS_SQL = """
WITH buyers AS (
    SELECT o.member_id,
           count(*) FILTER (WHERE o.occurred_at >= :start) AS period_orders,
           coalesce(sum(o.amount - o.refunded_amount) FILTER (WHERE o.occurred_at >= :start), 0)
               AS period_revenue,
           bool_or(o.occurred_at >= :base_start AND o.occurred_at < :start) AS at_start,
           bool_or(o.occurred_at >= :retained_start) AS retained
      FROM orders AS o
     WHERE o.program_id = :program_id AND o.occurred_at >= least(:base_start, :start)
       AND o.occurred_at < :end AND o.refunded_amount < o.amount
     GROUP BY o.member_id
)
SELECT count(*) FILTER (WHERE period_orders > 0) AS active_members,
       count(*) FILTER (WHERE period_orders > 1) AS repeat_members,
       coalesce(sum(period_orders), 0) AS orders,
       coalesce(sum(period_revenue), 0) AS revenue,
       count(*) FILTER (WHERE at_start) AS customers_at_start,
       count(*) FILTER (WHERE at_start AND NOT retained) AS churned
  FROM buyers
"""

_OVERVIEW_REST_SQL = """
SELECT p.currency, p.point_value_minor, p.lifecycle_churn_days,
       (SELECT count(*) FROM members AS m
         WHERE m.program_id = p.id AND m.created_at < :end) AS members,
       (SELECT count(*) FROM members AS m
         WHERE m.program_id = p.id AND m.created_at >= :start AND m.created_at < :end)
           AS new_members,
       a.points_outstanding, a.lifetime_earned, a.lifetime_redeemed,
       (SELECT coalesce(sum(l.remaining), 0) FROM point_lots AS l
         WHERE l.program_id = p.id AND l.remaining > 0 AND l.expires_at < :expiring_before)
           AS points_expiring,
       clv.spend AS lifetime_spend, clv.customers,
       (SELECT r.refreshed_at FROM insight_refreshes AS r WHERE r.program_id = p.id)
           AS refreshed_at,
       nps.responses, nps.promoters, nps.detractors
  FROM programs AS p
 CROSS JOIN LATERAL (
    SELECT coalesce(sum(greatest(ac.available + ac.held, 0) + ac.pending), 0)
               AS points_outstanding,
           coalesce(sum(ac.lifetime_earned), 0) AS lifetime_earned,
           coalesce(sum(ac.lifetime_redeemed), 0) AS lifetime_redeemed
      FROM accounts AS ac WHERE ac.program_id = p.id) AS a
 CROSS JOIN LATERAL (
    SELECT coalesce(sum(mi.net_spend), 0) AS spend,
           count(*) FILTER (WHERE mi.orders_count > 0) AS customers
      FROM member_insights AS mi WHERE mi.program_id = p.id) AS clv
 CROSS JOIN LATERAL (
    SELECT count(*) AS responses,
           count(*) FILTER (WHERE latest.score >= 9) AS promoters,
           count(*) FILTER (WHERE latest.score <= 6) AS detractors
      FROM (SELECT DISTINCT ON (f.member_id) f.score
              FROM member_feedback AS f
             WHERE f.program_id = p.id AND f.created_at >= :start AND f.created_at < :end
             ORDER BY f.member_id, f.created_at DESC, f.id DESC) AS latest) AS nps
 WHERE p.id = :program_id
"""


def _fraction(numerator: int, denominator: int, places: str = "0.0001") -> Decimal:
    if denominator == 0:
        return Decimal(0)
    return (Decimal(numerator) / Decimal(denominator)).quantize(
        Decimal(places), rounding=ROUND_HALF_UP
    )


def decimal_text(value: Decimal) -> str:
    """0.2500 -> "0.25", 1.0000 -> "1", 0 -> "0"."""
    normalized = value.normalize()
    return format(normalized, "f") if normalized == normalized.to_integral() else str(normalized)


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
    async with db.transaction() as conn:
        await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        for statement in _OVERVIEW_SETTINGS:
            await conn.execute(text(statement))
        rest = (
            await conn.execute(
                text(_OVERVIEW_REST_SQL),
                {
                    "program_id": program_id,
                    "start": start,
                    "end": end,
                    "expiring_before": now + EXPIRING_WINDOW,
                },
            )
        ).first()
        if rest is None:
            raise NotFoundError("No such program.")
        churn_window = timedelta(days=rest.lifecycle_churn_days)
        orders = (
            await conn.execute(
                text(_OVERVIEW_ORDERS_SQL),
                {
                    "program_id": program_id,
                    "start": start,
                    "end": end,
                    "base_start": start - churn_window,
                    "retained_start": end - churn_window,
                },
            )
        ).one()
        funnel = await _referral_funnel(conn, program_id, start, end)
        referral_revenue = await _referral_revenue(conn, program_id)
    value = (Decimal(rest.points_outstanding) * rest.point_value_minor).to_integral_value(
        rounding=ROUND_FLOOR
    )
    return OverviewOut.model_validate(
        {
            "from": start,
            "to": end,
            "currency": rest.currency,
            "members": rest.members,
            "new_members": rest.new_members,
            "active_members": orders.active_members,
            "repeat_purchase_rate": rate(orders.repeat_members, orders.active_members),
            "churn_rate": rate(orders.churned, orders.customers_at_start),
            "average_order_value": orders.revenue // orders.orders if orders.orders else 0,
            "customer_lifetime_value": (
                (rest.lifetime_spend + referral_revenue) // rest.customers if rest.customers else 0
            ),
            "points_outstanding": rest.points_outstanding,
            "points_outstanding_value": int(value),
            "points_expiring_30d": rest.points_expiring,
            "redemption_rate": rate(rest.lifetime_redeemed, rest.lifetime_earned),
            "referral_conversion_rate": (
                rate(funnel.qualified, funnel.invited) if funnel is not None else "0"
            ),
            "nps": net_promoter_score(rest.promoters, rest.detractors, rest.responses),
            "nps_responses": rest.responses,
            "insights_refreshed_at": rest.refreshed_at,
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


async def members_per_tier(program_id: int) -> ChartData[TierCount]:
    """Members per VIP tier. Tiers are not built yet; when they are, the dashboard reads
    them from ``GET /v1/tiers`` instead (see app/static/dashboard/dashboard.js)."""
    return ChartData[TierCount](data=[], note="no tiers yet")


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

# An erased member's new comments are dropped like the rest of their personal data.
_FEEDBACK_SQL = text(
    """
INSERT INTO member_feedback (program_id, member_id, score, comment, channel, created_at)
SELECT m.program_id, m.id, :score, CASE WHEN m.erased_at IS NULL THEN CAST(:comment AS text) END,
       :channel, :now
  FROM members AS m WHERE m.program_id = :program_id AND m.external_id = :member
RETURNING id, score, comment, channel, created_at
"""
)


async def record_feedback(
    program_id: int, member: str, body: FeedbackCreate, request: IdempotencyRequest | None
) -> StoredResponse:
    async def work(conn: AsyncConnection) -> tuple[int, str]:
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
        return 201, out.model_dump_json()

    return await run_once(program_id, request, work)
