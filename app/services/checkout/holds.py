"""Holds: reserve points at checkout, then capture them (a redeem entry) or release them.

Held points leave ``available`` and count in ``held``; they stay in the member's lots until
captured, so invariant 3 (lots = available + held) holds throughout. A hold past its
``expires_at`` is never capturable, even before the expiry job has run: capture and release
find it expired, expire it there and then (giving the points back), and answer 409.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text

from app import db
from app.clock import clock
from app.db import Connection
from app.errors import HoldNotActiveError, InsufficientPointsError, NotFoundError
from app.services.idempotency import (
    REMEMBER_CTE,
    IdempotencyRequest,
    Reply,
    idempotent,
    remember_params,
)
from app.services.ledger import accounts
from app.services.ledger.checkout_postings import (
    RELEASE_EXPIRED_HOLDS_CTE,
    RESERVE_CTE,
    SETTLE_HOLD_CTES,
)
from app.services.ledger.postings import ENTRY_JSON, member_missing
from app.services.members import member_batches

_MEMBER = "CAST(:member AS text)"

# The wire form of a hold; ``{status}`` lets readers show an overdue hold as expired.
HOLD_JSON = """(SELECT row_to_json(r) FROM (SELECT
    {h}.id AS hold_id, {member} AS member_id, {h}.points, {status} AS status,
    {h}.order_id, {h}.expires_at, {h}.points_captured, {h}.created_at) AS r)"""

_NEW_HOLD_JSON = HOLD_JSON.format(h="hold", status="hold.status", member=_MEMBER)
_CLOSED_HOLD_JSON = HOLD_JSON.format(h="closed", status="closed.status", member=_MEMBER)

_CREATE_SQL = f"""
WITH {RESERVE_CTE}, hold AS (
    INSERT INTO holds (id, program_id, member_id, points, status, order_id, expires_at,
                       created_at)
    SELECT CAST(:hold_id AS uuid), acc.program_id, acc.member_id, CAST(:points AS bigint),
           'active', CAST(:order_id AS text),
           CAST(:now AS timestamptz)
             + make_interval(secs => COALESCE(CAST(:ttl AS integer), p.hold_ttl_seconds)),
           CAST(:now AS timestamptz)
      FROM acc JOIN programs AS p ON p.id = acc.program_id
 RETURNING *
), body AS (
    SELECT hold.*, {_NEW_HOLD_JSON}::text AS response
      FROM hold
), event AS (
    INSERT INTO events (program_id, type, member_id, data, created_at)
    SELECT body.program_id, 'hold.created', body.member_id,
           jsonb_build_object('member_id', CAST(:member AS text), 'sequence', acc.version,
                              'hold', body.response::jsonb),
           body.created_at
      FROM body JOIN acc USING (member_id)
){{remember}}
SELECT response FROM body
"""
_CREATE = {
    flag: text(_CREATE_SQL.format(remember=REMEMBER_CTE if flag else "")) for flag in (False, True)
}

_READ_HOLD = text("SELECT * FROM holds WHERE program_id = :program_id AND id = :hold_id FOR UPDATE")

# Closing a hold: give back what is not captured, redeem what is, one statement.
_CLOSE_SQL = f"""
WITH closed AS (
    UPDATE holds
       SET status = :status, points_captured = :captured, closed_at = :now
     WHERE program_id = :program_id AND id = :hold_id
 RETURNING *
), {SETTLE_HOLD_CTES}, body AS (
    SELECT closed.*, {_CLOSED_HOLD_JSON}::text AS response
      FROM closed
), hold_event AS (
    INSERT INTO events (program_id, type, member_id, data, created_at)
    SELECT body.program_id, CAST(:event_type AS text), body.member_id,
           jsonb_build_object('member_id', CAST(:member AS text), 'sequence', acc.version,
                              'hold', body.response::jsonb),
           CAST(:now AS timestamptz)
      FROM body JOIN acc USING (member_id)
), redeem_event AS (
    INSERT INTO events (program_id, type, member_id, data, created_at)
    SELECT entry.program_id, 'points.redeemed', entry.member_id,
           jsonb_build_object('member_id', CAST(:member AS text), 'sequence', acc.version,
                              'entry', {ENTRY_JSON.format(e="entry", status="entry.status")},
                              'balance', jsonb_build_object('available', acc.available,
                                                            'pending', acc.pending,
                                                            'held', acc.held)),
           entry.created_at
      FROM entry JOIN acc USING (member_id)
){{remember}}
SELECT response FROM body
"""
_CLOSE = {
    flag: text(_CLOSE_SQL.format(remember=REMEMBER_CTE if flag else "")) for flag in (False, True)
}

_GET = text(
    f"""
SELECT {
        HOLD_JSON.format(
            h="h",
            member="m.external_id",
            status="CASE WHEN h.status = 'active' AND h.expires_at <= CAST(:now AS timestamptz) "
            "THEN 'expired' ELSE h.status END",
        )
    }::text AS response
  FROM holds AS h JOIN members AS m ON m.program_id = h.program_id AND m.id = h.member_id
 WHERE h.id = :hold_id AND h.program_id = :program_id
"""
)


def parse_hold_id(hold_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(hold_id)
    except ValueError as exc:
        raise NotFoundError("No such hold.") from exc


async def create_hold(
    program_id: int,
    member: str,
    points: int,
    order_id: str | None,
    ttl_seconds: int | None,
    request: IdempotencyRequest | None,
) -> Reply:
    """Reserve ``points`` of the member's available points: one statement."""
    params: dict[str, Any] = {
        "program_id": program_id,
        "member": member,
        "points": points,
        "order_id": order_id,
        "ttl": ttl_seconds,
        "hold_id": uuid.uuid4(),
        "now": clock.now(),
        **remember_params(request),
    }

    async def attempt() -> Reply:
        async with db.single_statement() as conn:
            body = (await conn.execute(_CREATE[request is not None], params)).scalar()
            if body is None:
                if await member_missing(conn, program_id, member):
                    raise NotFoundError(f"No member {member!r} in this program.")
                raise InsufficientPointsError(
                    f"Member {member!r} has fewer than {points} available points."
                )
        return Reply(body)

    return await idempotent(program_id, request, attempt)


@dataclass(frozen=True, slots=True)
class LockedHold:
    row: Any
    member: str


async def lock_hold(conn: Connection, program_id: int, hold_id: uuid.UUID) -> LockedHold:
    """Lock the holder's account, then read the hold as it is now."""
    holder = (
        await conn.execute(
            accounts.LOCK_HOLDER_OF_HOLD, {"hold_id": hold_id, "program_id": program_id}
        )
    ).first()
    if holder is None:
        raise NotFoundError("No such hold.")
    row = (await conn.execute(_READ_HOLD, {"program_id": program_id, "hold_id": hold_id})).one()
    return LockedHold(row, holder.external_id)


async def close_hold(
    conn: Connection,
    locked: LockedHold,
    *,
    status: str,
    captured: int,
    actor: str,
    now: datetime,
    order_id: str | None = None,
    request: IdempotencyRequest | None = None,
) -> str:
    """Close a locked active hold: capture ``captured`` points and give back the rest."""
    event_type = {"captured": "hold.captured", "released": "hold.released"}.get(
        status, "hold.expired"
    )
    params: dict[str, Any] = {
        "program_id": locked.row.program_id,
        "hold_id": locked.row.id,
        "member": locked.member,
        "status": status,
        "captured": captured,
        "points": captured,
        "member_id": locked.row.member_id,
        "reason": "hold captured" if captured else None,
        "actor": actor,
        "order_id": order_id,
        "event_type": event_type,
        "now": now,
    }
    params.update(remember_params(request, created=False))
    body: str = (await conn.execute(_CLOSE[request is not None], params)).scalar_one()
    return body


async def _finish(
    program_id: int,
    hold_id: str,
    *,
    status: str,
    points: int | None,
    actor: str,
    request: IdempotencyRequest | None,
) -> Reply:
    parsed = parse_hold_id(hold_id)
    now = clock.now()

    async def attempt() -> Reply:
        async with db.transaction() as conn:
            locked = await lock_hold(conn, program_id, parsed)
            hold = locked.row
            if hold.status == "active" and hold.expires_at <= now:
                # Overdue: expire it here and now (points go back), then refuse.
                await close_hold(conn, locked, status="expired", captured=0, actor=actor, now=now)
                expired = True
            else:
                expired = False
                if hold.status != "active":
                    raise HoldNotActiveError(f"The hold is {hold.status}.")
                captured = 0
                if status == "captured":
                    captured = hold.points if points is None else points
                    if captured > hold.points:
                        raise HoldNotActiveError(
                            f"Cannot capture {captured} points from a hold of {hold.points}."
                        )
                body = await close_hold(
                    conn,
                    locked,
                    status=status,
                    captured=captured,
                    actor=actor,
                    now=now,
                    request=request,
                )
        if expired:
            # Raised after the commit, so the expiry stands while the request is refused.
            raise HoldNotActiveError("The hold has expired.")
        return Reply(body, created=False)

    return await idempotent(program_id, request, attempt)


async def capture_hold(
    program_id: int,
    hold_id: str,
    points: int | None,
    actor: str,
    request: IdempotencyRequest | None,
) -> Reply:
    return await _finish(
        program_id, hold_id, status="captured", points=points, actor=actor, request=request
    )


async def release_hold(
    program_id: int, hold_id: str, actor: str, request: IdempotencyRequest | None
) -> Reply:
    return await _finish(
        program_id, hold_id, status="released", points=None, actor=actor, request=request
    )


async def get_hold(program_id: int, hold_id: str) -> str:
    parsed = parse_hold_id(hold_id)
    async with db.read_only() as conn:
        body = (
            await conn.execute(
                _GET, {"hold_id": parsed, "program_id": program_id, "now": clock.now()}
            )
        ).scalar()
    if body is None:
        raise NotFoundError("No such hold.")
    return str(body)


_DUE_PROGRAM = text(
    """
SELECT program_id FROM holds
 WHERE status = 'active' AND expires_at <= :now
 ORDER BY expires_at
 LIMIT 1
"""
)
_DUE_HOLDERS = text(
    """
SELECT DISTINCT member_id FROM holds
 WHERE program_id = :program_id AND status = 'active' AND expires_at <= :now
 ORDER BY member_id
 LIMIT :batch
"""
)
_EXPIRE_DUE = text(
    f"""
WITH due AS (
    UPDATE holds
       SET status = 'expired', points_captured = 0, closed_at = :now
     WHERE program_id = :program_id AND member_id = ANY(:member_ids) AND status = 'active'
       AND expires_at <= :now
 RETURNING *
), per_member AS (
    SELECT member_id, sum(points) AS points, count(*) AS holds FROM due GROUP BY member_id
), {RELEASE_EXPIRED_HOLDS_CTE}, numbered AS (
    -- Each hold's place among its member's, numbered apart from the event insert: Citus
    -- cannot push a window function down together with the sub-selects of the hold's JSON.
    SELECT due.*, row_number() OVER (PARTITION BY due.member_id ORDER BY due.id) AS place
      FROM due
), event AS (
    INSERT INTO events (program_id, type, member_id, data, created_at)
    SELECT due.program_id, 'hold.expired', due.member_id,
           jsonb_build_object(
               'member_id', m.external_id,
               'sequence', acc.version - acc.holds + due.place,
               'hold', {HOLD_JSON.format(h="due", status="due.status", member="m.external_id")}),
           CAST(:now AS timestamptz)
      FROM numbered AS due
      JOIN acc USING (member_id)
      JOIN members AS m ON m.program_id = :program_id AND m.id = due.member_id
)
SELECT count(*) FROM due
"""
)


async def expire_overdue_holds(now: datetime, batch_size: int = 1000) -> int:
    """Worker job: expire active holds past ``expires_at`` and give their points back."""
    return await member_batches.run_batch(_DUE_PROGRAM, _DUE_HOLDERS, _EXPIRE_DUE, now, batch_size)
