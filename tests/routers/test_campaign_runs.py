"""Running campaigns: the action and the event for each targeted member, the deterministic
split, the cooldown, the worker's schedule, and the results against an independent count."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from app.clock import clock
from app.services.campaigns.assignment import group_for
from app.services.campaigns.results import difference_interval
from app.worker import run_once
from tests.campaign_support import add_members_in_bulk, create, run, targetings
from tests.conftest import Program
from tests.insights_support import buy, refund, rows
from tests.routers.test_events import feed

NOW = datetime(2026, 6, 15, 12, tzinfo=UTC)


class TestRunBonusCampaign:
    async def test_treated_get_a_bonus_entry_naming_the_campaign(self, program: Program) -> None:
        clock.freeze(NOW)
        for n in range(40):
            await program.member(f"m{n}")
        campaign = await create(
            program, action={"bonus_points": 25}, holdout_percent=30, message="Welcome back"
        )
        result = await run(program, campaign["id"])
        targeted = await targetings(program.id, campaign["id"])
        groups = Counter(row.group for row in targeted)
        assert result == {
            "targeted": 40,
            "treated": groups["treated"],
            "holdout": groups["holdout"],
        }
        assert groups["holdout"] > 0 and groups["treated"] > 0
        for row in targeted:
            assert row.group == group_for(campaign["id"], row.member_id, 30)
            balance = await program.balance(row.external_id)
            entries = (
                await program.get(f"/v1/members/{row.external_id}/points/transactions")
            ).json()["data"]
            if row.group == "treated":
                assert balance["available"] == 25
                assert entries[0]["kind"] == "bonus"
                assert entries[0]["points"] == 25
                assert entries[0]["campaign_id"] == campaign["id"]
                assert row.entry_id == entries[0]["id"]
            else:
                assert balance["available"] == 0 and entries == []

    async def test_both_groups_get_the_targeted_event(self, program: Program) -> None:
        clock.freeze(NOW)
        for n in range(20):
            await program.member(f"m{n}")
        campaign = await create(program, holdout_percent=50, message="Hi")
        await run(program, campaign["id"])
        events = [e for e in await feed(program) if e["type"] == "campaign.targeted"]
        by_member = {
            row.external_id: row.group for row in await targetings(program.id, campaign["id"])
        }
        assert len(events) == 20
        for event in events:
            assert event["data"]["campaign_id"] == campaign["id"]
            assert event["data"]["group"] == by_member[event["member_id"]]
            assert event["data"]["message"] == "Hi"
            assert event["data"]["coupon_code"] is None
        # notify_only: nobody's points move.
        assert await rows("SELECT 1 FROM point_entries WHERE program_id = :p", p=program.id) == []

    async def test_each_event_takes_its_own_sequence(self, program: Program) -> None:
        clock.freeze(NOW)
        for n in range(30):
            await program.member(f"m{n}")
        campaign = await create(program, action={"bonus_points": 5}, holdout_percent=30)
        await run(program, campaign["id"])
        per_member: dict[str, list[tuple[str, int]]] = {}
        for event in await feed(program):
            per_member.setdefault(event["member_id"], []).append(
                (event["type"], event["data"]["sequence"])
            )
        groups = {
            row.external_id: row.group for row in await targetings(program.id, campaign["id"])
        }
        for member, events in per_member.items():
            sequences = [sequence for _, sequence in events]
            assert sequences == list(range(1, len(events) + 1)), (member, events)
            expected = ["member.created", "campaign.targeted"]
            if groups[member] == "treated":
                expected.append("points.earned")
            assert [kind for kind, _ in events] == expected

    async def test_rerun_within_cooldown_targets_nobody(self, program: Program) -> None:
        clock.freeze(NOW)
        await program.member("m1")
        campaign = await create(program, action={"bonus_points": 5}, cooldown_days=30)
        assert (await run(program, campaign["id"]))["targeted"] == 1
        clock.advance(timedelta(days=29, hours=23))
        assert (await run(program, campaign["id"]))["targeted"] == 0
        clock.advance(timedelta(hours=2))
        assert (await run(program, campaign["id"]))["targeted"] == 1
        runs = [row.run_number for row in await targetings(program.id, campaign["id"])]
        assert runs == [1, 3]

    async def test_inactive_or_outside_window_is_409(self, program: Program) -> None:
        clock.freeze(NOW)
        await program.member("m1")
        inactive = await create(program, active=False)
        later = await create(program, starts_at=(NOW + timedelta(days=1)).isoformat())
        ended = await create(program, ends_at=NOW.isoformat())
        for campaign in (inactive, later, ended):
            response = await program.post(f"/v1/campaigns/{campaign['id']}/run")
            assert response.status_code == 409
            assert response.json()["code"] == "campaign_inactive"
        assert (
            await rows("SELECT 1 FROM campaign_targetings WHERE program_id = :p", p=program.id)
            == []
        )

    async def test_run_replays_with_idempotency_key(self, program: Program) -> None:
        clock.freeze(NOW)
        await program.member("m1")
        campaign = await create(program, cooldown_days=0)
        headers = {"Idempotency-Key": "run-1"}
        first = await program.post(f"/v1/campaigns/{campaign['id']}/run", headers=headers)
        again = await program.post(f"/v1/campaigns/{campaign['id']}/run", headers=headers)
        assert first.status_code == again.status_code == 200
        assert again.json() == first.json()
        assert first.json()["targeted"] == 1
        assert again.headers["Idempotency-Replayed"] == "true"
        assert len(await targetings(program.id, campaign["id"])) == 1

    async def test_worker_runs_active_campaigns_once_a_day(self, program: Program) -> None:
        clock.freeze(NOW)
        await program.member("m1")
        campaign = await create(program, cooldown_days=0)
        await create(program, active=False)
        await run_once(NOW)
        await run_once(NOW + timedelta(hours=23))
        assert len(await targetings(program.id, campaign["id"])) == 1
        await run_once(NOW + timedelta(days=1))
        assert len(await targetings(program.id, campaign["id"])) == 2
        shown = (await program.get(f"/v1/campaigns/{campaign['id']}")).json()
        assert shown["last_run_at"] == (NOW + timedelta(days=1)).isoformat()


class TestRunCouponCampaign:
    async def test_treated_get_a_free_campaign_coupon(self, program: Program) -> None:
        clock.freeze(NOW)
        reward = await program.post(
            "/v1/rewards",
            json={
                "name": "10% off",
                "kind": "percent_discount",
                "points_cost": 500,
                "value": 10,
                "stock": 1,
            },
        )
        assert reward.status_code == 201, reward.text
        for n in range(12):
            await program.member(f"m{n}")
        campaign = await create(
            program, action={"reward_id": reward.json()["id"]}, holdout_percent=25
        )
        await run(program, campaign["id"])
        targeted = await targetings(program.id, campaign["id"])
        events = {
            e["member_id"]: e["data"]
            for e in await feed(program)
            if e["type"] == "campaign.targeted"
        }
        treated = [row for row in targeted if row.group == "treated"]
        assert len(treated) > 1  # more than the reward's stock of 1: stock is not taken
        for row in targeted:
            listed = (await program.get(f"/v1/members/{row.external_id}/coupons")).json()["data"]
            if row.group == "holdout":
                assert listed == [] and events[row.external_id]["coupon_code"] is None
                continue
            code = events[row.external_id]["coupon_code"]
            coupon = (await program.get(f"/v1/coupons/{code}")).json()
            assert coupon["source"] == "campaign"
            assert coupon["campaign_id"] == campaign["id"]
            assert coupon["member_id"] == row.external_id
            assert (await program.balance(row.external_id))["available"] == 0
        # One coupon used at checkout shows in the cost.
        first = treated[0].external_id
        order = await program.post(
            "/v1/orders",
            json={
                "order_id": "C-1",
                "member_id": first,
                "amount": 20_000,
                "currency": "CNY",
                "coupon_codes": [events[first]["coupon_code"]],
            },
        )
        assert order.status_code == 201, order.text
        cost = (await program.get(f"/v1/campaigns/{campaign['id']}/results")).json()["cost"]
        assert cost == {
            "points_granted": 0,
            "coupons_issued": len(treated),
            "coupons_used": 1,
            "discount_amount": 2_000,
        }


class TestSplit:
    async def test_holdout_share_within_two_points_and_stable(self, program: Program) -> None:
        clock.freeze(NOW)
        await add_members_in_bulk(program.id, 10_000)
        campaign = await create(program, holdout_percent=20, cooldown_days=0)
        first = await run(program, campaign["id"])
        assert first["targeted"] == 10_000
        assert 1_800 <= first["holdout"] <= 2_200
        clock.advance(timedelta(minutes=1))
        second = await run(program, campaign["id"])
        assert second == first
        found = await targetings(program.id, campaign["id"])
        by_run: dict[int, dict[int, str]] = {}
        for row in found:
            by_run.setdefault(row.run_number, {})[row.member_id] = row.group
        assert by_run[1] == by_run[2]
        # The documented rule, recomputed here: MD5 of "<campaign>:<member>".
        assert all(
            group == group_for(campaign["id"], member_id, 20)
            for member_id, group in by_run[1].items()
        )


async def _independent_counts(
    program_id: int, campaign_id: int, window: timedelta
) -> dict[str, Any]:
    """Per group: members, returned and revenue, from the raw rows, in Python."""
    targeted = await rows(
        'SELECT member_id, "group", targeted_at FROM campaign_targetings '
        "WHERE program_id = :p AND campaign_id = :c",
        p=program_id,
        c=campaign_id,
    )
    first: dict[int, Any] = {}
    for row in targeted:
        if row.member_id not in first or row.targeted_at < first[row.member_id].targeted_at:
            first[row.member_id] = row
    orders = await rows(
        "SELECT member_id, occurred_at, amount, refunded_amount FROM orders WHERE program_id = :p",
        p=program_id,
    )
    result: dict[str, dict[str, int]] = {
        g: {"members": 0, "returned": 0, "revenue": 0} for g in ("treated", "holdout")
    }
    for member_id, row in first.items():
        counted = [
            o
            for o in orders
            if o.member_id == member_id
            and row.targeted_at < o.occurred_at <= row.targeted_at + window
            and o.refunded_amount < o.amount
        ]
        group = result[row.group]
        group["members"] += 1
        group["returned"] += 1 if counted else 0
        group["revenue"] += sum(o.amount - o.refunded_amount for o in counted)
    return result


class TestResults:
    async def test_against_an_independent_count(self, program: Program) -> None:
        clock.freeze(NOW)
        for n in range(60):
            await program.member(f"m{n}")
        campaign = await create(program, action={"bonus_points": 10}, holdout_percent=40)
        await run(program, campaign["id"])
        # Orders: some inside the 30-day window, one on its last second, some after it, one
        # before targeting, and one fully refunded.
        for n in range(0, 60, 2):
            await buy(program, f"m{n}", f"in-{n}", 1_000 + n, NOW + timedelta(days=n % 29 + 1))
        await buy(program, "m1", "edge", 500, NOW + timedelta(days=30))
        await buy(program, "m3", "late", 700, NOW + timedelta(days=30, seconds=1))
        await buy(program, "m5", "before", 900, NOW - timedelta(days=1))
        await buy(program, "m7", "refunded", 800, NOW + timedelta(days=2))
        await refund(program, "refunded", "r-1", 800)
        await buy(program, "m9", "partly", 800, NOW + timedelta(days=3))
        await refund(program, "partly", "r-2", 300)
        response = await program.get(f"/v1/campaigns/{campaign['id']}/results?window_days=30")
        assert response.status_code == 200, response.text
        body = response.json()
        expected = await _independent_counts(program.id, campaign["id"], timedelta(days=30))
        for group in ("treated", "holdout"):
            shown, counted = body[group], expected[group]
            assert shown["members"] == counted["members"]
            assert shown["returned"] == counted["returned"]
            assert shown["revenue"] == counted["revenue"]
            rate = Decimal(counted["returned"]) / Decimal(counted["members"])
            assert abs(Decimal(shown["return_rate"]) - rate) <= Decimal("0.00005")
            per_member = Decimal(counted["revenue"]) / Decimal(counted["members"])
            assert abs(Decimal(shown["revenue_per_member"]) - per_member) <= Decimal("0.005")
        t, h = expected["treated"], expected["holdout"]
        low, high = difference_interval(
            t["returned"], t["members"], h["returned"], h["members"]
        ) or (0, 0)
        assert body["lift"]["return_rate_ci95"] == [f"{low:.4f}", f"{high:.4f}"]
        assert body["cost"]["points_granted"] == 10 * t["members"]
        assert body["cost"]["coupons_issued"] == 0

    async def test_window_days_bounds(self, program: Program) -> None:
        campaign = await create(program)
        for bad in ("0", "366", "x"):
            response = await program.get(
                f"/v1/campaigns/{campaign['id']}/results?window_days={bad}"
            )
            assert response.status_code == 422
            assert response.json()["code"] == "validation_error"

    async def test_no_holdout_has_no_interval(self, program: Program) -> None:
        clock.freeze(NOW)
        await program.member("m1")
        campaign = await create(program, holdout_percent=0)
        await run(program, campaign["id"])
        body = (await program.get(f"/v1/campaigns/{campaign['id']}/results")).json()
        assert body["holdout"] == {
            "members": 0,
            "returned": 0,
            "return_rate": None,
            "revenue": 0,
            "revenue_per_member": None,
        }
        assert body["lift"] == {
            "return_rate": None,
            "return_rate_ci95": None,
            "revenue_per_member": None,
        }
        assert body["verdict"] == "too_early_to_tell"


class TestInterval:
    def test_hand_computed_example(self) -> None:
        # 150 of 1,000 treated returned, 100 of 1,000 held out:
        # d = 0.05, se = sqrt(0.15 * 0.85 / 1000 + 0.10 * 0.90 / 1000) = sqrt(0.0002175)
        # = 0.0147479, 1.96 se = 0.0289058 -> [0.0210942, 0.0789058].
        low, high = difference_interval(150, 1000, 100, 1000) or (0.0, 0.0)
        assert round(low, 6) == 0.021094
        assert round(high, 6) == 0.078906

    def test_spanning_zero_is_too_early_to_tell(self) -> None:
        from app.services.campaigns.results import GroupCounts, build_results

        close = build_results(30, GroupCounts(100, 12, 0), GroupCounts(100, 10, 0))
        assert close.verdict == "too_early_to_tell"
        assert close.lift.return_rate == "0.0200"
        clear = build_results(30, GroupCounts(1000, 150, 0), GroupCounts(1000, 100, 0))
        assert clear.verdict == "positive"
        assert clear.lift.return_rate_ci95 == ["0.0211", "0.0789"]
        worse = build_results(30, GroupCounts(1000, 100, 0), GroupCounts(1000, 150, 0))
        assert worse.verdict == "negative"
