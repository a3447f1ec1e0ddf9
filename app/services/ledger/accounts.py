"""The member's account row: opened with the member, locked first by every write for that
member (architecture.md, "Concurrency"), and carrying the member's tier.

Locking is an ``UPDATE ... SET version = version + 1``: it takes the row lock every other
write for the member queues on, and the new version is the member's event sequence number.
The tier columns live on the account so that a tier decision is made under the same lock as
the balance it depends on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text

from app.db import Connection

_OPEN = text(
    "INSERT INTO accounts (member_id, program_id, updated_at) "
    "VALUES (:member_id, :program_id, :now)"
)


def open_accounts_cte(name: str, members: str) -> str:
    """A CTE ``name`` opening the empty accounts of the members created earlier in the same
    statement: ``members`` is a CTE with ``id`` (the member) and ``program_id``. Binds :now."""
    return f"""{name} AS (
    INSERT INTO accounts (member_id, program_id, updated_at)
    SELECT id, program_id, CAST(:now AS timestamptz) FROM {members}
)"""


async def open_account(conn: Connection, program_id: int, member_id: int, now: datetime) -> None:
    """The empty account of a member created in this transaction."""
    await conn.execute(_OPEN, {"member_id": member_id, "program_id": program_id, "now": now})


# Lock the account of a hold's member, then read the hold (holds.lock_hold).
LOCK_HOLDER_OF_HOLD = text(
    """
UPDATE accounts AS a SET version = a.version + 1
  FROM holds AS h JOIN members AS m ON m.program_id = h.program_id AND m.id = h.member_id
 WHERE h.id = :hold_id AND h.program_id = :program_id
   AND a.program_id = h.program_id AND a.member_id = h.member_id
RETURNING a.member_id, a.version, m.external_id
"""
)

# Lock the account of an order's member, before refunding it.
LOCK_HOLDER_OF_ORDER = text(
    """
UPDATE accounts AS a SET version = a.version + 1
  FROM orders AS o JOIN members AS m ON m.program_id = o.program_id AND m.id = o.member_id
 WHERE o.program_id = :program_id AND o.order_id = :order_id
   AND a.program_id = o.program_id AND a.member_id = o.member_id
RETURNING a.member_id, m.external_id, o.order_id
"""
)

# Lock the member's account and take the next event sequence number: ``sequence(version)``.
# Binds :program_id and :member_id.
NEXT_SEQUENCE_CTE = """sequence AS (
    UPDATE accounts SET version = version + 1
     WHERE program_id = :program_id AND member_id = :member_id
    RETURNING version
)"""

# Apply tier decisions. Reads ``outcome(member_id, new_key, new_below_since, current_key,
# value, movement, tier_below_since, tier_grace_days)`` of members whose accounts the
# transaction holds; defines ``changed``. A change of tier is a new version (an event
# follows). Binds :program_id and :now.
APPLY_TIERS_CTE = """changed AS (
    UPDATE accounts AS a
       SET tier_key = o.new_key,
           tier_below_since = o.new_below_since,
           tier_checked_at = :now,
           version = a.version
                     + CASE WHEN o.new_key IS DISTINCT FROM o.current_key THEN 1 ELSE 0 END
      FROM outcome AS o
     WHERE a.program_id = :program_id AND a.member_id = o.member_id
 RETURNING a.member_id, a.program_id, a.version, o.current_key, o.new_key, o.value,
           o.movement, o.new_below_since, o.tier_below_since AS old_below_since,
           o.tier_grace_days
)"""

_DETACH_TIER = text(
    "UPDATE accounts SET tier_key = NULL, tier_below_since = NULL "
    "WHERE program_id = :program_id AND member_id IN (SELECT member_id FROM accounts "
    "WHERE program_id = :program_id AND tier_key = :key ORDER BY member_id FOR UPDATE)"
)


async def detach_tier(conn: Connection, program_id: int, key: str) -> None:
    """Members of a tier that is being deleted lose it, locked in id order (the fixed lock
    order); the re-evaluation that follows gives them the tier they now qualify for."""
    await conn.execute(_DETACH_TIER, {"program_id": program_id, "key": key})


@dataclass(frozen=True, slots=True)
class LockedAccount:
    """A member's account row, locked for the rest of the caller's transaction."""

    member_id: int
    member: str
    available: int
    tier_key: str | None


_LOCK_ACCOUNT = text(
    """
SELECT a.member_id, m.external_id, a.available, a.tier_key
  FROM members AS m JOIN accounts AS a ON a.member_id = m.id AND a.program_id = m.program_id
 WHERE m.program_id = :program_id
   AND (m.external_id = CAST(:member AS text) OR m.id = CAST(:member_id AS bigint))
   FOR UPDATE OF a
"""
)


async def lock_account(
    conn: Connection, program_id: int, *, member: str | None = None, member_id: int | None = None
) -> LockedAccount | None:
    """Lock one member's account (by external id or by id) before anything else the
    transaction does for them: the fixed lock order of architecture.md."""
    row = (
        await conn.execute(
            _LOCK_ACCOUNT, {"program_id": program_id, "member": member, "member_id": member_id}
        )
    ).first()
    if row is None:
        return None
    return LockedAccount(row.member_id, row.external_id, row.available, row.tier_key)


_LOCK_MANY = text(
    "SELECT member_id FROM accounts WHERE program_id = :program_id "
    "AND member_id = ANY(:member_ids) ORDER BY member_id FOR UPDATE"
)


async def lock_members(conn: Connection, program_id: int, member_ids: list[int]) -> list[int]:
    """Lock these members' account rows in ascending id order (the lock order of every
    multi-member write); returns the ids locked. Nothing is written: the statement that
    follows takes the sequence numbers, so each account row is updated once."""
    if not member_ids:
        return []
    params = {"program_id": program_id, "member_ids": member_ids}
    return list((await conn.execute(_LOCK_MANY, params)).scalars())


# Take the next event sequence number of each member of ``{members}`` (a CTE or table with
# member_id) whose account the transaction holds; defines ``{name}(member_id, version)``.
# Binds :program_id.
NEXT_SEQUENCES_CTE = """{name} AS (
    UPDATE accounts AS a SET version = a.version + 1
      FROM {members} AS s
     WHERE a.program_id = :program_id AND a.member_id = s.member_id
 RETURNING a.member_id, a.version
)"""
