"""Feed positions: the order in which a program's events are read, by the feed and the fan-out.

An event is written without a position (checkout pays nothing for the order). Before reading,
a reader hands out the program's next positions to the events that have committed and have
none yet, holding the program's ``event_streams`` row lock while it does:

- Only committed events are visible to the assigning statement, so only they get a position.
  An event whose transaction is still open gets one later, after every position handed out
  so far: it is late, never skipped.
- The lock is taken in a statement of its own and the positions are handed out in the next,
  whose snapshot therefore sees every position given by earlier lock holders (each committed
  before releasing the lock). Positions of a program are thus 1, 2, 3, ... without gaps or
  repeats, and they become visible a whole assignment at a time, in order: any snapshot sees
  a prefix of them. A reader that has read up to position P has seen every event at or below
  P, and every event it has not seen gets a position above P.
- A member's events commit in the order of their ``sequence`` (each is written under the
  member's account lock), so a snapshot that sees one sees the earlier ones too, and each
  assignment numbers its events by id: the feed keeps each member's sequence order.

Nothing here uses transaction ids or snapshots, which are node-local under Citus: the lock is
a row of a table distributed by program_id, on the same shard as the program's events.
"""

from __future__ import annotations

from sqlalchemy import text

from app import db
from app.db import Connection

# At most this many events get positions per assignment, so one reader after a long quiet
# spell does not rewrite a huge backlog in one statement; the next read goes on from there.
ASSIGN_LIMIT = 10_000

# In id order, so that it is read from the partial index whatever the statistics say (a
# plan made while most events were waiting would otherwise scan the table).
_ANY_UNPOSITIONED = text(
    "SELECT id FROM events WHERE program_id = :program_id AND position IS NULL ORDER BY id LIMIT 1"
)
_LOCK = text("SELECT fanned_out FROM event_streams WHERE program_id = :program_id FOR UPDATE")
_CREATE = text(
    "INSERT INTO event_streams (program_id) VALUES (:program_id) "
    "ON CONFLICT (program_id) DO NOTHING"
)
_ASSIGN = text(
    """
WITH assigned AS (
UPDATE events AS e
   SET position = numbered.position
  FROM (SELECT waiting.id, last.position + row_number() OVER (ORDER BY waiting.id) AS position
          FROM (SELECT id FROM events
                 WHERE program_id = :program_id AND position IS NULL
                 ORDER BY id
                 LIMIT :limit) AS waiting
         CROSS JOIN (SELECT COALESCE(max(position), 0) AS position FROM events
                      WHERE program_id = :program_id) AS last) AS numbered
 WHERE e.program_id = :program_id AND e.id = numbered.id
RETURNING 1
)
SELECT count(*) FROM assigned
"""
)
_LAST_POSITION = text(
    "SELECT COALESCE(max(position), 0) FROM events WHERE program_id = :program_id"
)


async def lock_stream(conn: Connection, program_id: int) -> int:
    """Take the program's stream lock for the rest of the transaction (creating its row the
    first time) and return how far the fan-out has got."""
    params = {"program_id": program_id}
    fanned_out = (await conn.execute(_LOCK, params)).scalar()
    if fanned_out is None:
        await conn.execute(_CREATE, params)
        fanned_out = (await conn.execute(_LOCK, params)).scalar_one()
    return int(fanned_out)


async def assign(conn: Connection, program_id: int) -> int:
    """Hand out positions to committed events that have none; returns how many got one.
    The caller holds the stream lock (``lock_stream``, in an earlier statement)."""
    params = {"program_id": program_id, "limit": ASSIGN_LIMIT}
    count: int = (await conn.execute(_ASSIGN, params)).scalar_one()
    return count


async def last_position(conn: Connection, program_id: int) -> int:
    """The highest position handed out in the program; exact under the stream lock."""
    found: int = (await conn.execute(_LAST_POSITION, {"program_id": program_id})).scalar_one()
    return found


async def position_committed_events(program_id: int) -> None:
    """Give positions to the program's committed events that have none, in a transaction of
    its own (committed on return, so any later read sees them). Costs one cheap read when
    there is nothing to do; only then is the lock taken."""
    async with db.read_only() as conn:
        if (await conn.execute(_ANY_UNPOSITIONED, {"program_id": program_id})).first() is None:
            return
    async with db.transaction() as conn:
        await lock_stream(conn, program_id)
        await assign(conn, program_id)
