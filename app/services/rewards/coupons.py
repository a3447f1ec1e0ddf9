"""Coupons: issuing them (for a reward redemption or a campaign), lookup, validation and
void. What an order and a refund do to them is in ``coupon_orders``, the expiry job in
``coupon_expiry``.

A coupon's status is ``active``, ``used``, ``void`` or ``expired``. An active coupon past its
``expires_at`` is expired whatever the row says: every reader and every use compares
``expires_at`` with the clock, and the worker only catches the row up (``coupon.expired``).

Locks: whatever changes a member's coupon locks the member's account row first (the fixed
lock order), then the coupon rows ``FOR UPDATE``, then a reward row. So a void racing an
order's use queues on the account, and whichever comes second sees the coupon already taken.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import text

from app import db
from app.clock import clock
from app.db import Connection
from app.errors import (
    CouponInvalidError,
    CouponNotUsableError,
    CurrencyMismatchError,
    NotFoundError,
)
from app.services import idempotency
from app.services.events.events import write_event
from app.services.idempotency import IdempotencyRequest, Reply
from app.services.ledger.accounts import NEXT_SEQUENCES_CTE, lock_account
from app.services.ledger.postings import Posting, credit_in
from app.services.pagination import decode_cursor, encode_cursor
from app.services.rewards.codes import new_code, normalize_code

COUPON_COLUMNS = """c.id, c.program_id, c.code, c.member_id, m.external_id AS member,
       c.source, c.reward_id, c.redemption_id, c.campaign_id, c.kind, c.value, c.currency,
       c.min_order_amount, c.status, c.order_pk, c.order_id, c.discount_amount, c.expires_at,
       c.created_at"""


@dataclass(frozen=True, slots=True)
class Coupon:
    id: int
    program_id: int
    code: str
    member_id: int | None
    member: str | None
    source: str
    reward_id: int | None
    redemption_id: int | None
    campaign_id: int | None
    kind: str
    value: int | None
    currency: str
    min_order_amount: int | None
    status: str
    order_pk: int | None
    order_id: str | None
    discount_amount: int | None
    expires_at: datetime
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Coupon:
        return cls(**{field.name: row[field.name] for field in fields(cls)})

    def status_at(self, now: datetime) -> str:
        """The status a client sees: an active coupon past ``expires_at`` is expired."""
        if self.status == "active" and self.expires_at <= now:
            return "expired"
        return self.status

    def wire(self, now: datetime) -> dict[str, Any]:
        """The coupon as api.md shows it."""
        return {
            "code": self.code,
            "member_id": self.member,
            "kind": self.kind,
            "value": self.value,
            "currency": self.currency,
            "min_order_amount": self.min_order_amount,
            "status": self.status_at(now),
            "source": self.source,
            "reward_id": self.reward_id,
            "campaign_id": self.campaign_id,
            "order_id": self.order_id,
            "expires_at": self.expires_at,
            "created_at": self.created_at,
        }

    def discount_on(self, amount: int) -> int:
        """api.md: percent -> floor(amount * value / 100), fixed -> min(value, amount), other
        kinds 0. Integers throughout, so the floor is exact."""
        if self.kind == "percent_discount" and self.value is not None:
            return amount * self.value // 100
        if self.kind == "fixed_discount" and self.value is not None:
            return min(self.value, amount)
        return 0

    def unusable_reason(
        self, member_id: int, amount: int, currency: str, now: datetime
    ) -> str | None:
        """Why this coupon cannot be used on that order, or None when it can."""
        status = self.status_at(now)
        if status != "active":
            return status
        if self.member_id is not None and self.member_id != member_id:
            return "wrong_member"
        if self.currency != currency:
            return "currency"
        if self.min_order_amount is not None and amount < self.min_order_amount:
            return "min_order_amount"
        return None


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# --- Issuing ----------------------------------------------------------------------------

_INSERT_COUPON = text(
    """
INSERT INTO coupons (program_id, code, member_id, source, reward_id, redemption_id,
                     campaign_id, kind, value, currency, min_order_amount, status, expires_at,
                     created_at)
VALUES (:program_id, :code, :member_id, :source, :reward_id, :redemption_id, :campaign_id,
        :kind, :value, :currency, :min_order_amount, 'active', :expires_at, :now)
ON CONFLICT (program_id, code) DO NOTHING
RETURNING id
"""
)
_COUPON_BY_ID = text(
    f"""
SELECT {COUPON_COLUMNS}
  FROM coupons AS c
  LEFT JOIN members AS m ON m.id = c.member_id AND m.program_id = c.program_id
 WHERE c.program_id = :program_id AND c.id = :id
"""
)


@dataclass(frozen=True, slots=True)
class CouponTerms:
    """What a coupon is worth, copied from its reward when issued."""

    kind: str
    value: int | None
    currency: str
    min_order_amount: int | None


async def issue_coupon(
    conn: Connection,
    *,
    program_id: int,
    member_id: int | None,
    terms: CouponTerms,
    expires_at: datetime,
    now: datetime,
    reward_id: int | None,
    redemption_id: int | None = None,
    campaign_id: int | None = None,
) -> Coupon:
    """Insert a coupon with a fresh code and write ``coupon.issued``, in the caller's
    transaction (which holds the member's account lock when there is a member)."""
    params = {
        "program_id": program_id,
        "member_id": member_id,
        "source": "reward" if redemption_id is not None else "campaign",
        "reward_id": reward_id,
        "redemption_id": redemption_id,
        "campaign_id": campaign_id,
        "kind": terms.kind,
        "value": terms.value,
        "currency": terms.currency,
        "min_order_amount": terms.min_order_amount,
        "expires_at": expires_at,
        "now": now,
    }
    # 60 random bits make a clash within a program practically impossible; should one
    # happen, ON CONFLICT leaves the transaction intact and another code is drawn.
    while True:
        coupon_id = (await conn.execute(_INSERT_COUPON, {**params, "code": new_code()})).scalar()
        if coupon_id is not None:
            break
    coupon = Coupon.from_row(
        (await conn.execute(_COUPON_BY_ID, {"program_id": program_id, "id": coupon_id})).one()
    )
    await write_event(
        conn,
        program_id,
        "coupon.issued",
        member_id,
        {"member_id": coupon.member, "coupon": coupon.wire(now)},
        now,
    )
    return coupon


_CAMPAIGN_REWARD = text(
    """
SELECT r.kind, r.value, r.min_order_amount, r.coupon_ttl_days, p.currency
  FROM rewards AS r JOIN programs AS p ON p.id = r.program_id
 WHERE r.id = :reward_id AND r.program_id = :program_id
"""
)


async def issue_campaign_coupon(
    conn: Connection,
    program_id: int,
    member_id: int | None,
    reward_id: int,
    campaign_id: int,
    now: datetime,
) -> Coupon:
    """A campaign's gift: a coupon on the terms of ``reward_id`` that costs no points and
    takes no stock (``source: "campaign"``), valid for the reward's ``coupon_ttl_days``.
    Runs in the caller's transaction, which must already hold the member's account lock (as
    any write for a member does first). Raises NotFoundError for a reward of no such id in
    the program; the reward need not be active (a campaign may offer a reward that is not in
    the catalog)."""
    reward = (
        await conn.execute(_CAMPAIGN_REWARD, {"reward_id": reward_id, "program_id": program_id})
    ).first()
    if reward is None:
        raise NotFoundError(f"No reward {reward_id} in this program.")
    return await issue_coupon(
        conn,
        program_id=program_id,
        member_id=member_id,
        terms=CouponTerms(reward.kind, reward.value, reward.currency, reward.min_order_amount),
        expires_at=now + timedelta(days=reward.coupon_ttl_days),
        now=now,
        reward_id=reward_id,
        campaign_id=campaign_id,
    )


_ISSUE_MANY = text(
    f"""
WITH wanted AS (
    SELECT w.member_id, w.code
      FROM unnest(CAST(:member_ids AS bigint[]), CAST(:codes AS text[])) AS w(member_id, code)
), issued AS (
    INSERT INTO coupons (program_id, code, member_id, source, reward_id, campaign_id, kind,
                         value, currency, min_order_amount, status, expires_at, created_at)
    SELECT :program_id, wanted.code, wanted.member_id, 'campaign', :reward_id, :campaign_id,
           :kind, :value, :currency, :min_order_amount, 'active', :expires_at, :now
      FROM wanted
        ON CONFLICT (program_id, code) DO NOTHING
 RETURNING *
), {NEXT_SEQUENCES_CTE.format(name="sequenced", members="issued")}, issued_event AS (
    INSERT INTO events (program_id, type, member_id, data, created_at)
    SELECT issued.program_id, 'coupon.issued', issued.member_id,
           jsonb_build_object(
               'member_id', m.external_id, 'sequence', sequenced.version,
               'coupon', jsonb_build_object(
                   'code', issued.code, 'member_id', m.external_id, 'kind', issued.kind,
                   'value', issued.value, 'currency', issued.currency,
                   'min_order_amount', issued.min_order_amount, 'status', issued.status,
                   'source', issued.source, 'reward_id', issued.reward_id,
                   'campaign_id', issued.campaign_id, 'order_id', issued.order_id,
                   'expires_at', issued.expires_at, 'created_at', issued.created_at)),
           issued.created_at
      FROM issued JOIN sequenced USING (member_id)
      JOIN members AS m ON m.program_id = :program_id AND m.id = issued.member_id
)
SELECT member_id, code FROM issued
"""
)


async def issue_campaign_coupons(
    conn: Connection,
    program_id: int,
    member_ids: list[int],
    reward_id: int,
    campaign_id: int,
    now: datetime,
) -> dict[int, str]:
    """``issue_campaign_coupon`` for many members at once, set-based: one coupon each and
    its ``coupon.issued`` event (with the member's next sequence number). The caller's
    transaction holds the members' account locks. Returns each member's coupon code."""
    reward = (
        await conn.execute(_CAMPAIGN_REWARD, {"reward_id": reward_id, "program_id": program_id})
    ).first()
    if reward is None:
        raise NotFoundError(f"No reward {reward_id} in this program.")
    params = {
        "program_id": program_id,
        "reward_id": reward_id,
        "campaign_id": campaign_id,
        "kind": reward.kind,
        "value": reward.value,
        "currency": reward.currency,
        "min_order_amount": reward.min_order_amount,
        "expires_at": now + timedelta(days=reward.coupon_ttl_days),
        "now": now,
    }
    codes: dict[int, str] = {}
    waiting = list(member_ids)
    # A code already taken in the program (60 random bits: practically never) leaves its
    # member out of the statement's result; they get another code in the next round.
    while waiting:
        drawn = _distinct_codes(len(waiting))
        rows = await conn.execute(_ISSUE_MANY, {**params, "member_ids": waiting, "codes": drawn})
        codes.update((row.member_id, row.code) for row in rows)
        waiting = [member_id for member_id in waiting if member_id not in codes]
    return codes


def _distinct_codes(count: int) -> list[str]:
    drawn: set[str] = set()
    while len(drawn) < count:
        drawn.add(new_code())
    return list(drawn)


# --- Reading ----------------------------------------------------------------------------

_FIND = text(
    f"""
SELECT {COUPON_COLUMNS}
  FROM coupons AS c
  LEFT JOIN members AS m ON m.id = c.member_id AND m.program_id = c.program_id
 WHERE c.program_id = :program_id AND c.code = :code
"""
)


async def find_coupon(conn: Connection, program_id: int, code: str) -> Coupon | None:
    canonical = normalize_code(code)
    if canonical is None:
        return None
    row = (await conn.execute(_FIND, {"program_id": program_id, "code": canonical})).first()
    return Coupon.from_row(row) if row is not None else None


async def get_coupon(program_id: int, code: str) -> str:
    async with db.read_only() as conn:
        coupon = await find_coupon(conn, program_id, code)
    if coupon is None:
        raise CouponInvalidError("No coupon with this code in this program.")
    return dumps(coupon.wire(clock.now()))


# ``:status`` filters on the status a client sees, so ``expired`` includes coupons the worker
# has not caught up with yet, and ``active`` excludes them.
_MEMBER_COUPONS = text(
    f"""
SELECT {COUPON_COLUMNS}
  FROM members AS m JOIN coupons AS c ON c.member_id = m.id AND c.program_id = m.program_id
 WHERE m.program_id = :program_id AND m.external_id = :member AND c.id < :before
   AND (CAST(:status AS text) IS NULL
        OR CASE WHEN c.status = 'active' AND c.expires_at <= :now THEN 'expired'
                ELSE c.status END = :status)
 ORDER BY c.id DESC
 LIMIT :limit
"""
)
_MEMBER_EXISTS = text(
    "SELECT id FROM members WHERE program_id = :program_id AND external_id = :member"
)


async def list_member_coupons(
    program_id: int, member: str, status: str | None, limit: int, cursor: str | None
) -> tuple[list[str], str | None]:
    """A page of the member's coupons, newest first, as JSON texts."""
    before = decode_cursor(cursor) if cursor else 2**63 - 1
    now = clock.now()
    async with db.read_only() as conn:
        rows = (
            await conn.execute(
                _MEMBER_COUPONS,
                {
                    "program_id": program_id,
                    "member": member,
                    "status": status,
                    "before": before,
                    "limit": limit + 1,
                    "now": now,
                },
            )
        ).all()
        if not rows:
            found = await conn.execute(_MEMBER_EXISTS, {"program_id": program_id, "member": member})
            if found.first() is None:
                raise NotFoundError(f"No member {member!r} in this program.")
    page = [Coupon.from_row(row) for row in rows[:limit]]
    next_cursor = encode_cursor(page[-1].id) if len(rows) > limit else None
    return [dumps(coupon.wire(now)) for coupon in page], next_cursor


# --- Validation (writes nothing) --------------------------------------------------------

# The program's currency, the member and the coupon, in one read. The coupon's columns are
# COUPON_COLUMNS, its member's external id read apart from the member being validated for.
_VALIDATION_CONTEXT = text(
    f"""
SELECT p.currency AS program_currency, asked.id AS asking_member_id,
       {COUPON_COLUMNS}
  FROM programs AS p
  LEFT JOIN members AS asked ON asked.program_id = p.id AND asked.external_id = :member
  LEFT JOIN coupons AS c ON c.program_id = p.id AND c.code = :code
  LEFT JOIN members AS m ON m.id = c.member_id AND m.program_id = c.program_id
 WHERE p.id = :program_id
"""
)


async def validate_coupon(
    program_id: int, code: str, member: str, amount: int, currency: str
) -> str:
    """Would this coupon be usable on an order of ``amount`` for ``member`` now? The same
    rules as the order path, without locking or writing anything."""
    now = clock.now()
    async with db.read_only() as conn:
        row = (
            await conn.execute(
                _VALIDATION_CONTEXT,
                {"program_id": program_id, "member": member, "code": normalize_code(code)},
            )
        ).one()
    if row.asking_member_id is None:
        raise NotFoundError(f"No member {member!r} in this program.")
    if currency != row.program_currency:
        raise CurrencyMismatchError(
            f"This program keeps {row.program_currency}; the amount was in {currency}."
        )
    coupon = Coupon.from_row(row) if row.id is not None else None
    reason = (
        "unknown"
        if coupon is None
        else coupon.unusable_reason(row.asking_member_id, amount, currency, now)
    )
    discount = 0 if coupon is None or reason is not None else coupon.discount_on(amount)
    return dumps({"valid": reason is None, "discount_amount": discount, "reason": reason})


async def validate_once(
    program_id: int,
    code: str,
    member: str,
    amount: int,
    currency: str,
    request: IdempotencyRequest | None,
) -> Reply:
    """POST .../validate honours Idempotency-Key like every POST: with a key the first answer
    is kept and replayed; nothing else is written."""

    async def compute() -> Reply:
        return Reply(
            await validate_coupon(program_id, code, member, amount, currency), created=False
        )

    return await idempotency.run_recomputation(program_id, request, compute)


# --- Void -------------------------------------------------------------------------------

_LOCK_COUPON = text(
    f"""
SELECT {COUPON_COLUMNS}
  FROM coupons AS c
  LEFT JOIN members AS m ON m.id = c.member_id AND m.program_id = c.program_id
 WHERE c.program_id = :program_id AND c.id = :id
   FOR UPDATE OF c
"""
)
_VOID = text(
    "UPDATE coupons SET status = 'void', voided_at = :now "
    "WHERE program_id = :program_id AND id = :id"
)
# The reward row is locked after the account (the fixed order); its unit of stock comes
# back and the redemption is marked voided, in one statement.
_GIVE_BACK_REDEMPTION = text(
    """
WITH redemption AS (
    UPDATE reward_redemptions SET voided_at = :now
     WHERE program_id = :program_id AND id = :redemption_id AND voided_at IS NULL
 RETURNING reward_id, points_spent
), reward AS (
    UPDATE rewards AS r SET redeemed_count = r.redeemed_count - 1
      FROM redemption WHERE r.program_id = :program_id AND r.id = redemption.reward_id
)
SELECT points_spent FROM redemption
"""
)


async def void_coupon(
    program_id: int, code: str, actor: str, request: IdempotencyRequest | None
) -> Reply:
    """Void an active coupon. One from a reward gives its points back (a ``restore`` entry
    linked to the redemption) and its unit of stock. A used, expired or void coupon -> 409
    ``coupon_not_usable``."""

    async def work(conn: Connection) -> Reply:
        now = clock.now()
        found = await find_coupon(conn, program_id, code)
        if found is None:
            raise CouponInvalidError("No coupon with this code in this program.")
        if found.member_id is not None:
            await lock_account(conn, program_id, member_id=found.member_id)
        coupon = Coupon.from_row(
            (await conn.execute(_LOCK_COUPON, {"program_id": program_id, "id": found.id})).one()
        )
        status = coupon.status_at(now)
        if status != "active":
            raise CouponNotUsableError(
                status, f"The coupon is {status}; only an active one can be voided."
            )
        await conn.execute(_VOID, {"program_id": program_id, "id": coupon.id, "now": now})
        data: dict[str, Any] = {"member_id": coupon.member}
        if coupon.redemption_id is not None and coupon.member is not None:
            points = (
                await conn.execute(
                    _GIVE_BACK_REDEMPTION,
                    {
                        "program_id": program_id,
                        "redemption_id": coupon.redemption_id,
                        "now": now,
                    },
                )
            ).scalar_one()
            restored = await credit_in(
                conn,
                Posting(
                    program_id=program_id,
                    member=coupon.member,
                    points=points,
                    kind="restore",
                    event_type=None,
                    actor=actor,
                    reason=f"coupon {coupon.code} voided",
                    redemption_id=coupon.redemption_id,
                ),
                now,
            )
            data["entry"] = orjson.loads(restored.entry_json)
            data["balance"] = {
                "available": restored.available,
                "pending": restored.pending,
                "held": restored.held,
            }
        voided = {**coupon.wire(now), "status": "void"}
        data["coupon"] = voided
        await write_event(conn, program_id, "coupon.voided", coupon.member_id, data, now)
        return Reply(dumps(voided), created=False)

    return await idempotency.run_once(program_id, request, work)
