"""VIP tiers through HTTP: CRUD, upgrades with the qualifying event, grace before downgrades,
windows, metrics, threshold edits, previews and a member's progress."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from app import db
from app.clock import clock
from app.worker import run_once
from tests.conftest import Program

START = datetime(2026, 2, 1, 9, tzinfo=UTC)


async def tier(program: Program, key: str, threshold: int, **extra: Any) -> dict[str, Any]:
    response = await program.post(
        "/v1/tiers", json={"key": key, "name": key.title(), "threshold": threshold, **extra}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def policy(
    program: Program, metric: str = "points", window: int | None = None, grace: int = 0
) -> dict[str, Any]:
    response = await program.put(
        "/v1/tier-policy", json={"metric": metric, "window_days": window, "grace_days": grace}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def order(program: Program, order_id: str, amount: int, member: str = "m1") -> dict:
    response = await program.post(
        "/v1/orders",
        json={"order_id": order_id, "member_id": member, "amount": amount, "currency": "CNY"},
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def tier_of(program: Program, member: str = "m1") -> str | None:
    shown = (await program.get(f"/v1/members/{member}")).json()["tier"]
    return shown["key"] if shown else None


class TestTierCrud:
    async def test_create_list_get_patch_delete(self, program: Program) -> None:
        created = await tier(program, "gold", 1000, earn_multiplier="1.5", benefits=["Gift"])
        assert created["earn_multiplier"] == "1.5"
        assert created["reevaluation"]["status"] == "done"
        await tier(program, "silver", 200)
        listed = (await program.get("/v1/tiers")).json()["data"]
        assert [t["key"] for t in listed] == ["silver", "gold"]
        patched = await program.patch("/v1/tiers/gold", json={"threshold": 1500})
        assert patched.status_code == 200
        assert patched.json()["threshold"] == 1500
        deleted = await program.delete("/v1/tiers/silver")
        assert deleted.status_code == 200
        assert (await program.get("/v1/tiers/silver")).status_code == 404

    async def test_duplicate_key_and_threshold(self, program: Program) -> None:
        await tier(program, "gold", 1000)
        same_key = await program.post(
            "/v1/tiers", json={"key": "gold", "name": "G", "threshold": 5}
        )
        same_threshold = await program.post(
            "/v1/tiers", json={"key": "vip", "name": "V", "threshold": 1000}
        )
        assert (same_key.status_code, same_key.json()["code"]) == (409, "tier_key_taken")
        assert (same_threshold.status_code, same_threshold.json()["code"]) == (
            409,
            "tier_threshold_taken",
        )

    async def test_validation(self, program: Program) -> None:
        for body in (
            {"key": "gold", "name": "G", "threshold": 1, "earn_multiplier": "0.9"},
            {"key": "gold", "name": "G", "threshold": 1, "earn_multiplier": "10.5"},
            {"key": "gold", "name": "G", "threshold": 1, "earn_multiplier": 1.5},
            {"key": "Gold!", "name": "G", "threshold": 1},
            {"key": "gold", "name": "G", "threshold": -1},
            {"key": "gold", "name": "G", "threshold": 1, "extra": True},
        ):
            response = await program.post("/v1/tiers", json=body)
            assert response.status_code == 422, body
            assert response.json()["code"] == "validation_error"

    async def test_other_program_cannot_see(self, program: Program, other_program: Program) -> None:
        await tier(program, "gold", 1000)
        assert (await other_program.get("/v1/tiers/gold")).status_code == 404
        assert (await other_program.patch("/v1/tiers/gold", json={"name": "X"})).status_code == 404


class TestUpgrade:
    async def test_upgrade_with_the_qualifying_order_then_multiplier(
        self, program: Program
    ) -> None:
        await tier(program, "gold", 300, earn_multiplier="2")
        await program.member("m1")
        await order(program, "A-1", 20_000)  # 200 points
        assert await tier_of(program) is None
        await order(program, "A-2", 10_000)  # 300 in all: Gold, in the same transaction
        assert await tier_of(program) == "gold"
        third = await order(program, "A-3", 10_000)
        assert third["breakdown"] == [
            {"source": "base", "points": 100},
            {"source": "tier", "points": 100},
        ]
        async with db.read_only() as conn:
            changes = (
                await conn.execute(
                    text(
                        "SELECT from_key, to_key, reason FROM tier_changes "
                        "WHERE program_id = :p ORDER BY id"
                    ),
                    {"p": program.id},
                )
            ).all()
        assert [tuple(c) for c in changes] == [(None, "gold", "qualified")]
        async with db.read_only() as conn:
            moves = (
                (
                    await conn.execute(
                        text(
                            "SELECT data->>'to' FROM events "
                            "WHERE program_id = :p AND type = 'tier.changed'"
                        ),
                        {"p": program.id},
                    )
                )
                .scalars()
                .all()
            )
        assert moves == ["gold"]

    async def test_manual_earn_qualifies(self, program: Program) -> None:
        await tier(program, "silver", 50)
        await program.member("m1", points=60)
        assert await tier_of(program) == "silver"


class TestDowngrade:
    async def test_only_after_grace(self, program: Program) -> None:
        clock.freeze(START)
        await policy(program, grace=30)
        await tier(program, "gold", 100)
        await program.member("m1")
        await order(program, "A-1", 10_000)
        assert await tier_of(program) == "gold"
        refund = await program.post(
            "/v1/orders/A-1/refunds", json={"refund_id": "R-1", "amount": 5_000}
        )
        assert refund.status_code == 201
        progress = (await program.get("/v1/members/m1/tier")).json()
        assert progress["tier"]["key"] == "gold"
        assert progress["qualifying_value"] == 50
        assert datetime.fromisoformat(progress["retained_until"]) == START + timedelta(days=30)

        clock.freeze(START + timedelta(days=29))
        await run_once(clock.now())
        assert await tier_of(program) == "gold"
        clock.freeze(START + timedelta(days=30))
        await run_once(clock.now())
        assert await tier_of(program) is None

    async def test_recovering_within_grace_keeps_the_tier(self, program: Program) -> None:
        clock.freeze(START)
        await policy(program, grace=10)
        await tier(program, "gold", 100)
        await program.member("m1")
        await order(program, "A-1", 10_000)
        await program.post("/v1/orders/A-1/refunds", json={"refund_id": "R-1", "amount": 10_000})
        clock.advance(timedelta(days=5))
        await order(program, "A-2", 10_000)
        clock.advance(timedelta(days=10))
        await run_once(clock.now())
        assert await tier_of(program) == "gold"
        assert (await program.get("/v1/members/m1/tier")).json()["retained_until"] is None

    async def test_refund_with_no_grace_downgrades_at_once(self, program: Program) -> None:
        await tier(program, "gold", 100)
        await program.member("m1")
        await order(program, "A-1", 10_000)
        # 100 of 10,000 refunded reverses 1 point: 99 is below Gold's 100.
        await program.post("/v1/orders/A-1/refunds", json={"refund_id": "R-1", "amount": 100})
        assert await tier_of(program) is None


class TestWindowsAndMetrics:
    async def test_rolling_window_forgets_old_points(self, program: Program) -> None:
        clock.freeze(START)
        await policy(program, window=30)
        await tier(program, "gold", 100)
        await program.member("m1")
        await order(program, "A-1", 10_000)
        assert await tier_of(program) == "gold"
        clock.advance(timedelta(days=31))
        await run_once(clock.now())
        assert await tier_of(program) is None

    async def test_lifetime_window_keeps_them(self, program: Program) -> None:
        clock.freeze(START)
        await tier(program, "gold", 100)
        await program.member("m1")
        await order(program, "A-1", 10_000)
        clock.advance(timedelta(days=400))
        await run_once(clock.now())
        assert await tier_of(program) == "gold"

    async def test_spend_metric_counts_net_amounts(self, program: Program) -> None:
        await policy(program, metric="spend")
        await tier(program, "gold", 50_000)
        await program.member("m1", points=1_000_000)  # points do not count for spend
        assert await tier_of(program) is None
        await order(program, "A-1", 60_000)
        assert await tier_of(program) == "gold"
        await program.post("/v1/orders/A-1/refunds", json={"refund_id": "R", "amount": 10_001})
        progress = (await program.get("/v1/members/m1/tier")).json()
        assert progress["qualifying_value"] == 49_999
        assert await tier_of(program) is None


class TestThresholdChanges:
    async def test_saving_reevaluates_members(self, program: Program) -> None:
        await tier(program, "gold", 3_000)
        for index, amount in enumerate((50_000, 150_000, 250_000)):
            await program.member(f"m{index}")
            await order(program, f"A-{index}", amount, member=f"m{index}")
        saved = await program.patch("/v1/tiers/gold", json={"threshold": 1_500})
        assert saved.json()["reevaluation"]["upgraded"] == 2
        assert saved.json()["members"] == 2
        assert [await tier_of(program, f"m{i}") for i in range(3)] == [None, "gold", "gold"]
        raised = await program.patch("/v1/tiers/gold", json={"threshold": 2_000})
        assert raised.json()["reevaluation"]["downgraded"] == 1
        assert [await tier_of(program, f"m{i}") for i in range(3)] == [None, None, "gold"]

    async def test_preview_equals_what_saving_does(self, program: Program) -> None:
        await tier(program, "silver", 100)
        await tier(program, "gold", 1_000)
        values = (50, 150, 700, 1_200, 3_000)
        for index, points in enumerate(values):
            await program.member(f"m{index}", points=points)
        before = (await program.get("/v1/tiers")).json()["data"]
        proposal = {
            "tiers": [{"key": "silver", "threshold": 500}, {"key": "gold", "threshold": 2_000}]
        }
        preview = (await program.post("/v1/tiers/preview", json=proposal)).json()
        assert (await program.get("/v1/tiers")).json()["data"] == before  # nothing saved
        assert preview["current"] == {"silver": 2, "gold": 2}
        assert preview["proposed"] == {"silver": 2, "gold": 1}
        assert (preview["upgrades"], preview["downgrades"]) == (0, 2)

        await program.patch("/v1/tiers/gold", json={"threshold": 2_000})
        await program.patch("/v1/tiers/silver", json={"threshold": 500})
        after = {t["key"]: t["members"] for t in (await program.get("/v1/tiers")).json()["data"]}
        assert after == preview["proposed"]
        untiered = (await program.get("/v1/members", params={"limit": 100})).json()["data"]
        assert sum(1 for m in untiered if m["tier"] is None) == preview["untiered"]["proposed"]

    async def test_members_filter_by_tier(self, program: Program) -> None:
        await tier(program, "gold", 100)
        await program.member("rich", points=150)
        await program.member("poor", points=10)
        listed = (await program.get("/v1/members", params={"tier": "gold"})).json()["data"]
        assert [m["external_id"] for m in listed] == ["rich"]
        assert listed[0]["tier"] == {"key": "gold", "name": "Gold"}


class TestMemberProgress:
    async def test_to_next_tier(self, program: Program) -> None:
        await tier(program, "silver", 100)
        await tier(program, "gold", 500)
        await program.member("m1", points=180)
        progress = (await program.get("/v1/members/m1/tier")).json()
        assert progress["tier"] == {"key": "silver", "name": "Silver"}
        assert progress["next_tier"] == {"key": "gold", "name": "Gold", "threshold": 500}
        assert (progress["qualifying_value"], progress["to_next_tier"]) == (180, 320)
        assert progress["retained_until"] is None

    async def test_unknown_member(self, program: Program) -> None:
        response = await program.get("/v1/members/ghost/tier")
        assert (response.status_code, response.json()["code"]) == (404, "not_found")


class TestPolicy:
    async def test_get_and_put(self, program: Program) -> None:
        assert (await program.get("/v1/tier-policy")).json() == {
            "metric": "points",
            "window_days": None,
            "grace_days": 0,
        }
        saved = await policy(program, metric="spend", window=365, grace=14)
        assert saved["reevaluation"]["status"] == "done"
        assert (await program.get("/v1/tier-policy")).json()["window_days"] == 365
        bad = await program.put(
            "/v1/tier-policy", json={"metric": "visits", "window_days": None, "grace_days": 0}
        )
        assert bad.status_code == 422
