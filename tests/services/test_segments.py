"""RFM segments and lifecycle stages on hand-built order histories, with the test clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from app import db
from app.clock import clock
from app.config import get_settings
from app.services.insights import insights
from tests.conftest import Program
from tests.insights_support import (
    all_members,
    buy,
    insights_by_member,
    member,
    refresh,
    refund,
    rows,
)

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
DAY = timedelta(days=1)

# docs/insights.md: segment by R score (rows, 5 first) and FM = floor((F + M) / 2) (1-5).
EXPECTED_GRID = {
    5: ["new", "potential_loyalists", "potential_loyalists", "champions", "champions"],
    4: ["promising", "potential_loyalists", "potential_loyalists", "loyal", "champions"],
    3: ["need_attention", "need_attention", "need_attention", "loyal", "loyal"],
    2: ["hibernating", "hibernating", "at_risk", "at_risk", "cant_lose"],
    1: ["lost", "lost", "at_risk", "cant_lose", "cant_lose"],
}
TEN_SEGMENTS = {
    "champions",
    "loyal",
    "potential_loyalists",
    "new",
    "promising",
    "need_attention",
    "at_risk",
    "cant_lose",
    "hibernating",
    "lost",
}


async def grid_program(program: Program) -> None:
    """25 members, one per (R level, F level) with M level = F level: five members at each of
    five distinct values of every dimension, so the levels score 1 to 5 exactly."""
    for r in range(5):
        for f in range(5):
            name = f"r{r + 1}f{f + 1}"
            await program.member(name)
            last = NOW - (4 - r) * 20 * DAY - DAY
            for k in range(f + 1):
                # f + 1 orders of 10,000 each: frequency and net spend rise together.
                await buy(program, name, f"{name}-{k}", 10_000, last - k * DAY)


class TestRfmScores:
    async def test_every_cell_of_the_grid(self, program: Program) -> None:
        clock.freeze(NOW)
        await grid_program(program)
        await refresh(program)
        found = await insights_by_member(program.id)
        for r in range(1, 6):
            for f in range(1, 6):
                row = found[f"r{r}f{f}"]
                assert (row.recency_score, row.frequency_score, row.monetary_score) == (r, f, f)
                assert row.segment == EXPECTED_GRID[r][f - 1], (r, f)
                shown = await member(program, f"r{r}f{f}")
                assert shown["segment"] == EXPECTED_GRID[r][f - 1]
        assert {row.segment for row in found.values()} == TEN_SEGMENTS

    async def test_each_segment_filter_is_exact(self, program: Program) -> None:
        clock.freeze(NOW)
        await grid_program(program)
        await program.member("window-shopper")
        await refresh(program)
        everyone = await all_members(program)
        for segment in [*TEN_SEGMENTS, "prospects"]:
            listed = await all_members(program, f"segment={segment}")
            expected = {m["external_id"] for m in everyone if m["segment"] == segment}
            assert {m["external_id"] for m in listed} == expected
            assert expected, segment
        listed = await all_members(program, "segment=prospects")
        assert [m["external_id"] for m in listed] == ["window-shopper"]

    async def test_monetary_and_frequency_scored_separately(self, program: Program) -> None:
        clock.freeze(NOW)
        for index in range(5):
            await program.member(f"m{index}")
            # One order each, yesterday: same R and F; spend rises with the index.
            await buy(program, f"m{index}", f"o{index}", (index + 1) * 1_000, NOW - DAY)
        await refresh(program)
        found = await insights_by_member(program.id)
        assert [found[f"m{i}"].monetary_score for i in range(5)] == [1, 2, 3, 4, 5]
        # Everyone ties on recency and frequency: nothing to rank by, the middle score.
        assert {found[f"m{i}"].frequency_score for i in range(5)} == {3}
        assert {found[f"m{i}"].recency_score for i in range(5)} == {3}
        # FM = floor((3 + M) / 2): 2, 2, 3, 3, 4.
        assert [found[f"m{i}"].segment for i in range(5)] == [
            "need_attention",
            "need_attention",
            "need_attention",
            "need_attention",
            "loyal",
        ]

    async def test_a_single_buyer_scores_in_the_middle(self, program: Program) -> None:
        clock.freeze(NOW)
        await program.member("only")
        await buy(program, "only", "O-1", 1_000, NOW - DAY)
        await refresh(program)
        row = (await insights_by_member(program.id))["only"]
        assert (row.recency_score, row.frequency_score, row.monetary_score) == (3, 3, 3)
        assert row.segment == "need_attention"


class TestTies:
    async def test_equal_histories_get_equal_scores(self, program: Program) -> None:
        clock.freeze(NOW)
        for index in range(8):
            await program.member(f"once{index}")
            await buy(program, f"once{index}", f"once{index}", 5_000, NOW - 3 * DAY)
        for index in range(2):
            await program.member(f"twice{index}")
            await buy(program, f"twice{index}", f"twice{index}-a", 5_000, NOW - 9 * DAY)
            await buy(program, f"twice{index}", f"twice{index}-b", 5_000, NOW - 2 * DAY)
        await refresh(program)
        found = await insights_by_member(program.id)
        once = {
            (row.recency_score, row.frequency_score, row.monetary_score, row.segment)
            for name, row in found.items()
            if name.startswith("once")
        }
        twice = {
            (row.recency_score, row.frequency_score, row.monetary_score, row.segment)
            for name, row in found.items()
            if name.startswith("twice")
        }
        # Eight members tie at the lowest value of every dimension: all score 1, though a
        # quintile split by position would have spread them over scores 1 to 4.
        assert once == {(1, 1, 1, "lost")}
        # Two members tie at the top: 8 of the 9 others rank strictly below them.
        assert twice == {(5, 5, 5, "champions")}

    async def test_same_day_purchases_tie_on_recency(self, program: Program) -> None:
        clock.freeze(NOW)
        day_start = datetime(2026, 5, 20, 0, 5, tzinfo=UTC)
        for index, at in enumerate([day_start, day_start + timedelta(hours=23)]):
            await program.member(f"m{index}")
            await buy(program, f"m{index}", f"o{index}", 1_000, at)
        await program.member("earlier")
        await buy(program, "earlier", "o-earlier", 1_000, day_start - DAY)
        await refresh(program)
        found = await insights_by_member(program.id)
        # Ranks: "earlier" alone at the bottom; the two same-day buyers share percent_rank 0.5.
        assert found["m0"].recency_score == found["m1"].recency_score == 3
        assert found["earlier"].recency_score == 1

    async def test_same_day_is_the_programs_local_day(self, program: Program) -> None:
        clock.freeze(NOW)
        await program.patch("/v1/program", json={"timezone": "Asia/Shanghai"})
        # 15:30 and 16:30 UTC on 2026-05-20 are two different days in Shanghai (UTC+8).
        for index, hour in enumerate([15, 16]):
            await program.member(f"m{index}")
            await buy(
                program,
                f"m{index}",
                f"o{index}",
                1_000,
                datetime(2026, 5, 20, hour, 30, tzinfo=UTC),
            )
        await refresh(program)
        found = await insights_by_member(program.id)
        assert (found["m0"].recency_score, found["m1"].recency_score) == (1, 5)


class TestRefundsAndEmptyOrders:
    async def test_net_of_refunds(self, program: Program) -> None:
        clock.freeze(NOW)
        await program.member("partly")
        await buy(program, "partly", "P-1", 30_000, NOW - 5 * DAY)
        await refund(program, "P-1", "PR-1", 12_000)
        await program.member("latest-refunded")
        await buy(program, "latest-refunded", "L-1", 10_000, NOW - 40 * DAY)
        await buy(program, "latest-refunded", "L-2", 20_000, NOW - 2 * DAY)
        await refund(program, "L-2", "LR-1", 5_000)
        await refund(program, "L-2", "LR-2", 15_000)
        await refresh(program)
        found = await insights_by_member(program.id)
        assert (found["partly"].orders_count, found["partly"].net_spend) == (1, 18_000)
        # The fully refunded order is not a purchase: one order, at the earlier date.
        refunded = found["latest-refunded"]
        assert (refunded.orders_count, refunded.net_spend) == (1, 10_000)
        assert refunded.last_order_at == NOW - 40 * DAY
        assert refunded.first_order_at == NOW - 40 * DAY

    async def test_only_refunded_or_free_orders_make_a_prospect(self, program: Program) -> None:
        clock.freeze(NOW)
        await program.member("returned")
        await buy(program, "returned", "R-1", 10_000, NOW - DAY)
        await refund(program, "R-1", "RR-1", 10_000)
        await program.member("free")
        await buy(program, "free", "F-1", 0, NOW - DAY)
        await program.member("buyer")
        await buy(program, "buyer", "B-1", 10_000, NOW - DAY)
        await refresh(program)
        for name in ("returned", "free"):
            shown = await member(program, name)
            assert (shown["segment"], shown["lifecycle"]) == ("prospects", "prospect")
        found = await insights_by_member(program.id)
        assert found["returned"].recency_score is None
        assert found["returned"].orders_count == 0

    async def test_a_refund_after_a_refresh_shows_at_the_next(self, program: Program) -> None:
        clock.freeze(NOW)
        await program.member("m1")
        await buy(program, "m1", "A-1", 10_000, NOW - DAY)
        await refresh(program)
        assert (await member(program, "m1"))["lifecycle"] == "new"
        await refund(program, "A-1", "AR-1", 10_000)
        assert (await member(program, "m1"))["lifecycle"] == "new"  # as of the last refresh
        await refresh(program)
        assert (await member(program, "m1"))["lifecycle"] == "prospect"


class TestLifecycle:
    async def stage(self, program: Program, name: str) -> str:
        stage: str = (await member(program, name))["lifecycle"]
        return stage

    async def test_each_stage(self, program: Program) -> None:
        clock.freeze(NOW)
        await program.member("prospect")
        await program.member("new")
        await buy(program, "new", "N-1", 1_000, NOW - 170 * DAY)
        await program.member("growing")
        await buy(program, "growing", "G-1", 1_000, NOW - 100 * DAY)
        await buy(program, "growing", "G-2", 1_000, NOW - 10 * DAY)
        await program.member("mature")
        await buy(program, "mature", "M-1", 1_000, NOW - 400 * DAY)
        await buy(program, "mature", "M-2", 1_000, NOW - 300 * DAY)
        await buy(program, "mature", "M-3", 1_000, NOW - 200 * DAY)
        await buy(program, "mature", "M-4", 1_000, NOW - 30 * DAY)
        await program.member("churned")
        await buy(program, "churned", "C-1", 1_000, NOW - 200 * DAY)
        await refresh(program)
        for name in ("prospect", "new", "growing", "mature", "churned"):
            assert await self.stage(program, name) == name
        for name in ("prospect", "new", "growing", "mature", "churned"):
            listed = await all_members(program, f"lifecycle={name}")
            assert [m["external_id"] for m in listed] == [name]

    async def test_churned_strictly_after_180_days(self, program: Program) -> None:
        clock.freeze(NOW)
        await program.member("m1")
        await buy(program, "m1", "A-1", 1_000, NOW - 180 * DAY)
        await refresh(program)
        assert await self.stage(program, "m1") == "new"
        clock.freeze(NOW + timedelta(seconds=1))
        await refresh(program)
        assert await self.stage(program, "m1") == "churned"

    async def test_mature_from_365_days_after_the_first_order(self, program: Program) -> None:
        clock.freeze(NOW)
        await program.member("m1")
        await buy(program, "m1", "A-1", 1_000, NOW - 365 * DAY + timedelta(seconds=1))
        await buy(program, "m1", "A-2", 1_000, NOW - 5 * DAY)
        await refresh(program)
        assert await self.stage(program, "m1") == "growing"
        clock.freeze(NOW + timedelta(seconds=1))
        await refresh(program)
        assert await self.stage(program, "m1") == "mature"

    async def test_a_slow_regular_buyer_churns_after_three_intervals(
        self, program: Program
    ) -> None:
        clock.freeze(NOW)
        await program.member("slow")
        # Every 100 days: churned only after 300 days without an order, not 180.
        for index, days in enumerate((450, 350, 250)):
            await buy(program, "slow", f"S-{index}", 1_000, NOW - days * DAY)
        clock.freeze(NOW + 49 * DAY)  # 299 days since the last order
        await refresh(program)
        assert await self.stage(program, "slow") == "mature"
        clock.freeze(NOW + 50 * DAY + timedelta(seconds=1))  # just over 300 days
        await refresh(program)
        assert await self.stage(program, "slow") == "churned"

    async def test_a_frequent_buyer_still_gets_the_180_day_floor(self, program: Program) -> None:
        clock.freeze(NOW)
        await program.member("weekly")
        for index in range(4):
            await buy(program, "weekly", f"W-{index}", 1_000, NOW - (170 + 7 * index) * DAY)
        await refresh(program)
        # Three intervals of a week would churn them after 21 days; the floor is 180.
        assert await self.stage(program, "weekly") == "growing"

    async def test_thresholds_are_program_settings(self, program: Program) -> None:
        clock.freeze(NOW)
        settings = await program.get("/v1/program")
        assert settings.json()["lifecycle_churn_days"] == 180
        assert settings.json()["lifecycle_mature_days"] == 365
        assert settings.json()["lifecycle_churn_interval_multiple"] == 3
        await program.member("m1")
        await buy(program, "m1", "A-1", 1_000, NOW - 50 * DAY)
        await buy(program, "m1", "A-2", 1_000, NOW - 40 * DAY)
        await refresh(program)
        assert await self.stage(program, "m1") == "growing"
        changed = await program.patch(
            "/v1/program", json={"lifecycle_churn_days": 30, "lifecycle_churn_interval_multiple": 1}
        )
        assert changed.status_code == 200, changed.text
        await refresh(program)
        assert await self.stage(program, "m1") == "churned"
        await program.patch(
            "/v1/program", json={"lifecycle_churn_days": 60, "lifecycle_mature_days": 45}
        )
        await refresh(program)
        assert await self.stage(program, "m1") == "mature"

    async def test_settings_are_validated(self, program: Program) -> None:
        for body in (
            {"lifecycle_churn_days": 0},
            {"lifecycle_churn_days": None},
            {"lifecycle_mature_days": 3651},
            {"lifecycle_churn_interval_multiple": "3"},
            {"point_value_minor": 0.5},
            {"point_value_minor": "-1"},
        ):
            response = await program.patch("/v1/program", json=body)
            assert response.status_code == 422, body


class TestRefreshJob:
    async def test_refreshes_due_programs_once_an_hour(self, program: Program) -> None:
        clock.freeze(NOW)
        await program.member("m1")
        await buy(program, "m1", "A-1", 1_000, NOW - DAY)
        while await insights.refresh_due_insights(NOW):
            pass
        assert (await member(program, "m1"))["lifecycle"] == "new"
        refreshed = await rows(
            "SELECT refreshed_at, members FROM insight_refreshes WHERE program_id = :id",
            id=program.id,
        )
        assert [(r.refreshed_at, r.members) for r in refreshed] == [(NOW, 1)]
        assert await insights.refresh_due_insights(NOW + timedelta(minutes=59)) == 0
        later = NOW + 200 * DAY
        while await insights.refresh_due_insights(later):
            pass
        assert (await member(program, "m1"))["lifecycle"] == "churned"

    async def test_skips_a_program_another_replica_is_refreshing(self, program: Program) -> None:
        clock.freeze(NOW)
        await program.member("m1")
        await buy(program, "m1", "A-1", 1_000, NOW - DAY)
        await refresh(program)
        assert (await member(program, "m1"))["lifecycle"] == "new"
        at = NOW + 1000 * DAY
        async with db.transaction() as other:
            # A refresh's claim on its program is the program's insight_refreshes row.
            await other.execute(
                text("SELECT 1 FROM insight_refreshes WHERE program_id = :id FOR UPDATE"),
                {"id": program.id},
            )
            with db.allow_second_connection():  # the lock stands for another replica
                while await insights.refresh_due_insights(at):
                    pass
                assert (await member(program, "m1"))["lifecycle"] == "new"
        while await insights.refresh_due_insights(at):
            pass
        assert (await member(program, "m1"))["lifecycle"] == "churned"

    async def test_an_asked_refresh_outwaits_the_lock_timeout_of_a_running_one(
        self, program: Program
    ) -> None:
        # A refresh asked for (after an import, or POST /v1/insights/refresh) while another
        # replica refreshes the program waits for that one however long it runs, then
        # refreshes again: the service's default lock timeout would give up first.
        clock.freeze(NOW)
        await program.member("m1")
        await buy(program, "m1", "A-1", 1_000, NOW - DAY)
        await refresh(program)
        at = NOW + 1000 * DAY
        lock_timeout_s = get_settings().statement_timeout_ms / 1000
        async with db.transaction() as other:
            await other.execute(
                text("SELECT 1 FROM insight_refreshes WHERE program_id = :id FOR UPDATE"),
                {"id": program.id},
            )
            with db.allow_second_connection():
                asked = asyncio.create_task(insights.refresh_program(program.id, at))
                await asyncio.sleep(lock_timeout_s + 1)
                assert not asked.done()
        result = await asked
        assert result.refreshed_at == at
        assert (await member(program, "m1"))["lifecycle"] == "churned"

    async def test_replicas_refresh_a_never_refreshed_program_once(self, program: Program) -> None:
        # No insight_refreshes row to lock yet: the claim is the row each refresh inserts.
        clock.freeze(NOW)
        await program.member("m1")
        await buy(program, "m1", "A-1", 1_000, NOW - DAY)
        await asyncio.gather(*(insights.refresh_due_insights(NOW) for _ in range(2)))
        changes = await rows(
            "SELECT type FROM events WHERE program_id = :id AND type LIKE 'member.%_changed'",
            id=program.id,
        )
        assert sorted(r.type for r in changes) == [
            "member.lifecycle_changed",
            "member.segment_changed",
        ]
        assert (await member(program, "m1"))["lifecycle"] == "new"

    async def test_concurrent_refreshes_agree(self, program: Program) -> None:
        clock.freeze(NOW)
        await grid_program(program)
        results = await asyncio.gather(*(insights.refresh_program(program.id) for _ in range(3)))
        assert {r.members for r in results} == {25}
        found = await insights_by_member(program.id)
        assert {row.segment for row in found.values()} == TEN_SEGMENTS

    async def test_refresh_needs_admin(self, program: Program) -> None:
        key = await program.key_with("members:read", "members:write")
        response = await program.post("/v1/insights/refresh", key=key)
        assert response.status_code == 403

    async def test_another_programs_members_are_untouched(
        self, program: Program, other_program: Program
    ) -> None:
        clock.freeze(NOW)
        await program.member("m1")
        await buy(program, "m1", "A-1", 1_000, NOW - DAY)
        await other_program.member("m1")
        await buy(other_program, "m1", "A-1", 1_000, NOW - DAY)
        await refresh(program)
        assert (await member(program, "m1"))["lifecycle"] == "new"
        assert (await member(other_program, "m1"))["lifecycle"] == "prospect"
