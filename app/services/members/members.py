"""Members: create or update by the shop's own id, read, list, and erase personal data."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import text

from app import db
from app.clock import clock
from app.db import Connection
from app.errors import NotFoundError
from app.schemas.members import MemberOut
from app.services.events.events import write_event
from app.services.ledger import accounts
from app.services.pagination import decode_cursor, encode_cursor
from app.services.referrals import referrals

PERSONAL_FIELDS = ("name", "email", "phone", "birthday", "metadata")

# Insights (app/services/insights/insights.py): segment and lifecycle as of the last refresh,
# and the latest feedback score. A member gets a prospect row when created, so the filters below are
# index lookups; one without a row (bulk-loaded, not refreshed yet) shows as a prospect.
_INSIGHTS_COLUMNS = """,
       mi.segment, mi.lifecycle, fb.score AS feedback_score, fb.created_at AS feedback_at"""
# The statements below bind :program_id (on Citus, a correlated subquery routes to one shard
# only by a filter on the parameter itself).
_INSIGHTS_JOINS = """
  LEFT JOIN member_insights AS mi ON mi.program_id = m.program_id AND mi.member_id = m.id
  LEFT JOIN LATERAL (
      SELECT f.score, f.created_at FROM member_feedback AS f
       WHERE f.program_id = :program_id AND f.member_id = m.id
       ORDER BY f.created_at DESC, f.id DESC LIMIT 1) AS fb ON true"""
_NEW_MEMBER_INSIGHTS = text(
    "INSERT INTO member_insights (member_id, program_id, segment, lifecycle, orders_count, "
    "net_spend, changed_at) VALUES (:member_id, :program_id, 'prospects', 'prospect', 0, 0, :now)"
)

_MEMBER_SELECT = f"""
SELECT m.id, m.external_id, m.name, m.email, m.phone, m.birthday, m.metadata, m.created_at,
       a.available, a.pending, a.held, a.lifetime_earned, a.lifetime_redeemed,
       a.tier_key, t.name AS tier_name{_INSIGHTS_COLUMNS},
       CASE WHEN m.erased_at IS NULL THEN m.referral_code END AS referral_code,
       referrer.external_id AS referred_by
  FROM members AS m
  JOIN accounts AS a ON a.program_id = m.program_id AND a.member_id = m.id
  LEFT JOIN tiers AS t ON t.program_id = a.program_id AND t.key = a.tier_key{_INSIGHTS_JOINS}
  LEFT JOIN referrals AS referral
         ON referral.program_id = m.program_id AND referral.referee_id = m.id
  LEFT JOIN members AS referrer
         ON referrer.program_id = referral.program_id AND referrer.id = referral.referrer_id
"""

# Optional list filters: name -> SQL condition on the query above (bound as :name).
_LIST_FILTERS = {
    "tier": "a.tier_key = :tier",
    "segment": "mi.segment = :segment",
    "lifecycle": "mi.lifecycle = :lifecycle",
}


def member_out(row: Any) -> MemberOut:
    return MemberOut.model_validate(
        {
            "external_id": row.external_id,
            "name": row.name,
            "email": row.email,
            "phone": row.phone,
            "birthday": row.birthday,
            "metadata": row.metadata,
            "tier": {"key": row.tier_key, "name": row.tier_name} if row.tier_key else None,
            "points": {
                "available": row.available,
                "pending": row.pending,
                "held": row.held,
                "lifetime_earned": row.lifetime_earned,
                "lifetime_redeemed": row.lifetime_redeemed,
            },
            "referral_code": row.referral_code,
            "referred_by": row.referred_by,
            "created_at": row.created_at,
            "segment": row.segment or "prospects",
            "lifecycle": row.lifecycle or "prospect",
            "latest_feedback": (
                {"score": row.feedback_score, "created_at": row.feedback_at}
                if row.feedback_score is not None
                else None
            ),
        }
    )


async def _fetch(conn: Connection, program_id: int, member: str) -> Any:
    return (
        await conn.execute(
            text(_MEMBER_SELECT + " WHERE m.program_id = :program_id AND m.external_id = :member"),
            {"program_id": program_id, "member": member},
        )
    ).first()


async def upsert_member(
    program_id: int, member: str, fields: dict[str, Any]
) -> tuple[MemberOut, bool]:
    """Create the member, or update only the fields sent. Returns (member, created)."""
    now = clock.now()
    fields = dict(fields)
    referral_code = fields.pop("referral_code", None)
    values = {
        key: (orjson.dumps(value).decode() if key == "metadata" and value is not None else value)
        for key, value in fields.items()
    }
    columns = list(values)
    insert_columns = ", ".join(["program_id", "external_id", "created_at", "updated_at", *columns])
    insert_values = ", ".join(
        [":program_id", ":member", ":now", ":now"]
        + [f"CAST(:{c} AS jsonb)" if c == "metadata" else f":{c}" for c in columns]
    )
    updates = ", ".join(
        [f"{c} = EXCLUDED.{c}" for c in columns]
        + (["updated_at = EXCLUDED.updated_at"] if columns else ["updated_at = members.updated_at"])
    )
    async with db.transaction() as conn:
        row = (
            await conn.execute(
                text(
                    f"INSERT INTO members ({insert_columns}) VALUES ({insert_values}) "
                    f"ON CONFLICT (program_id, external_id) DO UPDATE SET {updates} "
                    "RETURNING id, (xmax = 0) AS created"
                ),
                {"program_id": program_id, "member": member, "now": now, **values},
            )
        ).one()
        if row.created:
            await accounts.open_account(conn, program_id, row.id, now)
            await conn.execute(
                _NEW_MEMBER_INSIGHTS, {"member_id": row.id, "program_id": program_id, "now": now}
            )
            await write_event(
                conn, program_id, "member.created", row.id, {"member_id": member}, now
            )
            if referral_code is not None:
                # Signing up with a code: attributed in the same transaction, or nothing is
                # created and the error says why.
                await referrals.attribute_in(conn, program_id, referral_code, member, now)
        result = await _fetch(conn, program_id, member)
    return member_out(result), bool(row.created)


async def get_member(program_id: int, member: str) -> MemberOut:
    async with db.read_only() as conn:
        row = await _fetch(conn, program_id, member)
    if row is None:
        raise NotFoundError(f"No member {member!r} in this program.")
    return member_out(row)


async def list_members(
    program_id: int,
    limit: int,
    cursor: str | None,
    filters: dict[str, str | None] | None = None,
) -> tuple[list[MemberOut], str | None]:
    """Members, newest first, optionally filtered (see ``_LIST_FILTERS``)."""
    before = decode_cursor(cursor) if cursor else 2**63 - 1
    chosen = {name: value for name, value in (filters or {}).items() if value is not None}
    conditions = "".join(f" AND {_LIST_FILTERS[name]}" for name in chosen)
    async with db.read_only() as conn:
        rows = (
            await conn.execute(
                text(
                    _MEMBER_SELECT
                    + " WHERE m.program_id = :program_id AND m.id < :before"
                    + conditions
                    + " ORDER BY m.id DESC LIMIT :limit"
                ),
                {"program_id": program_id, "before": before, "limit": limit + 1, **chosen},
            )
        ).all()
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1].id) if len(rows) > limit else None
    return [member_out(row) for row in page], next_cursor


async def erase_member(program_id: int, member: str) -> None:
    """Erase personal data, keep the ledger. Erasing twice is a no-op."""
    now = clock.now()
    async with db.transaction() as conn:
        # Every write for a member locks its account row first (architecture.md).
        locked = (
            await conn.execute(
                text(
                    "SELECT a.member_id, m.erased_at FROM accounts AS a "
                    "JOIN members AS m ON m.program_id = a.program_id AND m.id = a.member_id "
                    "WHERE a.program_id = :program_id AND m.program_id = :program_id "
                    "AND m.external_id = :member FOR UPDATE OF a, m"
                ),
                {"program_id": program_id, "member": member},
            )
        ).first()
        if locked is None:
            raise NotFoundError(f"No member {member!r} in this program.")
        if locked.erased_at is not None:
            return
        await conn.execute(
            text(
                "UPDATE members SET name = NULL, email = NULL, phone = NULL, birthday = NULL, "
                "metadata = NULL, erased_at = :now, updated_at = :now "
                "WHERE program_id = :program_id AND id = :id"
            ),
            {"program_id": program_id, "id": locked.member_id, "now": now},
        )
        # Feedback comments are personal data too; the scores stay for NPS.
        await conn.execute(
            text(
                "UPDATE member_feedback SET comment = NULL "
                "WHERE program_id = :program_id AND member_id = :id"
            ),
            {"program_id": program_id, "id": locked.member_id},
        )
        await write_event(
            conn, program_id, "member.erased", locked.member_id, {"member_id": member}, now
        )
