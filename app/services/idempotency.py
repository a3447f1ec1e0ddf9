"""Idempotency: every POST that writes runs through ``idempotent`` (usually by way of
``run_once``), so a retry is always safe.

How it works (architecture.md, "Idempotency is one wrapper"):
- the unit of work stores the ``Idempotency-Key`` with its reply in the same transaction as
  its effect (``remember`` after the work, or ``REMEMBER_CTE`` inside a one-statement unit
  of work, which saves a round trip);
- a concurrent duplicate waits on the member's account lock or on the key's unique index
  until the first commits, then fails on the key: the wrapper replays the winner's reply;
- a duplicate that fails for a domain reason (the first already spent the points) or on a
  natural key its first attempt took (an order_id, a tier key) is also answered with the
  stored reply when there is one.

The stored reply is looked up after a failure rather than before every attempt: a first
attempt (nearly every request) costs no extra round trip, and the unique index decides a race.
Only successful replies are stored; a request that failed left nothing behind, so its retry is
judged afresh. The same key with another method, path or body is ``idempotency_key_reused``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import text

from app import db
from app.clock import clock
from app.config import get_settings
from app.db import Connection, IntegrityError
from app.errors import IdempotencyKeyReusedError, PatronError
from app.services.programs.due_programs import looking_across_programs

# The stored reply keeps the HTTP status it was first sent with (the table's column), which
# routers derive from ``Reply.created`` alone: 201 for something new, 200 otherwise.
_CREATED, _NOT_CREATED = 201, 200


@dataclass(frozen=True, slots=True)
class IdempotencyRequest:
    key: str
    fingerprint: bytes


@dataclass(frozen=True, slots=True)
class Reply:
    """What a write answers: its JSON text (built once, in SQL where that keeps the unit of
    work one statement, and stored as is for replays), whether it created something, and
    whether this is a stored reply given again."""

    body: str
    created: bool = True
    replayed: bool = False


def fingerprint(method: str, path: str, payload: Any) -> bytes:
    """What makes two requests 'the same': method, path and the body's parsed content."""
    canonical = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + canonical).digest()


def constraint_name(exc: IntegrityError) -> str | None:
    """The violated constraint's name (as the schema has it, also on a Citus shard)."""
    return db.violated_constraint(exc)


# Joins a one-statement unit of work when a key was sent; ``body`` is the CTE holding the
# reply text (``response``) and its ``program_id``. Bind ``remember_params``.
REMEMBER_CTE = """, remembered AS (
    INSERT INTO idempotency_keys (program_id, key, request_hash, status_code, response,
                                  created_at)
    SELECT body.program_id, CAST(:idem_key AS text), CAST(:idem_hash AS bytea),
           CAST(:idem_status AS integer), body.response, CAST(:now AS timestamptz)
      FROM body
)"""


def remember_params(request: IdempotencyRequest | None, *, created: bool = True) -> dict[str, Any]:
    """Bind parameters for ``REMEMBER_CTE``."""
    if request is None:
        return {}
    return {
        "idem_key": request.key,
        "idem_hash": request.fingerprint,
        "idem_status": _CREATED if created else _NOT_CREATED,
    }


_FIND = text(
    "SELECT request_hash, status_code, response FROM idempotency_keys "
    "WHERE program_id = :program_id AND key = :key"
)
_REMEMBER = text(
    "INSERT INTO idempotency_keys (program_id, key, request_hash, status_code, response, "
    "created_at) VALUES (:program_id, :key, :hash, :status_code, :response, :now)"
)


async def find_stored(
    conn: Connection, program_id: int, request: IdempotencyRequest
) -> Reply | None:
    """The stored reply for the key, or None; the key with another request is refused."""
    row = (await conn.execute(_FIND, {"program_id": program_id, "key": request.key})).first()
    if row is None:
        return None
    if row.request_hash != request.fingerprint:
        raise IdempotencyKeyReusedError(
            "This Idempotency-Key was first used with a different method, path or body."
        )
    return Reply(row.response, created=row.status_code == _CREATED, replayed=True)


async def remember(
    conn: Connection, program_id: int, request: IdempotencyRequest, reply: Reply, now: datetime
) -> None:
    """Store the reply under the key, in the unit of work's own transaction."""
    await conn.execute(
        _REMEMBER,
        {
            "program_id": program_id,
            "key": request.key,
            "hash": request.fingerprint,
            "status_code": _CREATED if reply.created else _NOT_CREATED,
            "response": reply.body,
            "now": now,
        },
    )


async def stored_reply(program_id: int, request: IdempotencyRequest | None) -> Reply | None:
    """The stored reply for the key, read in a transaction of its own."""
    if request is None:
        return None
    async with db.read_only() as conn:
        return await find_stored(conn, program_id, request)


async def idempotent(
    program_id: int, request: IdempotencyRequest | None, attempt: Callable[[], Awaitable[Reply]]
) -> Reply:
    """Run ``attempt``, a unit of work that stores the key with its effect; when it loses the
    race for the key, or fails for a domain reason after the same request already succeeded,
    answer with the stored reply. The one wrapper of every idempotent write."""
    try:
        return await attempt()
    except (IntegrityError, PatronError) as exc:
        # The key's own unique index, a natural key (an order_id, a tier key) taken by this
        # very request's first attempt, or a domain refusal of a repeat: when a reply is
        # stored under the key, the request already succeeded once.
        if request is None:
            raise
        failure = exc
    stored = await stored_reply(program_id, request)
    if stored is None:
        raise failure
    return stored


Work = Callable[[Connection], Awaitable[Reply]]


async def run_once(program_id: int, request: IdempotencyRequest | None, work: Work) -> Reply:
    """The common case of ``idempotent``: ``work`` in one transaction, its reply stored
    under the key before the commit."""

    async def attempt() -> Reply:
        async with db.transaction() as conn:
            reply = await work(conn)
            if request is not None:
                await remember(conn, program_id, request, reply, clock.now())
        return reply

    return await idempotent(program_id, request, attempt)


Compute = Callable[[], Awaitable[Reply]]


async def run_recomputation(
    program_id: int, request: IdempotencyRequest | None, compute: Compute
) -> Reply:
    """For a POST whose effect is a recomputation (a quote, a preview, a refresh: idempotent
    by nature, in transactions of its own): with a key, the first reply is stored and a
    repeat replays it instead of computing again."""
    stored = await stored_reply(program_id, request)
    if stored is not None:
        return stored
    reply = await compute()
    if request is None:
        return reply

    async def store() -> Reply:
        async with db.transaction() as conn:
            await remember(conn, program_id, request, reply, clock.now())
        return reply

    return await idempotent(program_id, request, store)


async def purge_expired_keys(now: datetime, batch_size: int = 5000) -> int:
    """Delete stored replies older than the retention window, one program per batch (the one
    with the oldest reply); returns how many went."""
    cutoff = now - timedelta(hours=get_settings().idempotency_retention_hours)
    async with looking_across_programs() as conn:
        program_id = (
            await conn.execute(
                text(
                    "SELECT program_id FROM idempotency_keys WHERE created_at < :cutoff "
                    "ORDER BY created_at LIMIT 1"
                ),
                {"cutoff": cutoff},
            )
        ).scalar()
    if program_id is None:
        return 0
    async with db.transaction() as conn:
        deleted = await conn.execute_count(
            text(
                "DELETE FROM idempotency_keys WHERE program_id = :program_id AND ctid IN ("
                " SELECT ctid FROM idempotency_keys"
                " WHERE program_id = :program_id AND created_at < :cutoff"
                " LIMIT :batch FOR UPDATE SKIP LOCKED)"
            ),
            {"program_id": program_id, "cutoff": cutoff, "batch": batch_size},
        )
    return deleted
