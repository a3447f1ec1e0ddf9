"""POST /v1/orders/quote through HTTP: the breakdown of api.md, line by line."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app import db
from app.clock import clock
from app.services.programs.programs import create_program
from tests.conftest import Program, assert_ledger_consistent

# Saturday 21 November 2026, 10:00 UTC.
SATURDAY = datetime(2026, 11, 21, 10, tzinfo=UTC)

MakeProgram = Callable[[str], Awaitable[Program]]


@pytest.fixture
async def make_program(client: httpx.AsyncClient, database_url: str) -> AsyncIterator[MakeProgram]:
    """Programs in other currencies than the default CNY; audited after the test."""
    made: list[Program] = []

    async def make(currency: str) -> Program:
        program_id, key = await create_program(f"{currency} Shop", currency)
        made.append(Program(program_id, key, client))
        return made[-1]

    yield make
    for program in made:
        await assert_ledger_consistent(program.id)


async def quote(program: Program, **body: Any) -> dict[str, Any]:
    payload = {"member_id": "m1", "currency": "CNY", **body}
    response = await program.post("/v1/orders/quote", json=payload)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    assert result["points"] == sum(line["points"] for line in result["breakdown"])
    return result


async def add_rule(program: Program, **body: Any) -> int:
    payload = {"name": "campaign", "active": True, "conditions": {}, **body}
    response = await program.post("/v1/earn-rules", json=payload)
    assert response.status_code == 201, response.text
    rule_id: int = response.json()["id"]
    return rule_id


async def set_program(program: Program, **settings: Any) -> None:
    response = await program.patch("/v1/program", json=settings)
    assert response.status_code == 200, response.text


class TestBaseLine:
    async def test_cny_amount_at_the_default_rate(self, program: Program) -> None:
        await program.member("m1")
        result = await quote(program, amount=25999)
        assert result == {
            "points": 259,
            "breakdown": [{"source": "base", "points": 259}],
            "max_redeemable_points": 0,
        }

    async def test_fractional_earn_rate_is_floored(self, program: Program) -> None:
        await set_program(program, earn_rate="1.5")
        await program.member("m1")
        # 9.99 CNY x 1.5 = 14.985 -> 14.
        result = await quote(program, amount=999)
        assert result["breakdown"] == [{"source": "base", "points": 14}]

    async def test_jpy_has_no_minor_units(self, make_program: MakeProgram) -> None:
        program = await make_program("JPY")
        await program.member("m1")
        result = await quote(program, amount=1234, currency="JPY")
        assert result["breakdown"] == [{"source": "base", "points": 1234}]

    async def test_kwd_has_three_minor_units(self, make_program: MakeProgram) -> None:
        program = await make_program("KWD")
        await set_program(program, earn_rate="1.5")
        await program.member("m1")
        # 12.345 KWD x 1.5 = 18.5175 -> 18.
        result = await quote(program, amount=12345, currency="KWD")
        assert result["breakdown"] == [{"source": "base", "points": 18}]

    async def test_zero_point_base_is_omitted(self, program: Program) -> None:
        await program.member("m1")
        result = await quote(program, amount=99)
        assert result == {"points": 0, "breakdown": [], "max_redeemable_points": 0}


class TestMultiplierRule:
    async def test_adds_base_times_multiplier_minus_one(self, program: Program) -> None:
        await program.member("m1")
        rule_id = await add_rule(program, effect={"multiplier": "1.5"})
        # base 259; 259 x 0.5 = 129.5 -> 129.
        result = await quote(program, amount=25999)
        assert result["breakdown"] == [
            {"source": "base", "points": 259},
            {"source": f"rule:{rule_id}", "points": 129},
        ]
        assert result["points"] == 388

    async def test_zero_point_rule_line_is_omitted(self, program: Program) -> None:
        await program.member("m1")
        await add_rule(program, effect={"multiplier": "1.1"})
        # base 5; 5 x 0.1 = 0.5 -> 0, so no rule line.
        result = await quote(program, amount=500)
        assert result["breakdown"] == [{"source": "base", "points": 5}]

    async def test_rules_stack_in_id_order(self, program: Program) -> None:
        await program.member("m1")
        first = await add_rule(program, effect={"bonus_points": 7})
        second = await add_rule(program, effect={"multiplier": "3"})
        result = await quote(program, amount=1000)
        assert result["breakdown"] == [
            {"source": "base", "points": 10},
            {"source": f"rule:{first}", "points": 7},
            {"source": f"rule:{second}", "points": 20},
        ]


class TestCategoryRule:
    ITEMS = [
        {"sku": "TEA-01", "category": "tea", "quantity": 2, "unit_price": 8850},
        {"sku": "CUP-02", "category": "ware", "quantity": 1, "unit_price": 8300},
        {"sku": "GIFT", "quantity": 1, "unit_price": 0},
    ]

    async def test_multiplies_only_the_matching_items(self, program: Program) -> None:
        await program.member("m1")
        rule_id = await add_rule(
            program, conditions={"categories": ["tea"]}, effect={"multiplier": "2"}
        )
        # Order base floor(260.00) = 260; tea base floor(177.00) = 177; x (2 - 1).
        result = await quote(program, amount=26000, items=self.ITEMS)
        assert result["breakdown"] == [
            {"source": "base", "points": 260},
            {"source": f"rule:{rule_id}", "points": 177},
        ]

    async def test_matching_items_are_floored_with_the_earn_rate(self, program: Program) -> None:
        await set_program(program, earn_rate="1.5")
        await program.member("m1")
        rule_id = await add_rule(
            program, conditions={"categories": ["tea"]}, effect={"multiplier": "3"}
        )
        # Tea 177.00 CNY x 1.5 = 265.5 -> 265, then x (3 - 1) = 530 (not 531).
        # Order 260.01 CNY x 1.5 = 390.015 -> 390.
        result = await quote(program, amount=26001, items=self.ITEMS)
        assert result["breakdown"] == [
            {"source": "base", "points": 390},
            {"source": f"rule:{rule_id}", "points": 530},
        ]

    async def test_no_matching_item_means_no_line(self, program: Program) -> None:
        await program.member("m1")
        await add_rule(program, conditions={"categories": ["coffee"]}, effect={"bonus_points": 9})
        result = await quote(program, amount=26000, items=self.ITEMS)
        assert result["breakdown"] == [{"source": "base", "points": 260}]

    async def test_no_items_means_no_line(self, program: Program) -> None:
        await program.member("m1")
        await add_rule(program, conditions={"categories": ["tea"]}, effect={"multiplier": "2"})
        without = await quote(program, amount=26000)
        empty = await quote(program, amount=26000, items=[])
        assert without["breakdown"] == [{"source": "base", "points": 260}]
        assert empty["breakdown"] == without["breakdown"]

    async def test_bonus_with_categories_needs_a_matching_item(self, program: Program) -> None:
        await program.member("m1")
        rule_id = await add_rule(
            program, conditions={"categories": ["ware"]}, effect={"bonus_points": 30}
        )
        result = await quote(program, amount=26000, items=self.ITEMS)
        assert result["breakdown"][-1] == {"source": f"rule:{rule_id}", "points": 30}

    async def test_items_beyond_the_amount_earn_no_more_than_the_order(
        self, program: Program
    ) -> None:
        await program.member("m1")
        rule_id = await add_rule(
            program, conditions={"categories": ["tea"]}, effect={"multiplier": "2"}
        )
        # A discounted order: 177.00 CNY of tea, but the order comes to 100.00 CNY.
        result = await quote(program, amount=10000, items=self.ITEMS)
        assert result["breakdown"] == [
            {"source": "base", "points": 100},
            {"source": f"rule:{rule_id}", "points": 100},
        ]


class TestBonusRule:
    async def test_adds_fixed_points(self, program: Program) -> None:
        await program.member("m1")
        rule_id = await add_rule(program, effect={"bonus_points": 50})
        result = await quote(program, amount=1000)
        assert result["breakdown"] == [
            {"source": "base", "points": 10},
            {"source": f"rule:{rule_id}", "points": 50},
        ]

    async def test_applies_when_the_base_is_zero(self, program: Program) -> None:
        await program.member("m1")
        rule_id = await add_rule(program, effect={"bonus_points": 50})
        result = await quote(program, amount=0)
        assert result["breakdown"] == [{"source": f"rule:{rule_id}", "points": 50}]


class TestMinAmount:
    async def test_compares_with_the_order_amount(self, program: Program) -> None:
        await program.member("m1")
        rule_id = await add_rule(
            program, conditions={"min_amount": 10000}, effect={"bonus_points": 20}
        )
        below = await quote(program, amount=9999)
        at = await quote(program, amount=10000)
        assert below["breakdown"] == [{"source": "base", "points": 99}]
        assert at["breakdown"] == [
            {"source": "base", "points": 100},
            {"source": f"rule:{rule_id}", "points": 20},
        ]


class TestTiersCondition:
    async def test_member_without_tier_does_not_match(self, program: Program) -> None:
        await program.member("m1")
        await add_rule(program, conditions={"tiers": ["gold"]}, effect={"bonus_points": 20})
        result = await quote(program, amount=1000)
        assert result["breakdown"] == [{"source": "base", "points": 10}]


class TestWeekdays:
    async def test_uses_the_program_time_zone(self, program: Program) -> None:
        await set_program(program, timezone="Asia/Shanghai")
        await program.member("m1")
        rule_id = await add_rule(program, conditions={"weekdays": [7]}, effect={"bonus_points": 5})
        # Saturday 20:00 UTC is Sunday 04:00 in Shanghai.
        clock.freeze(SATURDAY.replace(hour=20))
        sunday_local = await quote(program, amount=1000)
        # Saturday 10:00 UTC is Saturday 18:00 in Shanghai.
        clock.freeze(SATURDAY)
        saturday_local = await quote(program, amount=1000)
        assert sunday_local["breakdown"][-1] == {"source": f"rule:{rule_id}", "points": 5}
        assert saturday_local["breakdown"] == [{"source": "base", "points": 10}]

    async def test_any_listed_day_matches(self, program: Program) -> None:
        await program.member("m1")
        rule_id = await add_rule(
            program, conditions={"weekdays": [1, 6]}, effect={"bonus_points": 5}
        )
        clock.freeze(SATURDAY)
        saturday = await quote(program, amount=1000)
        clock.freeze(SATURDAY + timedelta(days=1))
        sunday = await quote(program, amount=1000)
        assert saturday["breakdown"][-1] == {"source": f"rule:{rule_id}", "points": 5}
        assert sunday["breakdown"] == [{"source": "base", "points": 10}]


class TestBirthdayMonth:
    async def test_matches_the_members_birthday_month_in_program_time(
        self, program: Program
    ) -> None:
        await set_program(program, timezone="Asia/Shanghai")
        await program.member("may", birthday="1990-05-17")
        await program.member("april", birthday="1988-04-02")
        rule_id = await add_rule(
            program, conditions={"birthday_month": True}, effect={"multiplier": "2"}
        )
        # 30 April 20:00 UTC is already 1 May in Shanghai.
        clock.freeze(datetime(2026, 4, 30, 20, tzinfo=UTC))
        may = await quote(program, member_id="may", amount=1000)
        april = await quote(program, member_id="april", amount=1000)
        assert may["breakdown"] == [
            {"source": "base", "points": 10},
            {"source": f"rule:{rule_id}", "points": 10},
        ]
        assert april["breakdown"] == [{"source": "base", "points": 10}]

    async def test_member_without_birthday_does_not_match(self, program: Program) -> None:
        await program.member("m1")
        await add_rule(program, conditions={"birthday_month": True}, effect={"bonus_points": 9})
        result = await quote(program, amount=1000)
        assert result["breakdown"] == [{"source": "base", "points": 10}]

    async def test_false_is_no_condition(self, program: Program) -> None:
        await program.member("m1")
        rule_id = await add_rule(
            program, conditions={"birthday_month": False}, effect={"bonus_points": 9}
        )
        result = await quote(program, amount=1000)
        assert result["breakdown"][-1] == {"source": f"rule:{rule_id}", "points": 9}


class TestRuleSchedule:
    async def test_inactive_rule_is_ignored(self, program: Program) -> None:
        await program.member("m1")
        await add_rule(program, active=False, effect={"bonus_points": 5})
        result = await quote(program, amount=1000)
        assert result["breakdown"] == [{"source": "base", "points": 10}]

    async def test_deactivated_rule_stops_applying(self, program: Program) -> None:
        await program.member("m1")
        rule_id = await add_rule(program, effect={"bonus_points": 5})
        assert len((await quote(program, amount=1000))["breakdown"]) == 2
        await program.patch(f"/v1/earn-rules/{rule_id}", json={"active": False})
        result = await quote(program, amount=1000)
        assert result["breakdown"] == [{"source": "base", "points": 10}]

    async def test_rule_not_yet_started_is_ignored(self, program: Program) -> None:
        await program.member("m1")
        await add_rule(program, starts_at="2026-11-21T10:00:01+00:00", effect={"bonus_points": 5})
        clock.freeze(SATURDAY)
        result = await quote(program, amount=1000)
        assert result["breakdown"] == [{"source": "base", "points": 10}]

    async def test_rule_applies_from_its_start(self, program: Program) -> None:
        await program.member("m1")
        rule_id = await add_rule(
            program, starts_at="2026-11-21T18:00:00+08:00", effect={"bonus_points": 5}
        )
        clock.freeze(SATURDAY)
        result = await quote(program, amount=1000)
        assert result["breakdown"][-1] == {"source": f"rule:{rule_id}", "points": 5}

    async def test_ended_rule_is_ignored(self, program: Program) -> None:
        await program.member("m1")
        # ends_at is exclusive: at that very instant the rule has ended.
        await add_rule(
            program,
            starts_at="2026-11-01T00:00:00+00:00",
            ends_at="2026-11-21T10:00:00+00:00",
            effect={"bonus_points": 5},
        )
        clock.freeze(SATURDAY)
        result = await quote(program, amount=1000)
        assert result["breakdown"] == [{"source": "base", "points": 10}]

    async def test_running_rule_applies(self, program: Program) -> None:
        await program.member("m1")
        rule_id = await add_rule(
            program,
            starts_at="2026-11-01T00:00:00+00:00",
            ends_at="2026-11-21T10:00:01+00:00",
            effect={"bonus_points": 5},
        )
        clock.freeze(SATURDAY)
        result = await quote(program, amount=1000)
        assert result["breakdown"][-1] == {"source": f"rule:{rule_id}", "points": 5}

    async def test_another_programs_rule_never_applies(
        self, program: Program, other_program: Program
    ) -> None:
        await program.member("m1")
        await add_rule(other_program, effect={"bonus_points": 5})
        result = await quote(program, amount=1000)
        assert result["breakdown"] == [{"source": "base", "points": 10}]


class TestMaxRedeemable:
    async def test_is_the_available_balance(self, program: Program) -> None:
        await program.member("m1", points=120)
        await program.post("/v1/members/m1/points/redeem", json={"points": 20})
        result = await quote(program, amount=1000)
        assert result["max_redeemable_points"] == 100


class TestErrors:
    async def test_currency_mismatch(self, program: Program) -> None:
        await program.member("m1")
        response = await program.post(
            "/v1/orders/quote", json={"member_id": "m1", "amount": 1000, "currency": "USD"}
        )
        assert response.status_code == 422
        assert response.json()["code"] == "currency_mismatch"
        assert response.headers["content-type"] == "application/problem+json"

    async def test_unknown_member(self, program: Program) -> None:
        response = await program.post(
            "/v1/orders/quote", json={"member_id": "ghost", "amount": 1000, "currency": "CNY"}
        )
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"

    async def test_another_programs_member(self, program: Program, other_program: Program) -> None:
        await other_program.member("m1")
        response = await program.post(
            "/v1/orders/quote", json={"member_id": "m1", "amount": 1000, "currency": "CNY"}
        )
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"

    async def test_unknown_field(self, program: Program) -> None:
        await program.member("m1")
        response = await program.post(
            "/v1/orders/quote",
            json={"member_id": "m1", "amount": 1000, "currency": "CNY", "points": 5},
        )
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"

    async def test_needs_points_read(self, program: Program) -> None:
        await program.member("m1")
        body = {"member_id": "m1", "amount": 1000, "currency": "CNY"}
        writer = await program.key_with("points:write")
        reader = await program.key_with("points:read")
        refused = await program.post("/v1/orders/quote", key=writer, json=body)
        allowed = await program.post("/v1/orders/quote", key=reader, json=body)
        assert refused.status_code == 403
        assert refused.json()["code"] == "forbidden"
        assert allowed.status_code == 200


class TestWritesNothing:
    # A keyed quote stores its answer for replay (idempotency_keys), and nothing else.
    TABLES = ("point_entries", "point_lots", "events", "orders", "holds")

    async def _counts(self, program_id: int) -> dict[str, int]:
        async with db.read_only() as conn:
            return {
                table: (
                    await conn.execute(
                        text(f"SELECT count(*) FROM {table} WHERE program_id = :id"),
                        {"id": program_id},
                    )
                ).scalar_one()
                for table in self.TABLES
            }

    async def test_nothing_changes(self, program: Program) -> None:
        await program.member("m1", points=40)
        await add_rule(program, effect={"bonus_points": 5})
        before_counts = await self._counts(program.id)
        before_balance = await program.balance("m1")
        response = await program.post(
            "/v1/orders/quote",
            json={"member_id": "m1", "amount": 1000, "currency": "CNY"},
            headers={"Idempotency-Key": "quote-1"},
        )
        assert response.status_code == 200
        assert response.json()["points"] == 15
        assert await self._counts(program.id) == before_counts
        assert await program.balance("m1") == before_balance
        again = await program.post(
            "/v1/orders/quote",
            json={"member_id": "m1", "amount": 1000, "currency": "CNY"},
            headers={"Idempotency-Key": "quote-1"},
        )
        assert again.headers["Idempotency-Replayed"] == "true"
        assert again.json() == response.json()
