"""Worker job: the birthday bonus (``birthday_bonus_points``), once per member per year, on
the member's birthday in the program's time zone (29 February counts as 28 February in other
years).

Each program is handled once per local day: its row is locked (SKIP LOCKED, so replicas share
the work) and ``birthday_bonus_through`` remembers the last day done, so a rerun grants
nothing twice, and days missed while no worker ran (up to a week) are caught up. The
``birthday_bonuses`` primary key (member, year) is the last word against doubles.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import text

from app import db
from app.services.ledger.postings import credit_many_ctes
from app.services.tiers import tier_evaluation

CATCH_UP_DAYS = 7

_DUE_PROGRAM = text(
    """
SELECT id, timezone, birthday_bonus_points, birthday_bonus_through FROM programs
 WHERE birthday_bonus_points > 0
   AND (birthday_bonus_through IS NULL
        OR birthday_bonus_through < (CAST(:now AS timestamptz) AT TIME ZONE timezone)::date)
 ORDER BY id
 LIMIT 1
   FOR UPDATE SKIP LOCKED
"""
)

# Members whose birthday falls on one of the days, locked in id order.
_CELEBRANTS = text(
    """
SELECT m.id AS member_id, extract(year FROM d.day)::int AS year
  FROM members AS m
  JOIN generate_series(CAST(:first_day AS date), CAST(:last_day AS date), interval '1 day')
       AS d(day)
    ON (extract(month FROM m.birthday) = extract(month FROM d.day)
        AND extract(day FROM m.birthday) = extract(day FROM d.day))
    OR (extract(month FROM m.birthday) = 2 AND extract(day FROM m.birthday) = 29
        AND extract(month FROM d.day) = 2 AND extract(day FROM d.day) = 28
        AND NOT (extract(year FROM d.day)::int % 4 = 0
                 AND (extract(year FROM d.day)::int % 100 <> 0
                      OR extract(year FROM d.day)::int % 400 = 0)))
 WHERE m.program_id = :program_id AND m.birthday IS NOT NULL AND m.erased_at IS NULL
   AND NOT EXISTS (SELECT 1 FROM birthday_bonuses AS b
                    WHERE b.member_id = m.id AND b.year = extract(year FROM d.day)::int)
 ORDER BY m.id
"""
)
_LOCK = text(
    "SELECT member_id FROM accounts WHERE program_id = :program_id "
    "AND member_id = ANY(:member_ids) ORDER BY member_id FOR UPDATE"
)

_GRANT = text(
    f"""
WITH due AS (
    SELECT d.member_id, d.year, CAST(:points AS bigint) AS points
      FROM unnest(CAST(:member_ids AS bigint[]), CAST(:years AS int[])) AS d(member_id, year)
), {credit_many_ctes("'bonus'", "'birthday'", "'job:birthday_bonus'")}, granted AS (
    INSERT INTO birthday_bonuses (member_id, year, program_id, entry_id, granted_at)
    SELECT entry.member_id, due.year, entry.program_id, entry.id, CAST(:now AS timestamptz)
      FROM entry JOIN due USING (member_id)
)
SELECT count(*) FROM entry
"""
)


async def grant_birthday_bonuses(now: datetime) -> int:
    """Handle one program's birthdays up to its local today; returns members granted (or 1
    when a program was handled with nobody to grant, so the worker moves on to the next)."""
    async with db.transaction() as conn:
        program = (await conn.execute(_DUE_PROGRAM, {"now": now})).first()
        if program is None:
            return 0
        today = now.astimezone(ZoneInfo(program.timezone)).date()
        first_day = max(
            (program.birthday_bonus_through or today - timedelta(days=1)) + timedelta(days=1),
            today - timedelta(days=CATCH_UP_DAYS - 1),
        )
        rows = (
            await conn.execute(
                _CELEBRANTS,
                {"program_id": program.id, "first_day": first_day, "last_day": today},
            )
        ).all()
        # One bonus per member and year, even when the catch-up spans two birthdays' days.
        chosen: dict[int, int] = {}
        for row in rows:
            chosen.setdefault(row.member_id, row.year)
        granted = 0
        if chosen:
            member_ids = sorted(chosen)
            await conn.execute(_LOCK, {"program_id": program.id, "member_ids": member_ids})
            granted = (
                await conn.execute(
                    _GRANT,
                    {
                        "program_id": program.id,
                        "member_ids": member_ids,
                        "years": [chosen[m] for m in member_ids],
                        "points": program.birthday_bonus_points,
                        "now": now,
                    },
                )
            ).scalar_one()
            if await tier_evaluation.program_has_tiers(program.id, conn):
                await tier_evaluation.evaluate_locked(conn, program.id, member_ids, now)
        await conn.execute(
            text("UPDATE programs SET birthday_bonus_through = :today WHERE id = :id"),
            {"today": today, "id": program.id},
        )
    return max(int(granted), 1)
