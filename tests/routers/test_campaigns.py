"""Campaigns through HTTP: strict validation, CRUD, the preview that writes nothing, and
every audience condition at its boundaries (AND across conditions, OR within a list)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from app.clock import clock
from tests.campaign_support import create, preview, targetings
from tests.conftest import Program
from tests.insights_support import buy, refresh, rows

NOW = datetime(2026, 6, 15, 12, tzinfo=UTC)
REWARD = {"name": "5 off", "kind": "fixed_discount", "points_cost": 10, "value": 500}


class TestCreateCampaign:
    async def test_defaults_and_fields(self, program: Program) -> None:
        created = await create(
            program, action={"bonus_points": 50}, audience={"segments": ["at_risk"]}
        )
        assert created["holdout_percent"] == 10
        assert created["cooldown_days"] == 30
        assert created["active"] is True
        assert created["action"] == {"bonus_points": 50, "reward_id": None, "notify_only": None}
        assert created["audience"] == {"segments": ["at_risk"]}
        assert created["message"] is None and created["last_run_at"] is None

    @pytest.mark.parametrize(
        "change",
        [
            {"unknown": 1},
            {"action": {"bonus_points": 5, "notify_only": True}},
            {"action": {}},
            {"action": {"notify_only": False}},
            {"action": {"bonus_points": 0}},
            {"action": {"bonus_points": "5"}},
            {"holdout_percent": 51},
            {"holdout_percent": -1},
            {"cooldown_days": 3651},
            {"message": "x" * 1001},
            {"message": "a\u0000b"},
            {"audience": {"segments": ["vip"]}},
            {"audience": {"segments": []}},
            {"audience": {"lifecycles": ["new", "new"]}},
            {"audience": {"nps_classes": ["fan"]}},
            {"audience": {"min_days_since_last_order": 10, "max_days_since_last_order": 9}},
            {"audience": {"birthday_within_days": 367}},
            {"audience": {"metadata": {"plan": {"nested": 1}}}},
            {"audience": {"metadata": {"plan": []}}},
            {"audience": {"unknown": True}},
            {"starts_at": "2026-07-01T00:00:00Z", "ends_at": "2026-07-01T00:00:00Z"},
            {"starts_at": 1700000000},
        ],
    )
    async def test_invalid_input_is_422(self, program: Program, change: dict[str, Any]) -> None:
        body = {"name": "C", "audience": {}, "action": {"notify_only": True}, **change}
        response = await program.post("/v1/campaigns", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "validation_error"

    async def test_unknown_reward_is_422(self, program: Program, other_program: Program) -> None:
        theirs = await other_program.post("/v1/rewards", json=REWARD)
        assert theirs.status_code == 201, theirs.text
        for reward_id in (theirs.json()["id"], 10**12):
            body = {"name": "C", "audience": {}, "action": {"reward_id": reward_id}}
            response = await program.post("/v1/campaigns", json=body)
            assert response.status_code == 422
            assert response.json()["code"] == "validation_error"
            assert response.json()["errors"][0]["loc"] == ["body", "action", "reward_id"]

    async def test_replay_with_idempotency_key(self, program: Program) -> None:
        body = {"name": "C", "audience": {}, "action": {"notify_only": True}}
        headers = {"Idempotency-Key": "campaign-1"}
        first = await program.post("/v1/campaigns", json=body, headers=headers)
        again = await program.post("/v1/campaigns", json=body, headers=headers)
        assert first.status_code == again.status_code == 201
        assert again.json() == first.json()
        assert again.headers["Idempotency-Replayed"] == "true"
        listed = (await program.get("/v1/campaigns")).json()["data"]
        assert len(listed) == 1

    async def test_needs_admin(self, program: Program) -> None:
        key = await program.key_with("members:read", "points:write")
        body = {"name": "C", "audience": {}, "action": {"notify_only": True}}
        response = await program.post("/v1/campaigns", json=body, key=key)
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"


class TestReadChangeDelete:
    async def test_list_newest_first_with_cursor(self, program: Program) -> None:
        made = [await create(program, name=f"C{n}") for n in range(3)]
        page = (await program.get("/v1/campaigns?limit=2")).json()
        assert [c["id"] for c in page["data"]] == [made[2]["id"], made[1]["id"]]
        rest = (await program.get(f"/v1/campaigns?limit=2&cursor={page['next_cursor']}")).json()
        assert [c["id"] for c in rest["data"]] == [made[0]["id"]]

    async def test_patch_changes_only_what_is_sent(self, program: Program) -> None:
        created = await create(program, message="Hello", holdout_percent=20)
        response = await program.patch(
            f"/v1/campaigns/{created['id']}",
            json={"action": {"bonus_points": 10}, "message": None, "active": False},
        )
        assert response.status_code == 200, response.text
        changed = response.json()
        assert changed["action"]["bonus_points"] == 10 and changed["action"]["notify_only"] is None
        assert changed["message"] is None and changed["active"] is False
        assert changed["holdout_percent"] == 20

    @pytest.mark.parametrize(
        "body",
        [
            {"name": None},
            {"holdout_percent": 60},
            {"action": {"bonus_points": 1, "notify_only": True}},
            {"ends_at": "2020-01-01T00:00:00Z", "starts_at": "2021-01-01T00:00:00Z"},
            {"extra": 1},
        ],
    )
    async def test_patch_invalid_is_422(self, program: Program, body: dict[str, Any]) -> None:
        created = await create(program)
        response = await program.patch(f"/v1/campaigns/{created['id']}", json=body)
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"

    async def test_patch_window_checked_against_stored_start(self, program: Program) -> None:
        created = await create(program, starts_at="2026-07-01T00:00:00+00:00")
        response = await program.patch(
            f"/v1/campaigns/{created['id']}", json={"ends_at": "2026-06-01T00:00:00+00:00"}
        )
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"

    async def test_delete_hides_it(self, program: Program) -> None:
        created = await create(program)
        assert (await program.delete(f"/v1/campaigns/{created['id']}")).status_code == 204
        for method in ("GET", "DELETE"):
            response = await program.request(method, f"/v1/campaigns/{created['id']}")
            assert response.status_code == 404
            assert response.json()["code"] == "not_found"
        assert (await program.get("/v1/campaigns")).json()["data"] == []

    async def test_other_programs_campaign_is_404(
        self, program: Program, other_program: Program
    ) -> None:
        created = await create(other_program)
        for method, path in (
            ("GET", ""),
            ("PATCH", ""),
            ("DELETE", ""),
            ("POST", "/run"),
            ("GET", "/results"),
        ):
            kwargs: dict[str, Any] = {"json": {"active": False}} if method == "PATCH" else {}
            response = await program.request(
                method, f"/v1/campaigns/{created['id']}{path}", **kwargs
            )
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["code"] == "not_found"


class TestPreview:
    async def test_counts_and_expected_split_writing_nothing(self, program: Program) -> None:
        for n in range(7):
            await program.member(f"m{n}")
        before = await rows("SELECT count(*) AS n FROM events WHERE program_id = :p", p=program.id)
        response = await program.post(
            "/v1/campaigns/preview", json={"audience": {}, "holdout_percent": 50}
        )
        assert response.status_code == 200, response.text
        # 7 x 50 / 100 = 3.5, rounded half up.
        assert response.json() == {"members": 7, "treated": 3, "holdout": 4}
        after = await rows("SELECT count(*) AS n FROM events WHERE program_id = :p", p=program.id)
        assert after[0].n == before[0].n
        assert (
            await rows("SELECT 1 FROM campaign_targetings WHERE program_id = :p", p=program.id)
            == []
        )

    async def test_invalid_audience_is_422(self, program: Program) -> None:
        response = await program.post(
            "/v1/campaigns/preview", json={"audience": {"tiers": "gold"}, "holdout_percent": 10}
        )
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"

    async def test_erased_members_never_match(self, program: Program) -> None:
        await program.member("m1")
        await program.member("m2")
        assert (await program.delete("/v1/members/m2")).status_code == 204
        assert await preview(program, {}) == 1


class TestAudienceConditions:
    async def test_segments_and_lifecycles_or_within_and_across(self, program: Program) -> None:
        clock.freeze(NOW)
        await program.member("buyer")
        await program.member("prospect")
        await buy(program, "buyer", "A-1", 10_000, NOW - timedelta(days=1))
        await refresh(program)
        # A lone buyer scores 3 on each of R, F and M: need_attention, lifecycle new.
        segment = "need_attention"
        assert await preview(program, {"segments": [segment]}) == 1
        assert await preview(program, {"segments": ["prospects"]}) == 1
        assert await preview(program, {"segments": [segment, "prospects"]}) == 2
        assert await preview(program, {"lifecycles": ["new"]}) == 1
        assert await preview(program, {"segments": [segment], "lifecycles": ["prospect"]}) == 0
        assert await preview(program, {"segments": [segment], "lifecycles": ["new"]}) == 1

    async def test_days_since_last_order_boundaries(self, program: Program) -> None:
        clock.freeze(NOW)
        await program.patch("/v1/program", json={"timezone": "Asia/Shanghai"})
        # Local date in Shanghai is 2026-06-15; last orders 29, 30 and 31 local days ago.
        for days in (29, 30, 31):
            await program.member(f"d{days}")
            at = datetime(2026, 6, 15, 20, tzinfo=UTC) - timedelta(days=days + 1)
            # 20:00 UTC is 04:00 the next day in Shanghai: days + 1 back in UTC is days back
            # in local dates.
            await buy(program, f"d{days}", f"A-{days}", 1_000, at)
        await program.member("never")
        await refresh(program)
        assert await preview(program, {"min_days_since_last_order": 30}) == 2
        assert await preview(program, {"max_days_since_last_order": 30}) == 2
        assert (
            await preview(
                program, {"min_days_since_last_order": 30, "max_days_since_last_order": 30}
            )
            == 1
        )
        assert await preview(program, {"min_days_since_last_order": 0}) == 3
        assert await preview(program, {"min_days_since_last_order": 32}) == 0

    async def test_tiers(self, program: Program) -> None:
        response = await program.post(
            "/v1/tiers", json={"key": "gold", "name": "Gold", "threshold": 100}
        )
        assert response.status_code == 201, response.text
        await program.member("rich", points=100)
        await program.member("almost", points=99)
        assert await preview(program, {"tiers": ["gold"]}) == 1
        assert await preview(program, {"tiers": ["silver"]}) == 0

    async def test_nps_classes_from_latest_score(self, program: Program) -> None:
        scores = {"s6": [6], "s7": [7], "s8": [8], "s9": [9], "changed": [10, 6]}
        for name, given in scores.items():
            await program.member(name)
            for score in given:
                response = await program.post(f"/v1/members/{name}/feedback", json={"score": score})
                assert response.status_code == 201, response.text
                clock.advance(timedelta(seconds=1))
        await program.member("silent")
        assert await preview(program, {"nps_classes": ["detractor"]}) == 2
        assert await preview(program, {"nps_classes": ["passive"]}) == 2
        assert await preview(program, {"nps_classes": ["promoter"]}) == 1
        assert await preview(program, {"nps_classes": ["promoter", "passive"]}) == 3

    async def test_birthday_within_days_in_program_time_zone(self, program: Program) -> None:
        await program.patch("/v1/program", json={"timezone": "Asia/Shanghai"})
        # 2026-06-14 20:00 UTC is already 2026-06-15 in Shanghai.
        clock.freeze(datetime(2026, 6, 14, 20, tzinfo=UTC))
        for name, birthday in {
            "yesterday": date(1990, 6, 14),
            "today": date(1990, 6, 15),
            "in7": date(1985, 6, 22),
            "in8": date(1985, 6, 23),
        }.items():
            await program.member(name, birthday=birthday.isoformat())
        await program.member("unknown")
        assert await preview(program, {"birthday_within_days": 0}) == 1
        assert await preview(program, {"birthday_within_days": 7}) == 2
        assert await preview(program, {"birthday_within_days": 8}) == 3
        # Yesterday's birthday is 364 days away (2027 is not a leap year).
        assert await preview(program, {"birthday_within_days": 363}) == 3
        assert await preview(program, {"birthday_within_days": 364}) == 4

    async def test_leap_day_birthday_on_28_february(self, program: Program) -> None:
        clock.freeze(datetime(2027, 2, 28, 12, tzinfo=UTC))
        await program.member("leap", birthday="2000-02-29")
        assert await preview(program, {"birthday_within_days": 0}) == 1

    async def test_metadata_equal_or_one_of(self, program: Program) -> None:
        await program.member("gold", metadata={"plan": "gold", "store": 1})
        await program.member("silver", metadata={"plan": "silver", "store": "1"})
        await program.member("none")
        assert await preview(program, {"metadata": {"plan": "gold"}}) == 1
        assert await preview(program, {"metadata": {"plan": ["gold", "silver"]}}) == 2
        assert await preview(program, {"metadata": {"store": 1}}) == 1
        assert await preview(program, {"metadata": {"store": "1"}}) == 1
        assert await preview(program, {"metadata": {"plan": "gold", "store": "1"}}) == 0
        assert await preview(program, {"metadata": {"absent": "x"}}) == 0

    async def test_empty_audience_matches_everyone(self, program: Program) -> None:
        for n in range(3):
            await program.member(f"m{n}")
        assert await preview(program, {}) == 3
        created = await create(program)
        response = await program.post(f"/v1/campaigns/{created['id']}/run")
        assert response.json()["targeted"] == 3
        assert len(await targetings(program.id, created["id"])) == 3
