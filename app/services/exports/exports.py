"""The three exports, each one query read through a server-side cursor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text

from app import db
from app.db import compiled
from app.services.exports.cells import csv_block

# Rows fetched per round trip; what one block of output holds in memory.
FETCH = 2000


@dataclass(frozen=True, slots=True)
class Export:
    columns: tuple[str, ...]
    # Selects exactly ``columns`` in order, for :program_id within [:start, :end).
    query: str


MEMBERS = Export(
    ("external_id", "name", "email", "phone", "birthday", "metadata", "created_at"),
    """
SELECT m.external_id, m.name, m.email, m.phone, m.birthday, m.metadata, m.created_at
  FROM members AS m
 WHERE m.program_id = :program_id AND m.created_at >= :start AND m.created_at < :end
 ORDER BY m.id
""",
)
LEDGER = Export(
    (
        "id",
        "member_id",
        "kind",
        "points",
        "status",
        "reason",
        "order_id",
        "created_at",
        "available_at",
        "expires_at",
    ),
    """
SELECT e.id, m.external_id AS member_id, e.kind, e.points,
       CASE WHEN e.status = 'pending' AND rel.entry_id IS NOT NULL THEN 'available'
            ELSE e.status END AS status,
       e.reason, e.order_id, e.created_at,
       COALESCE(rel.released_at, e.available_at) AS available_at, e.expires_at
  FROM point_entries AS e
  JOIN members AS m ON m.program_id = e.program_id AND m.id = e.member_id
  LEFT JOIN point_releases AS rel ON rel.program_id = e.program_id AND rel.entry_id = e.id
 WHERE e.program_id = :program_id AND e.created_at >= :start AND e.created_at < :end
 ORDER BY e.id
""",
)
ORDERS = Export(
    (
        "order_id",
        "member_id",
        "amount",
        "currency",
        "occurred_at",
        "points_earned",
        "points_redeemed",
        "refunded_amount",
        "status",
        "created_at",
    ),
    """
SELECT o.order_id, m.external_id AS member_id, o.amount, o.currency, o.occurred_at,
       o.points_earned, o.points_redeemed, o.refunded_amount, o.status, o.created_at
  FROM orders AS o JOIN members AS m ON m.program_id = o.program_id AND m.id = o.member_id
 WHERE o.program_id = :program_id AND o.occurred_at >= :start AND o.occurred_at < :end
 ORDER BY o.id
""",
)
EXPORTS = {"members": MEMBERS, "ledger": LEDGER, "orders": ORDERS}

_EARLIEST = datetime.fromisoformat("0001-01-01T00:00:00+00:00")
_LATEST = datetime.fromisoformat("9999-12-31T00:00:00+00:00")


def _jsonl_query(export: Export) -> str:
    """The export's rows as one JSON object per row, built by PostgreSQL."""
    return f"SELECT row_to_json(x)::text FROM ({export.query}) AS x"


async def stream_export(
    name: str, program_id: int, start: datetime | None, end: datetime | None, fmt: str
) -> AsyncIterator[bytes]:
    """The export as blocks of bytes: a header row first for CSV."""
    export = EXPORTS[name]
    query = _jsonl_query(export) if fmt == "jsonl" else export.query
    sql, names = compiled(text(query))
    params = {"program_id": program_id, "start": start or _EARLIEST, "end": end or _LATEST}
    if fmt == "csv":
        yield csv_block([export.columns])
    async with db.transaction() as conn:
        # A long export reads one snapshot at its own pace; only the fetches are statements.
        await conn.execute(text("SET TRANSACTION READ ONLY"))
        cursor = await conn.raw.cursor(sql, *[params[n] for n in names])
        while True:
            rows = await cursor.fetch(FETCH)
            if not rows:
                break
            if fmt == "jsonl":
                yield "".join(row[0] + "\n" for row in rows).encode()
            else:
                yield csv_block(rows)
