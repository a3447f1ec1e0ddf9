"""The earning engine on its own: properties of compute_breakdown, the tier line, and the one
round trip of load_context."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from app import db
from app.errors import PointsLimitExceededError
from app.schemas.common import MAX_POINTS
from app.schemas.orders import OrderItem
from app.services.checkout.earning import (
    EarnContext,
    EarnRuleSpec,
    RuleConditions,
    RuleEffect,
    breakdown_lines,
    compute_breakdown,
    load_context,
    points_earned,
)
from app.services.checkout.money import CURRENCY_MINOR_UNITS
from tests.conftest import Program

CATEGORIES = ("tea", "ware", "snacks", "gifts")
TIMEZONES = ("UTC", "Asia/Shanghai", "America/Los_Angeles", "Pacific/Kiritimati")
MOMENT = datetime(2026, 11, 21, 10, tzinfo=UTC)

# Rates are Decimals with at most 6 places (the column is numeric(18, 6)): micro-points per
# major unit, so the tests can compute with integers alone.
# Round rates ("0.57") and round amounts are where floats go wrong (0.57 * 100 < 57).
micro_rates = st.integers(min_value=0, max_value=10**9) | st.integers(0, 10_000).map(
    lambda hundredths: hundredths * 10_000
)
multipliers = st.integers(min_value=1_000_001, max_value=10_000_000).map(
    lambda micro: Decimal(micro).scaleb(-6)
)
items_lists = st.lists(
    st.builds(
        OrderItem,
        sku=st.just("SKU"),
        category=st.one_of(st.none(), st.sampled_from(CATEGORIES)),
        quantity=st.integers(min_value=1, max_value=1000),
        unit_price=st.integers(min_value=0, max_value=10**9),
    ),
    max_size=6,
)


TIERS = ("silver", "gold")
rule_conditions = st.builds(
    RuleConditions,
    categories=st.none() | st.frozensets(st.sampled_from(CATEGORIES), min_size=1),
    min_amount=st.none() | st.integers(0, 10**12),
    tiers=st.none() | st.frozensets(st.sampled_from(TIERS), min_size=1),
    weekdays=st.none() | st.frozensets(st.integers(1, 7), min_size=1),
    birthday_month=st.booleans(),
)
rule_effects = multipliers.map(lambda m: RuleEffect(multiplier=m)) | st.integers(
    1, 1_000_000_000
).map(lambda points: RuleEffect(bonus_points=points))
day_offsets = st.none() | st.integers(-30, 30)
durations = st.none() | st.integers(1, 30)


@st.composite
def rule_specs(draw: st.DrawFn, rule_id: int) -> EarnRuleSpec:
    start, length = draw(day_offsets), draw(durations)
    starts_at = MOMENT + timedelta(days=start) if start is not None else None
    ends_at = (starts_at or MOMENT) + timedelta(days=length) if length is not None else None
    return EarnRuleSpec(
        id=rule_id,
        conditions=draw(rule_conditions),
        effect=draw(rule_effects),
        starts_at=starts_at,
        ends_at=ends_at,
        active=draw(st.booleans()),
    )


rule_ids = st.lists(st.integers(1, 10_000), unique=True, max_size=5)
tier_keys = st.none() | st.sampled_from(TIERS)
currencies = st.sampled_from(("CNY", "JPY", "KWD", "CLF"))
timezones = st.sampled_from(TIMEZONES)
birthdays = st.none() | st.dates(date(1930, 1, 1), date(2020, 12, 31))


@st.composite
def contexts(draw: st.DrawFn) -> EarnContext:
    tier = draw(tier_keys)
    return EarnContext(
        currency=draw(currencies),
        earn_rate=Decimal(draw(micro_rates)).scaleb(-6),
        timezone=draw(timezones),
        tier_key=tier,
        tier_multiplier=draw(multipliers) if tier else None,
        birthday=draw(birthdays),
        rules=tuple([draw(rule_specs(rule_id)) for rule_id in draw(rule_ids)]),
    )


amounts = st.integers(min_value=0, max_value=10**12) | st.integers(0, 10**7).map(
    lambda units: units * 1000
)
moments = st.datetimes(
    min_value=datetime(2026, 10, 1), max_value=datetime(2027, 1, 31), timezones=st.just(UTC)
)


def integer_base(ctx: EarnContext, amount: int) -> int:
    """floor(amount / 10^minor x rate) with integers only (the rate has 6 places at most)."""
    micro_rate = int(ctx.earn_rate.scaleb(6))
    scale: int = 10 ** CURRENCY_MINOR_UNITS[ctx.currency]
    return amount * micro_rate // (10**6 * scale)


def model_contributions(
    ctx: EarnContext, amount: int, items: list[OrderItem], occurred_at: datetime
) -> int:
    """A straightforward model of api.md with exact fractions: the total of every line."""
    scale = Fraction(10 ** CURRENCY_MINOR_UNITS[ctx.currency])
    rate = Fraction(ctx.earn_rate)
    base = int(Fraction(amount) / scale * rate // 1)
    total = base
    if ctx.tier_key and ctx.tier_multiplier is not None:
        total += int(base * (Fraction(ctx.tier_multiplier) - 1) // 1)
    local = occurred_at.astimezone(ZoneInfo(ctx.timezone))
    for rule in ctx.rules:
        c = rule.conditions
        if not rule.active:
            continue
        if rule.starts_at and not rule.starts_at <= occurred_at:
            continue
        if rule.ends_at and not occurred_at < rule.ends_at:
            continue
        if c.min_amount is not None and amount < c.min_amount:
            continue
        if c.tiers is not None and ctx.tier_key not in c.tiers:
            continue
        if c.weekdays is not None and local.isoweekday() not in c.weekdays:
            continue
        if c.birthday_month and not (ctx.birthday and ctx.birthday.month == local.month):
            continue
        rule_base = base
        if c.categories is not None:
            matching = [i for i in items if i.category in c.categories]
            if not matching:
                continue
            money = min(sum(i.quantity * i.unit_price for i in matching), amount)
            rule_base = int(Fraction(money) / scale * rate // 1)
        if rule.effect.multiplier is not None:
            total += int(rule_base * (Fraction(rule.effect.multiplier) - 1) // 1)
        else:
            total += rule.effect.bonus_points or 0
    return total


def context(**changes: object) -> EarnContext:
    plain = EarnContext(
        currency="CNY",
        earn_rate=Decimal(1),
        timezone="UTC",
        tier_key=None,
        tier_multiplier=None,
        birthday=None,
        rules=(),
    )
    return replace(plain, **changes)  # type: ignore[arg-type]


class TestBreakdownProperties:
    """Properties of the lines as the rules give them; TestPointsLimit covers the cap."""

    @settings(max_examples=300)
    @given(ctx=contexts(), amount=amounts, items=items_lists, occurred_at=moments)
    def test_points_are_the_sum_of_the_lines(
        self, ctx: EarnContext, amount: int, items: list[OrderItem], occurred_at: datetime
    ) -> None:
        lines = breakdown_lines(ctx, amount, items, occurred_at)
        assert points_earned(lines) == sum(points for _, points in lines)
        assert points_earned(lines) == model_contributions(ctx, amount, items, occurred_at)

    @settings(max_examples=300)
    @given(ctx=contexts(), amount=amounts, items=items_lists, occurred_at=moments)
    def test_every_line_is_positive_and_in_order(
        self, ctx: EarnContext, amount: int, items: list[OrderItem], occurred_at: datetime
    ) -> None:
        lines = breakdown_lines(ctx, amount, items, occurred_at)
        assert all(isinstance(points, int) and points > 0 for _, points in lines)
        sources = [source for source, _ in lines]
        rule_ids = [int(source.removeprefix("rule:")) for source in sources if "rule:" in source]
        fixed = [source for source in sources if not source.startswith("rule:")]
        assert fixed in ([], ["base"], ["tier"], ["base", "tier"])
        assert sources == fixed + [f"rule:{rule_id}" for rule_id in rule_ids]
        assert rule_ids == sorted(set(rule_ids))

    @given(ctx=contexts(), amount=amounts, occurred_at=moments)
    @example(ctx=context(earn_rate=Decimal("0.57")), amount=10000, occurred_at=MOMENT)
    def test_base_equals_an_integer_only_computation(
        self, ctx: EarnContext, amount: int, occurred_at: datetime
    ) -> None:
        lines = dict(breakdown_lines(ctx, amount, None, occurred_at))
        assert lines.get("base", 0) == integer_base(ctx, amount)

    @given(
        ctx=contexts(), effect=rule_effects, amount=amounts, items=items_lists, occurred_at=moments
    )
    def test_category_rule_never_beats_the_same_rule_without_categories(
        self,
        ctx: EarnContext,
        effect: RuleEffect,
        amount: int,
        items: list[OrderItem],
        occurred_at: datetime,
    ) -> None:
        # Items may add up to more or less than the amount (discounts, shipping).
        narrowed = EarnRuleSpec(
            id=1, conditions=RuleConditions(categories=frozenset(CATEGORIES[:2])), effect=effect
        )
        everything = EarnRuleSpec(id=1, conditions=RuleConditions(), effect=effect)
        with_categories = dict(
            breakdown_lines(replace(ctx, rules=(narrowed,)), amount, items, occurred_at)
        )
        without = dict(
            breakdown_lines(replace(ctx, rules=(everything,)), amount, items, occurred_at)
        )
        assert with_categories.get("rule:1", 0) <= without.get("rule:1", 0)


class TestTierLine:
    def test_adds_base_times_multiplier_minus_one(self) -> None:
        ctx = context(tier_key="gold", tier_multiplier=Decimal("1.25"))
        # base 259; 259 x 0.25 = 64.75 -> 64.
        assert compute_breakdown(ctx, 25999, None, MOMENT) == [("base", 259), ("tier", 64)]

    def test_comes_before_rule_lines(self) -> None:
        rule = EarnRuleSpec(id=1, conditions=RuleConditions(), effect=RuleEffect(bonus_points=3))
        ctx = context(tier_key="gold", tier_multiplier=Decimal(2), rules=(rule,))
        assert compute_breakdown(ctx, 1000, None, MOMENT) == [
            ("base", 10),
            ("tier", 10),
            ("rule:1", 3),
        ]

    def test_multiplier_of_one_adds_no_line(self) -> None:
        ctx = context(tier_key="member", tier_multiplier=Decimal(1))
        assert compute_breakdown(ctx, 1000, None, MOMENT) == [("base", 10)]

    def test_tier_key_matches_tiers_condition(self) -> None:
        rule = EarnRuleSpec(
            id=4,
            conditions=RuleConditions(tiers=frozenset({"gold"})),
            effect=RuleEffect(bonus_points=3),
        )
        gold = context(tier_key="gold", tier_multiplier=Decimal(1), rules=(rule,))
        silver = context(tier_key="silver", tier_multiplier=Decimal(1), rules=(rule,))
        assert compute_breakdown(gold, 1000, None, MOMENT)[-1] == ("rule:4", 3)
        assert compute_breakdown(silver, 1000, None, MOMENT) == [("base", 10)]


class TestRuleOrder:
    def test_rules_come_by_id_whatever_their_order_in_the_context(self) -> None:
        rules = tuple(
            EarnRuleSpec(id=rule_id, conditions=RuleConditions(), effect=RuleEffect(bonus_points=1))
            for rule_id in (30, 4, 12)
        )
        lines = compute_breakdown(context(rules=rules), 0, None, MOMENT)
        assert lines == [("rule:4", 1), ("rule:12", 1), ("rule:30", 1)]


class TestOccurredAt:
    def test_naive_time_is_refused(self) -> None:
        with pytest.raises(ValueError, match="aware"):
            compute_breakdown(context(), 1000, None, datetime(2026, 11, 21, 10))


class TestFromStored:
    def test_reads_a_rule_as_stored(self) -> None:
        spec = EarnRuleSpec.from_stored(
            {
                "id": 7,
                "active": True,
                "starts_at": "2026-11-30T16:00:00+00:00",
                "ends_at": None,
                "conditions": {"categories": ["tea"], "weekdays": [6, 7], "min_amount": 100},
                "effect": {"multiplier": "1.5"},
            }
        )
        assert spec == EarnRuleSpec(
            id=7,
            conditions=RuleConditions(
                categories=frozenset({"tea"}), min_amount=100, weekdays=frozenset({6, 7})
            ),
            effect=RuleEffect(multiplier=Decimal("1.5")),
            starts_at=datetime(2026, 11, 30, 16, tzinfo=UTC),
            ends_at=None,
            active=True,
        )


class TestLoadContext:
    async def test_unknown_member_is_none(self, program: Program) -> None:
        async with db.read_only() as conn:
            assert await load_context(conn, program.id, "ghost") is None

    async def test_reads_program_member_balance_and_active_rules(
        self, program: Program, other_program: Program
    ) -> None:
        await program.patch("/v1/program", json={"earn_rate": "1.5", "timezone": "Asia/Tokyo"})
        await program.member("m1", points=30, birthday="1990-05-17")
        await other_program.member("m1", points=99)
        bodies = [
            {"active": True, "effect": {"bonus_points": 5}},
            {"active": False, "effect": {"bonus_points": 6}},
            {
                "active": True,
                "ends_at": "2020-01-01T00:00:00Z",
                "conditions": {"weekdays": [1]},
                "effect": {"multiplier": "2.5"},
            },
        ]
        ids = []
        for body in bodies:
            response = await program.post(
                "/v1/earn-rules", json={"name": "r", "conditions": {}, **body}
            )
            ids.append(response.json()["id"])
        await other_program.post(
            "/v1/earn-rules",
            json={"name": "x", "active": True, "conditions": {}, "effect": {"bonus_points": 1}},
        )
        async with db.read_only() as conn:
            loaded = await load_context(conn, program.id, "m1")
        assert loaded is not None
        ctx = loaded.context
        assert isinstance(loaded.member_id, int)
        assert loaded.available == 30
        assert loaded.pending_referrer_id is None
        assert ctx.currency == "CNY"
        assert ctx.earn_rate == Decimal("1.5")
        assert ctx.timezone == "Asia/Tokyo"
        assert ctx.birthday == date(1990, 5, 17)
        assert (ctx.tier_key, ctx.tier_multiplier) == (None, None)
        # Inactive rules stay out; ended ones come in, since an order may be backdated.
        assert [rule.id for rule in ctx.rules] == [ids[0], ids[2]]
        assert ctx.rules[1].effect == RuleEffect(multiplier=Decimal("2.5"))
        assert ctx.rules[1].ends_at == datetime(2020, 1, 1, tzinfo=UTC)
        assert ctx.rules[1].conditions.weekdays == frozenset({1})


class TestPointsLimit:
    @settings(max_examples=300)
    @given(ctx=contexts(), amount=amounts, items=items_lists, occurred_at=moments)
    def test_refused_exactly_when_the_lines_pass_the_limit(
        self, ctx: EarnContext, amount: int, items: list[OrderItem], occurred_at: datetime
    ) -> None:
        total = points_earned(breakdown_lines(ctx, amount, items, occurred_at))
        if total > MAX_POINTS:
            with pytest.raises(PointsLimitExceededError):
                compute_breakdown(ctx, amount, items, occurred_at)
        else:
            assert points_earned(compute_breakdown(ctx, amount, items, occurred_at)) == total

    def test_huge_rate_and_amount(self) -> None:
        # A JPY program at a million points per yen, and an order of 10^12 yen: 10^18 points.
        ctx = context(currency="JPY", earn_rate=Decimal(1_000_000))
        with pytest.raises(PointsLimitExceededError) as raised:
            compute_breakdown(ctx, 10**12, None, MOMENT)
        assert raised.value.code == "points_limit_exceeded"
        assert raised.value.status == 422

    def test_at_the_limit(self) -> None:
        ctx = context(currency="JPY", earn_rate=Decimal(1))
        assert compute_breakdown(ctx, MAX_POINTS, None, MOMENT) == [("base", MAX_POINTS)]
