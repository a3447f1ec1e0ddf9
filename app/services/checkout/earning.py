"""The earning engine: how many points an order earns, line by line (api.md "Orders").

``compute_breakdown`` is pure and runs on the checkout hot path: no I/O, no floats. Every
multiplication by a rate is done on exact integers (a Decimal is its integer ratio) and floored
explicitly, so a line never depends on a Decimal context's precision. ``load_context`` reads
everything the computation needs in one round trip; ``quote`` is the read-only use case.

Lines, in this order, each omitted when it is 0:
- ``base``: floor(amount / 10^minor_units * earn_rate);
- ``tier``: floor(base * (tier multiplier - 1)) when the member has a tier with a multiplier;
- ``rule:<id>`` for each matching rule, by id: floor(base * (multiplier - 1)) or its bonus
  points. A rule with categories multiplies only the base of the matching items.

An order earns at most ``MAX_ORDER_POINTS``; settings or rules that would give more refuse the
order (422 ``points_limit_exceeded``) before any number reaches the database, so no total can
overflow a bigint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text

from app import db
from app.clock import clock
from app.db import Connection
from app.errors import CurrencyMismatchError, NotFoundError, PointsLimitExceededError
from app.schemas.common import MAX_POINTS
from app.schemas.orders import BreakdownLine, OrderItem, QuoteOut, QuoteRequest
from app.services.checkout.money import CURRENCY_MINOR_UNITS
from app.services.idempotency import IdempotencyRequest, Reply, run_recomputation


@dataclass(frozen=True, slots=True)
class RuleConditions:
    """What an order must meet; a condition left as None (or False) is not checked."""

    categories: frozenset[str] | None = None
    min_amount: int | None = None
    tiers: frozenset[str] | None = None
    weekdays: frozenset[int] | None = None
    birthday_month: bool = False


@dataclass(frozen=True, slots=True)
class RuleEffect:
    """Exactly one of the two is set."""

    multiplier: Decimal | None = None
    bonus_points: int | None = None


@dataclass(frozen=True, slots=True)
class EarnRuleSpec:
    id: int
    conditions: RuleConditions
    effect: RuleEffect
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    active: bool = True

    @classmethod
    def from_stored(cls, rule: Mapping[str, Any]) -> EarnRuleSpec:
        """A rule as stored (``earn_rules`` columns, JSON-decoded)."""
        conditions: Mapping[str, Any] = rule.get("conditions") or {}
        effect: Mapping[str, Any] = rule.get("effect") or {}
        return cls(
            id=int(rule["id"]),
            conditions=RuleConditions(
                categories=_frozen(conditions.get("categories")),
                min_amount=conditions.get("min_amount"),
                tiers=_frozen(conditions.get("tiers")),
                weekdays=_frozen(conditions.get("weekdays")),
                birthday_month=bool(conditions.get("birthday_month")),
            ),
            effect=RuleEffect(
                multiplier=(
                    Decimal(effect["multiplier"]) if effect.get("multiplier") is not None else None
                ),
                bonus_points=effect.get("bonus_points"),
            ),
            starts_at=_timestamp(rule.get("starts_at")),
            ends_at=_timestamp(rule.get("ends_at")),
            active=bool(rule.get("active", True)),
        )


@dataclass(frozen=True, slots=True)
class EarnContext:
    """Everything about the program and the member that earning depends on."""

    currency: str
    earn_rate: Decimal
    timezone: str
    tier_key: str | None
    tier_multiplier: Decimal | None
    birthday: date | None
    rules: tuple[EarnRuleSpec, ...]


def _frozen(values: Sequence[Any] | None) -> frozenset[Any] | None:
    return frozenset(values) if values is not None else None


def _timestamp(value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def _rate_fraction(minor_units: int, rate: Decimal) -> tuple[int, int]:
    """(n, d) such that amount / 10^minor_units * rate = amount * n / d, exactly."""
    numerator, denominator = rate.as_integer_ratio()
    scale: int = 10**minor_units
    return numerator, denominator * scale


def _points_at_rate(amount: int, minor_units: int, rate: Decimal) -> int:
    """floor(amount / 10^minor_units * rate), exactly."""
    numerator, denominator = _rate_fraction(minor_units, rate)
    return (amount * numerator) // denominator


def base_rate_fraction(ctx: EarnContext) -> tuple[int, int] | None:
    """When all an order earns in ``ctx`` is its base line (no tier, no rules): (n, d) with
    base = floor(amount * n / d), for a statement that prices an order itself; else None."""
    if ctx.tier_key is not None or ctx.rules:
        return None
    return _rate_fraction(CURRENCY_MINOR_UNITS[ctx.currency], ctx.earn_rate)


def _extra_points(base: int, multiplier: Decimal) -> int:
    """floor(base * (multiplier - 1)), exactly; never negative."""
    numerator, denominator = multiplier.as_integer_ratio()
    return max(base * (numerator - denominator) // denominator, 0)


def _matching_subtotal(items: list[OrderItem] | None, categories: frozenset[str]) -> int | None:
    """What the items in ``categories`` cost, or None when there is no such item."""
    if not items:
        return None
    subtotal = 0
    found = False
    for item in items:
        if item.category is not None and item.category in categories:
            subtotal += item.quantity * item.unit_price
            found = True
    return subtotal if found else None


# The points one order may earn (api.md): the same bound as one earn or redeem request.
MAX_ORDER_POINTS = MAX_POINTS


def compute_breakdown(
    ctx: EarnContext,
    amount: int,
    items: list[OrderItem] | None,
    occurred_at: datetime,
    *,
    before_discounts: int | None = None,
) -> list[tuple[str, int]]:
    """The breakdown lines ``(source, points)`` of an order; points earned is their sum, at
    most ``MAX_ORDER_POINTS`` (else ``PointsLimitExceededError``). For an order whose coupons
    took its ``before_discounts`` down to ``amount``, see ``breakdown_lines``."""
    lines = breakdown_lines(ctx, amount, items, occurred_at, before_discounts=before_discounts)
    total = points_earned(lines)
    if total > MAX_ORDER_POINTS:
        raise PointsLimitExceededError(
            f"This order would earn {total} points; one order earns at most "
            f"{MAX_ORDER_POINTS}. Lower the program's earn_rate or the rules' effects."
        )
    return lines


def breakdown_lines(
    ctx: EarnContext,
    amount: int,
    items: list[OrderItem] | None,
    occurred_at: datetime,
    *,
    before_discounts: int | None = None,
) -> list[tuple[str, int]]:
    """The lines as the rules give them, before the limit per order is applied. ``amount`` is
    what the customer pays; when coupons discounted the order from ``before_discounts``, the
    items (listed at their prices) are taken as paid in the same proportion, so a rule on
    categories earns on what those items really cost."""
    if occurred_at.tzinfo is None:
        raise ValueError("occurred_at must be an aware datetime")
    minor_units = CURRENCY_MINOR_UNITS[ctx.currency]
    base = _points_at_rate(amount, minor_units, ctx.earn_rate)
    lines: list[tuple[str, int]] = []
    if base > 0:
        lines.append(("base", base))
    if ctx.tier_key is not None and ctx.tier_multiplier is not None:
        tier = _extra_points(base, ctx.tier_multiplier)
        if tier > 0:
            lines.append(("tier", tier))
    if not ctx.rules:
        return lines

    local = occurred_at.astimezone(ZoneInfo(ctx.timezone))
    for rule in sorted(ctx.rules, key=_rule_id):
        if not rule.active:
            continue
        if rule.starts_at is not None and occurred_at < rule.starts_at:
            continue
        if rule.ends_at is not None and occurred_at >= rule.ends_at:
            continue
        conditions = rule.conditions
        if conditions.min_amount is not None and amount < conditions.min_amount:
            continue
        if conditions.tiers is not None and ctx.tier_key not in conditions.tiers:
            continue
        if conditions.weekdays is not None and local.isoweekday() not in conditions.weekdays:
            continue
        if conditions.birthday_month and (
            ctx.birthday is None or ctx.birthday.month != local.month
        ):
            continue
        rule_base = base
        if conditions.categories is not None:
            subtotal = _matching_subtotal(items, conditions.categories)
            if subtotal is None:
                continue
            if before_discounts is not None and before_discounts > amount:
                # A coupon discounts the whole order, so every item by the same share.
                subtotal = subtotal * amount // before_discounts
            # Items may add up to more than a discounted order's amount; a category never
            # earns on more money than the order itself.
            rule_base = _points_at_rate(min(subtotal, amount), minor_units, ctx.earn_rate)
        effect = rule.effect
        if effect.multiplier is not None:
            points = _extra_points(rule_base, effect.multiplier)
        else:
            points = effect.bonus_points or 0
        if points > 0:
            lines.append((f"rule:{rule.id}", points))
    return lines


def _rule_id(rule: EarnRuleSpec) -> int:
    return rule.id


def points_earned(breakdown: Sequence[tuple[str, int]]) -> int:
    """Points earned are the sum of the breakdown lines."""
    return sum(points for _, points in breakdown)


# Every active rule of program ``p``, as EarnRuleSpec.from_stored reads them.
ACTIVE_RULES_JSON = """COALESCE((
           SELECT json_agg(json_build_object(
                      'id', r.id, 'active', r.active, 'starts_at', r.starts_at,
                      'ends_at', r.ends_at, 'conditions', r.conditions, 'effect', r.effect)
                  ORDER BY r.id)
             FROM earn_rules AS r
            WHERE r.program_id = :program_id AND r.active), '[]')"""

# One round trip: the program's settings, the member and its tier, the balance, and every
# active rule.
_CONTEXT = text(
    f"""
SELECT m.id AS member_id, a.available, m.birthday,
       p.currency, p.earn_rate, p.timezone,
       a.tier_key, t.earn_multiplier AS tier_multiplier,
       (SELECT f.referrer_id FROM referrals AS f
         WHERE f.program_id = :program_id AND f.referee_id = m.id AND f.status = 'pending')
           AS pending_referrer_id,
       {ACTIVE_RULES_JSON} AS rules
  FROM members AS m
  JOIN programs AS p ON p.id = m.program_id
  JOIN accounts AS a ON a.program_id = m.program_id AND a.member_id = m.id
  LEFT JOIN tiers AS t ON t.program_id = a.program_id AND t.key = a.tier_key
 WHERE m.program_id = :program_id AND m.external_id = :member
"""
)


@dataclass(frozen=True, slots=True)
class ProgramEarning:
    """A program's earning setup as of ``config_version`` (programs.config_version changes
    whenever any of this could: currency, earn rate, time zone, earn rules, tiers)."""

    config_version: int
    currency: str
    earn_rate: Decimal
    timezone: str
    rules: tuple[EarnRuleSpec, ...]
    has_tiers: bool

    @property
    def member_dependent(self) -> bool:
        """Whether an order's points can depend on who the member is: a tier multiplier, or a
        rule on tiers or birthdays."""
        return self.has_tiers or any(
            rule.conditions.tiers is not None or rule.conditions.birthday_month
            for rule in self.rules
        )

    def context(self) -> EarnContext:
        """The earning context of any member, when it does not depend on the member."""
        return EarnContext(
            currency=self.currency,
            earn_rate=self.earn_rate,
            timezone=self.timezone,
            tier_key=None,
            tier_multiplier=None,
            birthday=None,
            rules=self.rules,
        )


_PROGRAM_EARNING = text(
    f"""
SELECT p.config_version, p.currency, p.earn_rate, p.timezone,
       EXISTS (SELECT 1 FROM tiers AS t WHERE t.program_id = :program_id) AS has_tiers,
       {ACTIVE_RULES_JSON} AS rules
  FROM programs AS p
 WHERE p.id = :program_id
"""
)

# Per process. An entry is only ever used together with its config_version, which the order
# statement compares with the program's: a stale entry costs one retry, never a wrong order.
_program_earning: dict[int, ProgramEarning] = {}
_PROGRAM_EARNING_LIMIT = 10_000


async def program_earning(program_id: int, conn: Connection | None = None) -> ProgramEarning:
    """The program's earning setup, from this process's cache when it has one. Inside a
    transaction pass its connection: a task holds one connection at a time."""
    cached = _program_earning.get(program_id)
    if cached is not None:
        return cached
    if conn is None:
        async with db.read_only() as own:
            row = (await own.execute(_PROGRAM_EARNING, {"program_id": program_id})).one()
    else:
        row = (await conn.execute(_PROGRAM_EARNING, {"program_id": program_id})).one()
    loaded = ProgramEarning(
        config_version=row.config_version,
        currency=row.currency,
        earn_rate=row.earn_rate,
        timezone=row.timezone,
        rules=tuple(EarnRuleSpec.from_stored(rule) for rule in row.rules),
        has_tiers=row.has_tiers,
    )
    if len(_program_earning) >= _PROGRAM_EARNING_LIMIT:
        _program_earning.clear()
    _program_earning[program_id] = loaded
    return loaded


def forget_program_earning(program_id: int) -> None:
    _program_earning.pop(program_id, None)


@dataclass(frozen=True, slots=True)
class LoadedMember:
    """What the checkout reads about a member before an order, in one round trip."""

    member_id: int
    available: int
    context: EarnContext
    # The referrer of the member's pending referral: an order then locks both accounts.
    pending_referrer_id: int | None


async def load_context(conn: Connection, program_id: int, member: str) -> LoadedMember | None:
    """The member as the checkout needs it, or None for an unknown member.

    Rules are loaded when active, whatever their dates: an order may be backdated, so
    ``compute_breakdown`` judges the dates against the order's own time."""
    row = (await conn.execute(_CONTEXT, {"program_id": program_id, "member": member})).first()
    if row is None:
        return None
    context = EarnContext(
        currency=row.currency,
        earn_rate=row.earn_rate,
        timezone=row.timezone,
        tier_key=row.tier_key,
        tier_multiplier=row.tier_multiplier,
        birthday=row.birthday,
        rules=tuple(EarnRuleSpec.from_stored(rule) for rule in row.rules),
    )
    return LoadedMember(row.member_id, row.available, context, row.pending_referrer_id)


async def quote(program_id: int, body: QuoteRequest) -> QuoteOut:
    """What an order would earn now, and how many points the member could redeem on it.
    Reads only: nothing is written or locked."""
    async with db.read_only() as conn:
        loaded = await load_context(conn, program_id, body.member_id)
    if loaded is None:
        raise NotFoundError(f"No member {body.member_id!r} in this program.")
    available, context = loaded.available, loaded.context
    if body.currency != context.currency:
        raise CurrencyMismatchError(
            f"This program keeps {context.currency}; the quote was in {body.currency}."
        )
    breakdown = compute_breakdown(context, body.amount, body.items, clock.now())
    return QuoteOut(
        points=points_earned(breakdown),
        breakdown=[BreakdownLine(source=source, points=points) for source, points in breakdown],
        max_redeemable_points=max(available, 0),
    )


async def quote_once(
    program_id: int, body: QuoteRequest, request: IdempotencyRequest | None
) -> Reply:
    """A quote that honours Idempotency-Key like every POST: with a key, the first answer is
    stored and a repeat replays it (the ledger itself is never touched)."""

    async def compute() -> Reply:
        return Reply((await quote(program_id, body)).model_dump_json(), created=False)

    return await run_recomputation(program_id, request, compute)
