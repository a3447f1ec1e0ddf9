"""Idempotency-Key handling shared by every write.

The stored response is inserted in the same transaction as the effect, at its end. A concurrent
duplicate therefore either waits on the member's account lock or on the key's unique index
until the first request commits, then fails on the key and replays the stored response: the
effect is applied once, whatever the timing. Only successful responses are stored; a request
that failed left nothing behind, so its retry is judged afresh.
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

IDEMPOTENCY_CONSTRAINT = "pk_idempotency_keys"


@dataclass(frozen=True, slots=True)
class IdempotencyRequest:
    key: str
    fingerprint: bytes


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status_code: int
    body: str
    replayed: bool = False


def fingerprint(method: str, path: str, payload: Any) -> bytes:
    """What makes two requests 'the same': method, path and the body's parsed content."""
    canonical = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + canonical).digest()


def constraint_name(exc: IntegrityError) -> str | None:
    """The violated constraint's name."""
    name: str | None = exc.constraint_name
    return name


def is_idempotency_conflict(exc: IntegrityError) -> bool:
    return constraint_name(exc) == IDEMPOTENCY_CONSTRAINT


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
) -> StoredResponse | None:
    row = (await conn.execute(_FIND, {"program_id": program_id, "key": request.key})).first()
    if row is None:
        return None
    if row.request_hash != request.fingerprint:
        raise IdempotencyKeyReusedError(
            "This Idempotency-Key was first used with a different method, path or body."
        )
    return StoredResponse(row.status_code, row.response, replayed=True)


async def remember(
    conn: Connection,
    program_id: int,
    request: IdempotencyRequest,
    status_code: int,
    body: str,
    now: datetime,
) -> None:
    await conn.execute(
        _REMEMBER,
        {
            "program_id": program_id,
            "key": request.key,
            "hash": request.fingerprint,
            "status_code": status_code,
            "response": body,
            "now": now,
        },
    )


async def replay_after_failure(
    program_id: int, request: IdempotencyRequest | None, failure: Exception
) -> StoredResponse:
    """After a failed attempt, a stored response for the key means the request already
    succeeded once: replay it. Otherwise the failure stands."""
    if request is not None:
        async with db.read_only() as conn:
            stored = await find_stored(conn, program_id, request)
        if stored is not None:
            return stored
    raise failure


Work = Callable[[Connection], Awaitable[tuple[int, str]]]


async def run_once(
    program_id: int, request: IdempotencyRequest | None, work: Work
) -> StoredResponse:
    """Run ``work`` in one transaction and store its response under the key, exactly once."""
    try:
        async with db.transaction() as conn:
            status_code, body = await work(conn)
            if request is not None:
                await remember(conn, program_id, request, status_code, body, clock.now())
        return StoredResponse(status_code, body)
    except IntegrityError as exc:
        # The key's own conflict, or a natural key taken by this very request's first
        # attempt: either way a stored response means "already done".
        if request is None:
            raise
        return await replay_after_failure(program_id, request, exc)
    except PatronError as exc:
        return await replay_after_failure(program_id, request, exc)


async def purge_expired_keys(now: datetime, batch_size: int = 5000) -> int:
    """Delete stored responses older than the retention window; returns how many went."""
    cutoff = now - timedelta(hours=get_settings().idempotency_retention_hours)
    async with db.transaction() as conn:
        deleted = await conn.execute_count(
            text(
                "DELETE FROM idempotency_keys WHERE ctid IN ("
                " SELECT ctid FROM idempotency_keys WHERE created_at < :cutoff"
                " LIMIT :batch FOR UPDATE SKIP LOCKED)"
            ),
            {"cutoff": cutoff, "batch": batch_size},
        )
    return deleted


Compute = Callable[[], Awaitable[tuple[int, str]]]


async def run_recomputation(
    program_id: int, request: IdempotencyRequest | None, compute: Compute
) -> StoredResponse:
    """For a POST whose effect is a recomputation (idempotent by nature, in transactions of
    its own): with a key, the first answer is stored and a repeat replays it."""
    if request is None:
        return StoredResponse(*await compute())
    async with db.read_only() as conn:
        stored = await find_stored(conn, program_id, request)
    if stored is not None:
        return stored
    status_code, body = await compute()
    try:
        async with db.transaction() as conn:
            await remember(conn, program_id, request, status_code, body, clock.now())
    except IntegrityError as exc:
        if not is_idempotency_conflict(exc):
            raise
        return await replay_after_failure(program_id, request, exc)
    return StoredResponse(status_code, body)
