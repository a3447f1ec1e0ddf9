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
from app.services import tier_evaluation
from app.services.ledger import ENTRY_JSON, EXPIRES_AT_SQL

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
    "SELECT member_id FROM accounts WHERE member_id = ANY(:member_ids) "
    "ORDER BY member_id FOR UPDATE"
)

_GRANT = text(
    f"""
WITH due AS (
    SELECT * FROM unnest(CAST(:member_ids AS bigint[]), CAST(:years AS int[]))
        AS d(member_id, year)
), acc AS (
    UPDATE accounts AS a
       SET available = a.available + :points,
           lifetime_earned = a.lifetime_earned + :points,
           version = a.version + 1,
           updated_at = :now
      FROM due
     WHERE a.member_id = due.member_id
 RETURNING a.member_id, a.program_id, a.available, a.pending, a.held, a.version
), entry AS (
    INSERT INTO point_entries (program_id, member_id, kind, points, status, reason, actor,
                               created_at, expires_at)
    SELECT acc.program_id, acc.member_id, 'bonus', CAST(:points AS bigint), 'available',
           'birthday', 'job:birthday_bonus', CAST(:now AS timestamptz), {EXPIRES_AT_SQL}
      FROM acc JOIN programs AS p ON p.id = acc.program_id
 RETURNING *
), granted AS (
    INSERT INTO birthday_bonuses (member_id, year, program_id, entry_id, granted_at)
    SELECT entry.member_id, due.year, entry.program_id, entry.id, CAST(:now AS timestamptz)
      FROM entry JOIN due USING (member_id)
), lot AS (
    INSERT INTO point_lots (program_id, member_id, entry_id, points, remaining, expires_at,
                            created_at)
    SELECT entry.program_id, entry.member_id, entry.id, entry.points, fresh.remaining,
           entry.expires_at, entry.created_at
      FROM entry JOIN acc USING (member_id)
     CROSS JOIN LATERAL (
           SELECT greatest(acc.available + acc.held, 0)
                - greatest(acc.available + acc.held - entry.points, 0) AS remaining) AS fresh
     WHERE fresh.remaining > 0
), event AS (
    INSERT INTO events (program_id, type, member_id, data, created_at)
    SELECT entry.program_id, 'points.earned', entry.member_id,
           jsonb_build_object('member_id', m.external_id, 'sequence', acc.version,
                              'entry', {ENTRY_JSON.format(e="entry", status="entry.status")},
                              'balance', jsonb_build_object('available', acc.available,
                                                            'pending', acc.pending,
                                                            'held', acc.held)),
           entry.created_at
      FROM entry JOIN acc USING (member_id) JOIN members AS m ON m.id = entry.member_id
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
            await conn.execute(_LOCK, {"member_ids": member_ids})
            granted = (
                await conn.execute(
                    _GRANT,
                    {
                        "member_ids": member_ids,
                        "years": [chosen[m] for m in member_ids],
                        "points": program.birthday_bonus_points,
                        "now": now,
                    },
                )
            ).scalar_one()
            if await tier_evaluation.program_has_tiers(program.id):
                await tier_evaluation.evaluate_locked(conn, member_ids, now)
        await conn.execute(
            text("UPDATE programs SET birthday_bonus_through = :today WHERE id = :id"),
            {"today": today, "id": program.id},
        )
    return max(int(granted), 1)
