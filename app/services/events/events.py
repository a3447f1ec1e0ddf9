"""The outbox and the events feed.

Every state change writes one event row in its own transaction (``write_event``, or an
INSERT inside a service's own SQL). Event ids are taken when the row is inserted, but rows
become visible when their transaction commits, and transactions commit in any order: a reader
that follows ``id`` alone could pass id 7 before id 6 commits, and miss 6 for good. So each
event records its transaction's id (``txid``), and readers follow (txid, id), showing only
events of transactions older than every transaction of this database still running (the
*settled horizon*). Everything shown is then final: a later commit can only add events after
it. The price is that a long-running write transaction in Patron's database holds back the
feed (and webhooks) until it ends; nothing is lost.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text

from app import db
from app.db import Connection
from app.errors import ValidationError
from app.services.ledger.accounts import NEXT_SEQUENCE_CTE

# The wire form of an event (api.md), built by PostgreSQL; ``e`` is events, ``m`` members.
EVENT_JSON = (
    "json_build_object('id', e.id, 'type', e.type, 'created_at', e.created_at, "
    "'member_id', m.external_id, 'data', e.data)::text"
)
# The settled horizon: the oldest transaction id that may still write events. Transactions
# below it have all ended, so their events are final. It is the oldest transaction still
# running in this database (pg_stat_activity), or the next id to be handed out when none is.
# Transactions of other databases on the server cannot write here and are ignored, so they
# do not hold the feed back. When this session cannot see every session's transaction (other
# roles, without pg_read_all_stats) or a prepared transaction exists, it falls back to the
# oldest transaction running anywhere on the server, which is always safe.
# pg_stat_activity gives 32-bit ids: each is widened against the 64-bit next id; an id handed
# out after this statement's snapshot is at least that next id and is left out.
# Run it as a statement of its own, *before* the statement that reads events: a transaction
# that ends in between is then visible to the read.
_SETTLED_TXID = text(
    """
SELECT CASE WHEN bool_or(a.query = '<insufficient privilege>')
              OR EXISTS (SELECT 1 FROM pg_prepared_xacts WHERE database = current_database())
            THEN s.oldest_running
            ELSE least(s.next_xid, min(s.next_xid - d.behind) FILTER (WHERE d.behind < 2147483648))
       END AS horizon
  FROM (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS next_xid,
               pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS oldest_running) AS s
  LEFT JOIN pg_stat_activity AS a
         ON a.datname = current_database() AND a.pid <> pg_backend_pid()
  LEFT JOIN LATERAL (
        SELECT ((s.next_xid % 4294967296) - a.backend_xid::text::bigint + 4294967296)
               % 4294967296 AS behind) AS d ON a.backend_xid IS NOT NULL
 GROUP BY s.next_xid, s.oldest_running
"""
)


async def settled_txid(conn: Connection) -> int:
    """The settled horizon (above). Events with a smaller txid are final."""
    horizon: int = (await conn.execute(_SETTLED_TXID)).scalar_one()
    return horizon


_INSERT = text(
    "INSERT INTO events (program_id, type, member_id, data, created_at) "
    "VALUES (:program_id, :type, :member_id, CAST(:data AS jsonb), :now) RETURNING id"
)
# The member's sequence number is its account version, bumped here. Bumping it also takes
# the account row lock, which every write for a member takes first (architecture.md).
_INSERT_WITH_SEQUENCE = text(
    f"""
WITH {NEXT_SEQUENCE_CTE}
INSERT INTO events (program_id, type, member_id, data, created_at)
SELECT :program_id, :type, :member_id,
       CAST(:data AS jsonb) || jsonb_build_object('sequence', sequence.version), :now
  FROM sequence
RETURNING id
"""
)


async def write_event(
    conn: Connection,
    program_id: int,
    event_type: str,
    member_id: int | None,
    data: dict[str, Any],
    now: datetime,
) -> int:
    """Write one event in the caller's transaction and return its id.

    A member-scoped event gets ``sequence`` in its data from the member's account row. A
    caller that has already bumped the account version in this transaction (the ledger does,
    in the same statement as its balance update) passes that version as ``data["sequence"]``
    and it is kept as is.
    """
    params = {
        "program_id": program_id,
        "type": event_type,
        "member_id": member_id,
        "data": orjson.dumps(data).decode(),
        "now": now,
    }
    if member_id is None or "sequence" in data:
        event_id: int = (await conn.execute(_INSERT, params)).scalar_one()
        return event_id
    found = (await conn.execute(_INSERT_WITH_SEQUENCE, params)).scalar()
    if found is None:
        raise LookupError(f"member {member_id} has no account row; cannot sequence its event")
    return int(found)


_AFTER = text("SELECT txid FROM events WHERE program_id = :program_id AND id = :after")
_FEED = """
SELECT e.id, {event_json} AS body
  FROM events AS e LEFT JOIN members AS m ON m.id = e.member_id
 WHERE e.program_id = :program_id
   AND (e.txid, e.id) > (:after_txid, :after_id)
   AND e.txid < :horizon
   {type_filter}
 ORDER BY e.txid, e.id
 LIMIT :limit
"""
_FEEDS = {
    filtered: text(
        _FEED.format(
            event_json=EVENT_JSON,
            type_filter="AND e.type = :type" if filtered else "",
        )
    )
    for filtered in (False, True)
}


async def list_events(
    program_id: int, after: int | None, event_type: str | None, limit: int
) -> tuple[list[str], str | None]:
    """Events after the one with id ``after`` (oldest first), as JSON texts, and the id to
    pass as ``after`` for the next page (null when this page reaches the end for now)."""
    async with db.read_only() as conn:
        after_txid, after_id = -1, 0
        if after:
            found = (
                await conn.execute(_AFTER, {"program_id": program_id, "after": after})
            ).scalar()
            if found is None:
                raise ValidationError(
                    "No event with this id in this program; pass an id the feed returned.",
                    loc=["query", "after"],
                )
            after_txid, after_id = found, after
        params: dict[str, Any] = {
            "horizon": await settled_txid(conn),
            "program_id": program_id,
            "after_txid": after_txid,
            "after_id": after_id,
            "limit": limit + 1,
        }
        if event_type is not None:
            params["type"] = event_type
        rows = (await conn.execute(_FEEDS[event_type is not None], params)).all()
    page = rows[:limit]
    next_cursor = str(page[-1].id) if len(rows) > limit else None
    return [row.body for row in page], next_cursor
