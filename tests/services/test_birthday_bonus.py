"""The birthday bonus job, with the test clock: once per member per year, on the local day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.clock import clock
from app.worker import run_once
from tests.conftest import Program


async def bonuses(program: Program, member: str) -> list[dict[str, object]]:
    entries = (await program.get(f"/v1/members/{member}/points/transactions")).json()["data"]
    return [e for e in entries if e["kind"] == "bonus"]


class TestBirthdayBonus:
    async def test_once_on_the_day_and_again_next_year(self, program: Program) -> None:
        clock.freeze(datetime(2026, 5, 16, 12, tzinfo=UTC))
        await program.patch("/v1/program", json={"birthday_bonus_points": 88})
        await program.member("bday", birthday="1990-05-17")
        await program.member("other", birthday="1990-05-18")
        await run_once(clock.now())
        assert await bonuses(program, "bday") == []

        clock.freeze(datetime(2026, 5, 17, 8, tzinfo=UTC))
        await run_once(clock.now())
        await run_once(clock.now() + timedelta(hours=3))
        granted = await bonuses(program, "bday")
        assert [(e["points"], e["reason"]) for e in granted] == [(88, "birthday")]
        assert (await program.balance("bday"))["available"] == 88
        assert await bonuses(program, "other") == []

        clock.freeze(datetime(2027, 5, 17, 8, tzinfo=UTC))
        await run_once(clock.now())
        assert len(await bonuses(program, "bday")) == 2

    async def test_local_day_in_program_timezone(self, program: Program) -> None:
        # 17:00 UTC on 16 May is already 17 May in Shanghai.
        clock.freeze(datetime(2026, 5, 16, 17, tzinfo=UTC))
        await program.patch(
            "/v1/program", json={"birthday_bonus_points": 10, "timezone": "Asia/Shanghai"}
        )
        await program.member("bday", birthday="2001-05-17")
        await run_once(clock.now())
        assert len(await bonuses(program, "bday")) == 1

    async def test_leap_day_birthday_on_28_february(self, program: Program) -> None:
        clock.freeze(datetime(2027, 2, 28, 10, tzinfo=UTC))
        await program.patch("/v1/program", json={"birthday_bonus_points": 5})
        await program.member("leap", birthday="2000-02-29")
        await run_once(clock.now())
        assert len(await bonuses(program, "leap")) == 1
        clock.freeze(datetime(2027, 3, 1, 10, tzinfo=UTC))
        await run_once(clock.now())
        assert len(await bonuses(program, "leap")) == 1

    async def test_days_missed_by_the_worker_are_caught_up(self, program: Program) -> None:
        clock.freeze(datetime(2026, 7, 1, 10, tzinfo=UTC))
        await program.patch("/v1/program", json={"birthday_bonus_points": 7})
        await program.member("m1", birthday="1985-07-03")
        await run_once(clock.now())
        clock.freeze(datetime(2026, 7, 5, 10, tzinfo=UTC))  # no worker on 2-4 July
        await run_once(clock.now())
        assert len(await bonuses(program, "m1")) == 1

    async def test_erased_members_get_nothing(self, program: Program) -> None:
        clock.freeze(datetime(2026, 9, 9, 10, tzinfo=UTC))
        await program.patch("/v1/program", json={"birthday_bonus_points": 7})
        await program.member("gone", birthday="1985-09-09")
        await program.delete("/v1/members/gone")
        await run_once(clock.now())
        assert await bonuses(program, "gone") == []

    async def test_bonus_counts_towards_tiers(self, program: Program) -> None:
        clock.freeze(datetime(2026, 9, 9, 10, tzinfo=UTC))
        await program.post("/v1/tiers", json={"key": "vip", "name": "VIP", "threshold": 50})
        await program.patch("/v1/program", json={"birthday_bonus_points": 60})
        await program.member("m1", birthday="1985-09-09")
        await run_once(clock.now())
        assert (await program.get("/v1/members/m1")).json()["tier"]["key"] == "vip"
