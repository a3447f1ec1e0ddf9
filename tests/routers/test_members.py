"""The member endpoints through HTTP: upsert by the shop's id, read, list, and erasure."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.conftest import Program, assert_problem

PERSONAL = {
    "name": "Li Wei",
    "email": "li.wei@example.com",
    "phone": "+86 138 0013 8000",
    "birthday": "1990-05-17",
    "metadata": {"store": "Shanghai", "vip": True},
}


def assert_invalid(response: httpx.Response) -> None:
    body = assert_problem(response, 422, "validation_error")
    assert isinstance(body["errors"], list) and body["errors"]


async def get_member(program: Program, external_id: str) -> dict[str, Any]:
    response = await program.get(f"/v1/members/{external_id}")
    assert response.status_code == 200, response.text
    member: dict[str, Any] = response.json()
    return member


class TestCreate:
    async def test_new_member_is_created(self, program: Program) -> None:
        response = await program.put("/v1/members/cust-1001", json=PERSONAL)
        assert response.status_code == 201
        member = response.json()
        assert member["external_id"] == "cust-1001"
        for field, value in PERSONAL.items():
            assert member[field] == value
        assert member["points"] == {
            "available": 0,
            "pending": 0,
            "held": 0,
            "lifetime_earned": 0,
            "lifetime_redeemed": 0,
        }
        assert member["tier"] is None
        assert member["referral_code"] is None
        assert member["referred_by"] is None
        assert datetime.fromisoformat(member["created_at"]).utcoffset() is not None

    async def test_created_member_can_be_read_back(self, program: Program) -> None:
        created = (await program.put("/v1/members/cust-1001", json=PERSONAL)).json()
        assert await get_member(program, "cust-1001") == created

    async def test_empty_body_creates_a_member_without_personal_data(
        self, program: Program
    ) -> None:
        response = await program.put("/v1/members/anon", json={})
        assert response.status_code == 201
        member = response.json()
        for field in PERSONAL:
            assert member[field] is None

    async def test_every_allowed_character_in_external_id(self, program: Program) -> None:
        external_id = "Az09_.:@-"
        response = await program.put(f"/v1/members/{external_id}", json={})
        assert response.status_code == 201
        assert response.json()["external_id"] == external_id
        assert (await get_member(program, external_id))["external_id"] == external_id

    async def test_external_id_of_128_characters(self, program: Program) -> None:
        external_id = "x" * 128
        response = await program.put(f"/v1/members/{external_id}", json={})
        assert response.status_code == 201

    async def test_same_external_id_in_two_programs_are_two_members(
        self, program: Program, other_program: Program
    ) -> None:
        mine = await program.put("/v1/members/shared", json={"name": "Mine"})
        theirs = await other_program.put("/v1/members/shared", json={"name": "Theirs"})
        assert (mine.status_code, theirs.status_code) == (201, 201)
        assert (await get_member(program, "shared"))["name"] == "Mine"
        assert (await get_member(other_program, "shared"))["name"] == "Theirs"


class TestUpdate:
    async def test_existing_member_is_updated_with_200(self, program: Program) -> None:
        await program.put("/v1/members/m1", json=PERSONAL)
        response = await program.put("/v1/members/m1", json={"name": "Wang Fang"})
        assert response.status_code == 200
        assert response.json()["name"] == "Wang Fang"
        assert (await get_member(program, "m1"))["name"] == "Wang Fang"

    async def test_only_sent_fields_change(self, program: Program) -> None:
        await program.put("/v1/members/m1", json=PERSONAL)
        await program.put("/v1/members/m1", json={"email": "new@example.com"})
        member = await get_member(program, "m1")
        assert member["email"] == "new@example.com"
        for field in ("name", "phone", "birthday", "metadata"):
            assert member[field] == PERSONAL[field]

    async def test_empty_body_changes_nothing(self, program: Program) -> None:
        created = (await program.put("/v1/members/m1", json=PERSONAL)).json()
        response = await program.put("/v1/members/m1", json={})
        assert response.status_code == 200
        assert response.json() == created

    async def test_null_clears_a_field(self, program: Program) -> None:
        await program.put("/v1/members/m1", json=PERSONAL)
        response = await program.put("/v1/members/m1", json={"phone": None, "metadata": None})
        assert response.status_code == 200
        member = await get_member(program, "m1")
        assert member["phone"] is None
        assert member["metadata"] is None
        assert member["name"] == PERSONAL["name"]
        assert member["email"] == PERSONAL["email"]

    async def test_metadata_is_replaced_not_merged(self, program: Program) -> None:
        await program.put("/v1/members/m1", json={"metadata": {"a": 1, "b": 2}})
        await program.put("/v1/members/m1", json={"metadata": {"c": 3}})
        assert (await get_member(program, "m1"))["metadata"] == {"c": 3}

    async def test_keeps_created_at_and_points(self, program: Program) -> None:
        created = (await program.put("/v1/members/m1", json={})).json()
        await program.post("/v1/members/m1/points/earn", json={"points": 25, "reason": "x"})
        updated = (await program.put("/v1/members/m1", json={"name": "N"})).json()
        assert updated["created_at"] == created["created_at"]
        assert updated["points"]["available"] == 25

    async def test_does_not_touch_another_programs_member(
        self, program: Program, other_program: Program
    ) -> None:
        await other_program.put("/v1/members/shared", json={"name": "Theirs"})
        response = await program.put("/v1/members/shared", json={"name": "Mine"})
        # External ids are the shop's own: the same id in this program is a new member.
        assert response.status_code == 201
        assert (await get_member(other_program, "shared"))["name"] == "Theirs"


class TestUpsertValidation:
    @pytest.mark.parametrize(
        "email", ["not-an-email", "a@b", "a b@example.com", "@example.com", "a@@example.com"]
    )
    async def test_invalid_email(self, program: Program, email: str) -> None:
        response = await program.put("/v1/members/m1", json={"email": email})
        assert_invalid(response)
        assert (await program.get("/v1/members/m1")).status_code == 404

    async def test_email_over_320_characters(self, program: Program) -> None:
        email = "a@" + "b" * 314 + ".com"
        assert len(email) == 320
        assert (await program.put("/v1/members/m1", json={"email": email})).status_code == 201
        response = await program.put("/v1/members/m1", json={"email": "a" + email})
        assert_invalid(response)

    @pytest.mark.parametrize("phone", ["phone", "12", "+", "++8613800138000", "138-0013-800a"])
    async def test_invalid_phone(self, program: Program, phone: str) -> None:
        response = await program.put("/v1/members/m1", json={"phone": phone})
        assert_invalid(response)

    async def test_longest_phone_fits(self, program: Program) -> None:
        # The longest phone the schema accepts must also fit the database column.
        phone = "+" + "1" * 32
        response = await program.put("/v1/members/m1", json={"phone": phone[:32]})
        assert response.status_code == 201, response.text
        too_long = await program.put("/v1/members/m2", json={"phone": phone})
        assert_invalid(too_long)

    @pytest.mark.parametrize(
        "birthday", ["1990-02-30", "17/05/1990", "yesterday", "1899-12-31", "2100-01-02"]
    )
    async def test_invalid_birthday(self, program: Program, birthday: str) -> None:
        response = await program.put("/v1/members/m1", json={"birthday": birthday})
        assert_invalid(response)

    async def test_birthday_bounds_are_inclusive(self, program: Program) -> None:
        first = await program.put("/v1/members/m1", json={"birthday": "1900-01-01"})
        last = await program.put("/v1/members/m2", json={"birthday": "2100-01-01"})
        assert (first.status_code, last.status_code) == (201, 201)
        assert first.json()["birthday"] == "1900-01-01"

    async def test_name_bounds(self, program: Program) -> None:
        longest = await program.put("/v1/members/m1", json={"name": "n" * 200})
        assert longest.status_code == 201
        assert_invalid(await program.put("/v1/members/m2", json={"name": ""}))
        assert_invalid(await program.put("/v1/members/m3", json={"name": "n" * 201}))

    async def test_metadata_at_most_50_keys(self, program: Program) -> None:
        fifty = {f"k{i}": i for i in range(50)}
        assert (await program.put("/v1/members/m1", json={"metadata": fifty})).status_code == 201
        response = await program.put("/v1/members/m1", json={"metadata": {**fifty, "k50": 50}})
        assert_invalid(response)
        assert (await get_member(program, "m1"))["metadata"] == fifty

    async def test_metadata_keys_at_most_64_characters(self, program: Program) -> None:
        ok = await program.put("/v1/members/m1", json={"metadata": {"k" * 64: 1}})
        assert ok.status_code == 201
        assert_invalid(await program.put("/v1/members/m2", json={"metadata": {"k" * 65: 1}}))

    async def test_metadata_at_most_16_kib(self, program: Program) -> None:
        # {"k":"..."} is 8 bytes of JSON around the value.
        fits = {"k": "v" * (16_384 - 8)}
        ok = await program.put("/v1/members/m1", json={"metadata": fits})
        assert ok.status_code == 201
        response = await program.put("/v1/members/m2", json={"metadata": {"k": "v" * 16_384}})
        assert_invalid(response)

    @pytest.mark.parametrize("metadata", [[1, 2], "text", 5])
    async def test_metadata_must_be_an_object(self, program: Program, metadata: Any) -> None:
        assert_invalid(await program.put("/v1/members/m1", json={"metadata": metadata}))

    @pytest.mark.parametrize(
        "body",
        [
            {"name": "a\u0000b"},
            {"email": "a\u0000@example.com"},
            {"metadata": {"note": "a\u0000b"}},
            {"metadata": {"a\u0000b": 1}},
        ],
        ids=["name", "email", "metadata-value", "metadata-key"],
    )
    async def test_nul_character_is_invalid(self, program: Program, body: dict[str, Any]) -> None:
        # PostgreSQL cannot store U+0000 in text or jsonb: refuse it as input, not with a 500.
        assert_invalid(await program.put("/v1/members/m1", json=body))

    async def test_metadata_integer_beyond_64_bits(self, program: Program) -> None:
        response = await program.put("/v1/members/m1", json={"metadata": {"n": 10**30}})
        assert_invalid(response)

    async def test_metadata_nested_too_deep(self, program: Program) -> None:
        nested: dict[str, Any] = {}
        for _ in range(300):
            nested = {"a": nested}
        assert_invalid(await program.put("/v1/members/m1", json={"metadata": nested}))

    async def test_metadata_may_nest_a_little(self, program: Program) -> None:
        metadata = {"address": {"city": "Shanghai", "lines": ["1 Road", None]}, "n": 1.5}
        response = await program.put("/v1/members/m1", json={"metadata": metadata})
        assert response.status_code == 201
        assert (await get_member(program, "m1"))["metadata"] == metadata

    @pytest.mark.parametrize(
        "field", ["points", "tier", "external_id", "created_at", "lifetime_earned", "nickname"]
    )
    async def test_unknown_field(self, program: Program, field: str) -> None:
        response = await program.put("/v1/members/m1", json={"name": "N", field: 1})
        assert_invalid(response)
        assert (await program.get("/v1/members/m1")).status_code == 404

    async def test_unknown_field_on_update_changes_nothing(self, program: Program) -> None:
        await program.put("/v1/members/m1", json={"name": "N"})
        response = await program.put("/v1/members/m1", json={"name": "M", "points": 10})
        assert_invalid(response)
        member = await get_member(program, "m1")
        assert member["name"] == "N"
        assert member["points"]["available"] == 0

    @pytest.mark.parametrize(
        "external_id",
        ["bad%20id", "x" * 129, "caf%C3%A9", "a%2Cb", "a%23b", "a+b", "%00"],
        ids=["space", "too-long", "non-ascii", "comma", "hash", "plus", "nul"],
    )
    async def test_invalid_external_id_in_path(self, program: Program, external_id: str) -> None:
        assert_invalid(await program.put(f"/v1/members/{external_id}", json={}))

    async def test_invalid_external_id_on_get_and_delete(self, program: Program) -> None:
        assert_invalid(await program.get("/v1/members/bad%20id"))
        assert_invalid(await program.delete("/v1/members/bad%20id"))

    async def test_body_must_be_an_object(self, program: Program) -> None:
        assert_invalid(await program.put("/v1/members/m1", json=["name"]))


class TestGet:
    async def test_unknown_member(self, program: Program) -> None:
        assert_problem(await program.get("/v1/members/ghost"), 404, "not_found")

    async def test_another_programs_member_is_not_found(
        self, program: Program, other_program: Program
    ) -> None:
        await other_program.member("theirs", points=5, name="Secret")
        response = await program.get("/v1/members/theirs")
        body = assert_problem(response, 404, "not_found")
        assert "Secret" not in response.text
        assert body["code"] == "not_found"

    async def test_shows_balances(self, program: Program) -> None:
        await program.member("m1", points=100)
        await program.post("/v1/members/m1/points/redeem", json={"points": 30})
        member = await get_member(program, "m1")
        assert member["points"]["available"] == 70
        assert member["points"]["lifetime_earned"] == 100
        assert member["points"]["lifetime_redeemed"] == 30


class TestList:
    async def test_newest_first(self, program: Program) -> None:
        for external_id in ("m1", "m2", "m3"):
            await program.member(external_id)
        response = await program.get("/v1/members")
        assert response.status_code == 200
        page = response.json()
        assert [m["external_id"] for m in page["data"]] == ["m3", "m2", "m1"]
        assert page["next_cursor"] is None

    async def test_items_are_full_members(self, program: Program) -> None:
        await program.put("/v1/members/m1", json=PERSONAL)
        listed = (await program.get("/v1/members")).json()["data"]
        assert listed == [await get_member(program, "m1")]

    async def test_empty_program(self, program: Program) -> None:
        response = await program.get("/v1/members")
        assert response.json() == {"data": [], "next_cursor": None}

    async def test_cursor_pagination(self, program: Program) -> None:
        for i in range(1, 6):
            await program.member(f"m{i}")
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = (await program.get("/v1/members", params=params)).json()
            pages += 1
            assert len(page["data"]) <= 2
            seen += [m["external_id"] for m in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == ["m5", "m4", "m3", "m2", "m1"]
        assert pages == 3

    async def test_exact_page_has_no_next_cursor(self, program: Program) -> None:
        for i in range(1, 3):
            await program.member(f"m{i}")
        page = (await program.get("/v1/members", params={"limit": 2})).json()
        assert len(page["data"]) == 2
        assert page["next_cursor"] is None

    async def test_default_limit_is_20(self, program: Program) -> None:
        for i in range(21):
            await program.member(f"m{i}")
        page = (await program.get("/v1/members")).json()
        assert len(page["data"]) == 20
        assert page["next_cursor"] is not None

    async def test_limit_bounds(self, program: Program) -> None:
        await program.member("m1")
        await program.member("m2")
        one = await program.get("/v1/members", params={"limit": 1})
        hundred = await program.get("/v1/members", params={"limit": 100})
        assert [m["external_id"] for m in one.json()["data"]] == ["m2"]
        assert len(hundred.json()["data"]) == 2

    @pytest.mark.parametrize("limit", ["0", "101", "-1", "ten", "1.5"])
    async def test_limit_out_of_bounds(self, program: Program, limit: str) -> None:
        assert_invalid(await program.get("/v1/members", params={"limit": limit}))

    @pytest.mark.parametrize("cursor", ["!!", "bm90LWEtbnVtYmVy", "MA", "x" * 201])
    async def test_bad_cursor(self, program: Program, cursor: str) -> None:
        assert_invalid(await program.get("/v1/members", params={"cursor": cursor}))

    async def test_only_this_programs_members(
        self, program: Program, other_program: Program
    ) -> None:
        await program.member("mine")
        await other_program.member("theirs")
        listed = (await program.get("/v1/members")).json()["data"]
        assert [m["external_id"] for m in listed] == ["mine"]

    async def test_cursor_does_not_cross_programs(
        self, program: Program, other_program: Program
    ) -> None:
        await other_program.member("theirs-1")
        await program.member("mine-1")
        await program.member("mine-2")
        await other_program.member("theirs-2")
        first = (await program.get("/v1/members", params={"limit": 1})).json()
        second = (
            await program.get("/v1/members", params={"limit": 1, "cursor": first["next_cursor"]})
        ).json()
        assert [m["external_id"] for m in first["data"]] == ["mine-2"]
        assert [m["external_id"] for m in second["data"]] == ["mine-1"]
        assert second["next_cursor"] is None


class TestErase:
    async def test_returns_204_and_clears_personal_fields(self, program: Program) -> None:
        await program.put("/v1/members/m1", json=PERSONAL)
        response = await program.delete("/v1/members/m1")
        assert response.status_code == 204
        assert response.content == b""
        member = await get_member(program, "m1")
        for field in PERSONAL:
            assert member[field] is None, field
        assert member["external_id"] == "m1"

    async def test_keeps_balance(self, program: Program) -> None:
        await program.member("m1", points=100, **PERSONAL)
        await program.post("/v1/members/m1/points/redeem", json={"points": 40})
        before = await program.balance("m1")
        await program.delete("/v1/members/m1")
        assert await program.balance("m1") == before
        assert (await get_member(program, "m1"))["points"]["available"] == 60

    async def test_keeps_ledger(self, program: Program) -> None:
        await program.member("m1", points=100, **PERSONAL)
        await program.post("/v1/members/m1/points/redeem", json={"points": 40})
        before = (await program.get("/v1/members/m1/points/transactions")).json()
        await program.delete("/v1/members/m1")
        after = (await program.get("/v1/members/m1/points/transactions")).json()
        assert after == before
        assert [e["points"] for e in after["data"]] == [-40, 100]

    async def test_second_erase_is_also_204(self, program: Program) -> None:
        await program.member("m1", **PERSONAL)
        first = await program.delete("/v1/members/m1")
        second = await program.delete("/v1/members/m1")
        assert (first.status_code, second.status_code) == (204, 204)
        assert (await get_member(program, "m1"))["name"] is None

    async def test_unknown_member(self, program: Program) -> None:
        assert_problem(await program.delete("/v1/members/ghost"), 404, "not_found")

    async def test_another_programs_member_is_not_found_and_kept(
        self, program: Program, other_program: Program
    ) -> None:
        await other_program.member("theirs", name="Kept")
        assert_problem(await program.delete("/v1/members/theirs"), 404, "not_found")
        assert (await get_member(other_program, "theirs"))["name"] == "Kept"

    @pytest.mark.parametrize(
        "scopes",
        [
            ("members:write",),
            ("members:read", "members:write", "points:read", "points:write"),
        ],
        ids=["members-write", "all-but-admin"],
    )
    async def test_needs_admin(self, program: Program, scopes: tuple[str, ...]) -> None:
        await program.member("m1", **PERSONAL)
        key = await program.key_with(*scopes)
        assert_problem(await program.delete("/v1/members/m1", key=key), 403, "forbidden")
        assert (await get_member(program, "m1"))["name"] == PERSONAL["name"]

    async def test_member_still_earns_after_erasure(self, program: Program) -> None:
        await program.member("m1", points=10, **PERSONAL)
        await program.delete("/v1/members/m1")
        earned = await program.post("/v1/members/m1/points/earn", json={"points": 5, "reason": "x"})
        assert earned.status_code == 201
        assert (await program.balance("m1"))["available"] == 15

    async def test_erased_member_still_listed_without_personal_data(self, program: Program) -> None:
        await program.member("m1", **PERSONAL)
        await program.delete("/v1/members/m1")
        listed = (await program.get("/v1/members")).json()["data"]
        assert [m["external_id"] for m in listed] == ["m1"]
        assert listed[0]["email"] is None
        assert PERSONAL["email"] not in str(listed)
