"""Worker job: reminder events, each once per occurrence, for the shop's e-mail or SMS
system (docs/campaigns.md, "Reminder events").

- ``points.expiring`` ``{points, expires_at}``: a member's points that expire at one time
  (lots expire at the end of a local day, so one reminder per member and day), sent when
  that time is at most ``expiry_reminder_days`` away;
- ``member.birthday_upcoming`` ``{birthday_on, days_until}``: the member's next birthday
  (program time zone; 29 February is 28 February in other years) is at most
  ``birthday_reminder_days`` away.

A program is looked at once per ``CHECK_INTERVAL`` (its row locked with SKIP LOCKED, so
replicas share programs); the primary keys of ``points_expiring_reminders`` (member, expiry
time) and ``birthday_reminders`` (member, date) make each reminder once, however often and
wherever the job runs. These events tell of a coming moment, not of a change to the
member's account: their ``sequence`` is the member's current one, taken without a lock and
not advanced, so they sort after the change they follow and lock no member.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import text

from app import db
from app.services.campaigns.audience import DAYS_TO_BIRTHDAY, AudienceSql, audience_sql

CHECK_INTERVAL = timedelta(hours=1)

_DUE_PROGRAM = text(
    """
SELECT id, timezone, expiry_reminder_days, birthday_reminder_days FROM programs
 WHERE (expiry_reminder_days IS NOT NULL OR birthday_reminder_days IS NOT NULL)
   AND (reminders_checked_at IS NULL OR reminders_checked_at <= :due_before)
 ORDER BY id
 LIMIT 1
   FOR NO KEY UPDATE SKIP LOCKED
"""
)
_CHECKED = text("UPDATE programs SET reminders_checked_at = :now WHERE id = :id")

_EXPIRING = text(
    """
WITH due AS (
    SELECT l.member_id, l.expires_at, sum(l.remaining) AS points
      FROM point_lots AS l
     WHERE l.expires_at > CAST(:now AS timestamptz) AND l.expires_at <= :horizon AND l.remaining > 0
       AND l.program_id = :program_id
     GROUP BY l.member_id, l.expires_at
), reminded AS (
    INSERT INTO points_expiring_reminders (member_id, expires_at, program_id, points,
                                           reminded_at)
    SELECT member_id, expires_at, CAST(:program_id AS bigint), points,
           CAST(:now AS timestamptz) FROM due
    ON CONFLICT (member_id, expires_at, program_id) DO NOTHING
    RETURNING member_id, expires_at, points
)
INSERT INTO events (program_id, type, member_id, data, created_at)
SELECT CAST(:program_id AS bigint), 'points.expiring', r.member_id,
       jsonb_build_object('member_id', m.external_id, 'sequence', a.version,
                          'points', r.points, 'expires_at', r.expires_at),
       CAST(:now AS timestamptz)
  FROM reminded AS r
  JOIN members AS m ON m.id = r.member_id AND m.program_id = CAST(:program_id AS bigint)
  JOIN accounts AS a
    ON a.member_id = r.member_id AND a.program_id = CAST(:program_id AS bigint)
 WHERE m.erased_at IS NULL
"""
)

_BIRTHDAYS = """
WITH due AS (
    SELECT m.id AS member_id, m.external_id,
           CAST(:today AS date) + {days_to_birthday} AS birthday_on,
           {days_to_birthday} AS days_until
      FROM members AS m
     WHERE {where}
), reminded AS (
    INSERT INTO birthday_reminders (member_id, birthday_on, program_id, reminded_at)
    SELECT member_id, birthday_on, CAST(:program_id AS bigint), CAST(:now AS timestamptz)
      FROM due
    ON CONFLICT (member_id, birthday_on, program_id) DO NOTHING
    RETURNING member_id, birthday_on
)
INSERT INTO events (program_id, type, member_id, data, created_at)
SELECT CAST(:program_id AS bigint), 'member.birthday_upcoming', r.member_id,
       jsonb_build_object('member_id', due.external_id, 'sequence', a.version,
                          'birthday_on', r.birthday_on, 'days_until', due.days_until),
       CAST(:now AS timestamptz)
  FROM reminded AS r JOIN due USING (member_id)
  JOIN accounts AS a
    ON a.member_id = r.member_id AND a.program_id = CAST(:program_id AS bigint)
"""


def _birthday_statement(sql: AudienceSql) -> str:
    return _BIRTHDAYS.format(days_to_birthday=DAYS_TO_BIRTHDAY, where=sql.where)


async def send_due_reminders(now: datetime) -> int:
    """Handle one program whose reminders are due; returns 1 when it handled one."""
    async with db.transaction() as conn:
        program = (await conn.execute(_DUE_PROGRAM, {"due_before": now - CHECK_INTERVAL})).first()
        if program is None:
            return 0
        if program.expiry_reminder_days is not None:
            await conn.execute(
                _EXPIRING,
                {
                    "program_id": program.id,
                    "now": now,
                    "horizon": now + timedelta(days=program.expiry_reminder_days),
                },
            )
        if program.birthday_reminder_days is not None:
            today = now.astimezone(ZoneInfo(program.timezone)).date()
            sql = audience_sql(
                {"birthday_within_days": program.birthday_reminder_days},
                program.id,
                today,
                program.timezone,
            )
            await conn.execute(text(_birthday_statement(sql)), {**sql.params, "now": now})
        await conn.execute(_CHECKED, {"now": now, "id": program.id})
    return 1
