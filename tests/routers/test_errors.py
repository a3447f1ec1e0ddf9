"""Errors through HTTP: every failure is RFC 9457 problem+json with a machine-readable code,
input is checked strictly and bounded, and a 500 never carries internals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from app import db
from app.config import get_settings
from app.services.members import members
from tests.conftest import Program, assert_problem

SECRET = "secret-internal-detail"


def assert_invalid(response: httpx.Response) -> list[dict[str, Any]]:
    body = assert_problem(response, 422, "validation_error")
    errors: list[dict[str, Any]] = body["errors"]
    assert isinstance(errors, list) and errors
    for error in errors:
        assert isinstance(error["loc"], list)
        assert isinstance(error["msg"], str) and error["msg"]
    return errors


async def post_raw(program: Program, path: str, content: bytes) -> httpx.Response:
    return await program.post(path, content=content, headers={"Content-Type": "application/json"})


class TestMalformedBody:
    @pytest.mark.parametrize(
        "content",
        [b'{"points": 5,', b"{points: 5}", b'{"points": 5}}', b"\xff\xfe", b"nul"],
        ids=["truncated", "unquoted", "trailing", "not-utf8", "bare-word"],
    )
    async def test_malformed_json(self, program: Program, content: bytes) -> None:
        await program.member("m1")
        response = await post_raw(program, "/v1/members/m1/points/earn", content)
        assert_invalid(response)
        assert (await program.balance("m1"))["available"] == 0

    @pytest.mark.parametrize("content", [b"[5]", b'"5"', b"5", b"null", b"true"])
    async def test_json_that_is_not_an_object(self, program: Program, content: bytes) -> None:
        await program.member("m1")
        assert_invalid(await post_raw(program, "/v1/members/m1/points/earn", content))

    async def test_empty_body(self, program: Program) -> None:
        await program.member("m1")
        assert_invalid(await post_raw(program, "/v1/members/m1/points/earn", b""))

    async def test_missing_fields_are_each_named(self, program: Program) -> None:
        await program.member("m1")
        errors = assert_invalid(await post_raw(program, "/v1/members/m1/points/earn", b"{}"))
        named = {error["loc"][-1] for error in errors}
        assert {"points", "reason"} <= named

    async def test_unknown_field(self, program: Program) -> None:
        await program.member("m1")
        response = await program.post(
            "/v1/members/m1/points/earn",
            json={"points": 5, "reason": "x", "status": "available"},
        )
        errors = assert_invalid(response)
        assert any(error["loc"][-1] == "status" for error in errors)
        assert (await program.balance("m1"))["available"] == 0

    async def test_errors_do_not_echo_the_input(self, program: Program) -> None:
        await program.member("m1")
        response = await program.post(
            "/v1/members/m1/points/earn",
            json={"points": "4111-1111-1111-1111", "reason": "x"},
        )
        assert_invalid(response)
        assert "4111-1111-1111-1111" not in response.text


class TestUnknownRoute:
    @pytest.mark.parametrize("path", ["/v1/nothing", "/v2/program", "/v1/members/m1/nothing", "/"])
    async def test_not_found_problem(self, program: Program, path: str) -> None:
        assert_problem(await program.get(path), 404, "not_found")

    async def test_not_found_without_credentials(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get("/v1/nothing"), 404, "not_found")


class TestWrongMethod:
    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("DELETE", "/v1/program"),
            ("POST", "/v1/program"),
            ("PUT", "/v1/members"),
            ("POST", "/v1/members/m1"),
            ("GET", "/v1/members/m1/points/earn"),
            ("PATCH", "/v1/api-keys"),
        ],
    )
    async def test_method_not_allowed_problem(
        self, program: Program, method: str, path: str
    ) -> None:
        await program.member("m1")
        response = await program.request(method, path)
        assert_problem(response, 405, "method_not_allowed")
        assert response.headers.get("allow"), "a 405 names the methods that are allowed"

    @pytest.mark.parametrize(
        ("path", "methods"),
        [
            ("/v1/api-keys", {"GET", "POST"}),
            ("/v1/members/m1", {"GET", "PUT", "DELETE"}),
            ("/v1/tiers/gold", {"GET", "PATCH", "DELETE"}),
            # A literal segment is its own resource, not a value of the parameter beside it.
            ("/v1/tiers/preview", {"POST"}),
            ("/v1/orders/quote", {"POST"}),
        ],
    )
    async def test_allow_names_every_method_of_the_path(
        self, program: Program, path: str, methods: set[str]
    ) -> None:
        response = await program.request("OPTIONS", path)
        assert_problem(response, 405, "method_not_allowed")
        allowed = {method.strip() for method in response.headers["allow"].split(",")}
        assert allowed - {"HEAD"} == methods

    async def test_has_no_effect(self, program: Program) -> None:
        await program.member("m1", name="Kept")
        await program.request("POST", "/v1/members/m1", json={"name": "Changed"})
        assert (await program.get("/v1/members/m1")).json()["name"] == "Kept"


class TestBodySize:
    async def test_body_over_the_limit(self, program: Program) -> None:
        await program.member("m1")
        limit = get_settings().max_body_bytes
        body = b'{"points": 5, "reason": "' + b"x" * limit + b'"}'
        response = await post_raw(program, "/v1/members/m1/points/earn", body)
        assert_problem(response, 413, "payload_too_large")
        assert (await program.balance("m1"))["available"] == 0

    async def test_refused_before_authentication(self, client: httpx.AsyncClient) -> None:
        limit = get_settings().max_body_bytes
        response = await client.put("/v1/members/m1", content=b"x" * (limit + 1))
        assert_problem(response, 413, "payload_too_large")

    async def test_chunked_body_over_the_limit(self, program: Program) -> None:
        await program.member("m1")
        limit = get_settings().max_body_bytes

        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"points": 5, "reason": "'
            for _ in range(limit // 65_536 + 1):
                yield b"x" * 65_536
            yield b'"}'

        response = await program.post(
            "/v1/members/m1/points/earn",
            content=chunks(),
            headers={"Content-Type": "application/json"},
        )
        assert "content-length" not in {k.lower() for k in response.request.headers}
        assert_problem(response, 413, "payload_too_large")

    async def test_body_at_the_limit_is_read(self, program: Program) -> None:
        await program.member("m1")
        limit = get_settings().max_body_bytes
        head = b'{"points": 5, "reason": "'
        body = head + b"x" * (limit - len(head) - 2) + b'"}'
        assert len(body) == limit
        response = await post_raw(program, "/v1/members/m1/points/earn", body)
        # Read and judged on its content (the reason is too long), not refused for its size.
        assert_invalid(response)

    async def test_invalid_content_length(self, program: Program) -> None:
        await program.member("m1")
        response = await program.post(
            "/v1/members/m1/points/earn",
            content=b'{"points": 5, "reason": "x"}',
            headers={"Content-Type": "application/json", "Content-Length": "-1"},
        )
        assert response.status_code in (400, 413), response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert (await program.balance("m1"))["available"] == 0


class TestStrictPoints:
    @pytest.mark.parametrize(
        "points",
        ["10", 10.5, 10.0, True, 0, -1, 1_000_000_001, None, [10], {"value": 10}, 1e9],
        ids=[
            "string",
            "fraction",
            "float-integral",
            "bool",
            "zero",
            "negative",
            "over-max",
            "null",
            "list",
            "object",
            "exponent",
        ],
    )
    @pytest.mark.parametrize("action", ["earn", "redeem"])
    async def test_refused(self, program: Program, action: str, points: Any) -> None:
        await program.member("m1", points=100)
        response = await program.post(
            f"/v1/members/m1/points/{action}", json={"points": points, "reason": "x"}
        )
        errors = assert_invalid(response)
        assert any("points" in error["loc"] for error in errors)
        balance = await program.balance("m1")
        assert (balance["available"], balance["lifetime_redeemed"]) == (100, 0)

    @pytest.mark.parametrize(
        "points", ["-5", -5.0, 0, 1_000_000_001, -1_000_000_001, False], ids=str
    )
    async def test_adjust_refused(self, program: Program, points: Any) -> None:
        await program.member("m1", points=100)
        response = await program.post(
            "/v1/members/m1/points/adjust", json={"points": points, "reason": "x"}
        )
        assert_invalid(response)
        assert (await program.balance("m1"))["available"] == 100

    async def test_maximum_is_accepted(self, program: Program) -> None:
        await program.member("m1")
        response = await program.post(
            "/v1/members/m1/points/earn", json={"points": 1_000_000_000, "reason": "x"}
        )
        assert response.status_code == 201
        assert response.json()["points"] == 1_000_000_000

    async def test_minimum_is_accepted(self, program: Program) -> None:
        await program.member("m1")
        response = await program.post(
            "/v1/members/m1/points/earn", json={"points": 1, "reason": "x"}
        )
        assert response.status_code == 201


class TestStringBounds:
    @pytest.mark.parametrize(
        "reason", ["", "r" * 501, None, 5], ids=["empty", "501", "null", "int"]
    )
    async def test_earn_reason(self, program: Program, reason: Any) -> None:
        await program.member("m1")
        response = await program.post(
            "/v1/members/m1/points/earn", json={"points": 5, "reason": reason}
        )
        assert_invalid(response)

    async def test_longest_reason(self, program: Program) -> None:
        await program.member("m1")
        response = await program.post(
            "/v1/members/m1/points/earn", json={"points": 5, "reason": "r" * 500}
        )
        assert response.status_code == 201

    @pytest.mark.parametrize("order_id", ["", "o" * 129], ids=["empty", "129"])
    async def test_redeem_order_id(self, program: Program, order_id: str) -> None:
        await program.member("m1", points=10)
        response = await program.post(
            "/v1/members/m1/points/redeem", json={"points": 5, "order_id": order_id}
        )
        assert_invalid(response)
        assert (await program.balance("m1"))["available"] == 10

    async def test_nul_character_in_reason(self, program: Program) -> None:
        await program.member("m1")
        response = await program.post(
            "/v1/members/m1/points/earn", json={"points": 5, "reason": "a\u0000b"}
        )
        assert_invalid(response)


@asynccontextmanager
async def events_fail(program_id: int) -> AsyncIterator[None]:
    """Every event row the program writes fails for the block, with an error text that must
    not reach the client: a failure at the end of a unit of work, after its other writes."""
    name = f"fail_events_{program_id}"
    async with db.transaction() as conn:
        await conn.raw.execute(
            f"""CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.program_id = {program_id} THEN
                        RAISE EXCEPTION '{SECRET}';
                    END IF;
                    RETURN NEW;
                END $$"""
        )
        await conn.raw.execute(
            f"CREATE TRIGGER {name} BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION {name}()"
        )
    try:
        yield
    finally:
        async with db.transaction() as conn:
            await conn.raw.execute(f"DROP TRIGGER {name} ON events")
            await conn.raw.execute(f"DROP FUNCTION {name}()")


class TestInternalError:
    async def test_read_failure_does_not_leak(
        self, program: Program, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        await program.member("m1")

        async def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(SECRET)

        monkeypatch.setattr(members, "get_member", broken)
        response = await program.get("/v1/members/m1")
        assert_problem(response, 500, "internal_error")
        assert SECRET not in response.text
        assert "RuntimeError" not in response.text
        assert "Traceback" not in response.text

    async def test_write_failure_does_not_leak_and_has_no_effect(self, program: Program) -> None:
        # The failure comes from inside the unit of work, after the balance and the entry were
        # written (the event row is the last write): only the rollback keeps them out.
        await program.member("m1")
        async with events_fail(program.id):
            response = await program.post(
                "/v1/members/m1/points/earn", json={"points": 5, "reason": "x"}
            )
        assert_problem(response, 500, "internal_error")
        assert SECRET not in response.text
        assert (await program.balance("m1"))["available"] == 0
        entries = await program.get("/v1/members/m1/points/transactions")
        assert entries.json()["data"] == []

    async def test_database_error_does_not_leak_sql(
        self, program: Program, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        async def broken(*args: Any, **kwargs: Any) -> Any:
            raise db.DatabaseError(f"SELECT password FROM {SECRET} WHERE p = '{SECRET}'")

        monkeypatch.setattr(members, "list_members", broken)
        response = await program.get("/v1/members")
        assert_problem(response, 500, "internal_error")
        assert SECRET not in response.text
        assert "SELECT" not in response.text

    async def test_retry_after_a_500_applies_once(self, program: Program) -> None:
        # The 500 promises "no effect unless a retry with the same Idempotency-Key says
        # otherwise": a unit of work that failed after its writes left nothing, not even its
        # key, so the retry applies, and once.
        await program.member("m1")
        headers = {"Idempotency-Key": "retry-after-500"}
        body = {"points": 5, "reason": "x"}
        async with events_fail(program.id):
            failed = await program.post("/v1/members/m1/points/earn", json=body, headers=headers)
        assert failed.status_code == 500
        retried = await program.post("/v1/members/m1/points/earn", json=body, headers=headers)
        assert retried.status_code == 201
        assert "Idempotency-Replayed" not in retried.headers
        again = await program.post("/v1/members/m1/points/earn", json=body, headers=headers)
        assert again.status_code == 201
        assert again.headers["Idempotency-Replayed"] == "true"
        assert (await program.balance("m1"))["available"] == 5
