"""The hot paths (app/hot_paths.py) answer exactly as FastAPI's routes for the same paths do.

Every case runs twice on identical state: through the app as served, where the hot paths
answer, and through an app with them turned off, where FastAPI's routes do. Each run has a
program of its own with the same members, balances, hold and frozen clock; the answers must
match in status, content type, replay header and body, once the ids that differ by nature
(entry ids, hold ids) are set aside. The ledger audit runs on both programs after each case.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from app.clock import clock
from app.hot_paths import HotRoute
from app.main import create_app
from app.services.programs.programs import create_program
from tests.conftest import assert_ledger_consistent

NOW = datetime(2026, 6, 15, 9, 30, tzinfo=UTC)
ORDER = {
    "order_id": "A-1",
    "member_id": "alice",
    "amount": 12900,
    "currency": "CNY",
    "items": [{"sku": "TEA-01", "category": "tea", "quantity": 2, "unit_price": 4500}],
}


class RouteRecorder:
    """Remembers which route answered each request (the scope's ``route`` after the call)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.routes: list[Any] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
        if scope["type"] == "http":
            self.routes.append(scope.get("route"))


@dataclass
class Call:
    method: str
    path: str  # {hold} becomes the program's hold id, {key:<scope>} a key with that scope
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    auth: str | None = "admin"  # admin, points:read, none, token, or a literal header


def case(*calls: Call) -> list[Call]:
    return list(calls)


KEY = {"Idempotency-Key": "retry-1"}
CASES: dict[str, list[Call]] = {
    "points": case(Call("GET", "/v1/members/alice/points")),
    "points of an unknown member": case(Call("GET", "/v1/members/nobody/points")),
    "points, invalid member id": case(Call("GET", "/v1/members/bad%20id/points")),
    "points, an Idempotency-Key means nothing to a GET": case(
        Call("GET", "/v1/members/alice/points", headers={"Idempotency-Key": ""})
    ),
    "points, no credentials": case(Call("GET", "/v1/members/alice/points", auth="none")),
    "earn": case(Call("POST", "/v1/members/alice/points/earn", {"points": 5, "reason": "r"})),
    "earn, replayed": case(
        Call("POST", "/v1/members/alice/points/earn", {"points": 5, "reason": "r"}, headers=KEY),
        Call("POST", "/v1/members/alice/points/earn", {"points": 5, "reason": "r"}, headers=KEY),
    ),
    "earn, key reused with another body": case(
        Call("POST", "/v1/members/alice/points/earn", {"points": 5, "reason": "r"}, headers=KEY),
        Call("POST", "/v1/members/alice/points/earn", {"points": 6, "reason": "r"}, headers=KEY),
    ),
    "earn, empty key": case(
        Call(
            "POST",
            "/v1/members/alice/points/earn",
            {"points": 5, "reason": "r"},
            headers={"Idempotency-Key": ""},
        )
    ),
    "earn, key too long": case(
        Call(
            "POST",
            "/v1/members/alice/points/earn",
            {"points": 5, "reason": "r"},
            headers={"Idempotency-Key": "k" * 256},
        )
    ),
    "earn, points as a string": case(
        Call("POST", "/v1/members/alice/points/earn", {"points": "5", "reason": "r"})
    ),
    "earn, unknown field": case(
        Call("POST", "/v1/members/alice/points/earn", {"points": 5, "reason": "r", "x": 1})
    ),
    "earn, no body": case(Call("POST", "/v1/members/alice/points/earn")),
    "earn, body not JSON": case(
        Call("POST", "/v1/members/alice/points/earn", content=b'{"points": 5,', auth="none")
    ),
    "earn, body null": case(Call("POST", "/v1/members/alice/points/earn", content=b"null")),
    "earn, text/plain body": case(
        Call(
            "POST",
            "/v1/members/alice/points/earn",
            content=b'{"points": 5, "reason": "r"}',
            headers={"Content-Type": "text/plain"},
        )
    ),
    "earn, JSON without a content type": case(
        Call(
            "POST",
            "/v1/members/alice/points/earn",
            content=b'{"points": 5, "reason": "r"}',
            headers={"Content-Type": ""},
        )
    ),
    "earn, NaN is not a point count": case(
        Call("POST", "/v1/members/alice/points/earn", content=b'{"points": NaN, "reason": "r"}')
    ),
    "earn, bad member and bad body at once": case(
        Call(
            "POST",
            "/v1/members/bad%20id/points/earn",
            {"points": 0},
            headers={"Idempotency-Key": ""},
        )
    ),
    "earn, unknown member": case(
        Call("POST", "/v1/members/nobody/points/earn", {"points": 5, "reason": "r"})
    ),
    "earn, read-only key": case(
        Call(
            "POST",
            "/v1/members/alice/points/earn",
            {"points": 5, "reason": "r"},
            auth="points:read",
        )
    ),
    "earn, member token": case(
        Call("POST", "/v1/members/alice/points/earn", {"points": 5, "reason": "r"}, auth="token")
    ),
    "earn, unknown key": case(
        Call(
            "POST",
            "/v1/members/alice/points/earn",
            {"points": 5, "reason": "r"},
            auth="Bearer ptr_unknown",
        )
    ),
    "earn, basic auth": case(
        Call(
            "POST",
            "/v1/members/alice/points/earn",
            {"points": 5, "reason": "r"},
            auth="Basic YWxpY2U6c2VjcmV0",
        )
    ),
    "redeem": case(Call("POST", "/v1/members/alice/points/redeem", {"points": 7})),
    "redeem, not enough": case(Call("POST", "/v1/members/bob/points/redeem", {"points": 7})),
    "redeem, unknown member": case(Call("POST", "/v1/members/nobody/points/redeem", {"points": 7})),
    "hold": case(Call("POST", "/v1/members/alice/holds", {"points": 30, "order_id": "A-9"})),
    "hold, not enough": case(Call("POST", "/v1/members/bob/holds", {"points": 30})),
    "hold, ttl out of range": case(
        Call("POST", "/v1/members/alice/holds", {"points": 30, "ttl_seconds": 0})
    ),
    "capture, no body": case(Call("POST", "/v1/holds/{hold}/capture")),
    "capture, empty object": case(Call("POST", "/v1/holds/{hold}/capture", {})),
    "capture, null body": case(Call("POST", "/v1/holds/{hold}/capture", content=b"null")),
    "capture, part": case(Call("POST", "/v1/holds/{hold}/capture", {"points": 40})),
    "capture, more than held": case(Call("POST", "/v1/holds/{hold}/capture", {"points": 101})),
    "capture, replayed": case(
        Call("POST", "/v1/holds/{hold}/capture", {"points": 40}, headers=KEY),
        Call("POST", "/v1/holds/{hold}/capture", {"points": 40}, headers=KEY),
    ),
    "capture, no body, then {} with the same key": case(
        Call("POST", "/v1/holds/{hold}/capture", headers=KEY),
        Call("POST", "/v1/holds/{hold}/capture", {}, headers=KEY),
    ),
    "capture, twice": case(
        Call("POST", "/v1/holds/{hold}/capture"), Call("POST", "/v1/holds/{hold}/capture")
    ),
    "capture, unknown hold": case(
        Call("POST", "/v1/holds/00000000-0000-4000-8000-000000000000/capture")
    ),
    "capture, not a hold id": case(Call("POST", "/v1/holds/not-a-uuid/capture")),
    "release": case(Call("POST", "/v1/holds/{hold}/release")),
    "release, with a body": case(Call("POST", "/v1/holds/{hold}/release", {"anything": 1})),
    "release, then capture": case(
        Call("POST", "/v1/holds/{hold}/release"), Call("POST", "/v1/holds/{hold}/capture")
    ),
    "order": case(Call("POST", "/v1/orders", ORDER)),
    "order, sent again": case(Call("POST", "/v1/orders", ORDER), Call("POST", "/v1/orders", ORDER)),
    "order, same id, other body": case(
        Call("POST", "/v1/orders", ORDER),
        Call("POST", "/v1/orders", {**ORDER, "amount": 100}),
    ),
    "order, replayed with a key": case(
        Call("POST", "/v1/orders", ORDER, headers=KEY),
        Call("POST", "/v1/orders", ORDER, headers=KEY),
    ),
    "order, other currency": case(Call("POST", "/v1/orders", {**ORDER, "currency": "USD"})),
    "order, unknown member": case(Call("POST", "/v1/orders", {**ORDER, "member_id": "nobody"})),
    "order, capturing the hold": case(
        Call("POST", "/v1/orders", {**ORDER, "redeem_hold_id": "{hold}"})
    ),
    "order, invalid items": case(
        Call("POST", "/v1/orders", {**ORDER, "items": [{"sku": "", "quantity": 0}]})
    ),
    "order, backdated": case(
        Call("POST", "/v1/orders", {**ORDER, "occurred_at": "2026-06-01T10:00:00+08:00"})
    ),
}


@dataclass
class Answer:
    status: int
    content_type: str | None
    replayed: str | None
    body: Any


def _without_ids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "<id>" if k in ("id", "hold_id") else _without_ids(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_ids(v) for v in value]
    if isinstance(value, str) and value.startswith("rule:"):
        return "rule:<id>"  # each program's rule has an id of its own
    return value


@pytest.fixture(scope="module")
def plain_app(database_url: str) -> Any:
    return create_app(hot_paths=False)


@pytest.fixture
async def clients(
    app: Any, plain_app: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, RouteRecorder]]:
    recorder = RouteRecorder(app)
    hot = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=recorder, raise_app_exceptions=False),
        base_url="http://patron.test",
    )
    plain = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=plain_app, raise_app_exceptions=False),
        base_url="http://patron.test",
    )
    async with hot, plain:
        yield hot, plain, recorder


async def _run(client: httpx.AsyncClient, calls: list[Call]) -> list[Answer]:
    """Set up a program as every case expects it, then make the calls."""
    program_id, admin = await create_program("Parity Shop", "CNY")
    admin_headers = {"Authorization": f"Bearer {admin}"}

    async def post(path: str, body: Any) -> dict[str, Any]:
        response = await client.post(path, json=body, headers=admin_headers)
        assert response.status_code in (200, 201), response.text
        result: dict[str, Any] = response.json()
        return result

    await post(
        "/v1/earn-rules",
        {
            "name": "tea",
            "active": True,
            "conditions": {"categories": ["tea"]},
            "effect": {"multiplier": "2"},
        },
    )
    for member in ("alice", "bob"):
        response = await client.put(f"/v1/members/{member}", json={}, headers=admin_headers)
        assert response.status_code == 201, response.text
    await post("/v1/members/alice/points/earn", {"points": 500, "reason": "seed"})
    hold = (await post("/v1/members/alice/holds", {"points": 100}))["hold_id"]
    read_key = (await post("/v1/api-keys", {"name": "r", "scopes": ["points:read"]}))["key"]
    token = (await post("/v1/members/alice/tokens", {}))["token"]
    credentials = {
        "admin": f"Bearer {admin}",
        "points:read": f"Bearer {read_key}",
        "token": f"Bearer {token}",
        "none": None,
    }
    answers = []
    for call in calls:
        headers = dict(call.headers)
        authorization = credentials.get(call.auth or "none", call.auth)
        if authorization is not None:
            headers["Authorization"] = authorization
        path = call.path.replace("{hold}", hold)
        kwargs: dict[str, Any] = {"headers": headers}
        if call.content is not None:
            kwargs["content"] = call.content
            headers.setdefault("Content-Type", "application/json")
            if headers["Content-Type"] == "":
                del headers["Content-Type"]
        elif call.json is not None:
            body = call.json
            if body.get("redeem_hold_id") == "{hold}":
                body = {**body, "redeem_hold_id": hold}
            kwargs["json"] = body
        response = await client.request(call.method, path, **kwargs)
        answers.append(
            Answer(
                response.status_code,
                response.headers.get("content-type"),
                response.headers.get("idempotency-replayed"),
                _without_ids(response.json()),
            )
        )
    await assert_ledger_consistent(program_id)
    return answers


class TestHotPathsAnswerAsFastAPI:
    @pytest.mark.parametrize("calls", CASES.values(), ids=CASES.keys())
    async def test_same_answer(
        self,
        clients: tuple[httpx.AsyncClient, httpx.AsyncClient, RouteRecorder],
        calls: list[Call],
    ) -> None:
        hot, plain, recorder = clients
        clock.freeze(NOW)
        expected = await _run(plain, calls)
        recorder.routes.clear()
        answered = await _run(hot, calls)
        assert answered == expected
        # The calls under test (the last ones; set-up comes first) went through the hot paths.
        assert all(isinstance(r, HotRoute) for r in recorder.routes[-len(calls) :])

    def test_every_hot_route_mirrors_a_documented_route(self, app: Any) -> None:
        """A hot route with no FastAPI route behind it would be missing from /docs."""
        documented = {
            (method.upper(), path)
            for path, operations in app.openapi()["paths"].items()
            for method in operations
        }
        hot = next(m for m in app.user_middleware if m.cls.__name__ == "HotPaths")
        routes: list[HotRoute] = hot.kwargs["routes"]
        assert routes
        assert {(r.method, r.path) for r in routes} <= documented
