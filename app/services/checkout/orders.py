"""Orders and refunds: what a checkout reports, what it earns, and exact reversals.

Creating an order without a hold is two round trips: one read (program, member, rules) and
one statement that inserts the order, moves the balance, writes the entry, the lot and the
event, in autocommit mode. ``order_id`` is the natural idempotency key: the insert is
``ON CONFLICT DO NOTHING`` and every other part of the statement hangs off the inserted row,
so a duplicate changes nothing and is answered from the stored order (200, or 409
``order_conflict`` when the body differs). With ``redeem_hold_id`` the hold is captured in the
same statement, which then runs in a transaction after the member's account is locked.

Refunds reverse points in proportion to the cumulative refunded amount:
``reversed_total = floor(points_earned * refunded / amount)`` (likewise for restored points),
and each refund applies the difference from what earlier refunds applied, so any series of
partial refunds that adds up to the order reverses exactly what it earned and restores exactly
what it redeemed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import text

from app import db
from app.clock import clock
from app.db import Connection, IntegrityError
from app.errors import (
    ConflictError,
    CurrencyMismatchError,
    HoldNotActiveError,
    NotFoundError,
    OrderConflictError,
    PointsLimitExceededError,
    RefundExceedsOrderError,
)
from app.schemas.orders import OrderCreate
from app.services import idempotency
from app.services.checkout import earning, holds
from app.services.idempotency import (
    REMEMBER_CTE,
    IdempotencyRequest,
    Reply,
    fingerprint,
    idempotent,
    remember_params,
)
from app.services.ledger import accounts
from app.services.ledger.checkout_postings import (
    CAPTURE_REDEEM_CTE,
    ORDER_LOT_CTE,
    ORDER_POSTING_CTES,
    REFUND_POSTING_CTES,
)
from app.services.ledger.postings import CONSUME_LOTS_CTE, ENTRY_JSON
from app.services.referrals import referrals
from app.services.rewards import coupon_orders
from app.services.tiers import tier_evaluation

LOCK_IN_ORDER = text(
    "SELECT member_id FROM accounts WHERE program_id = :program_id "
    "AND member_id = ANY(:member_ids) ORDER BY member_id FOR UPDATE"
)


class RefundConflictError(ConflictError):
    code = "refund_conflict"
    title = "This refund_id was already used for another order or amount"


# The wire form of a refund (api.md).
REFUND_JSON = """(SELECT row_to_json(r) FROM (SELECT
    {f}.refund_id, {f}.amount, {f}.points_reversed, {f}.points_restored, {f}.created_at) AS r)"""

_REFUNDS_JSON = f"""COALESCE((
    SELECT json_agg({REFUND_JSON.format(f="f")} ORDER BY f.id)
      FROM refunds AS f WHERE f.program_id = :program_id AND f.order_pk = {{o}}.id),
    '[]'::json)"""

# The wire form of an order (api.md), built by PostgreSQL so it can be stored for replay. An
# order that used coupons gains ``coupons``; other orders show no such key.
ORDER_JSON = """(SELECT CASE WHEN {o}.coupons IS NULL THEN row_to_json(r)
                    ELSE (to_jsonb(r) || jsonb_build_object('coupons', {o}.coupons))::json END
   FROM (SELECT
    {o}.order_id, {member} AS member_id, {o}.amount, {o}.currency, {o}.points_earned,
    {o}.points_redeemed, {o}.status, {o}.available_at, {o}.occurred_at, {o}.breakdown,
    {refunds} AS refunds, {o}.created_at) AS r)"""

_CREATE_SQL = """
WITH prog AS (
    SELECT p.id, p.points_expiry_days, p.timezone, p.currency, p.config_version,
           CAST(:occurred_at AS timestamptz) + make_interval(days => p.pending_days)
               AS available_at
      FROM programs AS p WHERE p.id = :program_id
){guard}, ord AS (
    INSERT INTO orders (program_id, order_id, member_id, amount, currency, items, occurred_at,
                        points_earned, points_redeemed, breakdown, status, available_at,
                        redeem_hold_id, coupons, request_hash, created_at, released_at)
    SELECT prog.id, CAST(:order_id AS text), {member_id},
           CAST(:amount AS bigint), CAST(:currency AS text), CAST(:items AS jsonb),
           CAST(:occurred_at AS timestamptz), {earned},
           CAST(:points AS bigint), {breakdown},
           CASE WHEN prog.available_at <= :now THEN 'available' ELSE 'pending' END,
           prog.available_at, CAST(:hold_id AS uuid), {coupons},
           CAST(:request_hash AS bytea),
           CAST(:now AS timestamptz),
           CASE WHEN prog.available_at <= :now THEN CAST(:now AS timestamptz) END
      FROM {order_from}
    ON CONFLICT (program_id, order_id) DO NOTHING
 RETURNING *
), gain AS (
    SELECT ord.member_id,
           CASE WHEN ord.status = 'available' THEN ord.points_earned ELSE 0 END AS available,
           CASE WHEN ord.status = 'pending' THEN ord.points_earned ELSE 0 END AS pending
      FROM ord
), {order_posting}, queued AS (
    -- Pending points wait in the release job's queue (app/services/ledger/pending.py).
    INSERT INTO order_release_queue (member_id, order_pk, program_id, available_at, entry_id)
    SELECT ord.member_id, ord.id, ord.program_id, ord.available_at, entry.id
      FROM ord LEFT JOIN entry ON true
     WHERE ord.status = 'pending'
), {order_lot}{capture}{use_coupons}, body AS (
    SELECT ord.program_id, ord.member_id,
           {order_json}::text AS response
      FROM ord
), event AS (
    INSERT INTO events (program_id, type, member_id, data, created_at)
    SELECT body.program_id, 'order.created', body.member_id,
           jsonb_build_object('member_id', CAST(:member AS text), 'sequence', acc.version,
                              'order', body.response::jsonb,
                              'balance', jsonb_build_object('available', acc.available,
                                                            'pending', acc.pending,
                                                            'held', acc.held)),
           CAST(:now AS timestamptz)
      FROM body JOIN acc USING (member_id)
){remember}
{answer}
"""

# The direct form (see create_order) finds the member itself and proceeds only when the
# checkout's cached earning setup is current (``:config_version``), the currency is the
# program's, and the member has no pending referral (whose payout needs both accounts locked
# first). Its verdict says which, if any, stopped it. The member and the pending referral are
# outer-joined rather than tested with correlated subqueries: Citus plans a statement with
# INSERT CTEs one CTE at a time and refuses a correlated subquery over such a CTE, and on one
# PostgreSQL it is the same two index lookups.
_DIRECT_GUARD = """, mem AS (
    SELECT m.id FROM members AS m
     WHERE m.program_id = :program_id AND m.external_id = CAST(:member AS text)
), referred AS (
    SELECT f.referee_id FROM referrals AS f JOIN mem ON f.referee_id = mem.id
     WHERE f.program_id = :program_id AND f.status = 'pending'
), verdict AS (
    SELECT CASE
               WHEN mem.id IS NULL THEN 'no_member'
               WHEN prog.currency <> CAST(:currency AS text) THEN 'currency'
               WHEN prog.config_version <> CAST(:config_version AS bigint) THEN 'stale'
               WHEN referred.referee_id IS NOT NULL THEN 'referral'
               ELSE 'ok'
           END AS verdict
      FROM prog LEFT JOIN mem ON true LEFT JOIN referred ON true
)"""
_DIRECT_ANSWER = """SELECT verdict.verdict, prog.currency, (SELECT response FROM body) AS response
  FROM verdict CROSS JOIN prog"""

# The direct form of an order with coupons also locks the buyer's account and then the
# coupons still usable (coupon_orders.USABLE_AFTER_BUYER_CTES), inserts the order only when
# all :coupon_count of them are, and says how many were.
_ALL_COUPONS_USABLE = (
    "verdict.verdict = 'ok' AND (SELECT count(*) FROM usable) = CAST(:coupon_count AS bigint)"
)
_DIRECT_WITH_COUPONS_FROM = f"prog CROSS JOIN mem CROSS JOIN verdict WHERE {_ALL_COUPONS_USABLE}"
_DIRECT_WITH_COUPONS_ANSWER = """SELECT verdict.verdict, prog.currency,
       (SELECT response FROM body) AS response, (SELECT count(*) FROM usable) AS usable
  FROM verdict CROSS JOIN prog"""

# The direct form of an order with coupons priced in its statement, when all the program's
# earning is the base rate (earning.base_rate_fraction): ``usable`` also gives each coupon's
# discount (coupon_orders.USABLE_PRICED_AFTER_BUYER_CTES), and ``priced`` what the order
# earns on the amount minus the discounts (never below 0; compute_breakdown's base line:
# floor(rest * :rate_numerator / :rate_denominator), exact in numeric) and the coupons its
# reply lists, in the order the request named them.
_PRICED_CTE = """, priced AS (
    SELECT CAST(div(GREATEST(CAST(:amount AS bigint)
                             - COALESCE((SELECT sum(u.discount) FROM usable AS u), 0), 0)
                    * CAST(:rate_numerator AS numeric),
                    CAST(:rate_denominator AS numeric)) AS bigint) AS points,
           (SELECT jsonb_agg(jsonb_build_object('code', u.code, 'discount_amount', u.discount)
                             ORDER BY array_position(CAST(:codes AS text[]), CAST(u.code AS text)))
              FROM usable AS u) AS coupons
)"""
_PRICED_BREAKDOWN = """CASE WHEN priced.points > 0
               THEN jsonb_build_array(jsonb_build_object('source', 'base', 'points', priced.points))
               ELSE CAST('[]' AS jsonb) END"""

# Only with redeem_hold_id: capture the whole hold as part of the order.
_CAPTURE_CTES = f""", {CONSUME_LOTS_CTE}, captured AS (
    UPDATE holds
       SET status = 'captured', points_captured = points, closed_at = :now,
           order_id = COALESCE(order_id, CAST(:order_id AS text))
     WHERE program_id = :program_id AND id = CAST(:hold_id AS uuid)
       AND EXISTS (SELECT 1 FROM ord)
 RETURNING *
), {CAPTURE_REDEEM_CTE}, hold_event AS (
    INSERT INTO events (program_id, type, member_id, data, created_at)
    SELECT captured.program_id, 'hold.captured', captured.member_id,
           jsonb_build_object('member_id', CAST(:member AS text), 'sequence', acc.version,
                              'hold', {
    holds.HOLD_JSON.format(h="captured", status="captured.status", member="CAST(:member AS text)")
}),
           CAST(:now AS timestamptz)
      FROM captured JOIN acc USING (member_id)
), redeem_event AS (
    INSERT INTO events (program_id, type, member_id, data, created_at)
    SELECT redeem_entry.program_id, 'points.redeemed', redeem_entry.member_id,
           jsonb_build_object('member_id', CAST(:member AS text), 'sequence', acc.version,
                              'entry', {
    ENTRY_JSON.format(e="redeem_entry", status="redeem_entry.status")
}),
           CAST(:now AS timestamptz)
      FROM redeem_entry JOIN acc USING (member_id)
)"""


def _create_statement(
    *,
    capture: bool,
    remember: bool,
    direct: bool = False,
    use_coupons: bool = False,
    priced: bool = False,
) -> Any:
    earned, breakdown = "CAST(:earned AS bigint)", "CAST(:breakdown AS jsonb)"
    coupons, use_coupons_ctes = "CAST(:coupons AS jsonb)", coupon_orders.USE_COUPONS_CTES
    if not direct:
        guard, order_from, answer = "", "prog", "SELECT response FROM body"
    elif not use_coupons:
        guard = _DIRECT_GUARD
        order_from = "prog CROSS JOIN mem CROSS JOIN verdict WHERE verdict.verdict = 'ok'"
        answer = _DIRECT_ANSWER
    elif not priced:
        guard = _DIRECT_GUARD + coupon_orders.USABLE_AFTER_BUYER_CTES
        order_from, answer = _DIRECT_WITH_COUPONS_FROM, _DIRECT_WITH_COUPONS_ANSWER
    else:
        guard = _DIRECT_GUARD + coupon_orders.USABLE_PRICED_AFTER_BUYER_CTES + _PRICED_CTE
        order_from = (
            f"prog CROSS JOIN mem CROSS JOIN verdict CROSS JOIN priced WHERE {_ALL_COUPONS_USABLE}"
        )
        answer = _DIRECT_WITH_COUPONS_ANSWER
        earned, breakdown, coupons = "priced.points", _PRICED_BREAKDOWN, "priced.coupons"
        use_coupons_ctes = coupon_orders.USE_PRICED_COUPONS_CTES
    return text(
        _CREATE_SQL.format(
            guard=guard,
            earned=earned,
            breakdown=breakdown,
            coupons=coupons,
            member_id="mem.id" if direct else "CAST(:member_id AS bigint)",
            order_from=order_from,
            answer=answer,
            order_posting=ORDER_POSTING_CTES,
            order_lot=ORDER_LOT_CTE,
            capture=_CAPTURE_CTES if capture else "",
            use_coupons=use_coupons_ctes if use_coupons else "",
            order_json=ORDER_JSON.format(
                o="ord", member="CAST(:member AS text)", refunds="'[]'::json"
            ),
            remember=REMEMBER_CTE if remember else "",
        )
    )


_CREATE = {
    (capture, remember, use_coupons): _create_statement(
        capture=capture, remember=remember, use_coupons=use_coupons
    )
    for capture in (False, True)
    for remember in (False, True)
    for use_coupons in (False, True)
}
_CREATE_DIRECT = {
    (remember, use_coupons): _create_statement(
        capture=False, remember=remember, direct=True, use_coupons=use_coupons
    )
    for remember in (False, True)
    for use_coupons in (False, True)
}
_CREATE_DIRECT_PRICED = {
    remember: _create_statement(
        capture=False, remember=remember, direct=True, use_coupons=True, priced=True
    )
    for remember in (False, True)
}

_FIND_ORDER = text(
    f"""
SELECT o.request_hash,
       {ORDER_JSON.format(o="o", member="m.external_id", refunds=_REFUNDS_JSON.format(o="o"))}
           ::text AS response
  FROM orders AS o JOIN members AS m ON m.program_id = :program_id AND m.id = o.member_id
 WHERE o.program_id = :program_id AND o.order_id = :order_id
"""
)


class _OrderExists(Exception):
    """The order_id was taken between our read and our insert; answered from the stored one."""


def order_fingerprint(body: OrderCreate) -> bytes:
    return dumped_order_fingerprint(body.model_dump(mode="json"))


def dumped_order_fingerprint(dump: dict[str, Any]) -> bytes:
    """An order's request hash from ``OrderCreate``'s JSON dump (an import line staged
    without its own fields is one): what decides a repeat from a conflicting order_id."""
    return fingerprint("ORDER", "", dump)


async def create_order(
    program_id: int, actor: str, body: OrderCreate, request: IdempotencyRequest | None
) -> Reply:
    """Record an order and credit what it earns. The common order (no hold to capture, in a
    program where what an order earns does not depend on the member: no tiers, no rules on
    tiers or birthdays) is one statement, one round trip, computed from the process's cached
    earning setup; any other order reads the member first."""
    now = clock.now()
    order = _NewOrder(program_id, actor, body, request, now, body.occurred_at or now)

    async def attempt() -> Reply:
        if body.redeem_hold_id is None:
            # An order that uses coupons locks them after the member's account, so it is a
            # transaction; in the common program it needs no read before it.
            direct = _create_directly if body.coupon_codes is None else _create_with_coupons
            answered = await direct(order)
            if answered is not None:
                return answered
        return await _create_after_reading_member(order)

    return await idempotent(program_id, request, attempt)


@dataclass(frozen=True, slots=True)
class _NewOrder:
    """One POST /v1/orders, as both ways of recording it see it."""

    program_id: int
    actor: str
    body: OrderCreate
    request: IdempotencyRequest | None
    now: datetime
    occurred_at: datetime

    def params(self, breakdown: list[tuple[str, int]]) -> dict[str, Any]:
        """The order statement's parameters but the member's id."""
        body = self.body
        return {
            "program_id": self.program_id,
            "order_id": body.order_id,
            "member": body.member_id,
            "amount": body.amount,
            "currency": body.currency,
            "items": (
                orjson.dumps([item.model_dump() for item in body.items]).decode()
                if body.items is not None
                else None
            ),
            "occurred_at": self.occurred_at,
            "earned": earning.points_earned(breakdown),
            "breakdown": orjson.dumps(
                [{"source": source, "points": points} for source, points in breakdown]
            ).decode(),
            "hold_id": None,
            "points": 0,
            "coupons": None,
            "request_hash": order_fingerprint(body),
            "actor": self.actor,
            "now": self.now,
            **remember_params(self.request),
        }

    def unknown_member(self) -> NotFoundError:
        return NotFoundError(f"No member {self.body.member_id!r} in this program.")

    def currency_mismatch(self, kept: str) -> CurrencyMismatchError:
        return CurrencyMismatchError(
            f"This program keeps {kept}; the order was in {self.body.currency}."
        )


# How often the direct form re-reads a program's earning setup that changed under it before
# leaving the order to the full path.
_STALE_RETRIES = 3


async def _create_directly(order: _NewOrder) -> Reply | None:
    """The order in one statement, or None when it needs the full path (the earning depends
    on the member, or the member has a pending referral)."""
    body, request = order.body, order.request
    for _ in range(_STALE_RETRIES):
        setup = await earning.program_earning(order.program_id)
        if setup.member_dependent:
            return None
        context = setup.context()
        try:
            breakdown = earning.compute_breakdown(
                context, body.amount, body.items, order.occurred_at
            )
        except PointsLimitExceededError:
            # The cached setup may be stale (a rule since switched off): the full path reads
            # the current one and decides.
            return None
        params = order.params(breakdown)
        params["config_version"] = setup.config_version
        async with db.single_statement() as conn:
            row = (await conn.execute(_CREATE_DIRECT[(request is not None, False)], params)).one()
        if row.verdict == "ok":
            if row.response is not None:
                return Reply(row.response)
            return await _existing_order(order.program_id, body, request)
        if row.verdict == "no_member":
            raise order.unknown_member()
        if row.verdict == "currency":
            raise order.currency_mismatch(row.currency)
        if row.verdict != "stale":
            return None  # a pending referral: the full path locks both members first
        earning.forget_program_earning(order.program_id)
    return None


async def _create_with_coupons(order: _NewOrder) -> Reply | None:
    """An order with coupons in a program whose earning does not depend on the member, on one
    connection outside a transaction: one statement that locks the buyer's account, then the
    coupons still usable, and records the order, marking them used, only when all of them
    are (``_coupon_order_statement``). None when it needs the full path (the earning depends
    on the member, a pending referral needs both members locked in id order, or the setup or
    the coupons kept changing under it)."""
    body, request = order.body, order.request
    assert body.coupon_codes is not None
    for _ in range(_STALE_RETRIES):
        setup = await earning.program_earning(order.program_id)
        if setup.member_dependent:
            return None
        try:
            row = await _coupon_order_statement(order, setup)
        except coupon_orders.CouponUsedByThisOrder:
            break  # a retry of the order that used them: answered with that order
        except PointsLimitExceededError:
            return None  # the cached setup may be stale: the full path decides
        if row.verdict == "ok":
            if row.response is not None:
                return Reply(row.response)
            if row.usable == len(body.coupon_codes):
                break  # the order_id was taken: answered with the recorded order
            continue  # a coupon was used or voided since the read: read it again
        if row.verdict == "no_member":
            raise order.unknown_member()
        if row.verdict == "currency":
            raise order.currency_mismatch(row.currency)
        if row.verdict != "stale":
            return None  # a pending referral: the full path locks both members first
        earning.forget_program_earning(order.program_id)
    else:
        return None
    return await _existing_order(order.program_id, body, request)


async def _coupon_order_statement(order: _NewOrder, setup: earning.ProgramEarning) -> Any:
    """The answer of the order statement with coupons (verdict, currency, response, usable).
    When the program's earning is its base rate alone, the statement prices the order itself
    and is the only round trip; when it did not record the order because a coupon was not
    usable (or this very order had used it), or when the earning has rules, the coupons are
    read first and checked here, which says why one is not usable (CouponNotUsableError,
    CouponUsedByThisOrder), and the statement records the order priced from that read."""
    body, request = order.body, order.request
    assert body.coupon_codes is not None
    codes = coupon_orders.canonical_codes(body.coupon_codes)
    context = setup.context()
    fraction = earning.base_rate_fraction(context)
    # An order that would earn more than an order may even before its discounts (a discount
    # only lowers what it earns) is priced after the read, as the full path does.
    if (
        fraction is not None
        and all(codes)
        and body.amount * fraction[0] // fraction[1] <= earning.MAX_ORDER_POINTS
    ):
        params = order.params([])
        params.update(
            config_version=setup.config_version,
            codes=codes,
            coupon_count=len(codes),
            rate_numerator=Decimal(fraction[0]),
            rate_denominator=Decimal(fraction[1]),
        )
        async with db.single_statement() as conn:
            row = (await conn.execute(_CREATE_DIRECT_PRICED[request is not None], params)).one()
        if row.verdict != "ok" or row.response is not None or row.usable == len(codes):
            return row
    async with db.single_statement() as conn:
        read = await coupon_orders.read_for_order(
            conn, order.program_id, body.member_id, body.coupon_codes
        )
        if read.buyer_id is None:
            raise order.unknown_member()
        if body.currency != read.program_currency:
            raise order.currency_mismatch(read.program_currency)
        applied = coupon_orders.check_for_order(
            read.coupons,
            body.coupon_codes,
            read.buyer_id,
            body.order_id,
            body.amount,
            body.currency,
            order.now,
        )
        params = order.params([])
        _earn_after_discounts(order, context, params, applied)
        params.update(config_version=setup.config_version, coupon_count=len(applied))
        return (await conn.execute(_CREATE_DIRECT[(request is not None, True)], params)).one()


async def _create_after_reading_member(order: _NewOrder) -> Reply:
    program_id, body, request, now = order.program_id, order.body, order.request, order.now
    async with db.read_only() as conn:
        loaded = await earning.load_context(conn, program_id, body.member_id)
    if loaded is None:
        raise order.unknown_member()
    member_id, context = loaded.member_id, loaded.context
    referrer_id = loaded.pending_referrer_id
    if body.currency != context.currency:
        raise order.currency_mismatch(context.currency)
    breakdown = earning.compute_breakdown(context, body.amount, body.items, order.occurred_at)
    params = order.params(breakdown)
    params["member_id"] = member_id
    statement = _CREATE[
        (body.redeem_hold_id is not None, request is not None, body.coupon_codes is not None)
    ]
    # For a program with tiers the order also settles the member's tier, in one transaction;
    # otherwise an order without a hold is a single statement.
    tiered = await tier_evaluation.program_has_tiers(program_id)
    try:
        if (
            body.redeem_hold_id is None
            and body.coupon_codes is None
            and not tiered
            and referrer_id is None
        ):
            async with db.single_statement() as conn:
                created = (await conn.execute(statement, params)).scalar()
        else:
            async with db.transaction() as conn:
                if referrer_id is not None or body.coupon_codes is not None:
                    # The referee's order may pay the referral: lock both members in id order
                    # before anything else. Coupons are locked after the member's account.
                    locked = {member_id} if referrer_id is None else {member_id, referrer_id}
                    await conn.execute(
                        LOCK_IN_ORDER, {"program_id": program_id, "member_ids": sorted(locked)}
                    )
                if body.coupon_codes is not None:
                    await _apply_coupons(conn, order, context, member_id, params)
                if body.redeem_hold_id is None:
                    created = (await conn.execute(statement, params)).scalar()
                else:
                    created = await _create_with_hold(conn, program_id, body, params, statement)
                if created is not None and referrer_id is not None:
                    await referrals.on_order_created_in(
                        conn, program_id, member_id, body.order_id, now
                    )
                if created is not None and tiered:
                    await tier_evaluation.evaluate_locked(conn, program_id, [member_id], now)
    except (_OrderExists, coupon_orders.CouponUsedByThisOrder):
        created = None
    if created is not None:
        return Reply(created)
    return await _existing_order(program_id, body, request)


async def _apply_coupons(
    conn: Connection,
    order: _NewOrder,
    context: earning.EarnContext,
    member_id: int,
    params: dict[str, Any],
) -> None:
    """Lock and check the order's coupons (the member's account is locked), and earn on the
    amount minus their discounts; the order statement marks them used. A retry of an order
    that used them is answered with that order (coupon_orders.CouponUsedByThisOrder)."""
    body = order.body
    assert body.coupon_codes is not None
    applied = await coupon_orders.lock_for_order(
        conn,
        order.program_id,
        member_id,
        body.order_id,
        body.coupon_codes,
        body.amount,
        body.currency,
        order.now,
    )
    _earn_after_discounts(order, context, params, applied)


def _earn_after_discounts(
    order: _NewOrder,
    context: earning.EarnContext,
    params: dict[str, Any],
    applied: list[coupon_orders.AppliedCoupon],
) -> None:
    """The order statement's parameters for an order using ``applied``: what it earns on the
    amount minus the discounts, the coupons its reply lists, and the coupons to mark used."""
    body = order.body
    # Several coupons may together discount more than the amount; nothing is earned then.
    earned_on = max(body.amount - sum(item.discount_amount for item in applied), 0)
    breakdown = earning.compute_breakdown(
        context, earned_on, body.items, order.occurred_at, before_discounts=body.amount
    )
    params.update(
        earned=earning.points_earned(breakdown),
        breakdown=orjson.dumps(
            [{"source": source, "points": points} for source, points in breakdown]
        ).decode(),
        coupons=orjson.dumps(
            [
                {"code": item.coupon.code, "discount_amount": item.discount_amount}
                for item in applied
            ]
        ).decode(),
        **coupon_orders.use_params(applied),
    )


async def _create_with_hold(
    conn: Connection,
    program_id: int,
    body: OrderCreate,
    params: dict[str, Any],
    statement: Any,
) -> str:
    assert body.redeem_hold_id is not None
    locked = await holds.lock_hold(conn, program_id, holds.parse_hold_id(body.redeem_hold_id))
    hold = locked.row
    if hold.member_id != params["member_id"] or (
        hold.status != "active" or hold.expires_at <= params["now"]
    ):
        # A retried order finds its own hold captured: answer with the order it recorded
        # (or order_conflict when the body differs), never a second capture.
        if await _order_recorded(conn, program_id, body.order_id):
            raise _OrderExists
        if hold.member_id != params["member_id"]:
            raise HoldNotActiveError("The hold belongs to another member.")
        raise HoldNotActiveError(f"The hold is {hold.status}.")
    params.update(hold_id=hold.id, points=hold.points)
    created = (await conn.execute(statement, params)).scalar()
    if created is None:
        raise _OrderExists  # rolls back the transaction, the hold stays active
    return str(created)


_ORDER_RECORDED = text(
    "SELECT 1 FROM orders WHERE program_id = :program_id AND order_id = :order_id"
)


async def _order_recorded(conn: Connection, program_id: int, order_id: str) -> bool:
    found = await conn.execute(_ORDER_RECORDED, {"program_id": program_id, "order_id": order_id})
    return found.first() is not None


async def _existing_order(
    program_id: int, body: OrderCreate, request: IdempotencyRequest | None
) -> Reply:
    """The order recorded under this order_id: the first reply stored under the key when this
    is a retry with one, else the order as it is now (200), or ``order_conflict`` when it was
    recorded with another body."""
    async with db.read_only() as conn:
        if request is not None:
            stored = await idempotency.find_stored(conn, program_id, request)
            if stored is not None:
                return stored
        row = (
            await conn.execute(_FIND_ORDER, {"program_id": program_id, "order_id": body.order_id})
        ).one()
    if row.request_hash != order_fingerprint(body):
        raise OrderConflictError(
            f"Order {body.order_id!r} was already recorded with a different body."
        )
    return Reply(row.response, created=False)


async def get_order(program_id: int, order_id: str) -> str:
    async with db.read_only() as conn:
        row = (
            await conn.execute(_FIND_ORDER, {"program_id": program_id, "order_id": order_id})
        ).first()
    if row is None:
        raise NotFoundError(f"No order {order_id!r} in this program.")
    return str(row.response)


# --- Refunds -------------------------------------------------------------------------------

_READ_ORDER = text(
    "SELECT * FROM orders WHERE program_id = :program_id AND order_id = :order_id FOR UPDATE"
)
_FIND_REFUND = text(
    f"""
SELECT f.amount, o.order_id, {REFUND_JSON.format(f="f")}::text AS response
  FROM refunds AS f JOIN orders AS o ON o.program_id = :program_id AND o.id = f.order_pk
 WHERE f.program_id = :program_id AND f.refund_id = :refund_id
"""
)

_REFUND_SQL = """
WITH refund AS (
    INSERT INTO refunds (program_id, order_pk, refund_id, amount, points_reversed,
                         points_restored, created_at)
    VALUES (:program_id, :order_pk, :refund_id, :amount, :reversed, :restored, :now)
 RETURNING *
), ord AS (
    UPDATE orders
       SET refunded_amount = refunded_amount + :amount,
           points_reversed = points_reversed + :reversed,
           points_restored = points_restored + :restored
     WHERE program_id = :program_id AND id = :order_pk
 RETURNING *
), {refund_posting}, body AS (
    SELECT refund.program_id, {refund_json}::text AS response
      FROM refund
), event AS (
    INSERT INTO events (program_id, type, member_id, data, created_at)
    SELECT ord.program_id, 'order.refunded', ord.member_id,
           jsonb_build_object('member_id', CAST(:member AS text), 'sequence', acc.version,
                              'order_id', ord.order_id, 'refund', body.response::jsonb,
                              'balance', jsonb_build_object('available', acc.available,
                                                            'pending', acc.pending,
                                                            'held', acc.held)),
           CAST(:now AS timestamptz)
      FROM body CROSS JOIN acc CROSS JOIN ord
){remember}
SELECT response FROM body
"""

_REFUND = {
    remember: text(
        _REFUND_SQL.format(
            refund_posting=REFUND_POSTING_CTES,
            refund_json=REFUND_JSON.format(f="refund"),
            remember=REMEMBER_CTE if remember else "",
        )
    )
    for remember in (False, True)
}


@dataclass(frozen=True, slots=True)
class RefundShares:
    """What one refund reverses and restores, given what earlier refunds already did."""

    reversed: int
    restored: int


def refund_shares(
    *,
    amount: int,
    points_earned: int,
    points_redeemed: int,
    refunded_before: int,
    reversed_before: int,
    restored_before: int,
    refund_amount: int,
) -> RefundShares:
    """Proportional on the cumulative refunded amount, floored, as differences of totals, so
    the sum over any series of refunds reaching ``amount`` is exactly earned and redeemed."""
    refunded = refunded_before + refund_amount
    if refund_amount <= 0 or refunded > amount:
        raise ValueError("refund outside the order amount")
    return RefundShares(
        reversed=points_earned * refunded // amount - reversed_before,
        restored=points_redeemed * refunded // amount - restored_before,
    )


async def create_refund(
    program_id: int,
    order_id: str,
    refund_id: str,
    amount: int,
    actor: str,
    request: IdempotencyRequest | None,
) -> Reply:
    """Refund part or all of an order; ``refund_id`` is its natural key (the same refund again
    is answered with the first, 200)."""
    now = clock.now()

    async def attempt() -> Reply:
        try:
            async with db.transaction() as conn:
                holder = (
                    await conn.execute(
                        accounts.LOCK_HOLDER_OF_ORDER,
                        {"program_id": program_id, "order_id": order_id},
                    )
                ).first()
                if holder is None:
                    raise NotFoundError(f"No order {order_id!r} in this program.")
                existing = await _existing_refund(conn, program_id, order_id, refund_id, amount)
                if existing is not None:
                    return await _first_reply(conn, program_id, request, existing)
                body = await _record_refund(
                    conn, program_id, holder, refund_id, amount, actor, request, now
                )
            return Reply(body)
        except IntegrityError as exc:
            if idempotency.constraint_name(exc) != "uq_refunds_program_id_refund_id":
                raise
            # The same refund_id was recorded at the same instant (for another order, since
            # refunds of one order queue on its member's lock): answer as if this came second.
            async with db.read_only() as conn:
                existing = await _existing_refund(conn, program_id, order_id, refund_id, amount)
                if existing is None:
                    raise
                return await _first_reply(conn, program_id, request, existing)

    return await idempotent(program_id, request, attempt)


async def _record_refund(
    conn: Connection,
    program_id: int,
    holder: Any,
    refund_id: str,
    amount: int,
    actor: str,
    request: IdempotencyRequest | None,
    now: datetime,
) -> str:
    """The refund of the order whose holder's account this transaction has locked."""
    order_id = holder.order_id
    order = (
        await conn.execute(_READ_ORDER, {"program_id": program_id, "order_id": order_id})
    ).one()
    if order.refunded_amount + amount > order.amount:
        raise RefundExceedsOrderError(
            f"Order {order_id!r} is for {order.amount}; {order.refunded_amount} is "
            f"already refunded, so at most {order.amount - order.refunded_amount} more."
        )
    shares = refund_shares(
        amount=order.amount,
        points_earned=order.points_earned,
        points_redeemed=order.points_redeemed,
        refunded_before=order.refunded_amount,
        reversed_before=order.points_reversed,
        restored_before=order.points_restored,
        refund_amount=amount,
    )
    # Points still pending are reversed from pending; released ones from available,
    # which may go below zero (a debt later earnings repay) but never blocks a refund.
    pending = order.status == "pending"
    params: dict[str, Any] = {
        "program_id": program_id,
        "order_pk": order.id,
        "refund_id": refund_id,
        "amount": amount,
        "reversed": shares.reversed,
        "restored": shares.restored,
        "reversed_pending": shares.reversed if pending else 0,
        "reversed_available": 0 if pending else shares.reversed,
        "points": 0 if pending else shares.reversed,
        "member_id": holder.member_id,
        "member": holder.external_id,
        "reason": f"refund {refund_id}",
        "actor": actor,
        "now": now,
        **remember_params(request),
    }
    body: str = (await conn.execute(_REFUND[request is not None], params)).scalar_one()
    await referrals.on_refund_in(conn, program_id, order.id, holder.external_id, now)
    if order.refunded_amount + amount == order.amount and order.coupons is not None:
        await coupon_orders.reactivate_for_refund(conn, program_id, order.id, order_id, now)
    if await tier_evaluation.program_has_tiers(program_id, conn):
        await tier_evaluation.evaluate_locked(conn, program_id, [holder.member_id], now, "refund")
    return body


async def _first_reply(
    conn: Connection, program_id: int, request: IdempotencyRequest | None, existing: Reply
) -> Reply:
    """A refund that is already recorded: a retry with the key replays the first reply (201),
    any other repeat gets the refund as recorded (200)."""
    if request is not None:
        stored = await idempotency.find_stored(conn, program_id, request)
        if stored is not None:
            return stored
    return existing


async def _existing_refund(
    conn: Connection, program_id: int, order_id: str, refund_id: str, amount: int
) -> Reply | None:
    row = (
        await conn.execute(_FIND_REFUND, {"program_id": program_id, "refund_id": refund_id})
    ).first()
    if row is None:
        return None
    if row.order_id != order_id or row.amount != amount:
        raise RefundConflictError(
            f"Refund {refund_id!r} was already recorded for order {row.order_id!r} "
            f"with amount {row.amount}."
        )
    return Reply(row.response, created=False)
