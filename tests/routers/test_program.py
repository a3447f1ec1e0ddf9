"""Program settings and API keys through HTTP: GET/PATCH /v1/program and /v1/api-keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.conftest import Program, assert_problem

DEFAULT_REFERRAL = {
    "referrer_points": 0,
    "referee_points": 0,
    "min_order_amount": 0,
    "max_rewards_per_referrer_30d": None,
    "link_template": None,
}
NON_ADMIN_SCOPES = (
    "members:read",
    "members:write",
    "points:read",
    "points:write",
    "referrals:read",
    "referrals:write",
)


def assert_invalid(response: httpx.Response) -> None:
    body = assert_problem(response, 422, "validation_error")
    assert isinstance(body["errors"], list) and body["errors"]


async def settings(program: Program) -> dict[str, Any]:
    response = await program.get("/v1/program")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def create_key(program: Program, name: str, *scopes: str, **kwargs: Any) -> httpx.Response:
    return await program.post("/v1/api-keys", json={"name": name, "scopes": list(scopes)}, **kwargs)


class TestGetProgram:
    async def test_defaults(self, program: Program) -> None:
        body = await settings(program)
        assert body["id"] == program.id
        assert body["name"] == "Test Shop"
        assert body["currency"] == "CNY"
        assert body["earn_rate"] == "1"
        assert body["pending_days"] == 0
        assert body["points_expiry_days"] is None
        assert body["hold_ttl_seconds"] == 900
        assert body["timezone"] == "UTC"
        assert body["birthday_bonus_points"] == 0
        assert body["webhooks_allow_private_hosts"] is False
        assert body["referral"] == DEFAULT_REFERRAL
        for field in ("created_at", "updated_at"):
            assert datetime.fromisoformat(body[field]).utcoffset() is not None

    async def test_each_program_sees_its_own(
        self, program: Program, other_program: Program
    ) -> None:
        await other_program.patch("/v1/program", json={"pending_days": 7})
        mine, theirs = await settings(program), await settings(other_program)
        assert (mine["id"], theirs["id"]) == (program.id, other_program.id)
        assert (mine["name"], theirs["name"]) == ("Test Shop", "Other Shop")
        assert (mine["pending_days"], theirs["pending_days"]) == (0, 7)


class TestPatchProgram:
    async def test_changes_sent_fields_only(self, program: Program) -> None:
        before = await settings(program)
        response = await program.patch(
            "/v1/program",
            json={"pending_days": 14, "points_expiry_days": 365, "timezone": "Asia/Shanghai"},
        )
        assert response.status_code == 200
        after = await settings(program)
        assert response.json() == after
        assert after["pending_days"] == 14
        assert after["points_expiry_days"] == 365
        assert after["timezone"] == "Asia/Shanghai"
        unchanged = set(before) - {"pending_days", "points_expiry_days", "timezone", "updated_at"}
        for field in unchanged:
            assert after[field] == before[field], field

    async def test_every_setting_can_be_changed(self, program: Program) -> None:
        changes = {
            "name": "Renamed Shop",
            "earn_rate": "2.5",
            "pending_days": 30,
            "points_expiry_days": 730,
            "hold_ttl_seconds": 600,
            "timezone": "Europe/Paris",
            "birthday_bonus_points": 200,
            "webhooks_allow_private_hosts": True,
        }
        response = await program.patch("/v1/program", json=changes)
        assert response.status_code == 200
        body = await settings(program)
        for field, value in changes.items():
            assert body[field] == value, field

    async def test_empty_patch_changes_nothing(self, program: Program) -> None:
        before = await settings(program)
        response = await program.patch("/v1/program", json={})
        assert response.status_code == 200
        after = response.json()
        assert {k: v for k, v in after.items() if k != "updated_at"} == {
            k: v for k, v in before.items() if k != "updated_at"
        }

    async def test_points_expiry_days_null_means_never(self, program: Program) -> None:
        await program.patch("/v1/program", json={"points_expiry_days": 30})
        response = await program.patch("/v1/program", json={"points_expiry_days": None})
        assert response.status_code == 200
        assert (await settings(program))["points_expiry_days"] is None

    async def test_does_not_change_another_program(
        self, program: Program, other_program: Program
    ) -> None:
        await program.patch("/v1/program", json={"earn_rate": "3", "timezone": "Asia/Tokyo"})
        theirs = await settings(other_program)
        assert theirs["earn_rate"] == "1"
        assert theirs["timezone"] == "UTC"

    async def test_invalid_patch_changes_nothing(self, program: Program) -> None:
        before = await settings(program)
        response = await program.patch(
            "/v1/program", json={"pending_days": 5, "hold_ttl_seconds": 0}
        )
        assert_invalid(response)
        assert await settings(program) == before

    @pytest.mark.parametrize(
        "field", ["currency", "id", "created_at", "updated_at", "earn_rules", "tiers"]
    )
    async def test_unknown_or_read_only_field(self, program: Program, field: str) -> None:
        before = await settings(program)
        response = await program.patch("/v1/program", json={field: "JPY"})
        assert_invalid(response)
        assert await settings(program) == before

    async def test_currency_cannot_be_changed(self, program: Program) -> None:
        response = await program.patch("/v1/program", json={"currency": "USD", "pending_days": 1})
        assert_invalid(response)
        after = await settings(program)
        assert after["currency"] == "CNY"
        assert after["pending_days"] == 0

    @pytest.mark.parametrize(
        "field",
        [
            "name",
            "earn_rate",
            "pending_days",
            "hold_ttl_seconds",
            "timezone",
            "birthday_bonus_points",
            "webhooks_allow_private_hosts",
            "referral",
        ],
    )
    async def test_null_for_a_required_setting(self, program: Program, field: str) -> None:
        before = await settings(program)
        assert_invalid(await program.patch("/v1/program", json={field: None}))
        assert await settings(program) == before

    async def test_body_must_be_an_object(self, program: Program) -> None:
        assert_invalid(await program.patch("/v1/program", json=[{"pending_days": 1}]))


class TestSettingBounds:
    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("pending_days", 0),
            ("pending_days", 365),
            ("points_expiry_days", 1),
            ("points_expiry_days", 3650),
            ("hold_ttl_seconds", 1),
            ("hold_ttl_seconds", 86400),
            ("birthday_bonus_points", 0),
            ("birthday_bonus_points", 1_000_000_000),
        ],
    )
    async def test_accepts_bound(self, program: Program, field: str, value: int) -> None:
        response = await program.patch("/v1/program", json={field: value})
        assert response.status_code == 200, response.text
        assert (await settings(program))[field] == value

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("pending_days", -1),
            ("pending_days", 366),
            ("pending_days", "7"),
            ("pending_days", 7.0),
            ("pending_days", True),
            ("points_expiry_days", 0),
            ("points_expiry_days", 3651),
            ("points_expiry_days", "30"),
            ("hold_ttl_seconds", 0),
            ("hold_ttl_seconds", 86401),
            ("hold_ttl_seconds", -900),
            ("birthday_bonus_points", -1),
            ("birthday_bonus_points", 1_000_000_001),
            ("birthday_bonus_points", 10.5),
            ("name", ""),
            ("name", "n" * 201),
            ("name", "Shop\u0000"),
        ],
    )
    async def test_refuses_out_of_bounds(self, program: Program, field: str, value: Any) -> None:
        before = await settings(program)
        assert_invalid(await program.patch("/v1/program", json={field: value}))
        assert await settings(program) == before


class TestEarnRate:
    @pytest.mark.parametrize(
        ("sent", "shown"),
        [
            ("1.5", "1.5"),
            ("2", "2"),
            ("2.000", "2"),
            (3, "3"),
            ("0", "0"),
            ("0.000001", "0.000001"),
            ("0.25", "0.25"),
            ("1000000", "1000000"),
        ],
    )
    async def test_decimal_string(self, program: Program, sent: Any, shown: str) -> None:
        response = await program.patch("/v1/program", json={"earn_rate": sent})
        assert response.status_code == 200, response.text
        assert response.json()["earn_rate"] == shown
        assert (await settings(program))["earn_rate"] == shown

    @pytest.mark.parametrize("rate", [1.5, 2.0, 0.1])
    async def test_float_is_refused(self, program: Program, rate: float) -> None:
        assert_invalid(await program.patch("/v1/program", json={"earn_rate": rate}))
        assert (await settings(program))["earn_rate"] == "1"

    @pytest.mark.parametrize(
        "rate",
        ["-1", "-0.5", "1000000.5", "1000001", "0.0000001", "abc", "", "NaN", "Infinity", True],
    )
    async def test_invalid(self, program: Program, rate: Any) -> None:
        assert_invalid(await program.patch("/v1/program", json={"earn_rate": rate}))
        assert (await settings(program))["earn_rate"] == "1"

    async def test_manual_earn_ignores_the_rate(self, program: Program) -> None:
        # A manual earn credits exactly the points sent whatever the rate.
        await program.patch("/v1/program", json={"earn_rate": "2.5"})
        await program.member("m1", points=10)
        assert (await program.balance("m1"))["available"] == 10


class TestTimezone:
    @pytest.mark.parametrize("zone", ["Asia/Shanghai", "America/New_York", "UTC", "Europe/Paris"])
    async def test_iana_zone(self, program: Program, zone: str) -> None:
        response = await program.patch("/v1/program", json={"timezone": zone})
        assert response.status_code == 200
        assert (await settings(program))["timezone"] == zone

    @pytest.mark.parametrize(
        "zone",
        ["Mars/Olympus", "", "UTC+8", "../../etc/passwd", "/etc/passwd", "Asia/" + "x" * 60],
    )
    async def test_unknown_zone(self, program: Program, zone: str) -> None:
        assert_invalid(await program.patch("/v1/program", json={"timezone": zone}))
        assert (await settings(program))["timezone"] == "UTC"

    async def test_zone_must_be_a_string(self, program: Program) -> None:
        assert_invalid(await program.patch("/v1/program", json={"timezone": 8}))


class TestReferralSettings:
    async def test_merges_field_by_field(self, program: Program) -> None:
        await program.patch("/v1/program", json={"referral": {"referrer_points": 100}})
        response = await program.patch(
            "/v1/program",
            json={"referral": {"referee_points": 50, "link_template": "https://s.example/{code}"}},
        )
        assert response.status_code == 200
        assert (await settings(program))["referral"] == {
            **DEFAULT_REFERRAL,
            "referrer_points": 100,
            "referee_points": 50,
            "link_template": "https://s.example/{code}",
        }

    async def test_other_settings_untouched(self, program: Program) -> None:
        await program.patch("/v1/program", json={"pending_days": 3})
        await program.patch("/v1/program", json={"referral": {"min_order_amount": 5000}})
        body = await settings(program)
        assert body["pending_days"] == 3
        assert body["referral"]["min_order_amount"] == 5000

    async def test_null_clears_a_nullable_field(self, program: Program) -> None:
        await program.patch(
            "/v1/program",
            json={"referral": {"max_rewards_per_referrer_30d": 5, "referrer_points": 10}},
        )
        await program.patch(
            "/v1/program", json={"referral": {"max_rewards_per_referrer_30d": None}}
        )
        referral = (await settings(program))["referral"]
        assert referral["max_rewards_per_referrer_30d"] is None
        assert referral["referrer_points"] == 10

    @pytest.mark.parametrize(
        "referral",
        [
            {"referrer_points": -1},
            {"referrer_points": "10"},
            {"referrer_points": None},
            {"referee_points": 1_000_000_001},
            {"min_order_amount": 10**12 + 1},
            {"min_order_amount": 1.5},
            {"max_rewards_per_referrer_30d": -1},
            {"link_template": "https://shop.example/invite"},
            {"link_template": "ftp://shop.example/{code}"},
            {"link_template": "https://shop.example/" + "x" * 500 + "{code}"},
            {"link_template": "https://shop.example/\u0000{code}"},
            {"bonus": 1},
            [],
        ],
    )
    async def test_invalid(self, program: Program, referral: Any) -> None:
        before = await settings(program)
        assert_invalid(await program.patch("/v1/program", json={"referral": referral}))
        assert await settings(program) == before


class TestCreateApiKey:
    async def test_shows_key_once(self, program: Program) -> None:
        response = await create_key(program, "Checkout", "points:read", "points:write")
        assert response.status_code == 201
        body = response.json()
        assert set(body) >= {"id", "name", "scopes", "prefix", "key", "created_at"}
        assert body["name"] == "Checkout"
        assert sorted(body["scopes"]) == ["points:read", "points:write"]
        assert isinstance(body["key"], str) and len(body["key"]) >= 32
        assert body["prefix"] == body["key"][:12]
        assert uuid.UUID(body["id"])
        assert datetime.fromisoformat(body["created_at"]).utcoffset() is not None

    async def test_keys_are_distinct(self, program: Program) -> None:
        first = (await create_key(program, "a", "points:read")).json()
        second = (await create_key(program, "a", "points:read")).json()
        assert first["id"] != second["id"]
        assert first["key"] != second["key"]

    async def test_new_key_works_with_exactly_its_scopes(self, program: Program) -> None:
        await program.member("m1", points=5)
        key = (await create_key(program, "reader", "members:read")).json()["key"]
        assert (await program.get("/v1/members/m1", key=key)).status_code == 200
        assert (await program.get("/v1/members", key=key)).status_code == 200
        for method, path, body in [
            ("PUT", "/v1/members/m1", {"name": "x"}),
            ("GET", "/v1/members/m1/points", None),
            ("POST", "/v1/members/m1/points/earn", {"points": 1, "reason": "x"}),
            ("GET", "/v1/program", None),
            ("POST", "/v1/api-keys", {"name": "x", "scopes": ["admin"]}),
        ]:
            response = await program.request(method, path, key=key, json=body)
            assert_problem(response, 403, "forbidden")
        assert (await program.balance("m1"))["available"] == 5

    async def test_admin_scope_implies_all(self, program: Program) -> None:
        key = (await create_key(program, "second admin", "admin")).json()["key"]
        assert (await program.put("/v1/members/m1", key=key, json={})).status_code == 201
        earned = await program.post(
            "/v1/members/m1/points/earn", key=key, json={"points": 3, "reason": "x"}
        )
        assert earned.status_code == 201
        assert (await program.get("/v1/program", key=key)).status_code == 200

    async def test_key_acts_for_its_own_program(
        self, program: Program, other_program: Program
    ) -> None:
        key = (await create_key(program, "admin 2", "admin")).json()["key"]
        assert (await program.get("/v1/program", key=key)).json()["id"] == program.id
        await other_program.member("theirs")
        assert_problem(await program.get("/v1/members/theirs", key=key), 404, "not_found")

    async def test_duplicate_scopes_are_stored_once(self, program: Program) -> None:
        response = await create_key(program, "dup", "points:read", "points:read")
        assert response.status_code == 201
        assert response.json()["scopes"] == ["points:read"]

    @pytest.mark.parametrize(
        "body",
        [
            {"name": "x", "scopes": []},
            {"name": "x", "scopes": ["superuser"]},
            {"name": "x", "scopes": "admin"},
            {"name": "x"},
            {"scopes": ["admin"]},
            {"name": "", "scopes": ["admin"]},
            {"name": "n" * 201, "scopes": ["admin"]},
            {"name": "a\u0000b", "scopes": ["admin"]},
            {"name": "x", "scopes": ["admin"], "key": "ptr_chosen-by-the-client-0000000000"},
            {"name": "x", "scopes": ["admin"], "program_id": 1},
        ],
        ids=[
            "no-scopes",
            "unknown-scope",
            "scopes-not-a-list",
            "no-name",
            "only-scopes",
            "empty-name",
            "long-name",
            "nul-in-name",
            "chosen-secret",
            "program-id",
        ],
    )
    async def test_invalid(self, program: Program, body: dict[str, Any]) -> None:
        before = (await program.get("/v1/api-keys")).json()
        assert_invalid(await program.post("/v1/api-keys", json=body))
        assert (await program.get("/v1/api-keys")).json() == before

    async def test_needs_admin(self, program: Program) -> None:
        key = await program.key_with(*NON_ADMIN_SCOPES)
        response = await create_key(program, "escalate", "admin", key=key)
        assert_problem(response, 403, "forbidden")
        assert len((await program.get("/v1/api-keys")).json()) == 2

    async def test_idempotent_replay_returns_same_key_without_secret(
        self, program: Program
    ) -> None:
        headers = {"Idempotency-Key": "create-checkout-key"}
        first = await create_key(program, "Checkout", "points:write", headers=headers)
        again = await create_key(program, "Checkout", "points:write", headers=headers)
        assert (first.status_code, again.status_code) == (201, 201)
        assert "Idempotency-Replayed" not in first.headers
        assert again.headers["Idempotency-Replayed"] == "true"
        assert again.json()["id"] == first.json()["id"]
        assert again.json()["key"] is None
        assert again.json() == {**first.json(), "key": None}
        listed = (await program.get("/v1/api-keys")).json()
        assert [k["id"] for k in listed].count(first.json()["id"]) == 1
        assert len(listed) == 2  # the program's admin key and this one
        # The secret from the first response is the one that works.
        member = await program.put("/v1/members/m1", json={})
        assert member.status_code == 201
        earned = await program.post(
            "/v1/members/m1/points/earn",
            key=first.json()["key"],
            json={"points": 1, "reason": "x"},
        )
        assert earned.status_code == 201


class TestListApiKeys:
    async def test_lists_every_key_without_secrets(self, program: Program) -> None:
        created = (await create_key(program, "Checkout", "points:write")).json()
        response = await program.get("/v1/api-keys")
        assert response.status_code == 200
        listed = response.json()
        assert {k["id"] for k in listed} >= {created["id"]}
        assert len(listed) == 2
        mine = next(k for k in listed if k["id"] == created["id"])
        assert mine["name"] == "Checkout"
        assert mine["scopes"] == ["points:write"]
        assert mine["prefix"] == created["prefix"]
        assert mine["created_at"] == created["created_at"]
        for item in listed:
            assert "key" not in item
            assert "key_hash" not in item
        assert created["key"] not in response.text
        assert program.admin_key not in response.text

    async def test_only_this_programs_keys(self, program: Program, other_program: Program) -> None:
        theirs = (await create_key(other_program, "Theirs", "points:read")).json()
        listed = (await program.get("/v1/api-keys")).json()
        assert theirs["id"] not in {k["id"] for k in listed}
        assert all(k["name"] != "Theirs" for k in listed)

    async def test_shows_revoked_keys_as_revoked(self, program: Program) -> None:
        created = (await create_key(program, "Old", "points:read")).json()
        await program.delete(f"/v1/api-keys/{created['id']}")
        listed = (await program.get("/v1/api-keys")).json()
        old = next(k for k in listed if k["id"] == created["id"])
        assert old["revoked_at"] is not None
        admin = next(k for k in listed if k["id"] != created["id"])
        assert admin["revoked_at"] is None


class TestRevokeApiKey:
    async def test_revoked_key_is_unauthorized(self, program: Program) -> None:
        created = (await create_key(program, "Temp", "members:read")).json()
        assert (await program.get("/v1/members", key=created["key"])).status_code == 200
        response = await program.delete(f"/v1/api-keys/{created['id']}")
        assert response.status_code == 204
        assert response.content == b""
        assert_problem(await program.get("/v1/members", key=created["key"]), 401, "unauthorized")

    async def test_other_keys_keep_working(self, program: Program) -> None:
        doomed = (await create_key(program, "Doomed", "members:read")).json()
        kept = (await create_key(program, "Kept", "members:read")).json()
        await program.delete(f"/v1/api-keys/{doomed['id']}")
        assert (await program.get("/v1/members", key=kept["key"])).status_code == 200
        assert (await program.get("/v1/program")).status_code == 200

    async def test_revoking_twice_is_204(self, program: Program) -> None:
        created = (await create_key(program, "Temp", "members:read")).json()
        first = await program.delete(f"/v1/api-keys/{created['id']}")
        second = await program.delete(f"/v1/api-keys/{created['id']}")
        assert (first.status_code, second.status_code) == (204, 204)

    @pytest.mark.parametrize("key_id", [str(uuid.uuid4()), "not-a-uuid", "123"])
    async def test_unknown_key(self, program: Program, key_id: str) -> None:
        assert_problem(await program.delete(f"/v1/api-keys/{key_id}"), 404, "not_found")

    async def test_another_programs_key_is_not_found_and_keeps_working(
        self, program: Program, other_program: Program
    ) -> None:
        theirs = (await create_key(other_program, "Theirs", "members:read")).json()
        assert_problem(await program.delete(f"/v1/api-keys/{theirs['id']}"), 404, "not_found")
        assert (await other_program.get("/v1/members", key=theirs["key"])).status_code == 200
        listed = (await other_program.get("/v1/api-keys")).json()
        assert next(k for k in listed if k["id"] == theirs["id"])["revoked_at"] is None

    async def test_needs_admin(self, program: Program) -> None:
        created = (await create_key(program, "Temp", "members:read")).json()
        key = await program.key_with(*NON_ADMIN_SCOPES)
        response = await program.delete(f"/v1/api-keys/{created['id']}", key=key)
        assert_problem(response, 403, "forbidden")
        assert (await program.get("/v1/members", key=created["key"])).status_code == 200
