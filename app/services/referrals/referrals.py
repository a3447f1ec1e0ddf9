"""Referrals: codes and links, attribution, qualification, payout, and the funnel.

The life of a referral: ``pending`` (attributed) → ``qualified`` (the referee's first order
of at least ``min_order_amount``) → ``rewarded`` when that order's points become available
(at once with no return window), or ``capped`` when the referrer already had
``max_rewards_per_referrer_30d`` rewards in 30 days (the referee is still rewarded), or
``rejected`` when the order is refunded below the minimum first. Rewards are ``referral``
entries for both members, written in one transaction that holds both members' account locks,
taken in ascending id order.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import text

from app import db
from app.clock import clock
from app.config import get_settings
from app.db import Connection, IntegrityError
from app.errors import (
    AlreadyReferredError,
    NotFoundError,
    NotNewCustomerError,
    ReferralCodeInvalidError,
    SelfReferralError,
)
from app.schemas.programs import ReferralSettings
from app.schemas.referrals import (
    MemberReferralsOut,
    ReferralCodeOut,
    ReferralLinkOut,
)
from app.services.events.events import write_event
from app.services.idempotency import IdempotencyRequest, Reply, constraint_name, run_once
from app.services.ledger.postings import credit_many_ctes
from app.services.members.member_batches import ATTEMPTS
from app.services.pagination import decode_cursor, encode_cursor
from app.services.programs import rate_limits
from app.services.programs.api_keys import Principal
from app.services.programs.due_programs import looking_across_programs

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 8
# Crockford decoding: case-insensitive, I and L read as 1, O as 0, hyphens ignored.
_READ_AS = str.maketrans({"I": "1", "L": "1", "O": "0", "-": None})


def new_code() -> str:
    """8 characters from 40 random bits: about a trillion codes, so unguessable by lookup
    (which is also rate-limited)."""
    value = secrets.randbits(5 * CODE_LENGTH)
    return "".join(CROCKFORD[(value >> (5 * i)) & 31] for i in range(CODE_LENGTH))


def normalize_code(code: str) -> str | None:
    """The canonical form of a code as someone typed it, or None if it cannot be one."""
    canonical = code.upper().translate(_READ_AS)
    if len(canonical) != CODE_LENGTH or any(c not in CROCKFORD for c in canonical):
        return None
    return canonical


def normalized_email(email: str | None) -> str | None:
    return email.strip().lower() if email else None


def normalized_phone(phone: str | None) -> str | None:
    digits = "".join(c for c in phone or "" if c.isdigit())
    return digits or None


def _url(template: str | None, code: str) -> str | None:
    return template.replace("{code}", code) if template else None


async def _settings(conn: Connection, program_id: int) -> ReferralSettings:
    raw = (
        await conn.execute(text("SELECT referral FROM programs WHERE id = :id"), {"id": program_id})
    ).scalar_one()
    return ReferralSettings.model_validate(raw or {})


# --- Codes and links ---------------------------------------------------------------------------

_MEMBER_CODE = text(
    "SELECT id, referral_code, erased_at FROM members "
    "WHERE program_id = :program_id AND external_id = :member"
)
_SET_CODE = text(
    "UPDATE members SET referral_code = :code "
    "WHERE program_id = :program_id AND id = :id AND referral_code IS NULL "
    "RETURNING referral_code"
)


async def _link_in(conn: Connection, program_id: int, member: str) -> ReferralLinkOut:
    row = (await conn.execute(_MEMBER_CODE, {"program_id": program_id, "member": member})).first()
    if row is None or row.erased_at is not None:
        raise NotFoundError(f"No member {member!r} in this program.")
    code = row.referral_code
    if code is None:
        code = (
            await conn.execute(
                _SET_CODE, {"program_id": program_id, "code": new_code(), "id": row.id}
            )
        ).scalar()
        if code is None:  # set by a concurrent request: read theirs
            code = (
                (await conn.execute(_MEMBER_CODE, {"program_id": program_id, "member": member}))
                .one()
                .referral_code
            )
    settings = await _settings(conn, program_id)
    return ReferralLinkOut(code=code, url=_url(settings.link_template, code))


async def referral_link(
    program_id: int, member: str, request: IdempotencyRequest | None = None
) -> Reply:
    """The member's code (made on first request, the same ever after) and share link."""

    async def work(conn: Connection) -> Reply:
        return Reply((await _link_in(conn, program_id, member)).model_dump_json(), created=False)

    for _ in range(5):
        try:
            return await run_once(program_id, request, work)
        except IntegrityError as exc:
            if constraint_name(exc) != "uq_members_program_id_referral_code":
                raise
    raise RuntimeError("could not find a free referral code")  # 5 collisions in 2^40: never


_FIND_CODE = text(
    "SELECT m.id, m.external_id, m.email, m.phone, p.referral FROM members AS m "
    "JOIN programs AS p ON p.id = m.program_id "
    "WHERE m.program_id = :program_id AND m.referral_code = :code AND m.erased_at IS NULL"
)


async def lookup_code(principal: Principal, code: str) -> ReferralCodeOut:
    """For sign-up pages: is the code valid, and what does a new member get? Rate-limited
    per API key (every lookup counts, found or not, so codes cannot be enumerated)."""
    await rate_limits.hit(
        f"referral-code:{principal.key_id}",
        get_settings().referral_lookups_per_minute,
        clock.now(),
    )
    canonical = normalize_code(code)
    row = None
    if canonical is not None:
        async with db.read_only() as conn:
            row = (
                await conn.execute(
                    _FIND_CODE, {"program_id": principal.program_id, "code": canonical}
                )
            ).first()
    if row is None or canonical is None:
        raise ReferralCodeInvalidError("Unknown or inactive referral code.")
    settings = ReferralSettings.model_validate(row.referral or {})
    return ReferralCodeOut(code=canonical, valid=True, referee_points=settings.referee_points)


# --- Attribution -------------------------------------------------------------------------------

REFERRAL_JSON = """(SELECT row_to_json(r) FROM (SELECT
    {f}.id, {f}.code, referrer.external_id AS referrer_id, referee.external_id AS referee_id,
    {f}.status, o.order_id, {f}.created_at) AS r)"""
_REFERRAL_JOINS = """
  JOIN members AS referrer ON referrer.program_id = f.program_id AND referrer.id = f.referrer_id
  JOIN members AS referee ON referee.program_id = f.program_id AND referee.id = f.referee_id
  LEFT JOIN orders AS o ON o.program_id = f.program_id AND o.id = f.order_pk"""

_LOCK_REFEREE = text(
    "SELECT m.id, m.external_id, m.email, m.phone FROM accounts AS a "
    "JOIN members AS m ON m.program_id = a.program_id AND m.id = a.member_id "
    "WHERE m.program_id = :program_id AND m.external_id = :member FOR UPDATE OF a"
)
_INSERT_REFERRAL = text(
    "INSERT INTO referrals (program_id, referrer_id, referee_id, code, status, created_at) "
    "VALUES (:program_id, :referrer_id, :referee_id, :code, 'pending', :now) RETURNING id"
)
_READ_REFERRAL = text(
    f"SELECT {REFERRAL_JSON.format(f='f')}::text AS body FROM referrals AS f {_REFERRAL_JOINS} "
    "WHERE f.program_id = :program_id AND f.id = :id"
)


async def attribute_in(
    conn: Connection, program_id: int, code: str, referee: str, now: datetime
) -> str:
    """Record that ``referee`` was referred with ``code``, inside an open transaction;
    returns the referral's JSON. Locks the referee's account (serialising with its orders)."""
    canonical = normalize_code(code)
    referrer = None
    if canonical is not None:
        referrer = (
            await conn.execute(_FIND_CODE, {"program_id": program_id, "code": canonical})
        ).first()
    if referrer is None or canonical is None:
        raise ReferralCodeInvalidError("Unknown or inactive referral code.")
    member = (
        await conn.execute(_LOCK_REFEREE, {"program_id": program_id, "member": referee})
    ).first()
    if member is None:
        raise NotFoundError(f"No member {referee!r} in this program.")
    same_email = normalized_email(member.email) is not None and normalized_email(
        member.email
    ) == normalized_email(referrer.email)
    same_phone = normalized_phone(member.phone) is not None and normalized_phone(
        member.phone
    ) == normalized_phone(referrer.phone)
    if member.id == referrer.id or same_email or same_phone:
        raise SelfReferralError("A member cannot refer themselves.")
    already = await conn.execute(
        text("SELECT 1 FROM referrals WHERE program_id = :p AND referee_id = :id"),
        {"p": program_id, "id": member.id},
    )
    if already.first() is not None:
        raise AlreadyReferredError(f"Member {referee!r} was already referred.")
    ordered = await conn.execute(
        text("SELECT 1 FROM orders WHERE program_id = :p AND member_id = :id LIMIT 1"),
        {"p": program_id, "id": member.id},
    )
    if ordered.first() is not None:
        raise NotNewCustomerError(f"Member {referee!r} already has orders.")
    try:
        async with conn.savepoint():
            referral_id = (
                await conn.execute(
                    _INSERT_REFERRAL,
                    {
                        "program_id": program_id,
                        "referrer_id": referrer.id,
                        "referee_id": member.id,
                        "code": canonical,
                        "now": now,
                    },
                )
            ).scalar_one()
    except IntegrityError as exc:
        if constraint_name(exc) == "uq_referrals_program_id_referee_id":
            raise AlreadyReferredError(f"Member {referee!r} was already referred.") from exc
        raise
    body: str = (
        await conn.execute(_READ_REFERRAL, {"program_id": program_id, "id": referral_id})
    ).scalar_one()
    await write_event(
        conn,
        program_id,
        "referral.created",
        member.id,
        {"member_id": referee, "referral": orjson.loads(body)},
        now,
    )
    return body


async def create_referral(
    program_id: int, code: str, referee: str, request: IdempotencyRequest | None
) -> Reply:
    async def work(conn: Connection) -> Reply:
        return Reply(await attribute_in(conn, program_id, code, referee, clock.now()))

    return await run_once(program_id, request, work)


# --- Qualification, rejection and payout -------------------------------------------------------

_PENDING_FOR = text(
    "SELECT id, referrer_id FROM referrals WHERE program_id = :program_id "
    "AND referee_id = :member_id AND status = 'pending'"
)


async def pending_referrer(conn: Connection, program_id: int, member_id: int) -> int | None:
    """The referrer of ``member_id``'s pending referral, if any (read before an order, so the
    order can lock both accounts in id order up front)."""
    row = (
        await conn.execute(_PENDING_FOR, {"program_id": program_id, "member_id": member_id})
    ).first()
    return None if row is None else int(row.referrer_id)


_QUALIFY = text(
    """
UPDATE referrals AS f
   SET status = 'qualified', order_pk = o.id, qualified_at = :now
  FROM orders AS o
 WHERE f.program_id = :program_id AND f.referee_id = :member_id AND f.status = 'pending'
   AND o.program_id = :program_id AND o.order_id = :order_id
   AND o.amount >= :min_amount
RETURNING f.id, o.status AS order_status
"""
)


async def on_order_created_in(
    conn: Connection, program_id: int, member_id: int, order_id: str, now: datetime
) -> None:
    """After a referee's order, in its transaction (both accounts already locked): qualify the
    pending referral, and pay it at once when the order's points are already available."""
    settings = await _settings(conn, program_id)
    row = (
        await conn.execute(
            _QUALIFY,
            {
                "program_id": program_id,
                "member_id": member_id,
                "order_id": order_id,
                "min_amount": settings.min_order_amount,
                "now": now,
            },
        )
    ).first()
    if row is not None and row.order_status == "available":
        await pay_in(conn, program_id, row.id, settings, now)


_REJECT = text(
    """
UPDATE referrals AS f SET status = 'rejected', closed_at = :now
  FROM orders AS o JOIN programs AS p ON p.id = :program_id
 WHERE f.program_id = :program_id AND o.program_id = :program_id
   AND f.order_pk = o.id AND o.id = :order_pk AND f.status = 'qualified'
   AND (o.refunded_amount = o.amount
        OR o.amount - o.refunded_amount
           < COALESCE((p.referral ->> 'min_order_amount')::bigint, 0))
RETURNING f.id, f.referee_id
"""
)


async def on_refund_in(
    conn: Connection, program_id: int, order_pk: int, member: str, now: datetime
) -> None:
    """After a refund, in its transaction: a referral whose qualifying order is now refunded
    below the minimum (or entirely) before it paid out is rejected."""
    row = (
        await conn.execute(_REJECT, {"program_id": program_id, "order_pk": order_pk, "now": now})
    ).first()
    if row is not None:
        body = (
            await conn.execute(_READ_REFERRAL, {"program_id": program_id, "id": row.id})
        ).scalar_one()
        await write_event(
            conn,
            program_id,
            "referral.rejected",
            row.referee_id,
            {"member_id": member, "referral": orjson.loads(body)},
            now,
        )


_READ_FOR_PAYOUT = text(
    "SELECT id, program_id, referrer_id, referee_id, status FROM referrals "
    "WHERE program_id = :program_id AND id = :id"
)
_REWARDS_IN_30_DAYS = text(
    "SELECT count(*) FROM referrals WHERE program_id = :program_id "
    "AND referrer_id = :referrer_id AND status = 'rewarded' "
    "AND closed_at > :since"
)
# The referral closes only while it is still qualified (a concurrent payout or rejection
# that committed first leaves it alone), and the credits hang off that update, so a referral
# is paid at most once whatever the timing.
_PAY = text(
    f"""
WITH closed AS (
    UPDATE referrals
       SET status = :status, referrer_points = :referrer_points,
           referee_points = :referee_points, closed_at = :now
     WHERE program_id = :program_id AND id = :referral_id AND status = 'qualified'
 RETURNING id
), due AS (
    SELECT * FROM unnest(CAST(:member_ids AS bigint[]), CAST(:points AS bigint[]))
        AS d(member_id, points)
     WHERE d.points > 0 AND EXISTS (SELECT 1 FROM closed)
), {credit_many_ctes("'referral'", "'referral'", "'referrals'", "CAST(:referral_id AS bigint)")}
SELECT count(*) FROM closed
"""
)


async def pay_in(
    conn: Connection,
    program_id: int,
    referral_id: int,
    settings: ReferralSettings,
    now: datetime,
) -> bool:
    """Pay a qualified referral whose members' accounts this transaction holds. Returns
    whether it paid (False when another transaction got there first)."""
    referral = (
        await conn.execute(_READ_FOR_PAYOUT, {"program_id": program_id, "id": referral_id})
    ).first()
    if referral is None or referral.status != "qualified":
        return False
    capped = False
    if settings.max_rewards_per_referrer_30d is not None:
        recent = (
            await conn.execute(
                _REWARDS_IN_30_DAYS,
                {
                    "program_id": program_id,
                    "referrer_id": referral.referrer_id,
                    "since": now - timedelta(days=30),
                },
            )
        ).scalar_one()
        capped = recent >= settings.max_rewards_per_referrer_30d
    referrer_points = 0 if capped else settings.referrer_points
    paid = await conn.execute(
        _PAY,
        {
            "program_id": program_id,
            "member_ids": [referral.referrer_id, referral.referee_id],
            "points": [referrer_points, settings.referee_points],
            "referral_id": referral.id,
            "status": "capped" if capped else "rewarded",
            "referrer_points": referrer_points,
            "referee_points": settings.referee_points,
            "now": now,
        },
    )
    if paid.scalar_one() == 0:
        return False
    body = (
        await conn.execute(_READ_REFERRAL, {"program_id": program_id, "id": referral.id})
    ).scalar_one()
    await write_event(
        conn,
        referral.program_id,
        "referral.rewarded",
        referral.referrer_id,
        {
            "referral": orjson.loads(body),
            "referrer_points": referrer_points,
            "referee_points": settings.referee_points,
        },
        now,
    )
    return True


_DUE_PROGRAM = text(
    """
SELECT f.program_id
  FROM referrals AS f
  JOIN orders AS o ON o.id = f.order_pk AND o.program_id = f.program_id
 WHERE f.status = 'qualified' AND o.status = 'available'
 ORDER BY f.id
 LIMIT 1
"""
)
_DUE_PAYOUTS = text(
    """
SELECT f.id, f.program_id, f.referrer_id, f.referee_id
  FROM referrals AS f
  JOIN orders AS o ON o.id = f.order_pk AND o.program_id = f.program_id
 WHERE f.program_id = :program_id AND f.status = 'qualified' AND o.status = 'available'
 ORDER BY f.id
 LIMIT :batch
"""
)
_LOCK_BOTH = text(
    "SELECT member_id FROM accounts WHERE program_id = :program_id "
    "AND member_id = ANY(:member_ids) ORDER BY member_id FOR UPDATE SKIP LOCKED"
)


async def pay_due_referrals(now: datetime, batch_size: int = 200) -> int:
    """Worker job: pay qualified referrals whose order's points became available, one
    program per batch. Both members' accounts are locked (ascending id, skipping busy ones)
    and the referral is read again under those locks, so replicas never pay one twice. A
    batch that paid nothing because another replica held the members looks again, at most
    ``ATTEMPTS`` times, rather than report the job done while payouts are due."""
    for _ in range(ATTEMPTS):
        async with looking_across_programs() as conn:
            program_id = (await conn.execute(_DUE_PROGRAM)).scalar()
        if program_id is None:
            return 0
        paid = await _pay_batch(program_id, now, batch_size)
        if paid:
            return paid
    return 0


async def _pay_batch(program_id: int, now: datetime, batch_size: int) -> int:
    paid = 0
    async with db.transaction() as conn:
        due = (
            await conn.execute(_DUE_PAYOUTS, {"program_id": program_id, "batch": batch_size})
        ).all()
        if not due:
            return 0
        members = sorted({m for row in due for m in (row.referrer_id, row.referee_id)})
        locked = set(
            (
                await conn.execute(_LOCK_BOTH, {"program_id": program_id, "member_ids": members})
            ).scalars()
        )
        settings = await _settings(conn, program_id)
        for row in due:
            if row.referrer_id not in locked or row.referee_id not in locked:
                continue
            if await pay_in(conn, program_id, row.id, settings, now):
                paid += 1
    return paid


# --- Lists and the funnel ---------------------------------------------------------------------


async def list_referrals(
    program_id: int,
    referrer: str | None,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[str], str | None]:
    before = decode_cursor(cursor) if cursor else 2**63 - 1
    conditions = ["f.program_id = :program_id", "f.id < :before"]
    params: dict[str, Any] = {"program_id": program_id, "before": before, "limit": limit + 1}
    if referrer is not None:
        conditions.append("referrer.external_id = :referrer")
        params["referrer"] = referrer
    if status is not None:
        conditions.append("f.status = :status")
        params["status"] = status
    async with db.read_only() as conn:
        rows = (
            await conn.execute(
                text(
                    f"SELECT f.id, {REFERRAL_JSON.format(f='f')}::text AS body "
                    f"FROM referrals AS f {_REFERRAL_JOINS} WHERE {' AND '.join(conditions)} "
                    "ORDER BY f.id DESC LIMIT :limit"
                ),
                params,
            )
        ).all()
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1].id) if len(rows) > limit else None
    return [row.body for row in page], next_cursor


_FUNNEL = text(
    """
SELECT m.referral_code, p.referral,
       count(f.id) AS invited,
       count(f.id) FILTER (WHERE f.order_pk IS NOT NULL) AS qualified,
       count(f.id) FILTER (WHERE f.status IN ('rewarded', 'capped')) AS rewarded,
       COALESCE(sum(f.referrer_points), 0) AS points_earned
  FROM members AS m
  JOIN programs AS p ON p.id = m.program_id
  LEFT JOIN referrals AS f ON f.program_id = m.program_id AND f.referrer_id = m.id
 WHERE m.program_id = :program_id AND m.external_id = :member
 GROUP BY m.id, m.referral_code, p.referral
"""
)


async def member_referrals(program_id: int, member: str) -> MemberReferralsOut:
    async with db.read_only() as conn:
        row = (await conn.execute(_FUNNEL, {"program_id": program_id, "member": member})).first()
    if row is None:
        raise NotFoundError(f"No member {member!r} in this program.")
    settings = ReferralSettings.model_validate(row.referral or {})
    code = row.referral_code
    return MemberReferralsOut(
        code=code,
        url=_url(settings.link_template, code) if code else None,
        invited=row.invited,
        qualified=row.qualified,
        rewarded=row.rewarded,
        points_earned=row.points_earned,
    )
