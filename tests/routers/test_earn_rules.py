"""Earn rules (campaigns) through HTTP: create, list, read, change, delete, and validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.clock import clock
from app.services.checkout.earn_rules import MAX_ACTIVE_RULES
from tests.conftest import Program

RULE: dict[str, Any] = {
    "name": "Double tea at weekends",
    "active": True,
    "starts_at": "2026-12-01T00:00:00+08:00",
    "ends_at": "2027-01-01T00:00:00+08:00",
    "conditions": {"categories": ["tea"], "weekdays": [6, 7]},
    "effect": {"multiplier": "2"},
}


def rule(**changes: Any) -> dict[str, Any]:
    return {**RULE, **changes}


async def create(program: Program, body: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    response = await program.post("/v1/earn-rules", json=body or RULE, **kwargs)
    assert response.status_code == 201, response.text
    return response.json()


class TestCreate:
    async def test_returns_the_rule(self, program: Program) -> None:
        clock.freeze(datetime(2026, 11, 22, 7, 30, tzinfo=UTC))
        response = await program.post("/v1/earn-rules", json=RULE)
        assert response.status_code == 201
        created = response.json()
        assert isinstance(created["id"], int)
        assert created == {
            "id": created["id"],
            "name": "Double tea at weekends",
            "active": True,
            "starts_at": "2026-11-30T16:00:00+00:00",
            "ends_at": "2026-12-31T16:00:00+00:00",
            "conditions": {
                "categories": ["tea"],
                "min_amount": None,
                "tiers": None,
                "weekdays": [6, 7],
                "birthday_month": None,
            },
            "effect": {"multiplier": "2", "bonus_points": None},
            "created_at": "2026-11-22T07:30:00+00:00",
            "updated_at": "2026-11-22T07:30:00+00:00",
        }

    async def test_is_readable_afterwards(self, program: Program) -> None:
        created = await create(program)
        fetched = await program.get(f"/v1/earn-rules/{created['id']}")
        assert fetched.status_code == 200
        assert fetched.json() == created

    async def test_multiplier_is_echoed_as_plain_decimal_string(self, program: Program) -> None:
        fractional = await create(program, rule(effect={"multiplier": "1.50"}))
        exponent = await create(program, rule(effect={"multiplier": "1E+1"}))
        integer = await create(program, rule(effect={"multiplier": 3}))
        assert fractional["effect"]["multiplier"] == "1.5"
        assert exponent["effect"]["multiplier"] == "10"
        assert integer["effect"]["multiplier"] == "3"

    async def test_bonus_rule_with_every_condition(self, program: Program) -> None:
        body = {
            "name": "Birthday gold bonus",
            "active": False,
            "conditions": {
                "categories": ["tea", "ware"],
                "min_amount": 10000,
                "tiers": ["gold"],
                "weekdays": [1, 3],
                "birthday_month": True,
            },
            "effect": {"bonus_points": 500},
        }
        created = await create(program, body)
        assert created["active"] is False
        assert created["starts_at"] is None
        assert created["ends_at"] is None
        assert created["conditions"] == body["conditions"]
        assert created["effect"] == {"multiplier": None, "bonus_points": 500}

    async def test_rule_without_conditions(self, program: Program) -> None:
        created = await create(program, rule(conditions={}, starts_at=None, ends_at=None))
        assert set(created["conditions"].values()) == {None}

    async def test_needs_admin(self, program: Program) -> None:
        key = await program.key_with("points:read", "points:write", "members:write")
        response = await program.post("/v1/earn-rules", key=key, json=RULE)
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"

    async def test_needs_credentials(self, program: Program) -> None:
        response = await program.client.post("/v1/earn-rules", json=RULE)
        assert response.status_code == 401
        assert response.json()["code"] == "unauthorized"


class TestCreateIdempotency:
    async def test_repeat_returns_the_first_rule(self, program: Program) -> None:
        headers = {"Idempotency-Key": "rule-1"}
        first = await program.post("/v1/earn-rules", json=RULE, headers=headers)
        second = await program.post("/v1/earn-rules", json=RULE, headers=headers)
        assert (first.status_code, second.status_code) == (201, 201)
        assert second.json() == first.json()
        assert second.headers["Idempotency-Replayed"] == "true"
        assert "Idempotency-Replayed" not in first.headers
        listed = (await program.get("/v1/earn-rules")).json()["data"]
        assert [r["id"] for r in listed] == [first.json()["id"]]

    async def test_same_key_other_body_is_refused(self, program: Program) -> None:
        headers = {"Idempotency-Key": "rule-2"}
        await program.post("/v1/earn-rules", json=RULE, headers=headers)
        response = await program.post("/v1/earn-rules", json=rule(name="Another"), headers=headers)
        assert response.status_code == 422
        assert response.json()["code"] == "idempotency_key_reused"
        assert len((await program.get("/v1/earn-rules")).json()["data"]) == 1


INVALID_BODIES: dict[str, dict[str, Any]] = {
    "unknown_field": rule(priority=1),
    "unknown_condition": rule(conditions={"channel": "web"}),
    "unknown_effect_field": rule(effect={"multiplier": "2", "cap": 100}),
    "both_effects": rule(effect={"multiplier": "2", "bonus_points": 10}),
    "no_effect": rule(effect={}),
    "effect_only_nulls": rule(effect={"multiplier": None, "bonus_points": None}),
    "missing_effect": {k: v for k, v in RULE.items() if k != "effect"},
    "missing_conditions": {k: v for k, v in RULE.items() if k != "conditions"},
    "missing_name": {k: v for k, v in RULE.items() if k != "name"},
    "missing_active": {k: v for k, v in RULE.items() if k != "active"},
    "empty_name": rule(name=""),
    "name_too_long": rule(name="x" * 201),
    "active_as_string": rule(active="true"),
    "conditions_null": rule(conditions=None),
    "multiplier_float": rule(effect={"multiplier": 2.0}),
    "multiplier_one": rule(effect={"multiplier": "1"}),
    "multiplier_below_one": rule(effect={"multiplier": "0.5"}),
    "multiplier_above_ten": rule(effect={"multiplier": "10.000001"}),
    "multiplier_not_a_number": rule(effect={"multiplier": "double"}),
    "multiplier_nan": rule(effect={"multiplier": "NaN"}),
    "multiplier_too_many_decimals": rule(effect={"multiplier": "1.0000001"}),
    "multiplier_bool": rule(effect={"multiplier": True}),
    "bonus_zero": rule(effect={"bonus_points": 0}),
    "bonus_too_large": rule(effect={"bonus_points": 1_000_000_001}),
    "bonus_as_string": rule(effect={"bonus_points": "10"}),
    "bonus_as_float": rule(effect={"bonus_points": 10.0}),
    "categories_empty": rule(conditions={"categories": []}),
    "categories_too_many": rule(conditions={"categories": [f"c{i}" for i in range(51)]}),
    "categories_repeated": rule(conditions={"categories": ["tea", "tea"]}),
    "category_empty_string": rule(conditions={"categories": [""]}),
    "category_not_a_string": rule(conditions={"categories": [1]}),
    "tiers_empty": rule(conditions={"tiers": []}),
    "tiers_too_many": rule(conditions={"tiers": [f"t{i}" for i in range(51)]}),
    "tiers_repeated": rule(conditions={"tiers": ["gold", "gold"]}),
    "weekday_zero": rule(conditions={"weekdays": [0]}),
    "weekday_eight": rule(conditions={"weekdays": [8]}),
    "weekdays_repeated": rule(conditions={"weekdays": [1, 1]}),
    "weekday_as_string": rule(conditions={"weekdays": ["1"]}),
    "weekday_name": rule(conditions={"weekdays": ["monday"]}),
    "weekdays_empty": rule(conditions={"weekdays": []}),
    "birthday_month_as_string": rule(conditions={"birthday_month": "yes"}),
    "birthday_month_as_integer": rule(conditions={"birthday_month": 1}),
    "min_amount_negative": rule(conditions={"min_amount": -1}),
    "min_amount_too_large": rule(conditions={"min_amount": 10**12 + 1}),
    "min_amount_as_string": rule(conditions={"min_amount": "100"}),
    "min_amount_as_float": rule(conditions={"min_amount": 100.0}),
    "ends_at_equals_starts_at": rule(ends_at=RULE["starts_at"]),
    "ends_at_before_starts_at": rule(ends_at="2026-11-30T00:00:00+08:00"),
    "naive_starts_at": rule(starts_at="2026-12-01T00:00:00"),
    "naive_ends_at": rule(ends_at="2027-01-01T00:00:00"),
    "date_only_starts_at": rule(starts_at="2026-12-01"),
    "numeric_starts_at": rule(starts_at=1_700_000_000),
    "not_a_time": rule(ends_at="soon"),
}


class TestCreateValidation:
    @pytest.mark.parametrize("body", INVALID_BODIES.values(), ids=INVALID_BODIES.keys())
    async def test_is_refused(self, program: Program, body: dict[str, Any]) -> None:
        response = await program.post("/v1/earn-rules", json=body)
        assert response.status_code == 422, response.text
        problem = response.json()
        assert problem["code"] == "validation_error"
        assert problem["errors"]
        assert (await program.get("/v1/earn-rules")).json()["data"] == []

    async def test_boundaries_are_accepted(self, program: Program) -> None:
        body = rule(
            conditions={
                "categories": [f"c{i}" for i in range(50)],
                "tiers": [f"t{i}" for i in range(50)],
                "weekdays": [1, 2, 3, 4, 5, 6, 7],
                "min_amount": 10**12,
                "birthday_month": False,
            },
            effect={"multiplier": "10"},
        )
        created = await create(program, body)
        assert created["conditions"]["min_amount"] == 10**12
        assert created["conditions"]["birthday_month"] is False
        low = await create(program, rule(effect={"multiplier": "1.000001"}))
        bonus = await create(program, rule(effect={"bonus_points": 1_000_000_000}))
        assert low["effect"]["multiplier"] == "1.000001"
        assert bonus["effect"]["bonus_points"] == 1_000_000_000


class TestList:
    async def test_newest_first_with_cursor(self, program: Program) -> None:
        ids = [(await create(program, rule(name=f"r{i}")))["id"] for i in range(5)]
        first = await program.get("/v1/earn-rules", params={"limit": 2})
        assert first.status_code == 200
        page = first.json()
        assert [r["id"] for r in page["data"]] == [ids[4], ids[3]]
        second = (
            await program.get("/v1/earn-rules", params={"limit": 2, "cursor": page["next_cursor"]})
        ).json()
        third = (
            await program.get(
                "/v1/earn-rules", params={"limit": 2, "cursor": second["next_cursor"]}
            )
        ).json()
        assert [r["id"] for r in second["data"]] == [ids[2], ids[1]]
        assert [r["id"] for r in third["data"]] == [ids[0]]
        assert third["next_cursor"] is None

    async def test_default_limit_is_twenty(self, program: Program) -> None:
        for i in range(21):
            await create(program, rule(name=f"r{i}"))
        page = (await program.get("/v1/earn-rules")).json()
        assert len(page["data"]) == 20
        assert page["next_cursor"] is not None

    async def test_only_this_programs_rules(self, program: Program, other_program: Program) -> None:
        await create(other_program)
        page = (await program.get("/v1/earn-rules")).json()
        assert page == {"data": [], "next_cursor": None}

    async def test_bad_cursor_and_limit(self, program: Program) -> None:
        bad_cursor = await program.get("/v1/earn-rules", params={"cursor": "!!"})
        bad_limit = await program.get("/v1/earn-rules", params={"limit": 0})
        assert (bad_cursor.status_code, bad_limit.status_code) == (422, 422)
        assert bad_cursor.json()["code"] == "validation_error"

    async def test_needs_admin(self, program: Program) -> None:
        key = await program.key_with("points:read")
        response = await program.get("/v1/earn-rules", key=key)
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"


class TestGet:
    async def test_another_programs_rule_is_not_found(
        self, program: Program, other_program: Program
    ) -> None:
        theirs = await create(other_program)
        response = await program.get(f"/v1/earn-rules/{theirs['id']}")
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"

    async def test_unknown_id_is_not_found(self, program: Program) -> None:
        response = await program.get("/v1/earn-rules/999999999")
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"

    async def test_malformed_id_is_invalid(self, program: Program) -> None:
        for bad in ("abc", "0", str(2**63)):
            response = await program.get(f"/v1/earn-rules/{bad}")
            assert response.status_code == 422, bad
            assert response.json()["code"] == "validation_error"

    async def test_needs_admin(self, program: Program) -> None:
        created = await create(program)
        key = await program.key_with("members:read", "points:read")
        response = await program.get(f"/v1/earn-rules/{created['id']}", key=key)
        assert response.status_code == 403


class TestUpdate:
    async def test_changes_only_the_fields_sent(self, program: Program) -> None:
        clock.freeze(datetime(2026, 11, 1, tzinfo=UTC))
        created = await create(program)
        clock.advance(timedelta(hours=1))
        response = await program.patch(
            f"/v1/earn-rules/{created['id']}", json={"name": "Renamed", "active": False}
        )
        assert response.status_code == 200
        updated = response.json()
        assert updated == {
            **created,
            "name": "Renamed",
            "active": False,
            "updated_at": "2026-11-01T01:00:00+00:00",
        }
        assert (await program.get(f"/v1/earn-rules/{created['id']}")).json() == updated

    async def test_conditions_merge_and_null_removes_one(self, program: Program) -> None:
        created = await create(program)
        response = await program.patch(
            f"/v1/earn-rules/{created['id']}",
            json={"conditions": {"min_amount": 5000, "weekdays": None}},
        )
        assert response.status_code == 200
        assert response.json()["conditions"] == {
            "categories": ["tea"],
            "min_amount": 5000,
            "tiers": None,
            "weekdays": None,
            "birthday_month": None,
        }

    async def test_effect_is_replaced_whole(self, program: Program) -> None:
        created = await create(program)
        response = await program.patch(
            f"/v1/earn-rules/{created['id']}", json={"effect": {"bonus_points": 80}}
        )
        assert response.status_code == 200
        assert response.json()["effect"] == {"multiplier": None, "bonus_points": 80}

    async def test_null_removes_a_date_bound(self, program: Program) -> None:
        created = await create(program)
        response = await program.patch(f"/v1/earn-rules/{created['id']}", json={"ends_at": None})
        assert response.status_code == 200
        assert response.json()["ends_at"] is None
        assert response.json()["starts_at"] == created["starts_at"]

    async def test_empty_patch_changes_nothing(self, program: Program) -> None:
        created = await create(program)
        clock.advance(timedelta(minutes=5))
        response = await program.patch(f"/v1/earn-rules/{created['id']}", json={})
        assert response.status_code == 200
        assert response.json() == created

    async def test_another_programs_rule_is_not_found(
        self, program: Program, other_program: Program
    ) -> None:
        theirs = await create(other_program)
        response = await program.patch(f"/v1/earn-rules/{theirs['id']}", json={"name": "Mine"})
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
        unchanged = (await other_program.get(f"/v1/earn-rules/{theirs['id']}")).json()
        assert unchanged["name"] == RULE["name"]

    async def test_needs_admin(self, program: Program) -> None:
        created = await create(program)
        key = await program.key_with("points:write")
        response = await program.patch(
            f"/v1/earn-rules/{created['id']}", key=key, json={"active": False}
        )
        assert response.status_code == 403
        assert (await program.get(f"/v1/earn-rules/{created['id']}")).json()["active"] is True


INVALID_PATCHES: dict[str, dict[str, Any]] = {
    "unknown_field": {"priority": 1},
    "unknown_condition": {"conditions": {"channel": "web"}},
    "null_name": {"name": None},
    "null_active": {"active": None},
    "null_conditions": {"conditions": None},
    "null_effect": {"effect": None},
    "both_effects": {"effect": {"multiplier": "2", "bonus_points": 1}},
    "empty_effect": {"effect": {}},
    "multiplier_float": {"effect": {"multiplier": 1.5}},
    "weekday_out_of_range": {"conditions": {"weekdays": [8]}},
    "ends_before_stored_start": {"ends_at": "2026-11-01T00:00:00+08:00"},
    "starts_after_stored_end": {"starts_at": "2027-02-01T00:00:00+08:00"},
    "ends_before_sent_start": {
        "starts_at": "2027-03-01T00:00:00Z",
        "ends_at": "2027-02-01T00:00:00Z",
    },
    "naive_time": {"starts_at": "2026-12-02T00:00:00"},
}


class TestUpdateValidation:
    @pytest.mark.parametrize("patch", INVALID_PATCHES.values(), ids=INVALID_PATCHES.keys())
    async def test_is_refused(self, program: Program, patch: dict[str, Any]) -> None:
        created = await create(program)
        response = await program.patch(f"/v1/earn-rules/{created['id']}", json=patch)
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "validation_error"
        assert (await program.get(f"/v1/earn-rules/{created['id']}")).json() == created


class TestDelete:
    async def test_removes_the_rule(self, program: Program) -> None:
        created = await create(program)
        response = await program.delete(f"/v1/earn-rules/{created['id']}")
        assert response.status_code == 204
        assert response.content == b""
        assert (await program.get(f"/v1/earn-rules/{created['id']}")).status_code == 404
        assert (await program.delete(f"/v1/earn-rules/{created['id']}")).status_code == 404

    async def test_another_programs_rule_is_not_found(
        self, program: Program, other_program: Program
    ) -> None:
        theirs = await create(other_program)
        response = await program.delete(f"/v1/earn-rules/{theirs['id']}")
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
        assert (await other_program.get(f"/v1/earn-rules/{theirs['id']}")).status_code == 200

    async def test_needs_admin(self, program: Program) -> None:
        created = await create(program)
        key = await program.key_with("points:write", "points:read")
        response = await program.delete(f"/v1/earn-rules/{created['id']}", key=key)
        assert response.status_code == 403
        assert (await program.get(f"/v1/earn-rules/{created['id']}")).status_code == 200


class TestActiveRuleLimit:
    async def test_one_active_rule_too_many_is_refused(self, program: Program) -> None:
        for i in range(MAX_ACTIVE_RULES):
            await create(program, rule(name=f"r{i}"))
        refused = await program.post("/v1/earn-rules", json=rule(name="one more"))
        assert refused.status_code == 422
        assert refused.json()["code"] == "validation_error"
        inactive = await create(program, rule(name="parked", active=False))
        activate = await program.patch(f"/v1/earn-rules/{inactive['id']}", json={"active": True})
        assert activate.status_code == 422
        assert activate.json()["code"] == "validation_error"
