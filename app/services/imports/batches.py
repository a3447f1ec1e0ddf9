"""One batch of staged rows applied, per import type, inside the caller's short transaction.

Each ``apply_*`` gets the batch as a range of lines (``after`` < line <= ``upto``, valid rows
only), locks the account rows of the members it will touch in ascending id order (the
project's lock order), decides every line's outcome in one statement against what is stored
(by natural key: ``external_id`` for members and balances, ``order_id`` for orders), applies
the new and changed ones set-based, and returns each line's outcome. Nothing here commits: a
dry run rolls the same work back, so its report is exactly the real run's.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text

from app.db import Connection
from app.schemas.orders import OrderCreate
from app.services.checkout import earning
from app.services.imports.lines import order_hash
from app.services.imports.row_checks import insert_checked_once
from app.services.ledger.accounts import open_accounts_cte
from app.services.ledger.imports import ImportedCredit, credit_imported
from app.services.tiers import tier_evaluation

# Outcomes that count as applied; every other outcome is a rejection code.
APPLIED = ("created", "updated", "unchanged")
REJECTION_MESSAGES = {
    "member_not_found": "no member with this external_id in the program",
    "member_erased": "the member's personal data was erased; it is not imported again",
    "balance_conflict": "this member already has a different opening balance",
    "already_expired": "expires_at is in the past",
    "order_conflict": "this order_id was already recorded with other content",
    "currency_mismatch": "the order's currency is not the program's",
}


@dataclass(slots=True)
class BatchOutcome:
    """What one batch did: counts per outcome, and the rejected lines."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(APPLIED, 0))
    rejections: list[tuple[int, str]] = field(default_factory=list)

    def add(self, line: int, outcome: str) -> None:
        if outcome in self.counts:
            self.counts[outcome] += 1
        else:
            self.rejections.append((line, outcome))


@dataclass(frozen=True, slots=True)
class Batch:
    import_id: uuid.UUID
    program_id: int
    actor: str
    after: int
    upto: int
    now: datetime

    def params(self) -> dict[str, Any]:
        return {
            "import_id": self.import_id,
            "program_id": self.program_id,
            "after": self.after,
            "upto": self.upto,
            "now": self.now,
        }


_BATCH_ROWS = """
SELECT r.line, r.key, CAST(r.payload AS jsonb) AS p FROM import_rows AS r
 WHERE r.program_id = :program_id AND r.import_id = :import_id AND r.line > :after
   AND r.line <= :upto
   AND r.error_code IS NULL"""

# Members named by the batch's keys (external_id), their account rows locked in id order.
_LOCK_BY_EXTERNAL_ID = text(
    f"""
SELECT a.member_id
  FROM ({_BATCH_ROWS}) AS b
  JOIN members AS m ON m.program_id = :program_id AND m.external_id = b.key
  JOIN accounts AS a ON a.program_id = :program_id AND a.member_id = m.id
 ORDER BY a.member_id
   FOR UPDATE OF a
"""
)

# A field a line leaves out keeps its stored value (PUT's meaning); null clears it.
_MEMBERS = text(
    f"""
WITH cur AS (
    SELECT b.line, b.key AS external_id, b.p, m.id, m.name, m.email, m.phone, m.birthday,
           m.metadata, m.erased_at
      FROM ({_BATCH_ROWS}) AS b
      LEFT JOIN members AS m ON m.program_id = :program_id AND m.external_id = b.key
), wanted AS (
    SELECT cur.*,
           CASE WHEN p ? 'name' THEN p->>'name' ELSE cur.name END AS new_name,
           CASE WHEN p ? 'email' THEN p->>'email' ELSE cur.email END AS new_email,
           CASE WHEN p ? 'phone' THEN p->>'phone' ELSE cur.phone END AS new_phone,
           CASE WHEN p ? 'birthday' THEN CAST(p->>'birthday' AS date)
                ELSE cur.birthday END AS new_birthday,
           CASE WHEN p ? 'metadata' THEN NULLIF(p->'metadata', 'null'::jsonb)
                ELSE cur.metadata END AS new_metadata,
           COALESCE(CAST(p->>'created_at' AS timestamptz), CAST(:now AS timestamptz))
               AS new_created_at
      FROM cur
), decided AS (
    SELECT w.*,
           CASE WHEN w.id IS NULL THEN 'created'
                WHEN w.erased_at IS NOT NULL THEN 'member_erased'
                WHEN (w.new_name, w.new_email, w.new_phone, w.new_birthday, w.new_metadata)
                     IS DISTINCT FROM (w.name, w.email, w.phone, w.birthday, w.metadata)
                    THEN 'updated'
                ELSE 'unchanged' END AS outcome
      FROM wanted AS w
), inserted AS (
    INSERT INTO members (program_id, external_id, name, email, phone, birthday, metadata,
                         created_at, updated_at)
    SELECT :program_id, external_id, new_name, new_email, new_phone, new_birthday,
           new_metadata, new_created_at, CAST(:now AS timestamptz)
      FROM decided WHERE outcome = 'created'
    ON CONFLICT (program_id, external_id) DO NOTHING
 RETURNING id, program_id, external_id
), {open_accounts_cte("account", "inserted")}, insight AS (
    INSERT INTO member_insights (member_id, program_id, segment, lifecycle, orders_count,
                                 net_spend, changed_at)
    SELECT id, :program_id, 'prospects', 'prospect', 0, 0, CAST(:now AS timestamptz)
      FROM inserted
), created_event AS (
    INSERT INTO events (program_id, type, member_id, data, created_at)
    SELECT :program_id, 'member.created', id,
           jsonb_build_object('member_id', external_id, 'sequence', 0),
           CAST(:now AS timestamptz)
      FROM inserted
), changed AS (
    UPDATE members AS m
       SET name = d.new_name, email = d.new_email, phone = d.new_phone,
           birthday = d.new_birthday, metadata = d.new_metadata,
           updated_at = CAST(:now AS timestamptz)
      FROM decided AS d
     WHERE m.program_id = :program_id AND m.id = d.id AND d.outcome = 'updated'
)
-- A member created by someone else since this statement's snapshot was not created here.
SELECT d.line,
       CASE WHEN d.outcome = 'created' AND i.id IS NULL THEN 'unchanged'
            ELSE d.outcome END AS outcome
  FROM decided AS d LEFT JOIN inserted AS i ON i.external_id = d.external_id
"""
)


async def apply_members(conn: Connection, batch: Batch) -> BatchOutcome:
    params = batch.params()
    await conn.execute(_LOCK_BY_EXTERNAL_ID, params)
    outcome = BatchOutcome()
    for row in await insert_checked_once(conn, batch.program_id, _MEMBERS, params):
        outcome.add(row.line, row.outcome)
    return outcome


# The same balance again (same points, and the same expiry when the line gives one) is
# unchanged; a different one for a member who has one is a conflict, never a second credit.
_BALANCES = text(
    f"""
WITH cur AS (
    SELECT b.line, CAST(b.p->>'points' AS bigint) AS points,
           CAST(b.p->>'expires_at' AS timestamptz) AS expires_at,
           m.id AS member_id, m.erased_at, e.points AS had_points,
           e.expires_at AS had_expires_at
      FROM ({_BATCH_ROWS}) AS b
      LEFT JOIN members AS m ON m.program_id = :program_id AND m.external_id = b.key
      LEFT JOIN point_entries AS e
             ON e.program_id = :program_id AND e.member_id = m.id AND e.kind = 'import'
)
SELECT line, member_id, points, expires_at,
       CASE WHEN member_id IS NULL THEN 'member_not_found'
            WHEN had_points = points
                 AND (expires_at IS NULL OR expires_at = had_expires_at) THEN 'unchanged'
            WHEN had_points IS NOT NULL THEN 'balance_conflict'
            WHEN erased_at IS NOT NULL THEN 'member_erased'
            WHEN expires_at <= CAST(:now AS timestamptz) THEN 'already_expired'
            ELSE 'created' END AS outcome
  FROM cur
 ORDER BY line
"""
)


async def apply_balances(conn: Connection, batch: Batch) -> BatchOutcome:
    params = batch.params()
    await conn.execute(_LOCK_BY_EXTERNAL_ID, params)
    outcome = BatchOutcome()
    credits: list[ImportedCredit] = []
    for row in await conn.execute(_BALANCES, params):
        outcome.add(row.line, row.outcome)
        if row.outcome == "created":
            credits.append(
                ImportedCredit(
                    member_id=row.member_id,
                    kind="import",
                    points=row.points,
                    base_at=batch.now,
                    expires_at=row.expires_at,
                )
            )
    await credit_imported(
        conn,
        batch.program_id,
        credits,
        reason="opening balance",
        actor=batch.actor,
        now=batch.now,
    )
    return outcome


# The lines of an orders batch that need Python: those that earn points (what they earn comes
# from the program's rules, app/services/checkout/earning.py) and any staged without a request
# hash (before migration 0018). Every other line is applied by ``_ORDERS`` alone, in SQL.
# The staged payload is orjson's compact dump, so an earning line holds the text
# '"earn_points":true' (its colon escaped below from the bind-parameter syntax): matching
# that text first spares parsing the JSON of every line that does not (the JSON test then
# decides, as the text might also be in a nested value).
_ORDER_ROWS_FOR_PYTHON = text(
    """
SELECT r.line, r.payload FROM import_rows AS r
 WHERE r.program_id = :program_id AND r.import_id = :import_id AND r.line > :after
   AND r.line <= :upto AND r.error_code IS NULL
   AND (r.request_hash IS NULL
        OR (strpos(r.payload, '"earn_points"\\:true') > 0
            AND CAST(r.payload AS jsonb) -> 'earn_points' = 'true'))
 ORDER BY r.line
"""
)
_LOCK_MEMBERS = text(
    """
SELECT a.member_id
  FROM members AS m
  JOIN accounts AS a ON a.program_id = :program_id AND a.member_id = m.id
 WHERE m.program_id = :program_id AND m.external_id = ANY(CAST(:members AS text[]))
 ORDER BY a.member_id
   FOR UPDATE OF a
"""
)
# Every member the batch's lines name (a program with tiers re-evaluates them all).
_LOCK_BATCH_MEMBERS = text(
    """
SELECT a.member_id
  FROM (SELECT DISTINCT CAST(r.payload AS jsonb) ->> 'member_id' AS member
          FROM import_rows AS r
         WHERE r.program_id = :program_id AND r.import_id = :import_id AND r.line > :after
           AND r.line <= :upto AND r.error_code IS NULL) AS b
  JOIN members AS m ON m.program_id = :program_id AND m.external_id = b.member
  JOIN accounts AS a ON a.program_id = :program_id AND a.member_id = m.id
 ORDER BY a.member_id
   FOR UPDATE OF a
"""
)
# An imported order is history: its return window is over (status available), and a repeat
# of the same order_id with the same content (the API's own request hash) is unchanged.
# Each line is read from its staged JSON here; ``computed`` holds what Python worked out for
# the lines that needed it (points and breakdown of an earning line, a missing hash).
# The staged rows are MATERIALIZED so that each line's JSON is parsed once, not once per
# field. The result is one row per line that was rejected or earned points, and one row per
# other outcome with its count: a batch of history that earns nothing sends back two rows.
_ORDERS = text(
    f"""
WITH staged AS MATERIALIZED (
    SELECT r.line, r.request_hash, CAST(r.payload AS jsonb) AS p FROM import_rows AS r
     WHERE r.program_id = :program_id AND r.import_id = :import_id AND r.line > :after
       AND r.line <= :upto AND r.error_code IS NULL
), computed AS (
    SELECT *
      FROM unnest(CAST(:lines AS bigint[]), CAST(:earned AS bigint[]),
                  CAST(:breakdowns AS text[]), CAST(:hashes AS bytea[]))
           AS t(line, earned, breakdown, request_hash)
), input AS (
    SELECT s.line, s.p ->> 'order_id' AS order_id, s.p ->> 'member_id' AS member,
           CAST(s.p ->> 'amount' AS bigint) AS amount, s.p ->> 'currency' AS currency,
           NULLIF(s.p -> 'items', 'null'::jsonb) AS items,
           COALESCE(CAST(s.p ->> 'occurred_at' AS timestamptz), CAST(:now AS timestamptz))
               AS occurred_at,
           COALESCE(c.earned, 0) AS earned,
           COALESCE(CAST(c.breakdown AS jsonb), '[]'::jsonb) AS breakdown,
           COALESCE(c.request_hash, s.request_hash) AS request_hash
      FROM staged AS s LEFT JOIN computed AS c ON c.line = s.line
), prog AS (
    SELECT currency, pending_days FROM programs WHERE id = :program_id
), decided AS (
    SELECT i.*, m.id AS member_id,
           CASE WHEN o.id IS NOT NULL AND o.request_hash = i.request_hash THEN 'unchanged'
                WHEN o.id IS NOT NULL THEN 'order_conflict'
                WHEN m.id IS NULL THEN 'member_not_found'
                WHEN i.currency <> prog.currency THEN 'currency_mismatch'
                ELSE 'created' END AS outcome
      FROM input AS i CROSS JOIN prog
      -- One index probe per line (LIMIT 1 keeps each a subquery: both keys are unique):
      -- as joins, the planner hashed the program's every member and order for each batch,
      -- a full scan of a table of millions per 5,000 lines.
      LEFT JOIN LATERAL (
          SELECT m.id FROM members AS m
           WHERE m.program_id = :program_id AND m.external_id = i.member LIMIT 1) AS m ON true
      LEFT JOIN LATERAL (
          SELECT o.id, o.request_hash FROM orders AS o
           WHERE o.program_id = :program_id AND o.order_id = i.order_id LIMIT 1) AS o ON true
), ins AS (
    INSERT INTO orders (program_id, order_id, member_id, amount, currency, items, occurred_at,
                        points_earned, points_redeemed, breakdown, status, available_at,
                        request_hash, created_at, released_at)
    SELECT :program_id, d.order_id, d.member_id, d.amount, d.currency, d.items,
           d.occurred_at, d.earned, 0, d.breakdown, 'available',
           least(d.occurred_at + make_interval(days => prog.pending_days),
                 CAST(:now AS timestamptz)),
           d.request_hash, CAST(:now AS timestamptz), CAST(:now AS timestamptz)
      FROM decided AS d CROSS JOIN prog
     WHERE d.outcome = 'created'
    ON CONFLICT (program_id, order_id) DO NOTHING
 RETURNING id, order_id, member_id, points_earned, occurred_at
), outcomes AS (
    SELECT d.line, d.order_id, ins.member_id, ins.points_earned, ins.occurred_at,
           CASE WHEN d.outcome = 'created' AND ins.id IS NULL THEN 'unchanged'
                ELSE d.outcome END AS outcome
      FROM decided AS d LEFT JOIN ins ON ins.order_id = d.order_id
)
SELECT line, order_id, member_id, points_earned, occurred_at, outcome, 1 AS lines
  FROM outcomes
 WHERE outcome NOT IN {APPLIED} OR points_earned > 0
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, outcome, count(*)
  FROM outcomes
 WHERE outcome IN {APPLIED} AND COALESCE(points_earned, 0) = 0
 GROUP BY outcome
ORDER BY line
"""
)


@dataclass(slots=True)
class _Computed:
    """What Python worked out for the lines of a batch that needed it, one array per column
    for the statement's ``unnest``."""

    lines: list[int] = field(default_factory=list)
    earned: list[int] = field(default_factory=list)
    breakdowns: list[str] = field(default_factory=list)
    hashes: list[bytes] = field(default_factory=list)

    def params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


async def _breakdown(
    conn: Connection, program_id: int, order: dict[str, Any], occurred_at: datetime
) -> list[tuple[str, int]]:
    """What an order that asks for points earns with the program's rules as they are now."""
    setup = await earning.program_earning(program_id, conn)
    context = setup.context()
    if setup.member_dependent:
        loaded = await earning.load_context(conn, program_id, order["member_id"])
        if loaded is None:
            return []  # rejected as member_not_found by the statement
        context = loaded.context
    items = order.get("items")
    # Items are the only part the rules read as models; most history carries none.
    parsed_items = OrderCreate.model_validate(order).items if items is not None else None
    return earning.compute_breakdown(context, order["amount"], parsed_items, occurred_at)


async def _compute_in_python(conn: Connection, batch: Batch) -> tuple[_Computed, list[str]]:
    """The points of the batch's earning lines (and the hash of any line staged without
    one), and the members whose lines earn points."""
    computed = _Computed()
    earning_members: set[str] = set()
    for row in await conn.execute(_ORDER_ROWS_FOR_PYTHON, batch.params()):
        order = orjson.loads(row.payload)
        # Without earn_points the line is exactly OrderCreate's dump.
        earns = order.pop("earn_points", False)
        breakdown: list[tuple[str, int]] = []
        if earns:
            occurred = order.get("occurred_at")
            occurred_at = datetime.fromisoformat(occurred) if occurred else batch.now
            earning_members.add(order["member_id"])
            breakdown = await _breakdown(conn, batch.program_id, order, occurred_at)
        computed.lines.append(row.line)
        computed.earned.append(earning.points_earned(breakdown))
        computed.breakdowns.append(
            orjson.dumps([{"source": s, "points": p} for s, p in breakdown]).decode()
        )
        computed.hashes.append(order_hash(order))
    return computed, sorted(earning_members)


async def apply_orders(conn: Connection, batch: Batch) -> BatchOutcome:
    computed, earning_members = await _compute_in_python(conn, batch)
    has_tiers = await tier_evaluation.program_has_tiers(batch.program_id, conn)
    # Only a member whose balance or tier changes is locked: an order that earns nothing in a
    # program without tiers writes no account, and locking its member would only make a
    # checkout for that member wait for the batch.
    if has_tiers:
        locking = await conn.execute(_LOCK_BATCH_MEMBERS, batch.params())
    else:
        locking = await conn.execute(
            _LOCK_MEMBERS, {"program_id": batch.program_id, "members": earning_members}
        )
    locked = list(locking.scalars())
    outcome = BatchOutcome()
    credits: list[ImportedCredit] = []
    result = await insert_checked_once(
        conn, batch.program_id, _ORDERS, {**batch.params(), **computed.params()}
    )
    for row in result:
        if row.line is None:
            outcome.counts[row.outcome] += row.lines
            continue
        outcome.add(row.line, row.outcome)
        if row.outcome == "created" and row.points_earned > 0:
            credits.append(
                ImportedCredit(
                    member_id=row.member_id,
                    kind="order",
                    points=row.points_earned,
                    base_at=row.occurred_at,
                    order_id=row.order_id,
                )
            )
    await credit_imported(
        conn,
        batch.program_id,
        credits,
        reason="imported order",
        actor=batch.actor,
        now=batch.now,
    )
    # History counts towards tiers at once (spend, or the points it earned).
    if locked and has_tiers:
        await tier_evaluation.evaluate_locked(conn, batch.program_id, locked, batch.now)
    return outcome


APPLY = {"members": apply_members, "balances": apply_balances, "orders": apply_orders}
