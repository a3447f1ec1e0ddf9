"""Reminder events from the worker, each once per occurrence, at the right time on the test
clock, and not again on a rerun: points.expiring, member.birthday_upcoming,
tier.downgrade_scheduled, member.segment_changed and member.lifecycle_changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from app.clock import clock
from app.worker import run_once
from tests.conftest import Program
from tests.insights_support import buy, refresh
from tests.routers.test_events import feed


async def of_type(program: Program, event_type: str) -> list[dict[str, Any]]:
    return [e for e in await feed(program) if e["type"] == event_type]


class TestReminderSettings:
    async def test_defaults_and_changes(self, program: Program) -> None:
        shown = (await program.get("/v1/program")).json()
        assert shown["expiry_reminder_days"] == 14
        assert shown["birthday_reminder_days"] == 7
        response = await program.patch(
            "/v1/program", json={"expiry_reminder_days": None, "birthday_reminder_days": 0}
        )
        assert response.status_code == 200, response.text
        assert response.json()["expiry_reminder_days"] is None
        assert response.json()["birthday_reminder_days"] == 0

    async def test_out_of_range_is_422(self, program: Program) -> None:
        for body in (
            {"expiry_reminder_days": 0},
            {"expiry_reminder_days": 366},
            {"birthday_reminder_days": 61},
            {"birthday_reminder_days": "7"},
        ):
            response = await program.patch("/v1/program", json=body)
            assert response.status_code == 422, body
            assert response.json()["code"] == "validation_error"


class TestPointsExpiring:
    async def test_once_when_expiry_is_reminder_days_away(self, program: Program) -> None:
        clock.freeze(datetime(2026, 6, 1, 12, tzinfo=UTC))
        await program.patch("/v1/program", json={"points_expiry_days": 30})
        await program.member("m1", points=120)
        # The lot expires at the end of 2026-07-01 (UTC): 2026-07-02T00:00Z.
        expires_at = datetime(2026, 7, 2, tzinfo=UTC)
        await run_once(expires_at - timedelta(days=14, minutes=1))
        assert await of_type(program, "points.expiring") == []
        await run_once(expires_at - timedelta(days=14))
        await run_once(expires_at - timedelta(days=13))
        await run_once(expires_at - timedelta(days=1))
        reminders = await of_type(program, "points.expiring")
        assert len(reminders) == 1
        assert reminders[0]["member_id"] == "m1"
        assert reminders[0]["data"]["points"] == 120
        assert datetime.fromisoformat(reminders[0]["data"]["expires_at"]) == expires_at

    async def test_off_when_setting_is_null(self, program: Program) -> None:
        clock.freeze(datetime(2026, 6, 1, 12, tzinfo=UTC))
        await program.patch(
            "/v1/program", json={"points_expiry_days": 5, "expiry_reminder_days": None}
        )
        await program.member("m1", points=10)
        await run_once(datetime(2026, 6, 5, tzinfo=UTC))
        assert await of_type(program, "points.expiring") == []


class TestBirthdayUpcoming:
    async def test_once_per_birthday(self, program: Program) -> None:
        clock.freeze(datetime(2026, 6, 1, 12, tzinfo=UTC))
        await program.member("m1", birthday="1990-06-25")
        await run_once(datetime(2026, 6, 17, 12, tzinfo=UTC))
        assert await of_type(program, "member.birthday_upcoming") == []
        await run_once(datetime(2026, 6, 18, 0, 30, tzinfo=UTC))
        await run_once(datetime(2026, 6, 19, 12, tzinfo=UTC))
        await run_once(datetime(2026, 6, 25, 12, tzinfo=UTC))
        reminders = await of_type(program, "member.birthday_upcoming")
        assert len(reminders) == 1
        assert reminders[0]["data"] == {
            "member_id": "m1",
            "sequence": 1,
            "birthday_on": "2026-06-25",
            "days_until": 7,
        }
        # Next year's birthday is a new occurrence.
        await run_once(datetime(2027, 6, 18, 12, tzinfo=UTC))
        assert len(await of_type(program, "member.birthday_upcoming")) == 2

    async def test_in_program_time_zone(self, program: Program) -> None:
        await program.patch("/v1/program", json={"timezone": "Asia/Shanghai"})
        await program.member("m1", birthday="1990-06-25")
        # 2026-06-17 17:00 UTC is 2026-06-18 01:00 in Shanghai: 7 local days before.
        await run_once(datetime(2026, 6, 17, 17, tzinfo=UTC))
        reminders = await of_type(program, "member.birthday_upcoming")
        assert [r["data"]["days_until"] for r in reminders] == [7]


class TestTierDowngradeScheduled:
    async def test_once_when_grace_starts(self, program: Program) -> None:
        start = datetime(2026, 3, 1, 9, tzinfo=UTC)
        clock.freeze(start)
        response = await program.post(
            "/v1/tiers", json={"key": "gold", "name": "Gold", "threshold": 100}
        )
        assert response.status_code == 201, response.text
        await program.put(
            "/v1/tier-policy", json={"metric": "points", "window_days": 30, "grace_days": 10}
        )
        await program.member("m1", points=100)
        fell = start + timedelta(days=31)
        await run_once(fell)
        await run_once(fell + timedelta(days=2))
        scheduled = await of_type(program, "tier.downgrade_scheduled")
        assert len(scheduled) == 1
        assert scheduled[0]["data"]["tier"] == "gold"
        retained = datetime.fromisoformat(scheduled[0]["data"]["retained_until"])
        assert retained == fell + timedelta(days=10)
        await run_once(fell + timedelta(days=11))
        assert len(await of_type(program, "tier.downgrade_scheduled")) == 1
        assert (await program.get("/v1/members/m1")).json()["tier"] is None


class TestSegmentAndLifecycleChanged:
    async def test_once_per_change(self, program: Program) -> None:
        now = datetime(2026, 6, 1, 12, tzinfo=UTC)
        clock.freeze(now)
        await program.member("m1")
        await refresh(program)
        await buy(program, "m1", "A-1", 5_000, now - timedelta(hours=1))
        await refresh(program)
        await refresh(program)
        segments = await of_type(program, "member.segment_changed")
        lifecycles = await of_type(program, "member.lifecycle_changed")
        assert [(e["data"]["from"], e["data"]["to"]) for e in segments] == [
            ("prospects", "need_attention")
        ]
        assert [(e["data"]["from"], e["data"]["to"]) for e in lifecycles] == [("prospect", "new")]
        assert {e["member_id"] for e in segments + lifecycles} == {"m1"}
