"""Applying the tier rules (see ``tier_rules``): after a qualifying event, in jobs, and after
admins change tiers or the policy.

Every path locks the members' account rows first (ascending id) and then decides, so the
qualifying value is read after every committed change for those members.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text

from app import db
from app.db import Connection
from app.services.ledger.accounts import APPLY_TIERS_CTE
from app.services.programs.due_programs import looking_across_programs
from app.services.tiers.tier_rules import DECIDE_CTES, QUALIFYING_CTES

_APPLY_SQL = f"""
WITH scope AS (
    SELECT member_id, program_id FROM accounts
     WHERE program_id = :program_id AND member_id = ANY(:member_ids)
), {QUALIFYING_CTES}{DECIDE_CTES.format(tiers="tiers")}, {APPLY_TIERS_CTE}, history AS (
    INSERT INTO tier_changes (program_id, member_id, from_key, to_key, reason,
                              qualifying_value, created_at)
    SELECT program_id, member_id, current_key, new_key,
           CASE WHEN movement = 'up' THEN CAST(:reason AS text) ELSE 'below_threshold' END,
           value, CAST(:now AS timestamptz)
      FROM changed
     WHERE new_key IS DISTINCT FROM current_key
), event AS (
    INSERT INTO events (program_id, type, member_id, data, created_at)
    SELECT c.program_id, 'tier.changed', c.member_id,
           jsonb_build_object(
               'member_id', m.external_id, 'sequence', c.version,
               'from', c.current_key, 'to', c.new_key,
               'reason', CASE WHEN c.movement = 'up' THEN CAST(:reason AS text)
                              ELSE 'below_threshold' END,
               'qualifying_value', c.value),
           CAST(:now AS timestamptz)
      FROM changed AS c JOIN members AS m ON m.program_id = :program_id AND m.id = c.member_id
     WHERE c.new_key IS DISTINCT FROM c.current_key
), downgrade_scheduled AS (
    -- Once per fall below the tier: the grace starts here, and ends in a downgrade unless
    -- the member recovers (a later fall is a new occurrence).
    INSERT INTO events (program_id, type, member_id, data, created_at)
    SELECT c.program_id, 'tier.downgrade_scheduled', c.member_id,
           jsonb_build_object(
               'member_id', m.external_id, 'sequence', c.version, 'tier', c.new_key,
               'retained_until',
               c.new_below_since + make_interval(days => c.tier_grace_days)),
           CAST(:now AS timestamptz)
      FROM changed AS c JOIN members AS m ON m.program_id = :program_id AND m.id = c.member_id
     WHERE c.new_below_since IS NOT NULL AND c.old_below_since IS NULL
)
SELECT count(*) FILTER (WHERE new_key IS DISTINCT FROM current_key AND movement = 'up')
           AS upgraded,
       count(*) FILTER (WHERE new_key IS DISTINCT FROM current_key AND movement = 'down')
           AS downgraded,
       count(*) FILTER (WHERE new_below_since IS NOT NULL AND old_below_since IS NULL)
           AS grace_started
  FROM changed
"""
_APPLY = text(_APPLY_SQL)


@dataclass(frozen=True, slots=True)
class Outcome:
    upgraded: int = 0
    downgraded: int = 0
    grace_started: int = 0


async def evaluate_locked(
    conn: Connection,
    program_id: int,
    member_ids: list[int],
    now: datetime,
    reason: str = "qualified",
) -> Outcome:
    """Decide and apply the tiers of members (of one program) whose account rows this
    transaction holds."""
    if not member_ids:
        return Outcome()
    params = {"program_id": program_id, "member_ids": member_ids, "now": now, "reason": reason}
    row = (await conn.execute(_APPLY, params)).one()
    return Outcome(row.upgraded, row.downgraded, row.grace_started)


# Which programs have tiers, cached per process: the hot paths skip tier work entirely for
# programs without tiers. A change through this process clears the entry at once; other
# processes see it within the TTL, and the re-evaluation that follows every change corrects
# any member they handled meanwhile.
_TIER_CACHE_SECONDS = 5.0
_has_tiers: dict[int, tuple[bool, float]] = {}
_HAS_TIERS = text("SELECT EXISTS (SELECT 1 FROM tiers WHERE program_id = :program_id)")


async def program_has_tiers(program_id: int, conn: Connection | None = None) -> bool:
    """Cached for a few seconds. Inside a transaction pass its connection: a second one taken
    while the transaction holds a member's lock can wait forever for a pool (or a PgBouncer
    server pool) that is full of requests waiting for that same lock."""
    cached = _has_tiers.get(program_id)
    now = time.monotonic()
    if cached is not None and cached[1] > now:
        return cached[0]
    if conn is None:
        async with db.read_only() as own:
            found = bool((await own.execute(_HAS_TIERS, {"program_id": program_id})).scalar())
    else:
        found = bool((await conn.execute(_HAS_TIERS, {"program_id": program_id})).scalar())
    _has_tiers[program_id] = (found, now + _TIER_CACHE_SECONDS)
    return found


def forget_program(program_id: int) -> None:
    _has_tiers.pop(program_id, None)


_LOCK_IN_ORDER = text(
    "SELECT member_id FROM accounts WHERE program_id = :program_id "
    "AND member_id = ANY(:member_ids) ORDER BY member_id FOR UPDATE"
)
_PROGRAM_BATCH = text(
    "SELECT member_id FROM accounts WHERE program_id = :program_id AND member_id > :after "
    "ORDER BY member_id LIMIT :batch"
)


# --- Worker jobs -----------------------------------------------------------------------------

_DIRTY_PROGRAM = """
SELECT id, COALESCE(tiers_reevaluated_through, 0) AS after FROM programs
 WHERE tiers_dirty_since IS NOT NULL {which}
 ORDER BY tiers_dirty_since
 LIMIT 1
   FOR UPDATE {skip}
"""
_ANY_DIRTY_PROGRAM = text(_DIRTY_PROGRAM.format(which="", skip="SKIP LOCKED"))
_THIS_DIRTY_PROGRAM = text(_DIRTY_PROGRAM.format(which="AND id = :program_id", skip=""))
_ADVANCE = text(
    "UPDATE programs SET tiers_reevaluated_through = :last, "
    "tiers_dirty_since = CASE WHEN :done THEN NULL ELSE tiers_dirty_since END "
    "WHERE id = :id"
)


async def _next_batch(conn: Connection, program: Any, now: datetime, size: int) -> bool:
    """Re-evaluate the next batch of a flagged program whose row this transaction holds;
    returns whether members remain."""
    ids = list(
        (
            await conn.execute(
                _PROGRAM_BATCH, {"program_id": program.id, "after": program.after, "batch": size}
            )
        ).scalars()
    )
    if ids:
        await conn.execute(_LOCK_IN_ORDER, {"program_id": program.id, "member_ids": ids})
        await evaluate_locked(conn, program.id, ids, now, "tiers_changed")
    await conn.execute(
        _ADVANCE, {"last": ids[-1] if ids else program.after, "done": not ids, "id": program.id}
    )
    return bool(ids)


async def continue_background_reevaluation(now: datetime, batch_size: int = 5000) -> int:
    """Worker job: one batch of some program whose tiers changed. The program row is locked
    while the batch runs, so two workers never work on one program at once, and the cursor
    in it makes the work resumable after a crash."""
    async with db.transaction() as conn:
        program = (await conn.execute(_ANY_DIRTY_PROGRAM)).first()
        if program is None:
            return 0
        await _next_batch(conn, program, now, batch_size)
    return 1


async def continue_program_reevaluation(
    program_id: int, now: datetime, batch_size: int = 5000
) -> bool:
    """One batch of this program's flagged re-evaluation (waiting for a worker holding it);
    returns whether there is more to do."""
    async with db.transaction() as conn:
        program = (await conn.execute(_THIS_DIRTY_PROGRAM, {"program_id": program_id})).first()
        if program is None:
            return False
        return await _next_batch(conn, program, now, batch_size)


_DUE_CHECK_CONDITION = """(a.tier_below_since + make_interval(days => p.tier_grace_days) <= :now
        OR (a.tier_key IS NOT NULL
            AND (a.tier_checked_at IS NULL OR a.tier_checked_at < :stale_before)))"""
# The program of the first member due for a check; then members of that program only.
_PROGRAM_DUE_FOR_CHECK = text(
    f"""
SELECT a.program_id
  FROM accounts AS a JOIN programs AS p ON p.id = a.program_id
 WHERE {_DUE_CHECK_CONDITION}
 ORDER BY a.member_id
 LIMIT 1
"""
)
_DUE_FOR_CHECK = text(
    f"""
SELECT a.member_id
  FROM accounts AS a JOIN programs AS p ON p.id = a.program_id
 WHERE a.program_id = :program_id AND {_DUE_CHECK_CONDITION}
 ORDER BY a.member_id
 LIMIT :batch
"""
)
_LOCK_SKIPPING_BUSY = text(
    "SELECT member_id FROM accounts WHERE program_id = :program_id "
    "AND member_id = ANY(:member_ids) ORDER BY member_id FOR UPDATE SKIP LOCKED"
)


async def check_tiered_members(now: datetime, batch_size: int = 2000) -> int:
    """Worker job: members whose grace period is over, and tiered members not checked for a
    day (a rolling window can drop a member below a threshold without any event), are
    evaluated: this is where downgrades happen once grace_days have passed. Each evaluation
    settles the grace or stamps the check, so the candidates shrink batch by batch. One
    program per batch: the one whose first due member comes first."""
    due = {"now": now, "stale_before": now - timedelta(days=1)}
    async with looking_across_programs() as conn:
        program_id = (await conn.execute(_PROGRAM_DUE_FOR_CHECK, due)).scalar()
    if program_id is None:
        return 0
    async with db.transaction() as conn:
        candidates = list(
            (
                await conn.execute(
                    _DUE_FOR_CHECK, {**due, "program_id": program_id, "batch": batch_size}
                )
            ).scalars()
        )
        if not candidates:
            return 0
        locked = list(
            (
                await conn.execute(
                    _LOCK_SKIPPING_BUSY, {"program_id": program_id, "member_ids": candidates}
                )
            ).scalars()
        )
        await evaluate_locked(conn, program_id, locked, now)
    return len(locked)
