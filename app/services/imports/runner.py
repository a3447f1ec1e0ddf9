"""Driving an import from queued to done, one short transaction per step, and its report.

A step locks the import's row (``FOR UPDATE SKIP LOCKED``: two workers never run the same
step, and a worker never waits on another), does one unit of work and records its progress
in the same transaction:

1. queued -> running: lines that repeat an earlier line's natural key are rejected as
   ``duplicate_key`` (the first one wins, whatever the batch boundaries);
2. each next batch of valid lines is applied (app/services/imports/batches.py) and
   ``applied_through`` moves past it; a dry run rolls the batch's work back and keeps only
   the counts;
3. with no line left: the report is final, the staging rows go, and ``import.finished`` is
   written (not for a dry run, which changes nothing).

A worker that dies mid-batch leaves that batch uncommitted: the next step (any worker)
starts again after the last committed batch, so no line is applied twice.
"""

from __future__ import annotations

import logging
import math
import uuid
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from sqlalchemy import text

from app import db
from app.config import get_settings
from app.db import Connection
from app.errors import NotFoundError
from app.services.events.events import write_event
from app.services.imports.batches import APPLY, REJECTION_MESSAGES, Batch, BatchOutcome
from app.services.imports.cluster import on_citus
from app.services.insights import insights
from app.services.programs.due_programs import looking_across_programs

log = logging.getLogger("patron.imports")

MAX_ERRORS = 100

# How many unfinished imports a worker looks through for one no other worker is on.
_CANDIDATES = 20
# The unfinished imports, oldest first, without locking: the step locks its one import, by
# program, and skips it when another worker holds it. The limit is written into the text: on
# Citus a bound parameter in a query across shards cannot be planned.
_UNFINISHED = text(
    "SELECT program_id, id FROM imports WHERE status IN ('queued', 'running') "
    f"ORDER BY created_at LIMIT {_CANDIDATES}"
)
_LOCK_IMPORT = text(
    "SELECT * FROM imports WHERE program_id = :program_id AND id = :id "
    "AND status IN ('queued', 'running') FOR UPDATE SKIP LOCKED"
)
_MARK_DUPLICATES = text(
    """
UPDATE import_rows AS r
   SET error_code = 'duplicate_key',
       error_message = 'the same key as line ' || d.first_line
  FROM (SELECT line, min(line) OVER (PARTITION BY key) AS first_line
          FROM import_rows
         WHERE program_id = :program_id AND import_id = :id AND error_code IS NULL) AS d
 WHERE r.program_id = :program_id AND r.import_id = :id AND r.line = d.line
   AND d.line <> d.first_line
"""
)
_ANALYZE_STAGING = text("ANALYZE import_rows (program_id, import_id, line, key, error_code)")
_COUNT_REJECTED = text(
    "SELECT count(*) FROM import_rows "
    "WHERE program_id = :program_id AND import_id = :id AND error_code IS NOT NULL"
)
_START = text(
    "UPDATE imports SET status = 'running', started_at = :now, rejected = :rejected, "
    "rows_done = :rejected WHERE program_id = :program_id AND id = :id"
)
_NEXT_BATCH_END = text(
    """
SELECT max(line) FROM (
    SELECT line FROM import_rows
     WHERE program_id = :program_id AND import_id = :id AND line > :after
       AND error_code IS NULL
     ORDER BY line LIMIT :batch) AS b
"""
)
_REJECT = text(
    """
UPDATE import_rows AS r SET error_code = x.code, error_message = x.message
  FROM unnest(CAST(:lines AS bigint[]), CAST(:codes AS text[]), CAST(:messages AS text[]))
       AS x(line, code, message)
 WHERE r.program_id = :program_id AND r.import_id = :id AND r.line = x.line
"""
)
_ADVANCE = text(
    """
UPDATE imports
   SET applied_through = :upto, created = created + :created, updated = updated + :updated,
       unchanged = unchanged + :unchanged, rejected = rejected + :rejected,
       rows_done = rows_done + :created + :updated + :unchanged + :rejected
 WHERE program_id = :program_id AND id = :id
"""
)
_FIRST_ERRORS = text(
    """
SELECT COALESCE(jsonb_agg(jsonb_build_object('line', line, 'code', error_code,
                                             'message', error_message) ORDER BY line), '[]')
  FROM (SELECT line, error_code, error_message FROM import_rows
         WHERE program_id = :program_id AND import_id = :id AND error_code IS NOT NULL
         ORDER BY line LIMIT :limit) AS e
"""
)
_FINISH = text(
    "UPDATE imports SET status = 'done', finished_at = :now, errors = CAST(:errors AS jsonb) "
    "WHERE program_id = :program_id AND id = :id RETURNING *"
)
_DROP_STAGING = text("DELETE FROM import_rows WHERE program_id = :program_id AND import_id = :id")
_FAIL = text(
    "UPDATE imports SET status = 'failed', finished_at = :now, failure = :failure "
    "WHERE program_id = :program_id AND id = :id AND status IN ('queued', 'running')"
)


# Failures that say nothing about the data: a timeout on a busy server, a deadlock, a lock
# not granted in time. The step is retried, never the import failed for them.
_TRANSIENT = (
    asyncpg.QueryCanceledError,
    asyncpg.DeadlockDetectedError,
    asyncpg.LockNotAvailableError,
    asyncpg.SerializationError,
)


class _RolledBack(Exception):
    """Carries a dry run's outcome out of the savepoint it rolls back."""

    def __init__(self, outcome: BatchOutcome) -> None:
        self.outcome = outcome


async def run_imports(now: datetime) -> int:
    """Worker job: one step of the oldest unfinished import no other worker is on."""
    async with looking_across_programs() as conn:
        unfinished = (await conn.execute(_UNFINISHED)).all()
    for program_id, import_id in unfinished:
        if await advance_import(program_id, import_id, now):
            return 1
    return 0


async def advance_import(program_id: int, import_id: uuid.UUID, now: datetime) -> bool:
    """One step of this import; False when it is finished or another worker is on it."""
    finished: Any = None
    try:
        async with db.transaction() as conn:
            current = (
                await conn.execute(_LOCK_IMPORT, {"program_id": program_id, "id": import_id})
            ).first()
            if current is None:
                return False
            if current.status == "queued":
                await _start(conn, current, now)
                return True
            upto = (
                await conn.execute(
                    _NEXT_BATCH_END,
                    {
                        "program_id": current.program_id,
                        "id": import_id,
                        "after": current.applied_through,
                        "batch": get_settings().import_batch_size,
                    },
                )
            ).scalar()
            if upto is None:
                finished = await _finish(conn, current, now)
            else:
                await _apply_batch(conn, current, upto, now)
    except _TRANSIENT:
        raise  # the batch rolled back; the worker tries the step again next cycle
    except db.DatabaseError as exc:
        # A statement the data made fail would fail again on every retry: the import stops
        # with the reason, instead of the worker retrying it for ever.
        log.exception("import %s failed", import_id)
        async with db.transaction() as conn:
            await conn.execute(
                _FAIL,
                {
                    "program_id": program_id,
                    "id": import_id,
                    "now": now,
                    "failure": f"{type(exc).__name__}: {exc}",
                },
            )
        return False
    if finished is not None and not finished.dry_run and finished.type != "balances":
        # Segments and lifecycle stages from the new members and history, now rather than
        # at the worker's next hourly refresh.
        await insights.refresh_program(finished.program_id, now)
    return True


# The batch statements join a fresh staging table and tables the import itself is growing:
# a plan cached for the first batch (the service's generic plans) is wrong by the tenth.
# Each batch is planned for its own parameters and the tables' current size instead.
_PLAN_EACH_BATCH = text("SET LOCAL plan_cache_mode = force_custom_plan")

# Marking duplicates and dropping the staging rows touch the whole file at once: on a file of
# millions of lines they outlast the service's statement timeout. They lock only staging rows.
_WHOLE_FILE_TIMEOUT = text("SET LOCAL statement_timeout = '30min'")


async def _start(conn: Connection, current: Any, now: datetime) -> None:
    this = {"program_id": current.program_id, "id": current.id}
    await conn.execute(_WHOLE_FILE_TIMEOUT)
    # Run once per import, so planned for their values (as a batch is, below): on Citus a
    # generic plan of the duplicate search cannot be routed to its shard at all.
    await conn.execute(_PLAN_EACH_BATCH)
    # Fresh statistics for the staging rows, before the first statement that reads them all:
    # counted as the few rows of an earlier import (or none), the duplicate search below is
    # planned as a nested loop that runs the file's window aggregate once per line (more
    # than 10 minutes for 50,000 lines). The batches join them too. Not on Citus (see
    # cluster.py): there an ANALYZE in the transaction is DDL on every shard.
    if not await on_citus(conn):
        await conn.execute(_ANALYZE_STAGING)
    await conn.execute(_MARK_DUPLICATES, this)
    rejected = (await conn.execute(_COUNT_REJECTED, this)).scalar_one()
    await conn.execute(_START, {**this, "now": now, "rejected": rejected})


# A batch on a busy server may outlast the service's default timeout; it still holds its
# members' locks for at most this long.
_BATCH_TIMEOUT = text("SET LOCAL statement_timeout = '60s'")


# The tables each import type grows, with the columns its batch statements join and filter
# on. Their statistics are refreshed before each of the first ``_ANALYZE_EACH_FIRST`` batches
# and then each time the file's applied lines have grown by a quarter
# (``_refresh_statistics``): planned with a program's members counted as none, the batch
# statements hash every member of the program instead of looking up the batch's. Only those
# columns are sampled (the table's size is counted either way): the wide JSON columns made a
# full ANALYZE of orders a quarter of a second per batch.
_KEYS = {
    "members": "members (program_id, external_id, id)",
    "accounts": "accounts (program_id, member_id)",
    "member_insights": "member_insights (program_id, member_id)",
    "point_entries": "point_entries (program_id, member_id, kind, order_id)",
    "point_lots": "point_lots (program_id, member_id)",
    "orders": "orders (program_id, order_id, member_id)",
}
_GROWN = {
    "members": ("members", "accounts", "member_insights"),
    "balances": ("point_entries", "point_lots"),
    "orders": ("orders", "point_entries", "point_lots"),
}
_ANALYZE_EACH_FIRST = 10
_ANALYZE_GROWTH = 1.25


def _statistics_level(lines: int, batch_size: int) -> int:
    """Which growth step ``lines`` applied lines are at: -1 during the first batches, then
    one more each time the count grows by ``_ANALYZE_GROWTH``."""
    first = _ANALYZE_EACH_FIRST * batch_size
    if lines < first:
        return -1
    return int(math.log(lines / first) / math.log(_ANALYZE_GROWTH))


def _refresh_statistics(after: int, upto: int, batch_size: int) -> bool:
    """Whether the batch of lines (``after``, ``upto``] refreshes the statistics first: each
    of the first batches does, while every batch changes the tables' size by a large factor;
    after that a batch that crosses a growth step does (24 refreshes between 50,000
    and 10,000,000 lines at 5,000 a batch). A refresh every few batches instead cost minutes
    over a file of millions of orders, each sampling tables that had hardly changed."""
    if after < _ANALYZE_EACH_FIRST * batch_size:
        return True
    return _statistics_level(after, batch_size) != _statistics_level(upto, batch_size)


async def _apply_batch(conn: Connection, current: Any, upto: int, now: datetime) -> None:
    await conn.execute(_PLAN_EACH_BATCH)
    await conn.execute(_BATCH_TIMEOUT)
    refresh = _refresh_statistics(current.applied_through, upto, get_settings().import_batch_size)
    # Not on Citus (cluster.py): after an ANALYZE of a distributed table the transaction may
    # no longer read the reference table ``programs``.
    if refresh and not await on_citus(conn):
        for table in dict.fromkeys(("members", *_GROWN[current.type])):
            await conn.execute(text(f"ANALYZE {_KEYS[table]}"))
    batch = Batch(current.id, current.program_id, current.actor, current.applied_through, upto, now)
    apply = APPLY[current.type]
    if current.dry_run:
        try:
            async with conn.savepoint():
                raise _RolledBack(await apply(conn, batch))
        except _RolledBack as rolled_back:
            outcome = rolled_back.outcome
    else:
        outcome = await apply(conn, batch)
    if outcome.rejections:
        await conn.execute(
            _REJECT,
            {
                "program_id": current.program_id,
                "id": current.id,
                "lines": [line for line, _ in outcome.rejections],
                "codes": [code for _, code in outcome.rejections],
                "messages": [REJECTION_MESSAGES[code] for _, code in outcome.rejections],
            },
        )
    await conn.execute(
        _ADVANCE,
        {
            "program_id": current.program_id,
            "id": current.id,
            "upto": upto,
            **outcome.counts,
            "rejected": len(outcome.rejections),
        },
    )


async def _finish(conn: Connection, current: Any, now: datetime) -> Any:
    this = {"program_id": current.program_id, "id": current.id}
    await conn.execute(_WHOLE_FILE_TIMEOUT)
    await conn.execute(_PLAN_EACH_BATCH)  # as in _start
    errors = (await conn.execute(_FIRST_ERRORS, {**this, "limit": MAX_ERRORS})).scalar_one()
    done = (
        await conn.execute(_FINISH, {**this, "now": now, "errors": orjson.dumps(errors).decode()})
    ).one()
    await conn.execute(_DROP_STAGING, this)
    if not done.dry_run:
        await write_event(conn, done.program_id, "import.finished", None, summary(done), now)
    return done


def summary(row: Any) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "type": row.type,
        "dry_run": row.dry_run,
        "rows_total": row.rows_total,
        "created": row.created,
        "updated": row.updated,
        "unchanged": row.unchanged,
        "rejected": row.rejected,
    }


_REPORT = text("SELECT * FROM imports WHERE program_id = :program_id AND id = :id")


async def get_import(program_id: int, import_id: str) -> dict[str, Any]:
    """The import's report (api.md): progress while it runs, the final counts when done."""
    try:
        key = uuid.UUID(import_id)
    except ValueError:
        raise NotFoundError("No such import.") from None
    async with db.read_only() as conn:
        row = (await conn.execute(_REPORT, {"program_id": program_id, "id": key})).first()
        if row is None:
            raise NotFoundError("No such import.")
        errors = row.errors
        if errors is None:
            errors = (
                await conn.execute(
                    _FIRST_ERRORS, {"program_id": program_id, "id": key, "limit": MAX_ERRORS}
                )
            ).scalar_one()
    return {
        "id": str(row.id),
        "type": row.type,
        "status": "queued" if row.status == "receiving" else row.status,
        "dry_run": row.dry_run,
        "rows_total": row.rows_total,
        "rows_done": row.rows_done,
        "created": row.created,
        "updated": row.updated,
        "unchanged": row.unchanged,
        "rejected": row.rejected,
        "errors": errors,
        "failure": row.failure,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
    }
