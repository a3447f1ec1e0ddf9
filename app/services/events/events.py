"""The outbox and the events feed.

Every state change writes one event row in its own transaction (``write_event``, or an
INSERT inside a service's own SQL), without a feed position. Event ids are taken when the row
is inserted, but rows become visible when their transaction commits, and transactions commit
in any order: a reader that followed ``id`` alone could pass id 7 before id 6 commits, and
miss 6 for good. So the feed is read by position instead: before reading, the committed
events that have no position get the program's next ones (app/services/events/positions.py).
An event that commits late gets a later position and is read then; nothing is skipped, and a
long-running transaction holds back only its own events.

The public cursor stays the event id (api.md: "oldest first after the given id"): it is
turned into that event's position.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text

from app import db
from app.db import Connection
from app.errors import ValidationError
from app.services.events import positions
from app.services.ledger.accounts import NEXT_SEQUENCE_CTE

# The wire form of an event (api.md), built by PostgreSQL; ``e`` is events, ``m`` members.
EVENT_JSON = (
    "json_build_object('id', e.id, 'type', e.type, 'created_at', e.created_at, "
    "'member_id', m.external_id, 'data', e.data)::text"
)
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


_AFTER = text("SELECT position FROM events WHERE program_id = :program_id AND id = :after")
_FEED = """
SELECT e.id, {event_json} AS body
  FROM events AS e
  LEFT JOIN members AS m ON m.id = e.member_id AND m.program_id = e.program_id
 WHERE e.program_id = :program_id AND e.position > :after_position
   {type_filter}
 ORDER BY e.position
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


_UNKNOWN_CURSOR = "No event with this id in this program; pass an id the feed returned."


async def list_events(
    program_id: int, after: int | None, event_type: str | None, limit: int
) -> tuple[list[str], str | None]:
    """Events after the one with id ``after`` (oldest first), as JSON texts, and the id to
    pass as ``after`` for the next page (null when this page reaches the end for now)."""
    params: dict[str, Any] = {"program_id": program_id, "after_position": 0, "limit": limit + 1}
    if event_type is not None:
        params["type"] = event_type
    # A second round only when the cursor's event committed after the positions were handed
    # out (an id the feed has not returned yet): it gets one then.
    for _ in range(2):
        await positions.position_committed_events(program_id)
        async with db.read_only() as conn:
            if after:
                found = (
                    await conn.execute(_AFTER, {"program_id": program_id, "after": after})
                ).first()
                if found is None:
                    break
                if found.position is None:
                    continue
                params["after_position"] = found.position
            rows = (await conn.execute(_FEEDS[event_type is not None], params)).all()
        page = rows[:limit]
        next_cursor = str(page[-1].id) if len(rows) > limit else None
        return [row.body for row in page], next_cursor
    raise ValidationError(_UNKNOWN_CURSOR, loc=["query", "after"])
