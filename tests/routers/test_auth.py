"""Authentication, scopes and tenancy for every route of the app.

Each route is described once in ``ENDPOINTS``: the scope api.md gives it and a valid body.
The routes themselves are read from the application, so a new route cannot slip through:
``TestRouteTable`` fails until it is described, and ``test_every_route_needs_credentials``
checks it for a 401 even before that.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.routing import iter_route_contexts

from app.schemas.programs import SCOPES
from tests.conftest import Program, assert_problem

# Public routes: probes, Prometheus metrics (api.md lists /metrics beside the probes, and
# scrapers send no key) and the API documentation.
UNAUTHENTICATED = {
    # The dashboard page and its assets are public; the page asks for an admin key and
    # sends it to the JSON API itself.
    "/dashboard",
    "/dashboard/{asset}",
    "/healthz",
    "/readyz",
    "/metrics",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/openapi.json",
}
# The member app's routes: they take a member token, never an API key (their own table, and
# their tests, are in test_member_tokens.py).
MEMBER_TOKEN_ROUTES = {
    ("GET", "/v1/me"),
    ("GET", "/v1/me/points"),
    ("GET", "/v1/me/points/transactions"),
    ("GET", "/v1/me/tier"),
    ("GET", "/v1/me/referrals"),
    ("POST", "/v1/me/referral-link"),
    ("GET", "/v1/me/rewards"),
    ("POST", "/v1/me/rewards/{reward_id}/redeem"),
    ("GET", "/v1/me/coupons"),
}
MEMBER = "/v1/members/{member}"
HOLD = "/v1/holds/{hold_id}"
RULE = "/v1/earn-rules/{rule_id}"
ORDER = "/v1/orders/{order_id}"
WEBHOOK = "/v1/webhook-endpoints/{endpoint_id}"
TIER = "/v1/tiers/{key}"
CAMPAIGN = "/v1/campaigns/{campaign_id}"
NEW_CAMPAIGN = {"name": "Thanks", "audience": {}, "action": {"notify_only": True}}
REWARD = "/v1/rewards/{reward_id}"
COUPON = "/v1/coupons/{coupon_code}"
# Tests have no public host to deliver to, so their programs allow private ones.
HOOK_URL = "http://127.0.0.1:9/hooks/patron"
NEW_RULE = {
    "name": "Double points",
    "active": True,
    "conditions": {"min_amount": 100},
    "effect": {"multiplier": "2"},
}
NEW_REWARD = {"name": "5 off", "kind": "fixed_discount", "points_cost": 10, "value": 500}


@dataclass(frozen=True)
class Endpoint:
    """What a route needs: its scope (api.md) and a body that is valid for it. In the body,
    "{member}" stands for a member of the program (like the path parameter) and "{new_id}"
    for a fresh id."""

    scope: str
    body: dict[str, Any] | None = None
    # PUT is an upsert by the shop's own id: another program's id creates a member here.
    upserts: bool = False
    # What the program needs first for the body to be valid.
    setup: Callable[[Program], Awaitable[None]] | None = None
    # The 404 code for another program's object (api.md gives referral codes their own).
    not_found_code: str = "not_found"
    # Query parameters the route requires (an import's type).
    query: str = ""


async def _allow_private_hosts(program: Program) -> None:
    response = await program.patch("/v1/program", json={"webhooks_allow_private_hosts": True})
    assert response.status_code == 200, response.text


ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    ("GET", "/v1/program"): Endpoint("admin"),
    ("PATCH", "/v1/program"): Endpoint("admin", {"pending_days": 1}),
    ("POST", "/v1/api-keys"): Endpoint("admin", {"name": "k", "scopes": ["points:read"]}),
    ("GET", "/v1/api-keys"): Endpoint("admin"),
    ("DELETE", "/v1/api-keys/{key_id}"): Endpoint("admin"),
    ("GET", "/v1/members"): Endpoint("members:read"),
    ("PUT", MEMBER): Endpoint("members:write", {"name": "Changed"}, upserts=True),
    ("GET", MEMBER): Endpoint("members:read"),
    ("DELETE", MEMBER): Endpoint("admin"),
    ("GET", MEMBER + "/points"): Endpoint("points:read"),
    ("GET", MEMBER + "/points/transactions"): Endpoint("points:read"),
    ("POST", MEMBER + "/points/earn"): Endpoint("points:write", {"points": 1, "reason": "x"}),
    ("POST", MEMBER + "/points/redeem"): Endpoint("points:write", {"points": 1}),
    ("POST", MEMBER + "/points/adjust"): Endpoint("admin", {"points": 1, "reason": "x"}),
    ("POST", MEMBER + "/holds"): Endpoint("points:write", {"points": 10}),
    ("POST", HOLD + "/capture"): Endpoint("points:write", {"points": 5}),
    ("POST", HOLD + "/release"): Endpoint("points:write"),
    # api.md names no scope for reading a hold; reading points needs points:read.
    ("GET", HOLD): Endpoint("points:read"),
    ("GET", "/v1/earn-rules"): Endpoint("admin"),
    ("POST", "/v1/earn-rules"): Endpoint("admin", NEW_RULE),
    ("GET", RULE): Endpoint("admin"),
    ("PATCH", RULE): Endpoint("admin", {"name": "Renamed"}),
    ("DELETE", RULE): Endpoint("admin"),
    ("POST", "/v1/orders/quote"): Endpoint(
        "points:read", {"member_id": "{member}", "amount": 10000, "currency": "CNY"}
    ),
    ("POST", "/v1/orders"): Endpoint(
        "points:write",
        {"order_id": "{new_id}", "member_id": "{member}", "amount": 10000, "currency": "CNY"},
    ),
    ("GET", ORDER): Endpoint("points:read"),
    ("POST", ORDER + "/refunds"): Endpoint(
        "points:write", {"refund_id": "{new_id}", "amount": 1000}
    ),
    ("GET", "/v1/events"): Endpoint("admin"),
    ("POST", "/v1/webhook-endpoints"): Endpoint(
        "admin", {"url": HOOK_URL, "events": ["*"]}, setup=_allow_private_hosts
    ),
    ("GET", "/v1/webhook-endpoints"): Endpoint("admin"),
    ("GET", WEBHOOK): Endpoint("admin"),
    ("DELETE", WEBHOOK): Endpoint("admin"),
    ("POST", WEBHOOK + "/rotate-secret"): Endpoint("admin"),
    ("POST", WEBHOOK + "/resume"): Endpoint("admin"),
    ("GET", WEBHOOK + "/deliveries"): Endpoint("admin"),
    ("GET", "/v1/tiers"): Endpoint("members:read"),
    ("POST", "/v1/tiers"): Endpoint("admin", {"key": "{new_id}", "name": "Gold", "threshold": 100}),
    ("POST", "/v1/tiers/preview"): Endpoint("admin", {"tiers": [{"key": "gold", "threshold": 10}]}),
    ("GET", TIER): Endpoint("members:read"),
    ("PATCH", TIER): Endpoint("admin", {"name": "Renamed"}),
    ("DELETE", TIER): Endpoint("admin"),
    ("GET", "/v1/tier-policy"): Endpoint("admin"),
    ("PUT", "/v1/tier-policy"): Endpoint(
        "admin", {"metric": "spend", "window_days": None, "grace_days": 3}
    ),
    ("GET", MEMBER + "/tier"): Endpoint("members:read"),
    ("POST", MEMBER + "/tokens"): Endpoint("members:write", {"ttl_seconds": 60}),
    ("POST", MEMBER + "/referral-link"): Endpoint("referrals:write"),
    ("GET", MEMBER + "/referrals"): Endpoint("referrals:read"),
    ("GET", "/v1/referral-codes/{code}"): Endpoint(
        "referrals:read", not_found_code="referral_code_invalid"
    ),
    ("POST", "/v1/referrals"): Endpoint(
        "referrals:write",
        {"code": "{code}", "referee_id": "{member}"},
        not_found_code="referral_code_invalid",
    ),
    ("GET", "/v1/referrals"): Endpoint("referrals:read"),
    ("GET", "/v1/insights/overview"): Endpoint("admin"),
    ("GET", "/v1/insights/segments"): Endpoint("admin"),
    ("GET", "/v1/insights/points-expiry"): Endpoint("admin"),
    ("GET", "/v1/insights/tiers"): Endpoint("admin"),
    ("GET", "/v1/insights/referral-funnel"): Endpoint("admin"),
    ("POST", "/v1/insights/refresh"): Endpoint("admin"),
    ("GET", "/v1/insights/rewards"): Endpoint("admin"),
    ("POST", MEMBER + "/feedback"): Endpoint("members:write", {"score": 9}),
    ("GET", "/v1/campaigns"): Endpoint("admin"),
    ("POST", "/v1/campaigns"): Endpoint("admin", NEW_CAMPAIGN),
    ("POST", "/v1/campaigns/preview"): Endpoint("admin", {"audience": {}, "holdout_percent": 5}),
    ("GET", CAMPAIGN): Endpoint("admin"),
    ("PATCH", CAMPAIGN): Endpoint("admin", {"name": "Renamed"}),
    ("DELETE", CAMPAIGN): Endpoint("admin"),
    ("POST", CAMPAIGN + "/run"): Endpoint("admin"),
    ("GET", CAMPAIGN + "/results"): Endpoint("admin"),
    ("GET", "/v1/rewards"): Endpoint("points:read"),
    ("POST", "/v1/rewards"): Endpoint("admin", NEW_REWARD),
    ("GET", REWARD): Endpoint("admin"),
    ("PATCH", REWARD): Endpoint("admin", {"name": "Renamed"}),
    ("DELETE", REWARD): Endpoint("admin"),
    ("GET", MEMBER + "/rewards"): Endpoint("points:read"),
    ("POST", MEMBER + "/rewards/{reward_id}/redeem"): Endpoint("points:write"),
    ("GET", MEMBER + "/coupons"): Endpoint("points:read"),
    ("GET", COUPON): Endpoint("points:read", not_found_code="coupon_invalid"),
    ("POST", COUPON + "/validate"): Endpoint(
        "points:read", {"member_id": "{member}", "amount": 10000, "currency": "CNY"}
    ),
    ("POST", COUPON + "/void"): Endpoint("points:write", not_found_code="coupon_invalid"),
    ("GET", "/v1/insights/liability"): Endpoint("admin"),
    # A one-line JSON Lines file: the body sent as JSON is a valid members import.
    ("POST", "/v1/imports"): Endpoint("admin", {"external_id": "{new_id}"}, query="?type=members"),
    ("GET", "/v1/imports/{import_id}"): Endpoint("admin"),
    ("GET", "/v1/exports/members"): Endpoint("admin"),
    ("GET", "/v1/exports/ledger"): Endpoint("admin"),
    ("GET", "/v1/exports/orders"): Endpoint("admin"),
}
ROUTES = [pytest.param(method, path, id=f"{method} {path}") for method, path in ENDPOINTS]


async def _new_member(program: Program) -> str:
    return await program.member(f"m-{secrets.token_hex(4)}", points=100, name="Someone")


async def _member_state(program: Program, external_id: str) -> Any:
    member = (await program.get(f"/v1/members/{external_id}")).json()
    entries = (await program.get(f"/v1/members/{external_id}/points/transactions")).json()
    return member, entries


async def _new_key_id(program: Program) -> str:
    response = await program.post("/v1/api-keys", json={"name": "target", "scopes": ["admin"]})
    assert response.status_code == 201, response.text
    key_id: str = response.json()["id"]
    return key_id


async def _key_state(program: Program, key_id: str) -> Any:
    listed = (await program.get("/v1/api-keys")).json()
    return next(k for k in listed if k["id"] == key_id)


async def _new_hold_id(program: Program) -> str:
    member = await _new_member(program)
    response = await program.post(f"/v1/members/{member}/holds", json={"points": 20})
    assert response.status_code == 201, response.text
    hold_id: str = response.json()["hold_id"]
    return hold_id


async def _hold_state(program: Program, hold_id: str) -> Any:
    return (await program.get(f"/v1/holds/{hold_id}")).json()


async def _new_rule_id(program: Program) -> str:
    response = await program.post("/v1/earn-rules", json=NEW_RULE)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _rule_state(program: Program, rule_id: str) -> Any:
    return (await program.get(f"/v1/earn-rules/{rule_id}")).json()


async def _new_order_id(program: Program) -> str:
    member = await _new_member(program)
    order_id = f"order-{secrets.token_hex(4)}"
    response = await program.post(
        "/v1/orders",
        json={"order_id": order_id, "member_id": member, "amount": 10000, "currency": "CNY"},
    )
    assert response.status_code == 201, response.text
    return order_id


async def _order_state(program: Program, order_id: str) -> Any:
    return (await program.get(f"/v1/orders/{order_id}")).json()


async def _new_import_id(program: Program) -> str:
    response = await program.post(
        "/v1/imports?type=members", content=b'{"external_id": "imported"}\n'
    )
    assert response.status_code == 202, response.text
    import_id: str = response.json()["id"]
    return import_id


async def _import_state(program: Program, import_id: str) -> Any:
    report = (await program.get(f"/v1/imports/{import_id}")).json()
    return (report["status"], report["rows_total"], report["rows_done"])


async def _new_endpoint_id(program: Program) -> str:
    await _allow_private_hosts(program)
    response = await program.post(
        "/v1/webhook-endpoints", json={"url": HOOK_URL, "events": ["points.earned"]}
    )
    assert response.status_code == 201, response.text
    endpoint_id: str = response.json()["id"]
    return endpoint_id


async def _endpoint_state(program: Program, endpoint_id: str) -> Any:
    return (await program.get(f"/v1/webhook-endpoints/{endpoint_id}")).json()


async def _new_tier_key(program: Program) -> str:
    key = f"t-{secrets.token_hex(4)}"
    response = await program.post(
        "/v1/tiers", json={"key": key, "name": "Tier", "threshold": secrets.randbelow(10**9)}
    )
    assert response.status_code == 201, response.text
    return key


async def _tier_state(program: Program, key: str) -> Any:
    return (await program.get(f"/v1/tiers/{key}")).json()


async def _new_campaign_id(program: Program) -> str:
    response = await program.post("/v1/campaigns", json=NEW_CAMPAIGN)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _campaign_state(program: Program, campaign_id: str) -> Any:
    return (await program.get(f"/v1/campaigns/{campaign_id}")).json()


async def _new_code(program: Program) -> str:
    member = await _new_member(program)
    response = await program.post(f"/v1/members/{member}/referral-link")
    assert response.status_code == 200, response.text
    code: str = response.json()["code"]
    return code


async def _code_state(program: Program, code: str) -> Any:
    return (await program.get(f"/v1/referral-codes/{code}")).json()


async def _new_reward_id(program: Program) -> str:
    response = await program.post("/v1/rewards", json=NEW_REWARD)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _reward_state(program: Program, reward_id: str) -> Any:
    return (await program.get(f"/v1/rewards/{reward_id}")).json()


async def _new_coupon_code(program: Program) -> str:
    member = await _new_member(program)
    reward_id = await _new_reward_id(program)
    response = await program.post(f"/v1/members/{member}/rewards/{reward_id}/redeem")
    assert response.status_code == 201, response.text
    code: str = response.json()["coupon"]["code"]
    return code


async def _coupon_state(program: Program, code: str) -> Any:
    return (await program.get(f"/v1/coupons/{code}")).json()


# For each path parameter: how to make a fresh object for it, and how to see its state.
PATH_PARAMETERS: dict[
    str,
    tuple[Callable[[Program], Awaitable[str]], Callable[[Program, str], Awaitable[Any]]],
] = {
    "member": (_new_member, _member_state),
    "key_id": (_new_key_id, _key_state),
    "hold_id": (_new_hold_id, _hold_state),
    "rule_id": (_new_rule_id, _rule_state),
    "order_id": (_new_order_id, _order_state),
    "endpoint_id": (_new_endpoint_id, _endpoint_state),
    "key": (_new_tier_key, _tier_state),
    "code": (_new_code, _code_state),
    "campaign_id": (_new_campaign_id, _campaign_state),
    "reward_id": (_new_reward_id, _reward_state),
    "coupon_code": (_new_coupon_code, _coupon_state),
    "import_id": (_new_import_id, _import_state),
}


def app_routes(app: Any) -> set[tuple[str, str]]:
    """Every (method, path) the app serves. Since FastAPI 0.137 ``app.routes`` holds one
    wrapper per included router; ``iter_route_contexts`` expands them into endpoints."""
    routes = set()
    for route in iter_route_contexts(app.routes):
        if route.path is None or route.path in UNAUTHENTICATED:
            continue
        for method in route.methods or ():
            if method != "HEAD":
                routes.add((method, route.path))
    # An enumeration that silently finds nothing would make the checks below vacuous.
    assert ("GET", "/v1/program") in routes, routes
    return routes


def path_parameters(path: str) -> list[str]:
    return re.findall(r"\{(\w+)(?::\w+)?\}", path)


@dataclass(frozen=True)
class Call:
    path: str
    body: dict[str, Any] | None
    # The objects made for it, by parameter name.
    objects: dict[str, str]


async def prepare(program: Program, method: str, template: str) -> Call:
    """A valid call of the route, with fresh objects of ``program`` for its parameters."""
    endpoint = ENDPOINTS[(method, template)]
    if endpoint.setup is not None:
        await endpoint.setup(program)
    body = endpoint.body
    names = path_parameters(template)
    for name in PATH_PARAMETERS:
        if body and f"{{{name}}}" in body.values() and name not in names:
            names.append(name)
    objects = {name: await PATH_PARAMETERS[name][0](program) for name in names}
    if body:
        fresh = f"id-{secrets.token_hex(4)}"
        placeholders = {f"{{{name}}}": value for name, value in objects.items()}
        placeholders["{new_id}"] = fresh
        body = {k: placeholders.get(v, v) if isinstance(v, str) else v for k, v in body.items()}
    return Call(template.format(**objects) + endpoint.query, body, objects)


async def send(
    program: Program, method: str, call: Call, headers: dict[str, str]
) -> httpx.Response:
    return await program.client.request(method, call.path, headers=headers, json=call.body)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def without_scope(program: Program, scope: str) -> str:
    """A key with every scope except ``scope`` (and except admin, which implies it)."""
    return await program.key_with(*(s for s in SCOPES if s not in (scope, "admin")))


class TestRouteTable:
    def test_covers_every_route(self, app: Any) -> None:
        missing = sorted(app_routes(app) - set(ENDPOINTS) - MEMBER_TOKEN_ROUTES)
        assert not missing, f"routes missing from ENDPOINTS (scope and body): {missing}"

    def test_has_no_stale_routes(self, app: Any) -> None:
        stale = sorted((set(ENDPOINTS) | MEMBER_TOKEN_ROUTES) - app_routes(app))
        assert not stale, f"ENDPOINTS lists routes the app does not have: {stale}"

    def test_scopes_are_known(self) -> None:
        assert {e.scope for e in ENDPOINTS.values()} <= set(SCOPES)

    def test_every_path_parameter_can_be_filled(self) -> None:
        names = {name for _, path in ENDPOINTS for name in path_parameters(path)}
        assert names <= set(PATH_PARAMETERS), names - set(PATH_PARAMETERS)

    async def test_every_route_needs_credentials(self, app: Any, client: httpx.AsyncClient) -> None:
        # Every route, described or not, with placeholder parameters: the 401 comes first.
        failures = {}
        for method, template in sorted(app_routes(app)):
            path = template.format(**{name: "1" for name in path_parameters(template)})
            response = await client.request(method, path, json={})
            if response.status_code != 401 or response.json().get("code") != "unauthorized":
                failures[(method, template)] = f"{response.status_code}: {response.text[:120]}"
        assert not failures, failures


class TestMissingCredentials:
    @pytest.mark.parametrize(("method", "template"), ROUTES)
    async def test_no_authorization_header(
        self, program: Program, method: str, template: str
    ) -> None:
        call = await prepare(program, method, template)
        assert_problem(await send(program, method, call, {}), 401, "unauthorized")

    @pytest.mark.parametrize(("method", "template"), ROUTES)
    async def test_malformed_authorization_header(
        self, program: Program, method: str, template: str
    ) -> None:
        call = await prepare(program, method, template)
        for headers in [
            {"Authorization": ""},
            {"Authorization": "Bearer"},
            {"Authorization": "Bearer "},
            {"Authorization": f"Basic {program.admin_key}"},
            {"Authorization": program.admin_key},
            {"X-Api-Key": program.admin_key},
        ]:
            response = await send(program, method, call, headers)
            assert_problem(response, 401, "unauthorized")

    @pytest.mark.parametrize(("method", "template"), ROUTES)
    async def test_unknown_key(self, program: Program, method: str, template: str) -> None:
        call = await prepare(program, method, template)
        last = program.admin_key[-1]
        for key in [
            "ptr_" + secrets.token_urlsafe(32),
            program.admin_key[:-1] + ("A" if last != "A" else "B"),
            program.admin_key[:12],
            "sk_live_" + secrets.token_hex(16),
        ]:
            assert_problem(await send(program, method, call, bearer(key)), 401, "unauthorized")

    @pytest.mark.parametrize(("method", "template"), ROUTES)
    async def test_revoked_key(self, program: Program, method: str, template: str) -> None:
        revoked = (
            await program.post("/v1/api-keys", json={"name": "old", "scopes": ["admin"]})
        ).json()
        # Used once first, so a cached lookup would be found if revoking did not clear it.
        assert (await program.get("/v1/program", key=revoked["key"])).status_code == 200
        assert (await program.delete(f"/v1/api-keys/{revoked['id']}")).status_code == 204
        call = await prepare(program, method, template)
        response = await send(program, method, call, bearer(revoked["key"]))
        assert_problem(response, 401, "unauthorized")

    async def test_refused_call_has_no_effect(self, program: Program) -> None:
        await program.member("m1", points=10, name="Kept")
        headers = bearer("ptr_" + secrets.token_urlsafe(32))
        client = program.client
        await client.post(
            "/v1/members/m1/points/earn", headers=headers, json={"points": 5, "reason": "x"}
        )
        await client.put("/v1/members/m1", headers=headers, json={"name": "Changed"})
        await client.delete("/v1/members/m1", headers=headers)
        member = (await program.get("/v1/members/m1")).json()
        assert member["name"] == "Kept"
        assert member["points"]["available"] == 10


class TestScopes:
    @pytest.mark.parametrize(("method", "template"), ROUTES)
    async def test_key_lacking_the_scope_is_forbidden(
        self, program: Program, method: str, template: str
    ) -> None:
        key = await without_scope(program, ENDPOINTS[(method, template)].scope)
        call = await prepare(program, method, template)
        assert_problem(await send(program, method, call, bearer(key)), 403, "forbidden")

    @pytest.mark.parametrize(("method", "template"), ROUTES)
    async def test_needed_scope_is_enough(
        self, program: Program, method: str, template: str
    ) -> None:
        key = await program.key_with(ENDPOINTS[(method, template)].scope)
        call = await prepare(program, method, template)
        response = await send(program, method, call, bearer(key))
        assert 200 <= response.status_code < 300, response.text

    @pytest.mark.parametrize(("method", "template"), ROUTES)
    async def test_admin_is_enough(self, program: Program, method: str, template: str) -> None:
        key = await program.key_with("admin")
        call = await prepare(program, method, template)
        response = await send(program, method, call, bearer(key))
        assert 200 <= response.status_code < 300, response.text

    async def test_forbidden_call_has_no_effect(self, program: Program) -> None:
        await program.member("m1", points=10, name="Kept")
        reader = await program.key_with("members:read", "points:read")
        await program.post(
            "/v1/members/m1/points/earn", key=reader, json={"points": 5, "reason": "x"}
        )
        await program.put("/v1/members/m1", key=reader, json={"name": "Changed"})
        await program.delete("/v1/members/m1", key=reader)
        member = (await program.get("/v1/members/m1")).json()
        assert member["name"] == "Kept"
        assert member["points"]["available"] == 10


def _names_an_object(method: str, path: str) -> bool:
    body = ENDPOINTS[(method, path)].body or {}
    return bool(path_parameters(path)) or "{member}" in body.values()


OBJECT_ROUTES = [
    pytest.param(method, path, id=f"{method} {path}")
    for method, path in ENDPOINTS
    if _names_an_object(method, path)
]


class TestTenancy:
    @pytest.mark.parametrize(("method", "template"), OBJECT_ROUTES)
    async def test_another_programs_object_is_not_found(
        self, program: Program, other_program: Program, method: str, template: str
    ) -> None:
        call = await prepare(other_program, method, template)
        states = {name: PATH_PARAMETERS[name][1] for name in call.objects}
        before = {
            name: await state(other_program, call.objects[name]) for name, state in states.items()
        }
        response = await send(program, method, call, bearer(program.admin_key))
        if ENDPOINTS[(method, template)].upserts:
            # A member of this program with the same external id, not theirs.
            assert response.status_code == 201, response.text
        else:
            assert_problem(response, 404, ENDPOINTS[(method, template)].not_found_code)
        after = {
            name: await state(other_program, call.objects[name]) for name, state in states.items()
        }
        assert after == before

    async def test_other_programs_key_cannot_reach_this_program(
        self, program: Program, other_program: Program
    ) -> None:
        await program.member("mine", points=10, name="Mine")
        response = await program.get("/v1/members/mine", key=other_program.admin_key)
        assert_problem(response, 404, "not_found")
        listed = (await program.get("/v1/members", key=other_program.admin_key)).json()
        assert listed["data"] == []
        earned = await program.post(
            "/v1/members/mine/points/earn",
            key=other_program.admin_key,
            json={"points": 5, "reason": "x"},
        )
        assert_problem(earned, 404, "not_found")
        assert (await program.balance("mine"))["available"] == 10
