"""Postings of the checkout: the ledger's part of an order, a refund, a hold and its
capture, as CTEs that the statements in ``services/checkout`` compose, so that an order or a
hold stays one statement (one round trip) while its ledger writes are spelled only here.

Each constant is one or more CTEs, written to follow ``WITH`` or a comma, that end with the
closing parenthesis of their last CTE left open for the caller (``...{CTE}\n), next AS (``)
— except where noted. The comment of each names the CTEs it reads (defined by the caller),
the CTEs it defines, and its bind parameters.
"""

from __future__ import annotations

from app.services.ledger.postings import CONSUME_LOTS_CTE, EXPIRES_AT_SQL

# Points moved into lots by one statement that takes the member's total (available + held)
# from ``before`` to ``after`` while consuming ``consumed`` from existing lots: what is left
# after repaying any debt (see docs/ledger.md).
NEW_LOT_REMAINING = "greatest({after}, 0) - greatest(greatest({before}, 0) - {consumed}, 0)"

# An order's points. Reads ``ord`` (the inserted orders row) and ``gain(member_id,
# available, pending)``; defines ``acc`` (the account after the order, with ``total_before``)
# and ``entry`` (the ``order`` entry, none for 0 points). Binds :points (a captured hold's
# points, else 0), :actor, :now.
ORDER_POSTING_CTES = f"""acc AS (
    UPDATE accounts AS a
       SET available = a.available + gain.available,
           pending = a.pending + gain.pending,
           held = a.held - CAST(:points AS bigint),
           lifetime_earned = a.lifetime_earned + gain.available + gain.pending,
           lifetime_redeemed = a.lifetime_redeemed + CAST(:points AS bigint),
           version = a.version + 1,
           updated_at = :now
      FROM gain
     WHERE a.program_id = :program_id AND a.member_id = gain.member_id
 RETURNING a.member_id, a.available, a.pending, a.held, a.version,
           a.available - gain.available + a.held + CAST(:points AS bigint) AS total_before
), entry AS (
    INSERT INTO point_entries (program_id, member_id, kind, points, status, actor, order_id,
                               created_at, available_at, expires_at)
    SELECT ord.program_id, ord.member_id, 'order', ord.points_earned, ord.status,
           CAST(:actor AS text), ord.order_id, CAST(:now AS timestamptz),
           ord.available_at,
           CASE WHEN ord.status = 'available' THEN {EXPIRES_AT_SQL} END
      FROM ord CROSS JOIN programs AS p
     WHERE p.id = :program_id AND ord.points_earned > 0
 RETURNING *
)"""

# The lot of an order's available points, after repaying any debt. Reads ``entry`` and
# ``acc`` (ORDER_POSTING_CTES); defines ``lot``. Binds :points.
ORDER_LOT_CTE = """lot AS (
    INSERT INTO point_lots (program_id, member_id, entry_id, points, remaining, expires_at,
                            created_at)
    SELECT entry.program_id, entry.member_id, entry.id, entry.points, fresh.remaining,
           entry.expires_at, entry.created_at
      FROM entry JOIN acc USING (member_id)
     CROSS JOIN LATERAL (SELECT {new_lot} AS remaining) AS fresh
     WHERE entry.status = 'available' AND fresh.remaining > 0
)""".format(
    new_lot=NEW_LOT_REMAINING.format(
        after="acc.available + acc.held",
        before="acc.total_before",
        consumed="CAST(:points AS bigint)",
    )
)

# The redeem entry of a hold captured by an order. Reads ``captured`` (the closed holds row);
# defines ``redeem_entry``. Pair with CONSUME_LOTS_CTE (binds :program_id, :member_id,
# :points). Binds :actor, :order_id, :now.
CAPTURE_REDEEM_CTE = """redeem_entry AS (
    INSERT INTO point_entries (program_id, member_id, kind, points, status, reason, actor,
                               order_id, hold_id, created_at)
    SELECT captured.program_id, captured.member_id, 'redeem', -captured.points, 'available',
           'order', CAST(:actor AS text), CAST(:order_id AS text), captured.id,
           CAST(:now AS timestamptz)
      FROM captured
 RETURNING *
)"""

# A refund's points: reverse what the order earned (from pending while it is pending) and
# restore what it redeemed. Reads ``ord`` (the order after the refund); defines ``acc``,
# ``spendable``/``consumed`` (lots taken back), ``reversal``, ``restore`` and ``lot``. Binds
# :member_id, :reversed, :reversed_available, :reversed_pending, :restored, :points (=
# reversed_available), :reason, :actor, :now.
REFUND_POSTING_CTES = """acc AS (
    UPDATE accounts AS a
       SET available = a.available - CAST(:reversed_available AS bigint) + :restored,
           pending = a.pending - CAST(:reversed_pending AS bigint),
           lifetime_earned = a.lifetime_earned - CAST(:reversed AS bigint),
           lifetime_redeemed = a.lifetime_redeemed - CAST(:restored AS bigint),
           updated_at = :now
     WHERE a.program_id = :program_id AND a.member_id = :member_id
 RETURNING a.member_id, a.available, a.pending, a.held, a.version,
           a.available + CAST(:reversed_available AS bigint) - CAST(:restored AS bigint)
               + a.held AS total_before
), {consume}, reversal AS (
    INSERT INTO point_entries (program_id, member_id, kind, points, status, reason, actor,
                               order_id, created_at)
    SELECT ord.program_id, ord.member_id, 'refund', -CAST(:reversed AS bigint), ord.status,
           CAST(:reason AS text), CAST(:actor AS text), ord.order_id, CAST(:now AS timestamptz)
      FROM ord
     WHERE CAST(:reversed AS bigint) > 0
 RETURNING *
), restore AS (
    INSERT INTO point_entries (program_id, member_id, kind, points, status, reason, actor,
                               order_id, created_at, expires_at)
    SELECT ord.program_id, ord.member_id, 'restore', CAST(:restored AS bigint), 'available',
           CAST(:reason AS text), CAST(:actor AS text), ord.order_id,
           CAST(:now AS timestamptz), {expires_at}
      FROM ord JOIN programs AS p ON p.id = ord.program_id
     WHERE CAST(:restored AS bigint) > 0
 RETURNING *
), lot AS (
    INSERT INTO point_lots (program_id, member_id, entry_id, points, remaining, expires_at,
                            created_at)
    SELECT restore.program_id, restore.member_id, restore.id, restore.points, fresh.remaining,
           restore.expires_at, restore.created_at
      FROM restore JOIN acc USING (member_id)
     CROSS JOIN LATERAL (SELECT {new_lot} AS remaining) AS fresh
     WHERE fresh.remaining > 0
)""".format(
    consume=CONSUME_LOTS_CTE,
    expires_at=EXPIRES_AT_SQL,
    new_lot=NEW_LOT_REMAINING.format(
        after="acc.available + acc.held",
        before="acc.total_before",
        consumed="CAST(:reversed_available AS bigint)",
    ),
)

# Reserving points for a hold. Reads nothing; defines ``acc`` (no row when the member is
# unknown or has fewer than :points available). Binds :program_id, :member, :points, :now.
RESERVE_CTE = """acc AS (
    UPDATE accounts AS a
       SET available = a.available - :points,
           held = a.held + :points,
           version = a.version + 1,
           updated_at = :now
      FROM members AS m
     WHERE m.program_id = :program_id AND m.external_id = :member
       AND a.program_id = :program_id AND a.member_id = m.id
       AND a.available >= :points
 RETURNING a.member_id, a.program_id, a.version
)"""

# Settling a hold: give back what is not captured, redeem what is. Reads ``closed`` (the
# closed holds row); defines ``acc``, ``spendable``/``consumed`` and ``entry`` (the redeem
# entry, none when nothing is captured). Binds :program_id, :captured, :points (= captured),
# :member_id, :reason, :actor, :order_id, :now.
SETTLE_HOLD_CTES = f"""acc AS (
    UPDATE accounts AS a
       SET held = a.held - closed.points,
           available = a.available + closed.points - :captured,
           lifetime_redeemed = a.lifetime_redeemed + :captured,
           updated_at = :now
      FROM closed
     WHERE a.program_id = :program_id AND a.member_id = closed.member_id
 RETURNING a.member_id, a.available, a.pending, a.held, a.version
), {CONSUME_LOTS_CTE}, entry AS (
    INSERT INTO point_entries (program_id, member_id, kind, points, status, reason, actor,
                               order_id, hold_id, created_at)
    SELECT closed.program_id, closed.member_id, 'redeem', -CAST(:captured AS bigint),
           'available', CAST(:reason AS text), CAST(:actor AS text),
           COALESCE(CAST(:order_id AS text), closed.order_id), closed.id,
           CAST(:now AS timestamptz)
      FROM closed
     WHERE CAST(:captured AS bigint) > 0
 RETURNING *
)"""

# Expired holds give their points back. Reads ``per_member(member_id, points, holds)``;
# defines ``acc(member_id, version, holds)``. Binds :now.
RELEASE_EXPIRED_HOLDS_CTE = """acc AS (
    UPDATE accounts AS a
       SET held = a.held - pm.points,
           available = a.available + pm.points,
           version = a.version + pm.holds,
           updated_at = :now
      FROM per_member AS pm
     WHERE a.program_id = :program_id AND a.member_id = pm.member_id
 RETURNING a.member_id, a.version, pm.holds
)"""
