"""Webhook delivery: two worker jobs, fan-out and send.

**Fan-out** (``fan_out_events``) turns events into delivery rows, one per matching endpoint
and event. It works one program at a time: it finds the programs with endpoints and events
past their fan-out point, then, for each, takes the program's stream lock, hands out feed
positions to the committed events that have none (app/services/events/positions.py), creates
the deliveries of the next batch by position and moves ``event_streams.fanned_out``, all in
one short transaction: a crash leaves nothing half done, a second replica waits for the lock
and goes on from where the first stopped, and the unique (endpoint, event) pair makes a
repeat harmless. An endpoint receives the events positioned after it was registered: the
registration takes the same lock, so the job either ran entirely before it or sees the new
endpoint. Checkout traffic never waits for it: events are written exactly as before.

**Send** (``deliver_due``) claims due deliveries with ``FOR UPDATE SKIP LOCKED`` in one
short statement that counts the attempt and leases the row (its next attempt moves past the
time a send can take), then sends with no transaction open. Two replicas can therefore never
send the same attempt; a replica that dies mid-send leaves a lease that expires, and the
attempt is made again (at-least-once: receivers dedupe on the event id). Sends run
concurrently, at most ``MAX_CONCURRENT_SENDS`` in all and ``MAX_SENDS_PER_ENDPOINT`` per
endpoint, and each is cut off after ``REQUEST_TIMEOUT_SECONDS``, so a slow or dead receiver
holds a few slots for ten seconds while other endpoints keep flowing through the rest.

A failed attempt is retried after an exponential backoff with jitter (30 s doubling to at
most an hour, each ±20 %). The first failed attempt at or after the delivery's
``retry_until`` (24 h after it was created) marks it failed. When that happens and the
endpoint has had no success at all for the whole horizon, the endpoint is paused with the
reason; deliveries of a paused endpoint wait until an admin resumes it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text

from app import db, metrics
from app.clock import clock
from app.services.events import positions
from app.services.events.events import EVENT_JSON
from app.services.events.webhook_urls import UnsafeDestinationError, target_for
from app.services.events.webhooks import RETRY_HORIZON
from app.services.programs.due_programs import looking_across_programs
from app.webhook_signature import signature_header

log = logging.getLogger("patron.webhooks")

REQUEST_TIMEOUT_SECONDS = 10.0
MAX_CONCURRENT_SENDS = 32
MAX_SENDS_PER_ENDPOINT = 4
# Longer than a send can take, so a claimed attempt is not claimed again while in flight.
LEASE = timedelta(seconds=REQUEST_TIMEOUT_SECONDS * 3 + 30)
BACKOFF_BASE_SECONDS = 30.0
BACKOFF_CAP_SECONDS = 3600.0
BACKOFF_JITTER = 0.2
FANOUT_BATCH = 500
USER_AGENT = "Patron-Webhooks/1"

# Programs with an endpoint and events past their fan-out point (or not yet positioned; in
# id order, so that it reads the partial index whatever the statistics say).
_PROGRAMS_TO_FAN_OUT = text(
    """
SELECT s.program_id
  FROM event_streams AS s
 WHERE EXISTS (SELECT 1 FROM webhook_endpoints AS w WHERE w.program_id = s.program_id)
   AND (EXISTS (SELECT 1 FROM events AS e
                 WHERE e.program_id = s.program_id AND e.position > s.fanned_out)
        OR (SELECT e.id FROM events AS e
             WHERE e.program_id = s.program_id AND e.position IS NULL
             ORDER BY e.id LIMIT 1) IS NOT NULL)
 ORDER BY s.program_id
"""
)
_FAN_OUT = text(
    """
WITH batch AS (
    SELECT e.id, e.position, e.type
      FROM events AS e
     WHERE e.program_id = :program_id AND e.position > :fanned_out
     ORDER BY e.position
     LIMIT :batch
), created AS (
    INSERT INTO webhook_deliveries (program_id, endpoint_id, event_id, next_attempt_at,
                                    retry_until, created_at)
    SELECT :program_id, w.id, b.id, :now, :retry_until, :now
      FROM batch AS b
      JOIN webhook_endpoints AS w
        ON w.program_id = :program_id AND b.position > w.starts_after_position
       AND (b.type = ANY (w.events) OR '*' = ANY (w.events))
    ON CONFLICT (endpoint_id, event_id, program_id) DO NOTHING
    RETURNING 1
), moved AS (
    UPDATE event_streams
       SET fanned_out = (SELECT max(position) FROM batch)
     WHERE program_id = :program_id AND EXISTS (SELECT 1 FROM batch)
)
SELECT (SELECT count(*) FROM batch) AS events, (SELECT count(*) FROM created) AS deliveries
"""
)


async def fan_out_events(now: datetime) -> int:
    """Create the deliveries of the next batch of each program's events; returns how many
    events were passed."""
    async with looking_across_programs() as conn:
        program_ids = (await conn.execute(_PROGRAMS_TO_FAN_OUT)).scalars().all()
    events = 0
    for program_id in program_ids:
        events += await fan_out_program(program_id, now)
    return events


async def fan_out_program(program_id: int, now: datetime) -> int:
    """One batch of one program's events; returns how many events it passed."""
    async with db.transaction() as conn:
        fanned_out = await positions.lock_stream(conn, program_id)
        # Statements of their own, after the lock: their snapshots see every endpoint
        # registered before (registration takes the same lock) and every position handed out.
        await positions.assign(conn, program_id)
        row = (
            await conn.execute(
                _FAN_OUT,
                {
                    "program_id": program_id,
                    "fanned_out": fanned_out,
                    "batch": FANOUT_BATCH,
                    "now": now,
                    "retry_until": now + RETRY_HORIZON,
                },
            )
        ).one()
    if row.deliveries:
        log.info(
            "webhooks fanned out",
            extra={
                "fields": {
                    "program_id": program_id,
                    "events": row.events,
                    "deliveries": row.deliveries,
                }
            },
        )
    return int(row.events)


# Programs with an active endpoint that has a delivery due: one cheap look per endpoint at
# the pending index. Claims then go one program at a time.
_PROGRAMS_WITH_DUE_DELIVERIES = text(
    """
SELECT DISTINCT w.program_id
  FROM webhook_endpoints AS w
 WHERE w.status = 'active'
   AND EXISTS (SELECT 1 FROM webhook_deliveries AS d
                WHERE d.endpoint_id = w.id AND d.program_id = w.program_id
                  AND d.status = 'pending' AND d.next_attempt_at <= :now)
 ORDER BY w.program_id
"""
)
# Candidates: the program's oldest due deliveries, at most a few per endpoint, skipping
# endpoints this process already keeps busy. Then lock what no other replica holds,
# re-checking that it is still due, count the attempt and lease it, and return what the send
# needs.
_CLAIM = text(
    f"""
WITH candidates AS (
    SELECT d.id, d.next_attempt_at
      FROM webhook_endpoints AS w
     CROSS JOIN LATERAL (
           SELECT id, next_attempt_at
             FROM webhook_deliveries
            WHERE program_id = :program_id AND endpoint_id = w.id AND status = 'pending'
              AND next_attempt_at <= :now
            ORDER BY next_attempt_at
            LIMIT :per_endpoint) AS d
     WHERE w.program_id = :program_id AND w.status = 'active'
       AND NOT (w.id = ANY (CAST(:busy AS uuid[])))
     ORDER BY d.next_attempt_at
     LIMIT :limit
), claimed AS (
    SELECT d.id
      FROM webhook_deliveries AS d
     WHERE d.program_id = :program_id AND d.id IN (SELECT id FROM candidates)
       AND d.status = 'pending' AND d.next_attempt_at <= :now
       FOR UPDATE SKIP LOCKED
), taken AS (
    UPDATE webhook_deliveries AS d
       SET attempts = d.attempts + 1, next_attempt_at = :lease_until
      FROM claimed
     WHERE d.program_id = :program_id AND d.id = claimed.id
 RETURNING d.id, d.program_id, d.endpoint_id, d.event_id, d.attempts, d.retry_until
)
SELECT t.id, t.program_id, t.endpoint_id, t.event_id, t.attempts, t.retry_until,
       w.url, w.secret, w.previous_secret, w.previous_secret_expires_at,
       p.webhooks_allow_private_hosts AS allow_private,
       {EVENT_JSON} AS body
  FROM taken AS t
  JOIN webhook_endpoints AS w ON w.program_id = :program_id AND w.id = t.endpoint_id
  JOIN programs AS p ON p.id = :program_id
  JOIN events AS e ON e.program_id = :program_id AND e.id = t.event_id
  LEFT JOIN members AS m ON m.program_id = :program_id AND m.id = e.member_id
"""
)

_RECORD_DELIVERED = text(
    """
WITH delivered AS (
    UPDATE webhook_deliveries
       SET status = 'delivered', delivered_at = :at, last_attempt_at = :at,
           last_status_code = :status_code, last_error = NULL
     WHERE program_id = :program_id AND id = :id AND attempts = :attempt AND status = 'pending'
 RETURNING endpoint_id
)
UPDATE webhook_endpoints AS w
   SET consecutive_failures = 0, failing_since = NULL, updated_at = :at
  FROM delivered
 WHERE w.program_id = :program_id AND w.id = delivered.endpoint_id
   AND (w.consecutive_failures > 0 OR w.failing_since IS NOT NULL)
"""
)
_RECORD_FAILED_DELIVERY = text(
    """
UPDATE webhook_deliveries
   SET status = :status, next_attempt_at = :next_attempt_at, last_attempt_at = :at,
       last_status_code = :status_code, last_error = :error
 WHERE program_id = :program_id AND id = :id AND attempts = :attempt AND status = 'pending'
RETURNING id
"""
)
_RECORD_FAILED_ENDPOINT = text(
    """
UPDATE webhook_endpoints
   SET consecutive_failures = consecutive_failures + 1,
       failing_since = COALESCE(failing_since, :at), updated_at = :at
 WHERE program_id = :program_id AND id = :endpoint_id
RETURNING status, failing_since, consecutive_failures
"""
)
_PAUSE = text(
    """
UPDATE webhook_endpoints SET status = 'paused', paused_at = :at, paused_reason = :reason
 WHERE program_id = :program_id AND id = :endpoint_id AND status = 'active'
"""
)


@dataclass(frozen=True, slots=True)
class Claimed:
    """One attempt this worker holds the lease of."""

    id: int
    program_id: int
    endpoint_id: uuid.UUID
    event_id: int
    attempt: int
    retry_until: datetime
    url: str
    secrets: tuple[str, ...]
    allow_private: bool
    body: bytes


@dataclass(frozen=True, slots=True)
class Outcome:
    delivered: bool
    status_code: int | None = None
    error: str | None = None


def backoff(attempt: int) -> timedelta:
    """The wait after failed attempt number ``attempt`` (1, 2, ...): doubling, capped, and
    spread by ±20 % so that receivers recovering from an outage are not hit all at once."""
    seconds = min(BACKOFF_BASE_SECONDS * 2 ** min(attempt - 1, 30), BACKOFF_CAP_SECONDS)
    return timedelta(seconds=seconds * random.uniform(1 - BACKOFF_JITTER, 1 + BACKOFF_JITTER))


def _attempt_time(now: datetime) -> datetime:
    # ``now`` is when the job run started; sends happen during it. Never earlier than now,
    # so that nothing claimed or rescheduled in a run is due again in the same run.
    return max(now, clock.now())


async def _programs_with_due_deliveries(now: datetime) -> list[int]:
    async with looking_across_programs() as conn:
        return list((await conn.execute(_PROGRAMS_WITH_DUE_DELIVERIES, {"now": now})).scalars())


async def _claim(
    program_id: int, now: datetime, limit: int, busy: list[uuid.UUID]
) -> list[Claimed]:
    async with db.single_statement() as conn:
        rows = (
            await conn.execute(
                _CLAIM,
                {
                    "program_id": program_id,
                    "now": now,
                    "limit": limit,
                    "per_endpoint": MAX_SENDS_PER_ENDPOINT,
                    "busy": busy,
                    "lease_until": _attempt_time(now) + LEASE,
                },
            )
        ).all()
    return [_claimed(row, _attempt_time(now)) for row in rows]


def _claimed(row: Any, at: datetime) -> Claimed:
    keys = [row.secret]
    if (
        row.previous_secret
        and row.previous_secret_expires_at
        and row.previous_secret_expires_at > at
    ):
        keys.append(row.previous_secret)
    return Claimed(
        id=row.id,
        program_id=row.program_id,
        endpoint_id=row.endpoint_id,
        event_id=row.event_id,
        attempt=row.attempts,
        retry_until=row.retry_until,
        url=row.url,
        secrets=tuple(keys),
        allow_private=row.allow_private,
        body=row.body.encode(),
    )


async def send(client: httpx.AsyncClient, claimed: Claimed, at: datetime) -> Outcome:
    """POST the event; a 2xx within the timeout is delivered, anything else is a failure."""
    try:
        # Checked again at every attempt: the host may resolve elsewhere by now.
        target = await target_for(claimed.url, claimed.allow_private)
    except UnsafeDestinationError as exc:
        return Outcome(False, error=str(exc))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Patron-Event-Id": str(claimed.event_id),
        "Patron-Signature": signature_header(claimed.secrets, int(at.timestamp()), claimed.body),
        **target.headers,
    }
    try:
        async with (
            asyncio.timeout(REQUEST_TIMEOUT_SECONDS),
            client.stream(
                "POST",
                target.url,
                content=claimed.body,
                headers=headers,
                extensions=target.extensions,
            ) as response,
        ):
            # The body is never read: a receiver cannot make us download anything.
            status_code = response.status_code
    except TimeoutError:
        return Outcome(False, error=f"No response within {REQUEST_TIMEOUT_SECONDS:g} s.")
    except httpx.HTTPError as exc:
        detail = str(exc) or "connection failed"
        return Outcome(False, error=f"{type(exc).__name__}: {detail}"[:300])
    if 200 <= status_code < 300:
        return Outcome(True, status_code=status_code)
    return Outcome(False, status_code=status_code, error=f"HTTP {status_code}")


async def record(claimed: Claimed, outcome: Outcome, at: datetime) -> str | None:
    """Store the attempt's result; returns the delivery outcome for the metrics, or None when
    the lease was lost (the delivery was deleted, or retried elsewhere after a long stall)."""
    common = {
        "program_id": claimed.program_id,
        "id": claimed.id,
        "attempt": claimed.attempt,
        "at": at,
    }
    if outcome.delivered:
        async with db.single_statement() as conn:
            await conn.execute(_RECORD_DELIVERED, {**common, "status_code": outcome.status_code})
        return "delivered"
    gives_up = at >= claimed.retry_until
    async with db.transaction() as conn:
        updated = (
            await conn.execute(
                _RECORD_FAILED_DELIVERY,
                {
                    **common,
                    "status": "failed" if gives_up else "pending",
                    "next_attempt_at": at if gives_up else at + backoff(claimed.attempt),
                    "status_code": outcome.status_code,
                    "error": (outcome.error or "")[:500] or None,
                },
            )
        ).first()
        if updated is None:
            return None
        endpoint = (
            await conn.execute(
                _RECORD_FAILED_ENDPOINT,
                {"program_id": claimed.program_id, "endpoint_id": claimed.endpoint_id, "at": at},
            )
        ).one()
        if (
            gives_up
            and endpoint.status == "active"
            and endpoint.failing_since <= at - RETRY_HORIZON
        ):
            reason = (
                f"Every delivery attempt since {endpoint.failing_since.isoformat()} failed "
                f"({endpoint.consecutive_failures} in a row), and event {claimed.event_id} was "
                f"given up after {claimed.attempt} attempts. Last error: {outcome.error}. "
                f"Fix the receiver, then POST /v1/webhook-endpoints/{claimed.endpoint_id}/resume."
            )
            await conn.execute(
                _PAUSE,
                {
                    "program_id": claimed.program_id,
                    "endpoint_id": claimed.endpoint_id,
                    "at": at,
                    "reason": reason,
                },
            )
            log.warning(
                "webhook endpoint paused",
                extra={"fields": {"endpoint_id": str(claimed.endpoint_id)}},
            )
    return "failed" if gives_up else "retrying"


async def _attempt(client: httpx.AsyncClient, claimed: Claimed, now: datetime) -> None:
    outcome = await send(client, claimed, _attempt_time(now))
    result = await record(claimed, outcome, _attempt_time(now))
    if result is not None:
        metrics.delivery_attempted(result)


def http_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(REQUEST_TIMEOUT_SECONDS),
        follow_redirects=False,  # a redirect is a failure: it could point anywhere
        trust_env=False,  # no proxy from the environment: the address check must hold
        limits=httpx.Limits(max_connections=MAX_CONCURRENT_SENDS),
    )


async def deliver_due(now: datetime) -> int:
    """Send every delivery due at ``now``, concurrently; returns how many attempts were made.

    Claims refill the free send slots as sends finish, so one slow endpoint does not hold up a
    whole batch. Each delivery is attempted at most once per run (a claim or a retry always
    moves its next attempt past ``now``).
    """
    in_flight: dict[asyncio.Task[None], uuid.UUID] = {}
    async with http_client() as client:
        try:
            return await _deliver_loop(client, now, in_flight)
        finally:
            # Stopped (worker shutdown): the attempts in flight are abandoned; their leases
            # expire and another run makes them again.
            for task in in_flight:
                task.cancel()
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)


async def _deliver_loop(
    client: httpx.AsyncClient, now: datetime, in_flight: dict[asyncio.Task[None], uuid.UUID]
) -> int:
    per_endpoint: Counter[uuid.UUID] = Counter()
    program_of: dict[uuid.UUID, int] = {}
    attempts = 0
    # Programs that may have more due, claimed from in turn, one program per claim.
    to_claim = deque(await _programs_with_due_deliveries(now))
    while True:
        while (free := MAX_CONCURRENT_SENDS - len(in_flight)) > 0 and to_claim:
            program_id = to_claim.popleft()
            busy = [e for e, n in per_endpoint.items() if n >= MAX_SENDS_PER_ENDPOINT]
            claimed = await _claim(program_id, now, free, busy)
            for item in claimed:
                task = asyncio.create_task(_attempt(client, item, now))
                in_flight[task] = item.endpoint_id
                per_endpoint[item.endpoint_id] += 1
                program_of[item.endpoint_id] = program_id
            attempts += len(claimed)
            # As many as asked for: it may have more. Fewer: nothing else is due there,
            # except perhaps for its busy endpoints, whose program comes back in turn once
            # one of their sends finishes.
            if len(claimed) == free:
                to_claim.append(program_id)
        if not in_flight:
            return attempts
        done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            endpoint_id = in_flight.pop(task)
            if (
                per_endpoint[endpoint_id] >= MAX_SENDS_PER_ENDPOINT
                and program_of[endpoint_id] not in to_claim
            ):
                to_claim.append(program_of[endpoint_id])
            per_endpoint[endpoint_id] -= 1
            if not per_endpoint[endpoint_id]:
                del per_endpoint[endpoint_id]
            if not task.cancelled() and task.exception() is not None:
                log.error(
                    "webhook attempt failed unexpectedly",
                    exc_info=task.exception(),
                    extra={"fields": {"endpoint_id": str(endpoint_id)}},
                )
