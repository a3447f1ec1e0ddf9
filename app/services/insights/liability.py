"""The points liability roll-forward (api.md, docs/insights.md "Points liability").

Every ledger entry moves the liability (the points members can still spend: available plus
held) at the moment it becomes available: an available entry when it is written, a pending
one when its release row says it was released. Grouping those moments by period (month or
week in the program's time zone) and by kind gives each row's flows; the opening of the
first row is everything before it, and each row's closing is its opening plus its flows, so
every row balances and follows the previous one by construction, and the closing equals the
sum of the members' available and held points at the period's end.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from sqlalchemy import text

from app import db
from app.clock import clock
from app.errors import NotFoundError, ValidationError
from app.schemas.insights import BreakageBasis, LiabilityOut, LiabilityRow
from app.services.insights.insights import rate

EARNED_KINDS = ("earn", "order", "bonus", "referral", "import")
REDEEMED_KINDS = ("redeem", "restore")
EXPIRED_KINDS = ("expire",)
ADJUSTED_KINDS = ("adjust", "refund")
STEPS = {"month": "1 month", "week": "1 week"}
DEFAULT_SPAN = {"month": timedelta(days=365), "week": timedelta(weeks=12)}
MAX_PERIODS = 520


def _kinds(kinds: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{kind}'" for kind in kinds) + ")"


_ROLL_FORWARD = text(
    f"""
WITH prog AS (
    SELECT timezone, CAST(:unit AS text) AS unit, CAST(CAST(:step AS text) AS interval) AS step
      FROM programs WHERE id = :program_id
), periods AS (
    SELECT gs AS local_start, gs AT TIME ZONE prog.timezone AS period_start,
           (gs + prog.step) AT TIME ZONE prog.timezone AS period_end
      FROM prog, generate_series(
               date_trunc(prog.unit, CAST(:start AS timestamptz) AT TIME ZONE prog.timezone),
               date_trunc(prog.unit, CAST(:end AS timestamptz) AT TIME ZONE prog.timezone
                                     - interval '1 microsecond'),
               prog.step) AS gs
), entries AS (
    SELECT e.kind, e.points, e.status, e.created_at, r.released_at,
           CASE WHEN e.status = 'available' THEN e.created_at ELSE r.released_at END
               AS available_from
      FROM point_entries AS e
      LEFT JOIN point_releases AS r ON r.entry_id = e.id
     WHERE e.program_id = :program_id
), moved AS (
    SELECT date_trunc(prog.unit, en.available_from AT TIME ZONE prog.timezone) AS local_start,
           en.kind, en.points
      FROM entries AS en CROSS JOIN prog
     WHERE en.available_from < (SELECT max(period_end) FROM periods)
), pending_entries AS (
    -- Entries written pending (orders in a program with a return window), released or not:
    -- each period's pending total scans only these.
    SELECT points, created_at, released_at FROM entries WHERE status = 'pending'
), flows AS (
    SELECT local_start,
           COALESCE(sum(points) FILTER (WHERE kind IN {_kinds(EARNED_KINDS)}), 0) AS earned,
           COALESCE(-sum(points) FILTER (WHERE kind IN {_kinds(REDEEMED_KINDS)}), 0)
               AS redeemed,
           COALESCE(-sum(points) FILTER (WHERE kind IN {_kinds(EXPIRED_KINDS)}), 0) AS expired,
           COALESCE(sum(points) FILTER (WHERE kind IN {_kinds(ADJUSTED_KINDS)}), 0)
               AS adjusted,
           sum(points) AS net
      FROM moved GROUP BY local_start
)
SELECT p.period_start,
       COALESCE(f.earned, 0) AS earned, COALESCE(f.redeemed, 0) AS redeemed,
       COALESCE(f.expired, 0) AS expired, COALESCE(f.adjusted, 0) AS adjusted,
       (SELECT COALESCE(sum(points), 0) FROM pending_entries AS en
         WHERE en.created_at < p.period_end
           AND (en.released_at IS NULL OR en.released_at >= p.period_end)) AS pending,
       (SELECT COALESCE(sum(net), 0) FROM flows
         WHERE flows.local_start < (SELECT min(local_start) FROM periods)) AS before_first
  FROM periods AS p LEFT JOIN flows AS f ON f.local_start = p.local_start
 ORDER BY p.period_start
"""
)

_PROGRAM = text("SELECT currency, point_value_minor FROM programs WHERE id = :program_id")

_HISTORY = text(
    f"""
SELECT COALESCE(-sum(points) FILTER (WHERE kind IN {_kinds(EXPIRED_KINDS)}), 0) AS expired,
       COALESCE(-sum(points) FILTER (WHERE kind IN {_kinds(REDEEMED_KINDS)}), 0) AS redeemed,
       min(created_at) AS first_at
  FROM point_entries
 WHERE program_id = :program_id AND created_at < :end
"""
)


def resolve_range(
    interval: str, start: datetime | None, end: datetime | None
) -> tuple[datetime, datetime]:
    end = end or clock.now()
    start = start or end - DEFAULT_SPAN[interval]
    if start.tzinfo is None or end.tzinfo is None:
        raise ValidationError("`from` and `to` need a UTC offset.", loc=["query", "from"])
    if start >= end:
        raise ValidationError("`from` must be before `to`.", loc=["query", "from"])
    longest = (
        timedelta(days=31 * MAX_PERIODS) if interval == "month" else timedelta(weeks=MAX_PERIODS)
    )
    if end - start > longest:
        raise ValidationError(f"At most {MAX_PERIODS} periods.", loc=["query", "from"])
    return start, end


def _months_between(first: datetime, last: datetime) -> int:
    return max(0, (last.year - first.year) * 12 + last.month - first.month)


def _value(points: int, point_value_minor: Decimal) -> int:
    return int((Decimal(points) * point_value_minor).to_integral_value(rounding=ROUND_FLOOR))


async def liability(
    program_id: int, interval: str, start: datetime | None, end: datetime | None
) -> LiabilityOut:
    start, end = resolve_range(interval, start, end)
    params: dict[str, Any] = {
        "program_id": program_id,
        "unit": interval,
        "step": STEPS[interval],
        "start": start,
        "end": end,
    }
    async with db.transaction() as conn:
        # One snapshot for the rows and the breakage basis.
        await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        program = (await conn.execute(_PROGRAM, {"program_id": program_id})).first()
        if program is None:
            raise NotFoundError("No such program.")
        periods = (await conn.execute(_ROLL_FORWARD, params)).all()
        history = (await conn.execute(_HISTORY, {"program_id": program_id, "end": end})).one()
    rows: list[LiabilityRow] = []
    closing = periods[0].before_first if periods else 0
    for period in periods:
        opening = closing
        closing = opening + period.earned - period.redeemed - period.expired + period.adjusted
        rows.append(
            LiabilityRow(
                period_start=period.period_start,
                opening=opening,
                earned=period.earned,
                redeemed=period.redeemed,
                expired=period.expired,
                adjusted=period.adjusted,
                closing=closing,
                closing_value=_value(closing, program.point_value_minor),
                pending=period.pending,
            )
        )
    months = _months_between(history.first_at, end) if history.first_at else 0
    settled = history.expired + history.redeemed
    return LiabilityOut(
        currency=program.currency,
        interval=interval,
        rows=rows,
        breakage_rate=rate(history.expired, settled),
        breakage_basis=BreakageBasis(
            expired_points=history.expired,
            redeemed_points=history.redeemed,
            months=months,
            description=(
                f"{history.expired} expired of {settled} points that left the liability "
                f"(expired or redeemed net of restores) over {months} months of history"
                if settled
                else "no points have expired or been redeemed yet: no basis, rate 0"
            ),
        ),
    )
