"""Coupons at checkout: what an order that names coupons does to them (in the order
statement, locked after the member's account, checked and marked used with ``coupon.used``;
priced there too when the program earns at its base rate alone, else read and checked before
it; on the full path locked by ``lock_for_order`` first), and what a full refund of that order
does (unexpired coupons active again, ``coupon.reactivated``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text

from app.db import Connection
from app.errors import CouponNotUsableError, ValidationError
from app.services.events.events import write_event
from app.services.rewards.codes import normalize_code
from app.services.rewards.coupons import COUPON_COLUMNS, Coupon

_LOCK_FOR_ORDER = text(
    f"""
SELECT {COUPON_COLUMNS}
  FROM coupons AS c
  LEFT JOIN members AS m ON m.id = c.member_id AND m.program_id = c.program_id
 WHERE c.program_id = :program_id AND c.code = ANY(:codes)
   FOR UPDATE OF c
"""
)


class CouponUsedByThisOrder(Exception):
    """The order naming the coupon is the one that used it: a retry of a recorded order,
    to be answered with that order."""


@dataclass(frozen=True, slots=True)
class AppliedCoupon:
    coupon: Coupon
    discount_amount: int


def canonical_codes(codes: list[str]) -> list[str | None]:
    """The codes an order names, canonical (None for text that cannot be a code); one coupon
    named twice, however spelled, is a 422."""
    canonical = [normalize_code(code) for code in codes]
    named = [code for code in canonical if code]
    if len(set(named)) != len(named):
        raise ValidationError("A coupon code may be named once.", loc=["body", "coupon_codes"])
    return canonical


# What an order with coupons reads before its statement, outside any lock, when the statement
# does not price the order itself or found a coupon not usable: the program's currency, the
# buyer and the coupons named. A coupon's terms (kind, value, currency, minimum,
# member, expiry) never change once issued, so the discounts and the points computed from this
# read stay right; only its status may move, and the order statement checks that again under
# the lock (USABLE_AFTER_BUYER_CTES). One row per coupon found (one with no coupon when none
# is).
_READ_FOR_ORDER = text(
    f"""
SELECT p.currency AS program_currency, buyer.id AS buyer_id, {COUPON_COLUMNS}
  FROM programs AS p
  LEFT JOIN members AS buyer
         ON buyer.program_id = :program_id AND buyer.external_id = :member
  LEFT JOIN coupons AS c
         ON c.program_id = :program_id AND c.code = ANY(CAST(:codes AS text[]))
  LEFT JOIN members AS m ON m.program_id = :program_id AND m.id = c.member_id
 WHERE p.id = :program_id
"""
)


@dataclass(frozen=True, slots=True)
class OrderCouponsRead:
    program_currency: str
    buyer_id: int | None
    coupons: list[Coupon]


async def read_for_order(
    conn: Connection, program_id: int, member: str, codes: list[str]
) -> OrderCouponsRead:
    """The unlocked read before an order's statement (``_READ_FOR_ORDER``)."""
    named = [code for code in canonical_codes(codes) if code]
    rows = (
        await conn.execute(
            _READ_FOR_ORDER, {"program_id": program_id, "member": member, "codes": named}
        )
    ).all()
    return OrderCouponsRead(
        program_currency=rows[0].program_currency,
        buyer_id=rows[0].buyer_id,
        coupons=[Coupon.from_row(row) for row in rows if row.id is not None],
    )


# CTEs for the one-statement order with coupons: lock the buyer's account, then take the lock
# of each coupon the order uses that is still usable (active, unexpired, the buyer's or no
# member's). Reads ``mem`` (the buyer's members row); defines ``buyer`` and ``usable`` (the
# ids locked); the order is inserted only when ``usable`` has every coupon. Binds
# :program_id, :coupon_ids and :now. Starts with a comma.
#
# Why the account is locked before any coupon, although PostgreSQL runs a statement's CTEs in
# no promised order: a row lock of ``FOR UPDATE`` is taken by the node above the scan, on each
# row the scan hands up, and the scan hands up a coupon only once its filter held, which
# compares the buyer's id from ``buyer`` with the coupon's holder (or with itself, for a
# coupon of no member) and so needs ``buyer``'s row, which its own ``FOR UPDATE`` locked when
# it produced it: both operands of ``=`` are evaluated whatever the holder, and a row passes
# an AND only when every term was. Whatever plan is chosen, no coupon row is locked before
# the account is. A coupon that another transaction changed while this one waited for its
# lock is checked again on its newest version, and left out when no longer usable.
#
# Why a locking CTE reads another CTE only through a scalar subquery and never joins it: on
# Citus each CTE of a statement with INSERT CTEs runs as a step of its own, and a later step
# reads an earlier one as an intermediate result; a ``FOR UPDATE`` step that joins one fails
# (Citus 13.2: ``invalid input syntax for type bigint: "PGCOPY"``, the result read in the
# wrong format), while one that compares with a subquery over it runs on the program's shard.
_BUYER_CTE = """, buyer AS MATERIALIZED (
    SELECT a.member_id
      FROM accounts AS a
     WHERE a.program_id = :program_id AND a.member_id = (SELECT mem.id FROM mem)
       FOR UPDATE OF a
)"""
_STILL_USABLE = """c.status = 'active' AND c.expires_at > CAST(:now AS timestamptz)
       AND (SELECT buyer.member_id FROM buyer)
           = COALESCE(c.member_id, (SELECT buyer.member_id FROM buyer))"""
USABLE_AFTER_BUYER_CTES = f"""{_BUYER_CTE}, usable AS MATERIALIZED (
    SELECT c.id
      FROM coupons AS c
     WHERE c.program_id = :program_id AND c.id = ANY(CAST(:coupon_ids AS bigint[]))
       AND {_STILL_USABLE}
       FOR UPDATE OF c
)"""

# A coupon's discount on an order of :amount, from its coupons row ``{c}``: the rule of
# ``Coupon.discount_on``, for statements that price an order themselves (the tests hold the
# two to the same results on every kind).
DISCOUNT_SQL = """CASE WHEN {c}.value IS NULL THEN 0
         WHEN {c}.kind = 'percent_discount' THEN CAST(:amount AS bigint) * {c}.value / 100
         WHEN {c}.kind = 'fixed_discount' THEN LEAST({c}.value, CAST(:amount AS bigint))
         ELSE 0 END"""

# USABLE_AFTER_BUYER_CTES for an order that is priced in its statement, with no read before
# it: the coupons are found by their codes (:codes, canonical), a coupon counts as usable
# only when every check of ``check_for_order`` passes (so also the order's :currency and its
# :amount against the minimum), and ``usable`` gives each one's code and discount. When one
# does not pass, the order is not recorded, and the caller reads the coupons to say why.
USABLE_PRICED_AFTER_BUYER_CTES = f"""{_BUYER_CTE}, usable AS MATERIALIZED (
    SELECT c.id, c.code, {DISCOUNT_SQL.format(c="c")} AS discount
      FROM coupons AS c
     WHERE c.program_id = :program_id AND c.code = ANY(CAST(:codes AS text[]))
       AND {_STILL_USABLE}
       AND c.currency = CAST(:currency AS text)
       AND (c.min_order_amount IS NULL OR c.min_order_amount <= CAST(:amount AS bigint))
       FOR UPDATE OF c
)"""


def check_for_order(
    locked: list[Coupon],
    codes: list[str],
    member_id: int,
    order_id: str,
    amount: int,
    currency: str,
    now: datetime,
) -> list[AppliedCoupon]:
    """Check each coupon the order names is usable on it, in the order given; the first that
    is not refuses the order with 409 ``coupon_not_usable`` and its reason (codes that are not
    codes, or not of this program, are ``unknown``). A coupon this very order used means the
    order is a retry: CouponUsedByThisOrder."""
    found = {coupon.code: coupon for coupon in locked}
    applied = []
    for typed, code in zip(codes, canonical_codes(codes), strict=True):
        coupon = found.get(code) if code else None
        if coupon is not None and coupon.status == "used" and coupon.order_id == order_id:
            raise CouponUsedByThisOrder
        if coupon is None:
            raise CouponNotUsableError("unknown", f"No coupon {typed!r} in this program.")
        reason = coupon.unusable_reason(member_id, amount, currency, now)
        if reason is not None:
            raise CouponNotUsableError(reason, f"Coupon {coupon.code} cannot be used: {reason}.")
        applied.append(AppliedCoupon(coupon, coupon.discount_on(amount)))
    return applied


async def lock_for_order(
    conn: Connection,
    program_id: int,
    member_id: int,
    order_id: str,
    codes: list[str],
    amount: int,
    currency: str,
    now: datetime,
) -> list[AppliedCoupon]:
    """Lock the coupons an order names (after the member's account: the caller holds it) and
    check them (``check_for_order``)."""
    named = [code for code in canonical_codes(codes) if code]
    rows = (await conn.execute(_LOCK_FOR_ORDER, {"program_id": program_id, "codes": named})).all()
    locked = [Coupon.from_row(row) for row in rows]
    return check_for_order(locked, codes, member_id, order_id, amount, currency, now)


# The coupon's wire form (api.md) built in SQL from a coupons row ``{c}`` and its holder's
# members row ``{m}`` (outer-joined: a coupon may have no holder), for statements that write
# its event themselves.
COUPON_JSON = """jsonb_build_object(
    'code', {c}.code,
    'member_id', {m}.external_id,
    'kind', {c}.kind, 'value', {c}.value, 'currency', {c}.currency,
    'min_order_amount', {c}.min_order_amount, 'status', {c}.status, 'source', {c}.source,
    'reward_id', {c}.reward_id, 'campaign_id', {c}.campaign_id, 'order_id', {c}.order_id,
    'expires_at', {c}.expires_at, 'created_at', {c}.created_at)"""

# The ``coupon.used`` event of each coupon in ``used`` (the coupons rows after the use).
_USED_EVENT_CTE = f""", used_event AS (
    INSERT INTO events (program_id, type, member_id, data, created_at)
    SELECT used.program_id, 'coupon.used', acc.member_id,
           jsonb_build_object('member_id', CAST(:member AS text), 'sequence', acc.version,
                              'coupon', {COUPON_JSON.format(c="used", m="holder")},
                              'order_id', used.order_id,
                              'discount_amount', used.discount_amount),
           CAST(:now AS timestamptz)
      FROM used CROSS JOIN acc
      LEFT JOIN members AS holder
             ON holder.program_id = :program_id AND holder.id = used.member_id
)"""

# CTEs that join the order statement (app/services/checkout/orders.py) when the order uses
# coupons: mark each used with the order and write its ``coupon.used`` event. Reads ``ord``
# (the inserted order: none when the order_id was taken, and then nothing is marked) and
# ``acc`` (the account after the order). Binds :coupon_ids and :discounts (arrays in the same
# order, from ``check_for_order``), :member and :now. Starts with a comma.
USE_COUPONS_CTES = f""", applied AS (
    SELECT * FROM unnest(CAST(:coupon_ids AS bigint[]), CAST(:discounts AS bigint[]))
        AS a(coupon_id, discount)
), used AS (
    UPDATE coupons AS c
       SET status = 'used', order_pk = ord.id, order_id = ord.order_id,
           discount_amount = applied.discount, used_at = CAST(:now AS timestamptz)
      FROM ord CROSS JOIN applied
     WHERE c.program_id = :program_id AND c.id = applied.coupon_id
 RETURNING c.*
){_USED_EVENT_CTE}"""

# USE_COUPONS_CTES for an order priced in its statement (USABLE_PRICED_AFTER_BUYER_CTES):
# the coupons are the ones :codes names, each with its discount computed from its own row.
# An order is inserted only when ``usable`` locked every one of them, so ``ord`` present
# means each code names a coupon this statement holds.
USE_PRICED_COUPONS_CTES = f""", used AS (
    UPDATE coupons AS c
       SET status = 'used', order_pk = ord.id, order_id = ord.order_id,
           discount_amount = {DISCOUNT_SQL.format(c="c")}, used_at = CAST(:now AS timestamptz)
      FROM ord
     WHERE c.program_id = :program_id AND c.code = ANY(CAST(:codes AS text[]))
 RETURNING c.*
){_USED_EVENT_CTE}"""


def use_params(applied: list[AppliedCoupon]) -> dict[str, Any]:
    """Bind parameters of USE_COUPONS_CTES."""
    return {
        "coupon_ids": [item.coupon.id for item in applied],
        "discounts": [item.discount_amount for item in applied],
    }


_REACTIVATE = text(
    f"""
WITH freed AS (
    UPDATE coupons
       SET status = 'active', order_pk = NULL, order_id = NULL, discount_amount = NULL,
           used_at = NULL
     WHERE program_id = :program_id AND order_pk = :order_pk AND status = 'used'
       AND expires_at > :now
 RETURNING *
)
SELECT {COUPON_COLUMNS}
  FROM freed AS c
  LEFT JOIN members AS m ON m.id = c.member_id AND m.program_id = :program_id
 ORDER BY c.id
"""
)


async def reactivate_for_refund(
    conn: Connection, program_id: int, order_pk: int, order_id: str, now: datetime
) -> list[str]:
    """A full refund of the order: its coupons that have not expired are active again (one
    ``coupon.reactivated`` event each); returns their codes. The caller holds the member's
    account and the order."""
    rows = (
        await conn.execute(
            _REACTIVATE, {"program_id": program_id, "order_pk": order_pk, "now": now}
        )
    ).all()
    for row in rows:
        coupon = Coupon.from_row(row)
        await write_event(
            conn,
            program_id,
            "coupon.reactivated",
            coupon.member_id,
            {"member_id": coupon.member, "coupon": coupon.wire(now), "order_id": order_id},
            now,
        )
    return [row.code for row in rows]
