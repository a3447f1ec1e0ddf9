"""Reading the ledger: a member's balances with the soonest-expiring buckets, and their
entries newest first. Both read the account row the postings keep current, never a sum."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from app import db
from app.errors import NotFoundError
from app.services.ledger.postings import ENTRY_JSON, member_missing
from app.services.pagination import decode_cursor, encode_cursor

_POINTS = text(
    """
SELECT a.available, a.pending, a.held, a.lifetime_earned, a.lifetime_redeemed,
       COALESCE((
           SELECT json_agg(json_build_object('points', b.points, 'expires_at', b.expires_at)
                           ORDER BY b.expires_at)
             FROM (SELECT expires_at, sum(remaining) AS points
                     FROM point_lots
                    WHERE member_id = a.member_id AND remaining > 0
                      AND expires_at IS NOT NULL
                    GROUP BY expires_at
                    ORDER BY expires_at
                    LIMIT 5) AS b), '[]') AS expiring
  FROM members AS m JOIN accounts AS a ON a.member_id = m.id
 WHERE m.program_id = :program_id AND m.external_id = :member
"""
)


async def get_points(program_id: int, member: str) -> dict[str, Any]:
    async with db.read_only() as conn:
        row = (
            (await conn.execute(_POINTS, {"program_id": program_id, "member": member}))
            .mappings()
            .first()
        )
    if row is None:
        raise NotFoundError(f"No member {member!r} in this program.")
    return dict(row)


# A pending entry shows as available once its release row exists.
_LISTED_STATUS = "CASE WHEN rel.entry_id IS NULL THEN e.status ELSE 'available' END"
_TRANSACTIONS = text(
    f"""
SELECT e.id, {ENTRY_JSON.format(e="e", status=_LISTED_STATUS)}::text AS response
  FROM members AS m
  JOIN point_entries AS e ON e.member_id = m.id
  LEFT JOIN point_releases AS rel ON rel.entry_id = e.id
 WHERE m.program_id = :program_id AND m.external_id = :member AND e.id < :before
 ORDER BY e.id DESC
 LIMIT :limit
"""
)


async def list_transactions(
    program_id: int, member: str, limit: int, cursor: str | None
) -> tuple[list[str], str | None]:
    """A page of the member's entries, newest first, as JSON texts."""
    before = decode_cursor(cursor) if cursor else 2**63 - 1
    async with db.read_only() as conn:
        rows = (
            await conn.execute(
                _TRANSACTIONS,
                {"program_id": program_id, "member": member, "before": before, "limit": limit + 1},
            )
        ).all()
        if not rows and await member_missing(conn, program_id, member):
            raise NotFoundError(f"No member {member!r} in this program.")
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1].id) if len(rows) > limit else None
    return [row.response for row in page], next_cursor
