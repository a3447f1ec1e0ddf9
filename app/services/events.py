"""The outbox: every state change writes one event row in its own transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_INSERT = text(
    "INSERT INTO events (program_id, type, member_id, data, created_at) "
    "VALUES (:program_id, :type, :member_id, CAST(:data AS jsonb), :now)"
)


async def write_event(
    conn: AsyncConnection,
    program_id: int,
    event_type: str,
    member_id: int | None,
    data: dict[str, Any],
    now: datetime,
) -> None:
    await conn.execute(
        _INSERT,
        {
            "program_id": program_id,
            "type": event_type,
            "member_id": member_id,
            "data": orjson.dumps(data).decode(),
            "now": now,
        },
    )
