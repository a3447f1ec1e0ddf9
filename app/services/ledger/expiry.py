"""Worker job: points whose lots reached ``expires_at`` expire (an ``expire`` entry).

Only points the member could spend expire: when expiring lots also back points that are held
at checkout, the held part stays until the hold is captured or given back, and expires on a
later run. A member with nothing available is skipped by the candidate query, so such
members cannot starve the others.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text

from app.services.ledger.postings import ENTRY_JSON
from app.services.members import member_batches
from app.services.members.member_batches import ALL_MEMBERS, Lane

_DUE_PROGRAM = text(
    """
SELECT l.program_id
  FROM point_lots AS l
  JOIN accounts AS a ON a.member_id = l.member_id AND a.program_id = l.program_id
 WHERE l.remaining > 0 AND l.expires_at <= :now AND a.available > 0
   AND l.member_id % :lanes = :lane
 ORDER BY l.expires_at
 LIMIT 1
"""
)
_DUE = text(
    """
SELECT l.member_id
  FROM point_lots AS l
  JOIN accounts AS a ON a.member_id = l.member_id AND a.program_id = l.program_id
 WHERE l.program_id = :program_id AND l.remaining > 0 AND l.expires_at <= :now
   AND a.available > 0 AND l.member_id % :lanes = :lane
 ORDER BY l.expires_at
 LIMIT :batch
"""
)

_EXPIRE = text(
    f"""
WITH spendable AS (
    SELECT member_id, available FROM accounts
     WHERE program_id = :program_id AND member_id = ANY(:member_ids) AND available > 0
), due AS (
    SELECT l.id, l.member_id, l.program_id, l.remaining, s.available,
           sum(l.remaining) OVER (PARTITION BY l.member_id ORDER BY l.expires_at, l.id)
               AS running
      FROM point_lots AS l JOIN spendable AS s USING (member_id)
     WHERE l.program_id = :program_id AND l.remaining > 0 AND l.expires_at <= :now
), taken AS (
    UPDATE point_lots AS l
       SET remaining = l.remaining
                       - least(d.remaining, d.available - (d.running - d.remaining))
      FROM due AS d
     WHERE l.program_id = :program_id AND l.id = d.id
       AND d.running - d.remaining < d.available
 RETURNING l.member_id, l.program_id,
           least(d.remaining, d.available - (d.running - d.remaining)) AS points
), per_member AS (
    SELECT member_id, program_id, sum(points) AS points FROM taken GROUP BY 1, 2
), entry AS (
    INSERT INTO point_entries (program_id, member_id, kind, points, status, reason, actor,
                               created_at)
    SELECT program_id, member_id, 'expire', -points, 'available', 'points expired',
           'job:expire_points', CAST(:now AS timestamptz)
      FROM per_member
     WHERE points > 0
 RETURNING *
), acc AS (
    UPDATE accounts AS a
       SET available = a.available + entry.points, version = a.version + 1, updated_at = :now
      FROM entry
     WHERE a.program_id = :program_id AND a.member_id = entry.member_id
 RETURNING a.member_id, a.available, a.pending, a.held, a.version
), event AS (
    INSERT INTO events (program_id, type, member_id, data, created_at)
    SELECT entry.program_id, 'points.expired', entry.member_id,
           jsonb_build_object('member_id', m.external_id, 'sequence', acc.version,
                              'entry', {ENTRY_JSON.format(e="entry", status="entry.status")},
                              'balance', jsonb_build_object('available', acc.available,
                                                            'pending', acc.pending,
                                                            'held', acc.held)),
           CAST(:now AS timestamptz)
      FROM entry
      JOIN acc USING (member_id)
      JOIN members AS m ON m.program_id = :program_id AND m.id = entry.member_id
)
SELECT count(*) FROM entry
"""
)


async def expire_due_points(now: datetime, batch_size: int = 1000, lane: Lane = ALL_MEMBERS) -> int:
    """Expire what is left of lots past ``expires_at``; returns how many members changed."""
    return await member_batches.run_batch(_DUE_PROGRAM, _DUE, _EXPIRE, now, batch_size, lane)
