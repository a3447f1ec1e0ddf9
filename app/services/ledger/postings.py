"""The points ledger: credits, debits, balances and history.

Every change is one signed row in ``point_entries`` (never updated or deleted), written in the
same transaction as the member's ``accounts`` row, the lots it creates or consumes, an outbox
event and, when the caller sent one, the Idempotency-Key. The account row is the member's lock:
each write starts by updating it, so concurrent writes for one member queue there.

Hot paths are written as few statements as the rules allow:
- a credit is one statement (CTEs), run in autocommit mode: one round trip in all;
- a debit locks and checks the account in one statement, then, seeing everything committed
  before the lock was granted, consumes lots and writes the entry in a second.
The entry's JSON is built in SQL so it can be stored for replay in the same statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text

from app import db
from app.clock import clock
from app.db import Connection
from app.errors import InsufficientPointsError, NotFoundError
from app.services.idempotency import (
    REMEMBER_CTE,
    IdempotencyRequest,
    Reply,
    idempotent,
    remember_params,
)
from app.services.tiers import tier_evaluation

# The wire form of an entry (api.md "list of entries"), built by PostgreSQL.
ENTRY_JSON = """(SELECT row_to_json(r) FROM (SELECT
    {e}.id, {e}.kind, {e}.points, {status} AS status, {e}.order_id, {e}.hold_id,
    {e}.redemption_id, {e}.campaign_id, {e}.reason, {e}.created_at, {e}.available_at,
    {e}.expires_at) AS r)"""

# Lots expire at the end of the local day ``points_expiry_days`` after they were earned, in
# the program's time zone, so a member sees one expiry bucket per day, not one per purchase.
EXPIRES_AT_SQL = """CASE WHEN p.points_expiry_days IS NULL THEN NULL::timestamptz ELSE
    (date_trunc('day', CAST(:now AS timestamptz) AT TIME ZONE p.timezone)
     + make_interval(days => p.points_expiry_days + 1)) AT TIME ZONE p.timezone END"""

# Spend ``:points`` of ``:member_id``'s lots (in ``:program_id``), soonest-expiring first
# (never-expiring last). Runs after the member's account row is locked, so it sees every
# committed lot. When the lots hold less (a member in refund debt), it takes what there is.
CONSUME_LOTS_CTE = """spendable AS (
    SELECT id, remaining,
           sum(remaining) OVER (ORDER BY expires_at NULLS LAST, id) AS running
      FROM point_lots
     WHERE program_id = :program_id AND member_id = :member_id AND remaining > 0
), consumed AS (
    UPDATE point_lots AS l
       SET remaining = greatest(s.running - :points, 0)
      FROM spendable AS s
     WHERE l.program_id = :program_id AND l.id = s.id AND s.running - s.remaining < :points
)"""


# The ``points.earned`` event rows of ``credit_many_ctes`` (its ``entry`` and ``acc``), as the
# SELECT of an INSERT INTO events (program_id, type, member_id, data, created_at).
EARNED_EVENT_ROWS = f"""SELECT entry.program_id, 'points.earned', entry.member_id,
           jsonb_build_object('member_id', m.external_id, 'sequence', acc.version,
                              'entry', {ENTRY_JSON.format(e="entry", status="entry.status")},
                              'balance', jsonb_build_object('available', acc.available,
                                                            'pending', acc.pending,
                                                            'held', acc.held)),
           entry.created_at
      FROM entry JOIN acc USING (member_id)
      JOIN members AS m ON m.program_id = :program_id AND m.id = entry.member_id"""


def credit_many_ctes(
    kind: str,
    reason: str,
    actor: str,
    referral_id: str = "NULL",
    campaign_id: str = "NULL",
    sequences: int = 1,
    earned_event: bool = True,
) -> str:
    """CTEs that credit every row of a ``due(member_id, points)`` CTE defined before them,
    whose account rows the transaction already holds: the accounts, one available entry
    each (of SQL expressions ``kind``, ``reason``, ``actor``, ``referral_id``,
    ``campaign_id``), the lots after any debt is repaid, and a ``points.earned`` event each.
    They define ``acc`` and ``entry`` for what follows. With ``sequences`` > 1 the account
    takes that many event sequence numbers, the last for ``points.earned``, the ones before
    it (``acc.version - 1`` ...) for the caller's own events. With ``earned_event`` False
    the ``points.earned`` events are left to the caller, who inserts them with its own in one
    INSERT in sequence order (``EARNED_EVENT_ROWS``): events from two INSERT CTEs of one
    statement take ids in no promised order (on Citus the later CTE's come first)."""
    event = (
        f""", earned_event AS (
    INSERT INTO events (program_id, type, member_id, data, created_at)
    {EARNED_EVENT_ROWS}
)"""
        if earned_event
        else ""
    )
    return f"""acc AS (
    UPDATE accounts AS a
       SET available = a.available + due.points,
           lifetime_earned = a.lifetime_earned + due.points,
           version = a.version + {sequences},
           updated_at = :now
      FROM due
     WHERE a.program_id = :program_id AND a.member_id = due.member_id
 RETURNING a.member_id, a.program_id, a.available, a.pending, a.held, a.version
), entry AS (
    INSERT INTO point_entries (program_id, member_id, kind, points, status, reason, actor,
                               referral_id, campaign_id, created_at, expires_at)
    SELECT acc.program_id, acc.member_id, {kind}, due.points, 'available', {reason},
           {actor}, {referral_id}, {campaign_id}, CAST(:now AS timestamptz), {EXPIRES_AT_SQL}
      FROM acc JOIN due USING (member_id) JOIN programs AS p ON p.id = :program_id
 RETURNING *
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
){event}"""


_CREDIT_SQL = """
WITH acc AS (
    UPDATE accounts AS a
       SET available = a.available + :points,
           lifetime_earned = a.lifetime_earned + :earned,
           lifetime_redeemed = a.lifetime_redeemed - :unredeemed,
           version = a.version + 1,
           updated_at = :now
      FROM members AS m
     WHERE m.program_id = :program_id AND m.external_id = :member
       AND a.program_id = :program_id AND a.member_id = m.id
 RETURNING a.member_id, a.available, a.pending, a.held, a.version
), entry AS (
    INSERT INTO point_entries (program_id, member_id, kind, points, status, reason, actor,
                               redemption_id, created_at, expires_at)
    SELECT CAST(:program_id AS bigint), acc.member_id, CAST(:kind AS text),
           CAST(:points AS bigint), 'available', CAST(:reason AS text), CAST(:actor AS text),
           CAST(:redemption_id AS bigint), CAST(:now AS timestamptz), {expires_at}
      FROM acc CROSS JOIN programs AS p
     WHERE p.id = :program_id
 RETURNING *
), body AS (
    SELECT entry.*, {entry_json}::text AS response FROM entry
), lot AS (
    INSERT INTO point_lots (program_id, member_id, entry_id, points, remaining, expires_at,
                            created_at)
    SELECT entry.program_id, entry.member_id, entry.id, entry.points, repaid.remaining,
           entry.expires_at, entry.created_at
      FROM entry JOIN acc USING (member_id)
     CROSS JOIN LATERAL (
           -- A member in debt (after a refund clawback) repays it before new points
           -- become spendable lots.
           SELECT greatest(acc.available + acc.held, 0)
                - greatest(acc.available + acc.held - entry.points, 0) AS remaining) AS repaid
     WHERE repaid.remaining > 0
), event AS (
    INSERT INTO events (program_id, type, member_id, data, created_at)
    SELECT body.program_id, CAST(:event_type AS text), body.member_id,
           jsonb_build_object('member_id', CAST(:member AS text), 'sequence', acc.version,
                              'entry', body.response::jsonb,
                              'balance', jsonb_build_object('available', acc.available,
                                                            'pending', acc.pending,
                                                            'held', acc.held)),
           body.created_at
      FROM body JOIN acc USING (member_id)
     WHERE CAST(:event_type AS text) IS NOT NULL
){remember}
SELECT body.response, body.member_id, acc.available, acc.pending, acc.held, acc.version
  FROM body JOIN acc USING (member_id)
"""

_LOCK_FOR_DEBIT_SQL = """
UPDATE accounts AS a
   SET available = a.available - :points,
       lifetime_redeemed = a.lifetime_redeemed + :redeemed,
       version = a.version + 1,
       updated_at = :now
  FROM members AS m
 WHERE m.program_id = :program_id AND m.external_id = :member
   AND a.program_id = :program_id AND a.member_id = m.id
   AND a.available >= :points
RETURNING a.member_id, a.available, a.pending, a.held, a.version
"""

# Runs after the account row is locked, so it sees every lot committed before the lock.
_DEBIT_SQL = """
WITH {consume}, entry AS (
    INSERT INTO point_entries (program_id, member_id, kind, points, status, reason, actor,
                               order_id, redemption_id, created_at)
    VALUES (:program_id, :member_id, :kind, -CAST(:points AS bigint), 'available', :reason,
            :actor, :order_id, :redemption_id, :now)
 RETURNING *
), body AS (
    SELECT entry.*, {entry_json}::text AS response FROM entry
), event AS (
    INSERT INTO events (program_id, type, member_id, data, created_at)
    SELECT body.program_id, CAST(:event_type AS text), body.member_id,
           jsonb_build_object('member_id', CAST(:member AS text),
                              'sequence', CAST(:version AS bigint),
                              'entry', body.response::jsonb,
                              'balance', jsonb_build_object(
                                  'available', CAST(:available AS bigint),
                                  'pending', CAST(:pending AS bigint),
                                  'held', CAST(:held AS bigint))),
           body.created_at
      FROM body
){remember}
SELECT response FROM body
"""


def _compile(template: str, *, remember: bool) -> Any:
    return text(
        template.format(
            expires_at=EXPIRES_AT_SQL,
            entry_json=ENTRY_JSON.format(e="entry", status="entry.status"),
            consume=CONSUME_LOTS_CTE,
            remember=REMEMBER_CTE if remember else "",
        )
    )


_CREDIT = {flag: _compile(_CREDIT_SQL, remember=flag) for flag in (False, True)}
_DEBIT = {flag: _compile(_DEBIT_SQL, remember=flag) for flag in (False, True)}
_LOCK_FOR_DEBIT = text(_LOCK_FOR_DEBIT_SQL)
_MEMBER_EXISTS = text(
    "SELECT 1 FROM members WHERE program_id = :program_id AND external_id = :member"
)


# Entry kinds a manual credit can have that count towards tiers (orders count too).
QUALIFYING_KINDS = frozenset({"earn", "bonus"})


@dataclass(frozen=True, slots=True)
class Posting:
    """One ledger change requested through the API."""

    program_id: int
    member: str
    points: int
    kind: str
    # The event the posting writes; None when the caller's own event carries the entry.
    event_type: str | None
    actor: str
    reason: str | None = None
    order_id: str | None = None
    # The reward redemption this redeem (or, after a void, restore) belongs to.
    redemption_id: int | None = None


async def member_missing(conn: Connection, program_id: int, member: str) -> bool:
    found = await conn.execute(_MEMBER_EXISTS, {"program_id": program_id, "member": member})
    return found.first() is None


async def credit(posting: Posting, request: IdempotencyRequest | None) -> Reply:
    """Add points that are spendable at once (manual earn, positive adjustment)."""
    now = clock.now()
    params = {
        "program_id": posting.program_id,
        "member": posting.member,
        "points": posting.points,
        "earned": posting.points if posting.kind == "earn" else 0,
        "unredeemed": 0,
        "kind": posting.kind,
        "reason": posting.reason,
        "actor": posting.actor,
        "redemption_id": None,
        "event_type": posting.event_type,
        "now": now,
        **remember_params(request),
    }
    # Earned points count towards tiers: for a program with tiers the credit runs in a
    # transaction that also settles the member's tier; otherwise it is one statement.
    qualifies = posting.kind in QUALIFYING_KINDS and await tier_evaluation.program_has_tiers(
        posting.program_id
    )

    async def attempt() -> Reply:
        unit_of_work = db.transaction() if qualifies else db.single_statement()
        async with unit_of_work as conn:
            row = (await conn.execute(_CREDIT[request is not None], params)).first()
            if row is None:
                raise NotFoundError(f"No member {posting.member!r} in this program.")
            if qualifies:
                await tier_evaluation.evaluate_locked(
                    conn, posting.program_id, [row.member_id], now
                )
        return Reply(row.response)

    return await idempotent(posting.program_id, request, attempt)


async def debit(posting: Posting, request: IdempotencyRequest | None) -> Reply:
    """Remove available points (redeem, negative adjustment), soonest-expiring lots first."""
    now = clock.now()

    async def attempt() -> Reply:
        async with db.transaction() as conn:
            body = await debit_in(conn, posting, request, now)
        return Reply(body)

    return await idempotent(posting.program_id, request, attempt)


async def debit_in(
    conn: Connection,
    posting: Posting,
    request: IdempotencyRequest | None,
    now: datetime,
) -> str:
    """The debit inside an open transaction; returns the entry's JSON."""
    locked = (
        await conn.execute(
            _LOCK_FOR_DEBIT,
            {
                "program_id": posting.program_id,
                "member": posting.member,
                "points": posting.points,
                "redeemed": posting.points if posting.kind == "redeem" else 0,
                "now": now,
            },
        )
    ).first()
    if locked is None:
        if await member_missing(conn, posting.program_id, posting.member):
            raise NotFoundError(f"No member {posting.member!r} in this program.")
        raise InsufficientPointsError(
            f"Member {posting.member!r} has fewer than {posting.points} available points."
        )
    params = {
        "program_id": posting.program_id,
        "member": posting.member,
        "member_id": locked.member_id,
        "points": posting.points,
        "kind": posting.kind,
        "reason": posting.reason,
        "actor": posting.actor,
        "order_id": posting.order_id,
        "redemption_id": posting.redemption_id,
        "event_type": posting.event_type,
        "version": locked.version,
        "available": locked.available,
        "pending": locked.pending,
        "held": locked.held,
        "now": now,
        **remember_params(request),
    }
    body: str = (await conn.execute(_DEBIT[request is not None], params)).scalar_one()
    return body


@dataclass(frozen=True, slots=True)
class PostedCredit:
    """A credit written inside the caller's transaction, and the balance after it."""

    entry_json: str
    member_id: int
    available: int
    pending: int
    held: int
    version: int


async def credit_in(conn: Connection, posting: Posting, now: datetime) -> PostedCredit:
    """A spendable credit inside an open transaction (a ``restore`` when a coupon bought with
    points is voided): the entry, its lot after any debt is repaid, and the balance. A
    ``restore`` takes its points back out of ``lifetime_redeemed``, as a refund's does."""
    params = {
        "program_id": posting.program_id,
        "member": posting.member,
        "points": posting.points,
        "earned": posting.points if posting.kind == "earn" else 0,
        "unredeemed": posting.points if posting.kind == "restore" else 0,
        "kind": posting.kind,
        "reason": posting.reason,
        "actor": posting.actor,
        "redemption_id": posting.redemption_id,
        "event_type": posting.event_type,
        "now": now,
    }
    row = (await conn.execute(_CREDIT[False], params)).first()
    if row is None:
        raise NotFoundError(f"No member {posting.member!r} in this program.")
    return PostedCredit(
        row.response, row.member_id, row.available, row.pending, row.held, row.version
    )
