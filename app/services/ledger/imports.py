"""Bulk postings for imports: credit many members at once, set-based, in one statement.

``credit_imported`` posts opening balances (``import`` entries, at most one per member: a
unique index on the ledger says so) and the points of imported historical orders (``order``
entries). The caller holds the account rows of every member it passes, taken in ascending id
order in its own short transaction (app/services/imports/), so this statement sees every
committed change for them. Like every credit it writes, per entry, the entry, the lot (after
any refund debt is repaid, exactly as ``NEW_LOT_REMAINING`` in checkout/orders.py does), and
a ``points.earned`` event, and it bumps the account once per entry, so each event keeps a
sequence number of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text

from app.db import Connection
from app.services.ledger.postings import ENTRY_JSON

# A lot with no expiry of its own expires like any credit (postings.EXPIRES_AT_SQL), counted
# from ``base_at``: the import for a balance, the purchase for a historical order.
_EXPIRES_FROM_BASE = """CASE WHEN p.points_expiry_days IS NULL THEN NULL::timestamptz ELSE
    (date_trunc('day', r.base_at AT TIME ZONE p.timezone)
     + make_interval(days => p.points_expiry_days + 1)) AT TIME ZONE p.timezone END"""

_CREDIT_IMPORTED = text(
    f"""
WITH c AS (
    SELECT *
      FROM unnest(CAST(:member_ids AS bigint[]), CAST(:kinds AS text[]),
                  CAST(:points AS bigint[]), CAST(:order_ids AS text[]),
                  CAST(:base_ats AS timestamptz[]), CAST(:expires_ats AS timestamptz[]))
           WITH ORDINALITY AS c(member_id, kind, points, order_id, base_at, expires_at, n)
), per_member AS (
    SELECT member_id, sum(points) AS points, count(*) AS entries FROM c GROUP BY member_id
), acc AS (
    UPDATE accounts AS a
       SET available = a.available + pm.points,
           lifetime_earned = a.lifetime_earned + pm.points,
           version = a.version + pm.entries,
           updated_at = :now
      FROM per_member AS pm
     WHERE a.member_id = pm.member_id AND a.program_id = :program_id
 RETURNING a.member_id, a.program_id, a.pending, a.held,
           a.available - pm.points AS available_before,
           a.available + a.held - pm.points AS total_before,
           a.version - pm.entries AS version_before
), ranked AS (
    -- Each credit with its place in its member's sequence and the member's account as it
    -- was before this statement. Joined here, once, rather than to each entry below: the
    -- planner cannot count the rows an UPDATE returns and would loop over them per entry.
    SELECT c.*, acc.program_id, acc.total_before, acc.available_before, acc.pending,
           acc.held, acc.version_before,
           row_number() OVER (PARTITION BY c.member_id ORDER BY c.n) AS rn,
           sum(c.points) OVER (PARTITION BY c.member_id ORDER BY c.n) AS running
      FROM c JOIN acc USING (member_id)
), entry AS (
    INSERT INTO point_entries (program_id, member_id, kind, points, status, reason, actor,
                               order_id, created_at, expires_at)
    SELECT r.program_id, r.member_id, r.kind, r.points, 'available',
           CAST(:reason AS text), CAST(:actor AS text), r.order_id, CAST(:now AS timestamptz),
           COALESCE(r.expires_at, {_EXPIRES_FROM_BASE})
      FROM ranked AS r JOIN programs AS p ON p.id = :program_id
     ORDER BY r.n
 RETURNING *
), placed AS (
    SELECT entry.*, r.rn, r.running, r.total_before, r.available_before, r.pending, r.held,
           r.version_before
      FROM entry
      -- Equalities only (no IS NOT DISTINCT FROM), so that the join can hash or merge: a
      -- batch has thousands of entries.
      JOIN ranked AS r ON r.member_id = entry.member_id AND r.kind = entry.kind
                      AND COALESCE(r.order_id, '') = COALESCE(entry.order_id, '')
), lot AS (
    INSERT INTO point_lots (program_id, member_id, entry_id, points, remaining, expires_at,
                            created_at)
    SELECT placed.program_id, placed.member_id, placed.id, placed.points, fresh.remaining,
           placed.expires_at, placed.created_at
      FROM placed
     CROSS JOIN LATERAL (
           SELECT greatest(placed.total_before + placed.running, 0)
                - greatest(placed.total_before + placed.running - placed.points, 0)
                  AS remaining) AS fresh
     WHERE fresh.remaining > 0
), earned_event AS (
    INSERT INTO events (program_id, type, member_id, data, created_at)
    SELECT placed.program_id, 'points.earned', placed.member_id,
           jsonb_build_object('member_id', m.external_id,
                              'sequence', placed.version_before + placed.rn,
                              'entry', {ENTRY_JSON.format(e="placed", status="placed.status")},
                              'balance', jsonb_build_object(
                                  'available', placed.available_before + placed.running,
                                  'pending', placed.pending,
                                  'held', placed.held)),
           placed.created_at
      FROM placed JOIN members AS m ON m.program_id = :program_id AND m.id = placed.member_id
)
SELECT count(*) FROM placed
"""
)


@dataclass(frozen=True, slots=True)
class ImportedCredit:
    """Points to credit to one member whose account row the caller holds."""

    member_id: int
    kind: str  # 'import' (an opening balance) or 'order' (a historical order's points)
    points: int
    base_at: datetime
    expires_at: datetime | None = None
    order_id: str | None = None


async def credit_imported(
    conn: Connection,
    program_id: int,
    credits: Sequence[ImportedCredit],
    *,
    reason: str,
    actor: str,
    now: datetime,
) -> int:
    """Post ``credits`` (each member's account row already locked by this transaction);
    returns how many entries were written. A second opening balance for a member fails on
    the ledger's unique index, so a balance can never be imported twice."""
    if not credits:
        return 0
    posted: int = (
        await conn.execute(
            _CREDIT_IMPORTED,
            {
                "program_id": program_id,
                "member_ids": [c.member_id for c in credits],
                "kinds": [c.kind for c in credits],
                "points": [c.points for c in credits],
                "order_ids": [c.order_id for c in credits],
                "base_ats": [c.base_at for c in credits],
                "expires_ats": [c.expires_at for c in credits],
                "reason": reason,
                "actor": actor,
                "now": now,
            },
        )
    ).scalar_one()
    return posted
