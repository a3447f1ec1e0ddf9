"""Worker job: pending order points become available when the return window has passed.

The order's pending entries (its ``order`` entry and any pending ``refund`` entries) each get
a release row, the net moves from ``pending`` to ``available``, and the net becomes a lot
(after repaying any debt). Members are locked in ascending id order with SKIP LOCKED, so a
member busy at checkout is simply left for the next batch.

Due orders are found in ``order_release_queue`` (checkout inserts a row with each pending
order), and the batch deletes the rows it releases under the members' locks, so a row is
released once however many loops or replicas look at it. ``orders.status`` is in no index,
so the order's own update is a HOT update on its page rather than a new entry in each of its
indexes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text

from app.services.ledger.postings import EXPIRES_AT_SQL
from app.services.members import member_batches
from app.services.members.member_batches import ALL_MEMBERS, Lane

_DUE_PROGRAM = text(
    """
SELECT program_id FROM order_release_queue
 WHERE available_at <= :now AND member_id % :lanes = :lane
 ORDER BY available_at
 LIMIT 1
"""
)
# The program found above has the oldest due row, so its rows come first in the index: the
# scan reads few rows of other programs.
_DUE = text(
    """
SELECT member_id FROM order_release_queue
 WHERE available_at <= :now AND program_id = :program_id AND member_id % :lanes = :lane
 ORDER BY available_at
 LIMIT :batch
"""
)

_RELEASE = text(
    f"""
WITH queued AS (
    DELETE FROM order_release_queue
     WHERE program_id = :program_id AND member_id = ANY(:member_ids) AND available_at <= :now
 RETURNING order_pk, entry_id
), due AS (
    UPDATE orders AS o
       SET status = 'available', released_at = :now
      FROM queued
     WHERE o.program_id = :program_id AND o.id = queued.order_pk AND o.status = 'pending'
 RETURNING o.id, o.program_id, o.member_id, o.order_id, o.points_earned, o.points_reversed,
           queued.entry_id
), entries AS (
    -- The order's own entry is named by its queue row; pending refund entries exist only
    -- for an order refunded while pending, and only those orders are looked up by order id.
    SELECT due.entry_id AS id, due.program_id, due.member_id, due.points_earned AS points,
           due.id AS order_pk, due.order_id
      FROM due
     WHERE due.entry_id IS NOT NULL
     UNION ALL
    SELECT e.id, e.program_id, e.member_id, e.points, due.id, due.order_id
      FROM due
      JOIN point_entries AS e
        ON e.program_id = due.program_id AND e.order_id = due.order_id
       AND e.kind = 'refund' AND e.status = 'pending'
     WHERE due.points_reversed > 0 AND e.program_id = :program_id
), released AS (
    INSERT INTO point_releases (entry_id, program_id, member_id, released_at)
    SELECT id, program_id, member_id, CAST(:now AS timestamptz) FROM entries
), per_order AS (
    SELECT due.id AS order_pk, due.order_id, due.program_id, due.member_id,
           sum(entries.points) AS net, due.entry_id
      FROM due JOIN entries ON entries.order_pk = due.id
     GROUP BY due.id, due.order_id, due.program_id, due.member_id, due.entry_id
), per_member AS (
    SELECT member_id, sum(net) AS net, count(*) AS orders FROM per_order GROUP BY member_id
), acc AS (
    UPDATE accounts AS a
       SET pending = a.pending - pm.net,
           available = a.available + pm.net,
           version = a.version + pm.orders,
           updated_at = :now
      FROM per_member AS pm
     WHERE a.program_id = :program_id AND a.member_id = pm.member_id
 RETURNING a.member_id, a.available, a.pending, a.held, a.version, pm.net, pm.orders
), sequenced AS (
    -- Releases of one member apply one after another: the running total decides how much
    -- of each repays a debt and how much becomes a spendable lot.
    SELECT po.*, acc.version - acc.orders
                 + row_number() OVER (PARTITION BY po.member_id ORDER BY po.order_pk)
                 AS sequence,
           acc.available + acc.held - acc.net
                 + sum(po.net) OVER (PARTITION BY po.member_id ORDER BY po.order_pk)
                 AS total_after,
           m.external_id
      FROM per_order AS po
      JOIN acc USING (member_id)
      JOIN members AS m ON m.program_id = :program_id AND m.id = po.member_id
), lot AS (
    INSERT INTO point_lots (program_id, member_id, entry_id, points, remaining, expires_at,
                            created_at)
    SELECT s.program_id, s.member_id, s.entry_id, s.net,
           greatest(s.total_after, 0) - greatest(s.total_after - s.net, 0),
           {EXPIRES_AT_SQL}, CAST(:now AS timestamptz)
      FROM sequenced AS s JOIN programs AS p ON p.id = s.program_id
     WHERE s.net > 0 AND greatest(s.total_after, 0) - greatest(s.total_after - s.net, 0) > 0
), event AS (
    INSERT INTO events (program_id, type, member_id, data, created_at)
    SELECT s.program_id, 'points.released', s.member_id,
           jsonb_build_object('member_id', s.external_id, 'sequence', s.sequence,
                              'order_id', s.order_id, 'points', s.net),
           CAST(:now AS timestamptz)
      FROM sequenced AS s
)
SELECT count(*) FROM due
"""
)


async def release_due_points(now: datetime, batch_size: int = 250, lane: Lane = ALL_MEMBERS) -> int:
    """Release the pending points of orders whose ``available_at`` has passed."""
    return await member_batches.run_batch(_DUE_PROGRAM, _DUE, _RELEASE, now, batch_size, lane)
