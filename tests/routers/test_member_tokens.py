"""Member tokens through HTTP: issuing them, the /v1/me routes they open, every way a token
is refused, and signing-key rotation (docs/member-tokens.md)."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app import db
from app.clock import clock
from app.services.members import member_tokens
from app.services.members.member_tokens import (
    RETIRE_AFTER,
    SigningKey,
    encode_token,
    rotate_signing_keys,
)
from tests.conftest import Program, assert_problem
from tests.routers.test_auth import (
    ENDPOINTS,
    MEMBER_TOKEN_ROUTES,
    app_routes,
    bearer,
    path_parameters,
    prepare,
    send,
)
from tests.test_cli import patron

# Each /v1/me route and the admin route that must answer the same for the token's member.
TWINS = {
    ("GET", "/v1/me"): "/v1/members/{member}",
    ("GET", "/v1/me/points"): "/v1/members/{member}/points",
    ("GET", "/v1/me/points/transactions"): "/v1/members/{member}/points/transactions",
    ("GET", "/v1/me/tier"): "/v1/members/{member}/tier",
    ("GET", "/v1/me/referrals"): "/v1/members/{member}/referrals",
    ("POST", "/v1/me/referral-link"): "/v1/members/{member}/referral-link",
}
ME_ROUTES = [pytest.param(method, path, id=f"{method} {path}") for method, path in TWINS]
B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
OTHER_ROUTES = [
    pytest.param(method, path, id=f"{method} {path}")
    for method, path in ENDPOINTS
    if (method, path) not in MEMBER_TOKEN_ROUTES
]


@pytest.fixture(autouse=True)
def _forget_signing_keys() -> Iterator[None]:
    yield
    member_tokens.clear_cache()


def claims_of(token: str) -> dict[str, Any]:
    payload = token.removeprefix("mt_").split(".")[0]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "==="))
    return decoded


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def issue(program: Program, member: str, **body: Any) -> str:
    response = await program.post(f"/v1/members/{member}/tokens", json=body)
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


async def call(
    program: Program, method: str, path: str, token: str, **kwargs: Any
) -> httpx.Response:
    headers = {**bearer(token), **kwargs.pop("headers", {})}
    return await program.client.request(method, path, headers=headers, **kwargs)


async def all_me_routes_refuse(program: Program, token: str) -> None:
    for method, path in TWINS:
        assert_problem(await call(program, method, path, token), 401, "unauthorized")


async def member_internal_id(program: Program, member: str) -> int:
    async with db.read_only() as conn:
        found = (
            await conn.execute(
                text("SELECT id FROM members WHERE program_id = :p AND external_id = :m"),
                {"p": program.id, "m": member},
            )
        ).scalar_one()
    member_id: int = found
    return member_id


async def keys_by_kid() -> dict[int, SigningKey]:
    return {key.kid: key for key in await member_tokens.list_signing_keys()}


class TestIssue:
    async def test_returns_a_token_and_its_expiry(self, program: Program) -> None:
        now = datetime.now(UTC).replace(microsecond=0)
        clock.freeze(now)
        await program.member("m1")
        response = await program.post("/v1/members/m1/tokens", json={})
        assert response.status_code == 201, response.text
        body = response.json()
        assert set(body) == {"token", "expires_at"}
        assert body["token"].startswith("mt_")
        assert datetime.fromisoformat(body["expires_at"]) == now + timedelta(hours=1)
        assert body["expires_at"].endswith("+00:00")
        claims = claims_of(body["token"])
        assert claims["pid"] == program.id
        assert claims["mid"] == await member_internal_id(program, "m1")
        assert claims["exp"] - claims["iat"] == 3600

    async def test_without_a_body(self, program: Program) -> None:
        await program.member("m1")
        response = await program.post("/v1/members/m1/tokens")
        assert response.status_code == 201, response.text

    async def test_chosen_lifetime(self, program: Program) -> None:
        now = datetime.now(UTC).replace(microsecond=0)
        clock.freeze(now)
        await program.member("m1")
        for ttl in (1, 60, 86400):
            response = await program.post("/v1/members/m1/tokens", json={"ttl_seconds": ttl})
            assert response.status_code == 201, response.text
            expires_at = datetime.fromisoformat(response.json()["expires_at"])
            assert expires_at == now + timedelta(seconds=ttl)

    @pytest.mark.parametrize("ttl", [0, -1, 86401, 10**12, "60", 60.0, True, None, [60]])
    async def test_lifetime_out_of_bounds_or_not_an_integer(
        self, program: Program, ttl: Any
    ) -> None:
        await program.member("m1")
        response = await program.post("/v1/members/m1/tokens", json={"ttl_seconds": ttl})
        assert_problem(response, 422, "validation_error")

    async def test_unknown_field(self, program: Program) -> None:
        await program.member("m1")
        response = await program.post("/v1/members/m1/tokens", json={"member_id": "m2"})
        assert_problem(response, 422, "validation_error")

    async def test_unknown_member(self, program: Program) -> None:
        assert_problem(await program.post("/v1/members/ghost/tokens", json={}), 404, "not_found")

    async def test_erased_member(self, program: Program) -> None:
        await program.member("m1", name="Ann")
        assert (await program.delete("/v1/members/m1")).status_code == 204
        assert_problem(await program.post("/v1/members/m1/tokens", json={}), 404, "not_found")

    async def test_another_programs_member(self, program: Program, other_program: Program) -> None:
        await other_program.member("theirs")
        response = await program.post("/v1/members/theirs/tokens", json={})
        assert_problem(response, 404, "not_found")

    async def test_needs_members_write(self, program: Program) -> None:
        await program.member("m1")
        reader = await program.key_with(
            "members:read", "points:read", "points:write", "referrals:read", "referrals:write"
        )
        response = await program.post("/v1/members/m1/tokens", key=reader, json={})
        assert_problem(response, 403, "forbidden")
        writer = await program.key_with("members:write")
        response = await program.post("/v1/members/m1/tokens", key=writer, json={})
        assert response.status_code == 201, response.text

    async def test_retry_with_the_same_idempotency_key(self, program: Program) -> None:
        await program.member("m1")
        headers = {"Idempotency-Key": "token-1"}
        first = await program.post("/v1/members/m1/tokens", json={}, headers=headers)
        clock.freeze(datetime.now(UTC) + timedelta(seconds=5))
        again = await program.post("/v1/members/m1/tokens", json={}, headers=headers)
        assert (first.status_code, again.status_code) == (201, 201)
        assert again.json() == first.json()
        assert again.headers["Idempotency-Replayed"] == "true"
        other = await program.post(
            "/v1/members/m1/tokens", json={"ttl_seconds": 60}, headers=headers
        )
        assert_problem(other, 422, "idempotency_key_reused")


class TestMeRoutes:
    @pytest.fixture
    async def member(self, program: Program, other_program: Program) -> str:
        """A member with a tier, a history of entries and a referral code, beside another
        member of the same program and one of the same id in another program."""
        tier = {"key": "gold", "name": "Gold", "threshold": 100}
        assert (await program.post("/v1/tiers", json=tier)).status_code == 201
        await program.patch("/v1/program", json={"points_expiry_days": 30})
        await program.member("ann", points=150, name="Ann", email="ann@example.com")
        await program.post("/v1/members/ann/points/redeem", json={"points": 20})
        await program.member("bob", points=999, name="Bob")
        await other_program.member("ann", points=5, name="Other Ann")
        assert (await program.post("/v1/members/ann/referral-link")).status_code == 200
        return "ann"

    @pytest.mark.parametrize(("method", "path"), ME_ROUTES)
    async def test_answers_what_the_admin_route_answers(
        self, program: Program, member: str, method: str, path: str
    ) -> None:
        token = await issue(program, member)
        mine = await call(program, method, path, token)
        admin = await program.request(method, TWINS[(method, path)].format(member=member))
        assert mine.status_code == admin.status_code == 200, mine.text
        assert mine.headers["content-type"] == admin.headers["content-type"]
        assert mine.json() == admin.json()

    async def test_the_member_is_the_tokens_member(self, program: Program, member: str) -> None:
        token = await issue(program, member)
        me = (await call(program, "GET", "/v1/me", token)).json()
        assert (me["external_id"], me["name"], me["points"]["available"]) == ("ann", "Ann", 130)
        tier = (await call(program, "GET", "/v1/me/tier", token)).json()
        assert tier["tier"]["key"] == "gold"

    async def test_transactions_page_like_the_admin_route(
        self, program: Program, member: str
    ) -> None:
        token = await issue(program, member)
        admin_path = f"/v1/members/{member}/points/transactions"
        first = await call(program, "GET", "/v1/me/points/transactions?limit=1", token)
        assert first.json() == (await program.get(admin_path + "?limit=1")).json()
        cursor = first.json()["next_cursor"]
        assert cursor
        second = await call(
            program,
            "GET",
            "/v1/me/points/transactions",
            token,
            params={"limit": 1, "cursor": cursor},
        )
        expected = await program.get(admin_path, params={"limit": 1, "cursor": cursor})
        assert second.json() == expected.json()
        assert second.json()["data"] != first.json()["data"]

    async def test_list_bounds_are_validated(self, program: Program, member: str) -> None:
        token = await issue(program, member)
        for limit in (0, 101):
            response = await call(
                program, "GET", "/v1/me/points/transactions", token, params={"limit": limit}
            )
            assert_problem(response, 422, "validation_error")

    async def test_referral_link_is_the_same_every_time(
        self, program: Program, member: str
    ) -> None:
        token = await issue(program, member)
        first = await call(program, "POST", "/v1/me/referral-link", token)
        again = await call(program, "POST", "/v1/me/referral-link", token)
        assert first.status_code == again.status_code == 200
        assert first.json() == again.json()
        referrals = (await call(program, "GET", "/v1/me/referrals", token)).json()
        assert referrals["code"] == first.json()["code"]

    async def test_idempotency_keys_are_each_members_own(
        self, program: Program, member: str
    ) -> None:
        headers = {"Idempotency-Key": "share-1"}
        ann = await issue(program, member)
        bob = await issue(program, "bob")
        first = await call(program, "POST", "/v1/me/referral-link", ann, headers=headers)
        replayed = await call(program, "POST", "/v1/me/referral-link", ann, headers=headers)
        assert first.status_code == replayed.status_code == 200
        assert replayed.json() == first.json()
        assert replayed.headers["Idempotency-Replayed"] == "true"
        # Bob's app happens to use the same key: Bob gets his own code, not Ann's.
        theirs = await call(program, "POST", "/v1/me/referral-link", bob, headers=headers)
        assert theirs.status_code == 200, theirs.text
        assert "Idempotency-Replayed" not in theirs.headers
        bobs = (await program.post("/v1/members/bob/referral-link")).json()
        assert theirs.json() == bobs != first.json()

    @pytest.mark.parametrize(("method", "path"), ME_ROUTES)
    async def test_an_api_key_is_the_wrong_credential(
        self, program: Program, member: str, method: str, path: str
    ) -> None:
        for key in (program.admin_key, await program.key_with("members:read")):
            assert_problem(await call(program, method, path, key), 403, "forbidden")

    @pytest.mark.parametrize(("method", "path"), ME_ROUTES)
    async def test_no_or_unknown_credentials(
        self, program: Program, method: str, path: str
    ) -> None:
        unauthenticated = await program.client.request(method, path)
        assert_problem(unauthenticated, 401, "unauthorized")
        for token in ("ptr_" + secrets.token_urlsafe(32), "sk_" + secrets.token_hex(8)):
            assert_problem(await call(program, method, path, token), 401, "unauthorized")


class TestRefusedTokens:
    async def test_expired(self, program: Program) -> None:
        clock.freeze(datetime.now(UTC).replace(microsecond=0))
        await program.member("m1")
        token = await issue(program, "m1", ttl_seconds=60)
        clock.advance(timedelta(seconds=59))
        assert (await call(program, "GET", "/v1/me", token)).status_code == 200
        clock.advance(timedelta(seconds=1))
        await all_me_routes_refuse(program, token)

    async def test_tampered_payload(self, program: Program) -> None:
        await program.member("m1", points=5)
        await program.member("m2", points=500)
        token = await issue(program, "m1")
        payload, signature = token.removeprefix("mt_").split(".")
        claims = claims_of(token)
        for change in (
            {"mid": await member_internal_id(program, "m2")},
            {"exp": claims["exp"] + 86400},
            {"pid": claims["pid"] + 1},
        ):
            forged = b64(json.dumps({**claims, **change}, separators=(",", ":")).encode())
            await all_me_routes_refuse(program, f"mt_{forged}.{signature}")
        # The same claims written differently (spaces, key order) are not the signed text.
        respelled = b64(json.dumps(dict(reversed(claims.items()))).encode())
        await all_me_routes_refuse(program, f"mt_{respelled}.{signature}")
        # One bit changed in the payload's last character.
        flipped = payload[:-1] + ("A" if payload[-1] != "A" else "B")
        await all_me_routes_refuse(program, f"mt_{flipped}.{signature}")

    async def test_tampered_signature(self, program: Program) -> None:
        await program.member("m1")
        token = await issue(program, "m1")
        signed, signature = token.rsplit(".", 1)
        raw = bytearray(base64.urlsafe_b64decode(signature + "="))
        for forged in (
            b64(bytes([raw[0] ^ 1]) + bytes(raw[1:])),
            b64(bytes(raw[:-1])),
            b64(bytes(32)),
            signature + "A",
            "",
        ):
            await all_me_routes_refuse(program, f"{signed}.{forged}")
        # The same signature bytes with the last character's unused bits set: refused too.
        position = B64_ALPHABET.index(signature[-1])
        respelled = signature[:-1] + B64_ALPHABET[position | 1]
        if respelled != signature:
            await all_me_routes_refuse(program, f"{signed}.{respelled}")
        else:
            respelled = signature[:-1] + B64_ALPHABET[position & ~1]
            await all_me_routes_refuse(program, f"{signed}.{respelled}")

    async def test_wrong_prefix(self, program: Program) -> None:
        await program.member("m1")
        token = await issue(program, "m1")
        body = token.removeprefix("mt_")
        for forged in ("MT_" + body, "mk_" + body, "ptr_" + body, body, "mt" + body):
            await all_me_routes_refuse(program, forged)

    async def test_malformed(self, program: Program) -> None:
        await program.member("m1")
        token = await issue(program, "m1")
        signed, signature = token.rsplit(".", 1)
        not_json = b64(b"not json")
        not_an_object = b64(b"[1,2,3,4,5]")
        claims = claims_of(token)
        for forged in (
            "mt_",
            "mt_.",
            "mt_abc",
            f"{signed}",
            f"{signed}.{signature}.{signature}",
            f"{signed}!.{signature}",
            f"mt_{not_json}.{signature}",
            f"mt_{not_an_object}.{signature}",
            f"mt_{b64(json.dumps({**claims, 'kid': str(claims['kid'])}).encode())}.{signature}",
            f"mt_{b64(json.dumps({**claims, 'extra': 1}).encode())}.{signature}",
            f"mt_{b64(json.dumps({**claims, 'exp': True}).encode())}.{signature}",
            token + "x" * 600,
        ):
            await all_me_routes_refuse(program, forged)

    async def test_another_kid(self, program: Program) -> None:
        await program.member("m1")
        token = await issue(program, "m1")
        claims = claims_of(token)
        # Unknown key ids, signed with a key of our own.
        stranger = SigningKey(kid=0, secret=secrets.token_bytes(32), created_at=clock.now())
        for kid in (0, -1, 2**62, claims["kid"] + 10**9):
            await all_me_routes_refuse(program, encode_token({**claims, "kid": kid}, stranger))
        # The right key id with the wrong secret.
        impostor = SigningKey(claims["kid"], secrets.token_bytes(32), clock.now())
        await all_me_routes_refuse(program, encode_token(claims, impostor))
        # Another existing key's id on a token signed by this one.
        other_kid = (await rotate_signing_keys()).new_kid
        keys = await keys_by_kid()
        relabelled = encode_token({**claims, "kid": other_kid}, keys[claims["kid"]])
        await all_me_routes_refuse(program, relabelled)
        # The untouched token still works (rotation retired nothing young).
        assert (await call(program, "GET", "/v1/me", token)).status_code == 200

    async def test_erased_member(self, program: Program) -> None:
        await program.member("m1", points=10, name="Ann")
        token = await issue(program, "m1", ttl_seconds=86400)
        for method, path in TWINS:
            assert (await call(program, method, path, token)).status_code == 200
        assert (await program.delete("/v1/members/m1")).status_code == 204
        await all_me_routes_refuse(program, token)

    async def test_a_token_stays_in_its_program(
        self, program: Program, other_program: Program
    ) -> None:
        await program.member("same", points=10, name="Ours")
        await other_program.member("same", points=99, name="Theirs")
        token = await issue(program, "same")
        me = (await call(program, "GET", "/v1/me", token)).json()
        assert (me["name"], me["points"]["available"]) == ("Ours", 10)
        # Another program's member path, with this token: refused, and nothing leaks.
        response = await call(other_program, "GET", "/v1/members/same", token)
        assert_problem(response, 403, "forbidden")
        # The same payload claiming the other program fails the signature.
        claims = claims_of(token)
        signature = token.rsplit(".", 1)[1]
        forged = b64(json.dumps({**claims, "pid": other_program.id}).encode())
        await all_me_routes_refuse(program, f"mt_{forged}.{signature}")


class TestOtherRoutes:
    @pytest.mark.parametrize(("method", "template"), OTHER_ROUTES)
    async def test_member_token_is_forbidden(
        self, program: Program, method: str, template: str
    ) -> None:
        call_ = await prepare(program, method, template)
        member = call_.objects.get("member") or await program.member("holder", points=10)
        token = await issue(program, member)
        response = await send(program, method, call_, bearer(token))
        assert_problem(response, 403, "forbidden")

    async def test_every_route_of_the_app(self, app: Any, program: Program) -> None:
        """Described or not, every route that takes credentials, except /v1/me, refuses a
        member token with 403."""
        await program.member("m1")
        token = await issue(program, "m1")
        failures = {}
        for method, template in sorted(app_routes(app) - MEMBER_TOKEN_ROUTES):
            path = template.format(**{name: "1" for name in path_parameters(template)})
            if (await program.client.request(method, path, json={})).status_code != 401:
                continue  # a public page (the dashboard's HTML; its data needs a key)
            response = await program.client.request(method, path, headers=bearer(token), json={})
            if response.status_code != 403 or response.json().get("code") != "forbidden":
                failures[(method, template)] = f"{response.status_code}: {response.text[:120]}"
        assert not failures, failures
        assert set(TWINS) == MEMBER_TOKEN_ROUTES

    async def test_an_invalid_member_token_is_unauthorized(self, program: Program) -> None:
        await program.member("m1")
        token = await issue(program, "m1")
        response = await program.client.get("/v1/members/m1", headers=bearer(token + "A"))
        assert_problem(response, 401, "unauthorized")

    async def test_forbidden_calls_have_no_effect(self, program: Program) -> None:
        await program.member("m1", points=10, name="Kept")
        headers = bearer(await issue(program, "m1"))
        client = program.client
        await client.post(
            "/v1/members/m1/points/earn", headers=headers, json={"points": 5, "reason": "x"}
        )
        await client.put("/v1/members/m1", headers=headers, json={"name": "Changed"})
        await client.post("/v1/members/m1/tokens", headers=headers, json={})
        await client.delete("/v1/members/m1", headers=headers)
        member = (await program.get("/v1/members/m1")).json()
        assert (member["name"], member["points"]["available"]) == ("Kept", 10)


class TestKeyRotation:
    async def test_previous_key_verifies_until_it_is_retired(self, program: Program) -> None:
        start = datetime.now(UTC).replace(microsecond=0)
        clock.freeze(start)
        await program.member("m1")
        old = await issue(program, "m1", ttl_seconds=86400)
        old_kid = claims_of(old)["kid"]
        # A token that outlives its key: only retirement can end it.
        keys = await keys_by_kid()
        claims = {**claims_of(old), "exp": int((start + timedelta(days=30)).timestamp())}
        long_lived = encode_token(claims, keys[old_kid])

        rotation = await rotate_signing_keys()
        assert old_kid not in rotation.retired
        assert {old_kid, rotation.new_kid} <= set(rotation.active)
        new = await issue(program, "m1")
        assert claims_of(new)["kid"] == rotation.new_kid
        for token in (old, new, long_lived):
            assert (await call(program, "GET", "/v1/me", token)).status_code == 200

        # Just before the old key's last possible token has expired (plus the margin).
        clock.freeze(start + RETIRE_AFTER - timedelta(seconds=1))
        again = await rotate_signing_keys()
        assert old_kid not in again.retired
        assert (await call(program, "GET", "/v1/me", long_lived)).status_code == 200

        clock.freeze(start + RETIRE_AFTER)
        last = await rotate_signing_keys()
        assert old_kid in last.retired
        assert rotation.new_kid not in last.retired  # replaced less than 24 h ago
        await all_me_routes_refuse(program, long_lived)
        newest = await issue(program, "m1")
        assert claims_of(newest)["kid"] == last.new_kid
        assert (await call(program, "GET", "/v1/me", newest)).status_code == 200
        retired = (await keys_by_kid())[old_kid]
        assert retired.retired_at == start + RETIRE_AFTER

    async def test_retire_all_others_logs_every_app_out(self, program: Program) -> None:
        await program.member("m1")
        token = await issue(program, "m1")
        rotation = await rotate_signing_keys(retire_all_others=True)
        assert rotation.active == [rotation.new_kid]
        await all_me_routes_refuse(program, token)
        fresh = await issue(program, "m1")
        assert (await call(program, "GET", "/v1/me", fresh)).status_code == 200

    async def test_a_key_made_by_another_process_verifies_at_once(self, program: Program) -> None:
        await program.member("m1")
        token = await issue(program, "m1")  # this process has the key set cached now
        async with db.transaction() as conn:
            row = (
                await conn.execute(
                    text(
                        "INSERT INTO member_token_keys (secret, created_at) "
                        "VALUES (:secret, :now) RETURNING kid"
                    ),
                    {"secret": secrets.token_bytes(32), "now": clock.now()},
                )
            ).one()
        keys = await keys_by_kid()
        theirs = encode_token({**claims_of(token), "kid": row.kid}, keys[row.kid])
        assert (await call(program, "GET", "/v1/me", theirs)).status_code == 200

    async def test_first_key_is_made_once_on_first_use(self, program: Program) -> None:
        await program.member("m1")
        async with db.transaction() as conn:
            await conn.execute(
                text("UPDATE member_token_keys SET retired_at = :now WHERE retired_at IS NULL"),
                {"now": clock.now()},
            )
        member_tokens.clear_cache()
        tokens = await asyncio.gather(*(issue(program, "m1") for _ in range(8)))
        assert len({claims_of(token)["kid"] for token in tokens}) == 1
        active = [key for key in (await keys_by_kid()).values() if key.retired_at is None]
        assert [key.kid for key in active] == [claims_of(tokens[0])["kid"]]

    async def test_rotate_with_no_key_yet(self, program: Program) -> None:
        await program.member("m1")
        async with db.transaction() as conn:
            await conn.execute(
                text("UPDATE member_token_keys SET retired_at = :now WHERE retired_at IS NULL"),
                {"now": clock.now()},
            )
        rotation = await rotate_signing_keys()
        assert (rotation.retired, rotation.active) == ([], [rotation.new_kid])
        token = await issue(program, "m1")
        assert claims_of(token)["kid"] == rotation.new_kid

    async def test_cli_rotate_and_list(self, program: Program, database_url: str) -> None:
        await program.member("m1")
        before = await issue(program, "m1")
        result = await asyncio.to_thread(patron, database_url, "token-key", "rotate", "--json")
        assert result.returncode == 0, result.stderr
        rotated = json.loads(result.stdout)
        assert set(rotated) == {"new_kid", "retired", "active"}
        assert claims_of(before)["kid"] in rotated["active"]
        # Other processes pick the new key up when their cache ages out; this one now.
        member_tokens.clear_cache()
        after = await issue(program, "m1")
        assert claims_of(after)["kid"] == rotated["new_kid"]
        for token in (before, after):
            assert (await call(program, "GET", "/v1/me", token)).status_code == 200
        listed = await asyncio.to_thread(patron, database_url, "token-key", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        rows = json.loads(listed.stdout)
        assert {row["kid"] for row in rows if row["retired_at"] is None} >= {
            claims_of(before)["kid"],
            rotated["new_kid"],
        }
        assert all(set(row) == {"kid", "created_at", "retired_at"} for row in rows)
