"""The ledger invariants of architecture.md, checked for every member (or one program):

1. ``available + held`` = sum of available entries; ``pending`` = sum of pending entries;
2. ``held`` = sum of active holds;
3. ``max(available + held, 0)`` = sum of remaining lot amounts;
4. ``available >= 0``, except after a refund clawback;
5. every entry, lot and event points at an existing member of its own program (these tables
   carry no foreign keys; see docs/ledger.md);
6. every reward redemption has exactly one ``redeem`` entry, of its cost, for its member;
7. a redemption whose coupon was voided has exactly one ``restore`` entry of its cost (and
   one whose coupon stands has none), and the redemption is voided exactly when its coupon
   is void;
8. a reward's ``redeemed_count`` (so ``stock_remaining = stock - redeemed_count``) is the
   number of its redemptions whose coupon is active, used or expired, and never exceeds its
   stock.

``patron audit`` and the tests run this; it only reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from app import db

_AUDIT = text(
    """
WITH entry_sums AS (
    -- A pending entry counts as available once a release row says so.
    SELECT e.program_id, e.member_id,
           COALESCE(sum(e.points) FILTER (WHERE e.status = 'available'
                                          OR r.entry_id IS NOT NULL), 0) AS available_sum,
           COALESCE(sum(e.points) FILTER (WHERE e.status = 'pending'
                                          AND r.entry_id IS NULL), 0) AS pending_sum,
           bool_or(e.kind = 'refund') AS had_refund
      FROM point_entries AS e
      LEFT JOIN point_releases AS r ON r.program_id = e.program_id AND r.entry_id = e.id
     WHERE CAST(:program_id AS bigint) IS NULL OR e.program_id = :program_id
     GROUP BY e.program_id, e.member_id
), hold_sums AS (
    SELECT program_id, member_id, sum(points) AS held
      FROM holds
     WHERE status = 'active'
       AND (CAST(:program_id AS bigint) IS NULL OR program_id = :program_id)
     GROUP BY program_id, member_id
), lot_sums AS (
    SELECT program_id, member_id, sum(remaining) AS remaining
      FROM point_lots
     WHERE CAST(:program_id AS bigint) IS NULL OR program_id = :program_id
     GROUP BY program_id, member_id
), checked AS (
    SELECT m.program_id, m.external_id, a.available, a.pending, a.held,
           COALESCE(e.available_sum, 0) AS available_sum,
           COALESCE(e.pending_sum, 0) AS pending_sum,
           COALESCE(h.held, 0) AS active_holds_sum,
           COALESCE(l.remaining, 0) AS lots_sum,
           COALESCE(e.had_refund, false) AS had_refund
      FROM accounts AS a
      JOIN members AS m ON m.program_id = a.program_id AND m.id = a.member_id
      LEFT JOIN entry_sums AS e ON e.program_id = a.program_id AND e.member_id = a.member_id
      LEFT JOIN lot_sums AS l ON l.program_id = a.program_id AND l.member_id = a.member_id
      LEFT JOIN hold_sums AS h ON h.program_id = a.program_id AND h.member_id = a.member_id
     WHERE CAST(:program_id AS bigint) IS NULL OR a.program_id = :program_id
)
SELECT * FROM checked
 WHERE available + held <> available_sum
    OR pending <> pending_sum
    OR held <> active_holds_sum
    OR greatest(available + held, 0) <> lots_sum
    OR (available < 0 AND NOT had_refund)
 ORDER BY program_id, external_id
"""
)


@dataclass(frozen=True, slots=True)
class Violation:
    program_id: int
    member: str
    invariant: int
    detail: str

    def __str__(self) -> str:
        return (
            f"program {self.program_id} member {self.member}: "
            f"invariant {self.invariant}: {self.detail}"
        )


_STRAYS = text(
    """
SELECT t.program_id, t.member_id, t.what, count(*) AS rows
  FROM (SELECT program_id, member_id, 'entries' AS what FROM point_entries
        UNION ALL SELECT program_id, member_id, 'lots' FROM point_lots
        UNION ALL SELECT program_id, member_id, 'events' FROM events
                   WHERE member_id IS NOT NULL) AS t
  LEFT JOIN members AS m ON m.id = t.member_id AND m.program_id = t.program_id
 WHERE m.id IS NULL
   AND (CAST(:program_id AS bigint) IS NULL OR t.program_id = :program_id)
 GROUP BY 1, 2, 3
"""
)


# Invariants 6 and 7: each redemption against its entries and its coupon.
_REDEMPTIONS = text(
    """
SELECT d.program_id, m.external_id, d.id, d.points_spent, d.voided_at IS NOT NULL AS voided,
       c.status AS coupon_status,
       count(e.id) FILTER (WHERE e.kind = 'redeem') AS redeems,
       count(e.id) FILTER (WHERE e.kind = 'redeem' AND e.points = -d.points_spent
                           AND e.member_id = d.member_id) AS exact_redeems,
       count(e.id) FILTER (WHERE e.kind = 'restore') AS restores,
       count(e.id) FILTER (WHERE e.kind = 'restore' AND e.points = d.points_spent
                           AND e.member_id = d.member_id) AS exact_restores
  FROM reward_redemptions AS d
  JOIN members AS m ON m.id = d.member_id AND m.program_id = d.program_id
  LEFT JOIN coupons AS c ON c.redemption_id = d.id AND c.program_id = d.program_id
  LEFT JOIN point_entries AS e ON e.redemption_id = d.id AND e.program_id = d.program_id
 WHERE CAST(:program_id AS bigint) IS NULL OR d.program_id = :program_id
 GROUP BY d.program_id, m.external_id, d.id, d.points_spent, d.voided_at, c.status
HAVING count(e.id) FILTER (WHERE e.kind = 'redeem') <> 1
    OR count(e.id) FILTER (WHERE e.kind = 'redeem' AND e.points = -d.points_spent
                           AND e.member_id = d.member_id) <> 1
    OR count(e.id) FILTER (WHERE e.kind = 'restore')
       <> CASE WHEN d.voided_at IS NULL THEN 0 ELSE 1 END
    OR count(e.id) FILTER (WHERE e.kind = 'restore' AND e.points = d.points_spent
                           AND e.member_id = d.member_id)
       <> CASE WHEN d.voided_at IS NULL THEN 0 ELSE 1 END
    OR (d.voided_at IS NOT NULL) <> (c.status IS NOT DISTINCT FROM 'void')
"""
)
# Invariant 8: each reward's count against its standing redemptions and its stock.
_STOCK = text(
    """
SELECT r.program_id, r.id, r.stock, r.redeemed_count, count(d.id) AS standing
  FROM rewards AS r
  LEFT JOIN reward_redemptions AS d
    ON d.program_id = r.program_id AND d.reward_id = r.id AND d.voided_at IS NULL
 WHERE CAST(:program_id AS bigint) IS NULL OR r.program_id = :program_id
 GROUP BY r.program_id, r.id
"""
)


def _redemption_violations(rows: list[Any]) -> list[Violation]:
    found = []
    for r in rows:
        where = f"redemption {r.id}"
        if r.redeems != 1 or r.exact_redeems != 1:
            found.append(
                Violation(
                    r.program_id,
                    r.external_id,
                    6,
                    f"{where} has {r.redeems} redeem entries, {r.exact_redeems} of its cost",
                )
            )
        expected = 1 if r.voided else 0
        if r.restores != expected or r.exact_restores != expected:
            found.append(
                Violation(
                    r.program_id,
                    r.external_id,
                    7,
                    f"{where} (voided: {r.voided}) has {r.restores} restore entries, "
                    f"{r.exact_restores} of its cost",
                )
            )
        if r.voided != (r.coupon_status == "void"):
            found.append(
                Violation(
                    r.program_id,
                    r.external_id,
                    7,
                    f"{where} voided: {r.voided}, but its coupon is {r.coupon_status}",
                )
            )
    return found


def _stock_violations(rows: list[Any]) -> list[Violation]:
    found = []
    for r in rows:
        if r.redeemed_count != r.standing:
            found.append(
                Violation(
                    r.program_id,
                    f"reward #{r.id}",
                    8,
                    f"redeemed_count={r.redeemed_count} but {r.standing} redemptions stand",
                )
            )
        if r.stock is not None and r.standing > r.stock:
            found.append(
                Violation(
                    r.program_id,
                    f"reward #{r.id}",
                    8,
                    f"{r.standing} redemptions stand against a stock of {r.stock}",
                )
            )
    return found


async def audit(program_id: int | None = None) -> list[Violation]:
    async with db.read_only() as conn:
        rows = (await conn.execute(_AUDIT, {"program_id": program_id})).all()
        strays = (await conn.execute(_STRAYS, {"program_id": program_id})).all()
        redemptions = (await conn.execute(_REDEMPTIONS, {"program_id": program_id})).all()
        stock = (await conn.execute(_STOCK, {"program_id": program_id})).all()
    violations: list[Violation] = []
    for r in rows:
        total = r.available + r.held
        found: list[tuple[int, str]] = []
        if total != r.available_sum:
            found.append((1, f"available+held={total} but entries sum to {r.available_sum}"))
        if r.pending != r.pending_sum:
            found.append((1, f"pending={r.pending} but pending entries sum to {r.pending_sum}"))
        if r.held != r.active_holds_sum:
            found.append((2, f"held={r.held} but active holds sum to {r.active_holds_sum}"))
        if max(total, 0) != r.lots_sum:
            found.append((3, f"max(available+held,0)={max(total, 0)} but lots hold {r.lots_sum}"))
        if r.available < 0 and not r.had_refund:
            found.append((4, f"available={r.available} is negative without a refund clawback"))
        violations.extend(Violation(r.program_id, r.external_id, n, d) for n, d in found)
    for stray in strays:
        violations.append(
            Violation(
                stray.program_id,
                f"#{stray.member_id}",
                5,
                f"{stray.rows} {stray.what} row(s) point at no member of this program",
            )
        )
    violations.extend(_redemption_violations(redemptions))
    violations.extend(_stock_violations(stock))
    return violations
