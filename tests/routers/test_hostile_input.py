"""Input an attacker or a broken client sends: every such request is a 422 (api.md
Conventions), never a 500, and nothing of it is stored."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app import db
from app.schemas.common import MAX_JSON_DEPTH
from tests.conftest import Program
from tests.routers.test_errors import assert_invalid, assert_problem


def nested(depth: int) -> bytes:
    """A JSON value of ``depth`` nested arrays."""
    return b"[" * depth + b"]" * depth


async def post_raw(program: Program, method: str, path: str, content: bytes) -> httpx.Response:
    return await program.request(
        method, path, content=content, headers={"Content-Type": "application/json"}
    )


# Routes that read a JSON body: the lean checkout routes (app/routers/lean.py) and FastAPI's
# own body handling.
BODY_ROUTES = [
    ("POST", "/v1/members/m1/points/earn"),
    ("POST", "/v1/members/m1/points/redeem"),
    ("POST", "/v1/members/m1/holds"),
    ("POST", "/v1/holds/1/capture"),
    ("POST", "/v1/orders"),
    ("PUT", "/v1/members/m2"),
    ("PATCH", "/v1/program"),
    ("POST", "/v1/tiers"),
    ("POST", "/v1/api-keys"),
    ("POST", "/v1/members/m1/feedback"),
    ("POST", "/v1/orders/quote"),
]


class TestBodyNotUtf8:
    @pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
    @pytest.mark.parametrize(
        "content", [b'{"name": "\x80"}', b"\x80", b"\xc3\x28"], ids=["in-string", "bare", "cut"]
    )
    async def test_is_a_validation_error(
        self, program: Program, method: str, path: str, content: bytes
    ) -> None:
        await program.member("m1")
        assert_invalid(await post_raw(program, method, path, content))
        assert (await program.get("/v1/members/m2")).status_code == 404


class TestNulInPathOrQuery:
    @pytest.mark.parametrize(
        "path",
        [
            "/v1/orders/a%00b",
            "/v1/members/a%00b",
            "/v1/holds/a%00b",
            "/v1/earn-rules/a%00b",
            "/v1/tiers/a%00b",
            "/v1/referral-codes/a%00b",
            "/v1/members?tier=%00",
            "/v1/members?cursor=a%00",
            "/v1/referrals?referrer_id=%00",
            "/v1/events?type=%00",
        ],
    )
    async def test_get_is_a_validation_error(self, program: Program, path: str) -> None:
        assert_invalid(await program.get(path))

    async def test_post_is_a_validation_error_and_writes_nothing(self, program: Program) -> None:
        await program.member("m1")
        response = await program.post(
            "/v1/orders/a%00b/refunds", json={"refund_id": "r1", "amount": 1}
        )
        assert_invalid(response)

    async def test_nul_in_idempotency_key_of_a_lean_route(self, program: Program) -> None:
        await program.member("m1")
        response = await program.post(
            "/v1/members/m1/points/earn",
            json={"points": 5, "reason": "x"},
            headers={"Idempotency-Key": "a\x00b"},
        )
        assert_invalid(response)
        assert (await program.balance("m1"))["available"] == 0

    async def test_nul_in_idempotency_key(self, program: Program) -> None:
        await program.member("m1")
        response = await program.post(
            "/v1/tiers",
            json={"key": "gold", "name": "Gold", "threshold": 5},
            headers={"Idempotency-Key": "a\x00b"},
        )
        assert_invalid(response)
        assert (await program.get("/v1/tiers")).json()["data"] == []


class TestDeepJson:
    @pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
    async def test_hundred_thousand_levels(self, program: Program, method: str, path: str) -> None:
        await program.member("m1")
        assert_invalid(await post_raw(program, method, path, nested(100_000)))

    async def test_deep_value_inside_a_valid_body(self, program: Program) -> None:
        content = b'{"metadata": {"a": ' + nested(100_000) + b"}}"
        assert_invalid(await post_raw(program, "PUT", "/v1/members/m2", content))

    async def test_metadata_past_the_limit_is_refused(self, program: Program) -> None:
        # The body is level 1, metadata level 2, its value level 3.
        content = b'{"metadata": {"a": ' + nested(MAX_JSON_DEPTH - 1) + b"}}"
        errors = assert_invalid(await post_raw(program, "PUT", "/v1/members/m2", content))
        assert any(str(MAX_JSON_DEPTH) in error["msg"] for error in errors)
        assert (await program.get("/v1/members/m2")).status_code == 404

    async def test_metadata_at_the_limit_is_kept(self, program: Program) -> None:
        content = b'{"metadata": {"a": ' + nested(MAX_JSON_DEPTH - 2) + b"}}"
        response = await post_raw(program, "PUT", "/v1/members/m2", content)
        assert response.status_code == 201, response.text
        fetched = await program.get("/v1/members/m2")
        assert fetched.status_code == 200
        value: Any = fetched.json()["metadata"]["a"]
        depth = 0
        while isinstance(value, list):
            depth += 1
            value = value[0] if value else None
        assert depth == MAX_JSON_DEPTH - 2

    async def test_nul_in_a_nested_metadata_string(self, program: Program) -> None:
        response = await program.put("/v1/members/m2", json={"metadata": {"a": [{"b": "x\x00y"}]}})
        assert_invalid(response)


def order(order_id: str, occurred_at: str) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "member_id": "m1",
        "amount": 100,
        "currency": "CNY",
        "occurred_at": occurred_at,
    }


class TestTimeBounds:
    @pytest.mark.parametrize(
        "occurred_at",
        [
            "0001-01-01T00:00:00+14:00",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59-05:00",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:30:00+01:00",
            "2026-05-01T10:00:00",
            "2026-05-01",
            "1714557600",
        ],
        ids=[
            "year-1-east",
            "year-1-utc",
            "year-10000-in-utc",
            "before-1970",
            "1969-in-utc",
            "no-offset",
            "date-only",
            "number-text",
        ],
    )
    async def test_order_time_out_of_range(self, program: Program, occurred_at: str) -> None:
        await program.member("m1")
        assert_invalid(await program.post("/v1/orders", json=order("o1", occurred_at)))
        assert_problem(await program.get("/v1/orders/o1"), 404, "not_found")

    async def test_bare_number_is_not_a_time(self, program: Program) -> None:
        await program.member("m1")
        body = {**order("o1", ""), "occurred_at": 1714557600}
        assert_invalid(await program.post("/v1/orders", json=body))

    @pytest.mark.parametrize(
        "occurred_at", ["1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2026-05-01T10:00:00+08:00"]
    )
    async def test_bounds_are_accepted_and_read_back_as_rfc3339(
        self, program: Program, occurred_at: str
    ) -> None:
        from datetime import datetime

        await program.member("m1")
        response = await program.post("/v1/orders", json=order("o1", occurred_at))
        assert response.status_code == 201, response.text
        fetched = (await program.get("/v1/orders/o1")).json()
        assert datetime.fromisoformat(fetched["occurred_at"]) == datetime.fromisoformat(occurred_at)
        datetime.fromisoformat(fetched["available_at"])

    @pytest.mark.parametrize("birthday", [0, 86400, "1990-5-17", "1990-05-17T00:00:00Z"])
    async def test_birthday_is_a_date_text(self, program: Program, birthday: object) -> None:
        assert_invalid(await program.put("/v1/members/m2", json={"birthday": birthday}))
        assert (await program.get("/v1/members/m2")).status_code == 404

    @pytest.mark.parametrize("field", ["starts_at", "ends_at"])
    async def test_earn_rule_time_out_of_range(self, program: Program, field: str) -> None:
        rule = {
            "name": "r",
            "active": True,
            "conditions": {},
            "effect": {"bonus_points": 5},
            field: "0001-01-01T00:00:00+14:00",
        }
        assert_invalid(await program.post("/v1/earn-rules", json=rule))

    @pytest.mark.parametrize("query", ["to=0.5", "from=1714557600", "to=0001-01-01T00:00:00Z"])
    async def test_insights_period_is_rfc3339_only(self, program: Program, query: str) -> None:
        assert_invalid(await program.get(f"/v1/insights/overview?{query}"))


class TestCursorsAreOnlyOurs:
    @pytest.mark.parametrize(
        "path",
        [
            "/v1/members",
            "/v1/members/m1/points/transactions",
            "/v1/referrals",
            "/v1/earn-rules",
        ],
    )
    @pytest.mark.parametrize(
        "cursor", ['" OR ""="', "garbage", "MQ=", "MTA=", "LTE", "+1", " MQ"], ids=repr
    )
    async def test_foreign_cursor_is_a_validation_error(
        self, program: Program, path: str, cursor: str
    ) -> None:
        await program.member("m1", points=5)
        response = await program.get(path, params={"cursor": cursor})
        assert_invalid(response)

    async def test_our_cursor_pages_on(self, program: Program) -> None:
        for index in range(3):
            await program.member(f"m{index}")
        first = (await program.get("/v1/members", params={"limit": 2})).json()
        assert first["next_cursor"]
        rest = await program.get("/v1/members", params={"limit": 2, "cursor": first["next_cursor"]})
        assert rest.status_code == 200
        assert len(rest.json()["data"]) == 1


X10_RULE = {"name": "x10", "active": True, "conditions": {}, "effect": {"multiplier": "10"}}


class TestPointsLimit:
    async def _program_earning(self, program: Program, earn_rate: str) -> None:
        response = await program.patch("/v1/program", json={"earn_rate": earn_rate})
        assert response.status_code == 200, response.text

    async def test_order_over_the_limit_is_refused(self, program: Program) -> None:
        await program.member("m1")
        await self._program_earning(program, "1000")
        body = {"order_id": "big", "member_id": "m1", "amount": 10**12, "currency": "CNY"}
        response = await program.post("/v1/orders", json=body)
        assert_problem(response, 422, "points_limit_exceeded")
        quote = {k: v for k, v in body.items() if k != "order_id"}
        assert_problem(
            await program.post("/v1/orders/quote", json=quote), 422, "points_limit_exceeded"
        )
        assert (await program.balance("m1"))["available"] == 0

    async def test_order_at_the_limit_is_earned(self, program: Program) -> None:
        await program.member("m1")
        # 10^8 major units at 10 points each is exactly 10^9 points.
        await self._program_earning(program, "10")
        body = {"order_id": "big", "member_id": "m1", "amount": 10**10, "currency": "CNY"}
        response = await program.post("/v1/orders", json=body)
        assert response.status_code == 201, response.text
        assert response.json()["points_earned"] == 10**9

    async def test_rule_that_pushes_past_the_limit(self, program: Program) -> None:
        await program.member("m1")
        await self._program_earning(program, "10")
        rule = await program.post("/v1/earn-rules", json=X10_RULE)
        assert rule.status_code == 201, rule.text
        body = {"order_id": "o1", "member_id": "m1", "amount": 10**10, "currency": "CNY"}
        assert_problem(await program.post("/v1/orders", json=body), 422, "points_limit_exceeded")

    async def test_switching_the_rule_off_is_seen_at_once(self, program: Program) -> None:
        # The process caches a program's earning setup; an order the stale setup would refuse
        # must be decided on the current one.
        await program.member("m1")
        await self._program_earning(program, "10")
        rule = (await program.post("/v1/earn-rules", json=X10_RULE)).json()
        body = {"order_id": "o1", "member_id": "m1", "amount": 10**10, "currency": "CNY"}
        assert_problem(await program.post("/v1/orders", json=body), 422, "points_limit_exceeded")
        # Switched off behind this process's back, as another process would.
        async with db.transaction() as conn:
            await conn.raw.execute(
                "UPDATE earn_rules SET active = false WHERE id = $1", int(rule["id"])
            )
            await conn.raw.execute(
                "UPDATE programs SET config_version = config_version + 1 WHERE id = $1",
                program.id,
            )
        response = await program.post("/v1/orders", json=body)
        assert response.status_code == 201, response.text
        assert response.json()["points_earned"] == 10**9
        small = {"order_id": "o2", "member_id": "m1", "amount": 100, "currency": "CNY"}
        assert (await program.post("/v1/orders", json=small)).status_code == 201
