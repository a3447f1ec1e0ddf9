"""The overview and segments through HTTP, checked against figures computed here, in Python,
from the raw rows of the program's tables."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any

from app.clock import clock
from tests.conftest import Program
from tests.insights_support import all_members, buy, refresh, refund, rows

NOW = datetime(2026, 6, 10, 12, tzinfo=UTC)
FROM = datetime(2026, 5, 1, tzinfo=UTC)
TO = datetime(2026, 6, 1, tzinfo=UTC)


def period(start: datetime, end: datetime) -> str:
    def z(moment: datetime) -> str:
        return moment.isoformat().replace("+00:00", "Z")

    return f"from={z(start)}&to={z(end)}"


PERIOD = period(FROM, TO)


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


def share(numerator: int, denominator: int) -> str:
    """Expected wire form of a rate: 4 places, half up, trailing zeros dropped."""
    if denominator == 0:
        return "0"
    value = (Decimal(numerator) / Decimal(denominator)).quantize(
        Decimal("0.0001"), rounding=ROUND_HALF_UP
    )
    value = min(max(value, Decimal(0)), Decimal(1))
    text = format(value.normalize(), "f")
    return text


async def create_member_at(program: Program, name: str, created: datetime) -> None:
    clock.freeze(created)
    await program.member(name)


async def feedback_at(program: Program, name: str, score: int, when: datetime) -> None:
    clock.freeze(when)
    response = await program.post(f"/v1/members/{name}/feedback", json={"score": score})
    assert response.status_code == 201, response.text


async def seed(program: Program) -> None:
    """Members, orders, refunds, points and feedback around the period May 2026."""
    await program.patch("/v1/program", json={"pending_days": 7, "point_value_minor": "0.5"})
    for name, created in [
        ("alice", at("2025-09-01")),
        ("bob", at("2025-09-01")),
        ("carol", at("2025-10-01")),
        ("dave", at("2026-05-10")),
        ("erin", at("2026-05-20")),
        ("frank", at("2026-06-05")),
        ("gina", at("2025-01-01")),
        ("hank", at("2025-06-01")),
    ]:
        await create_member_at(program, name, created)
    clock.freeze(NOW)
    for name, order_id, amount, when in [
        ("alice", "A-1", 12_000, at("2025-11-10")),
        ("alice", "A-2", 8_000, at("2026-05-05")),
        ("alice", "A-3", 10_000, at("2026-05-20")),
        ("bob", "B-1", 5_000, at("2025-11-20")),
        ("carol", "C-1", 7_000, at("2026-01-15")),
        ("carol", "C-2", 30_000, at("2026-05-15")),
        ("dave", "D-1", 15_000, at("2026-05-12")),
        ("frank", "F-1", 9_000, at("2026-06-06")),
        ("gina", "G-1", 4_000, at("2025-03-01")),
        ("gina", "G-2", 6_000, at("2026-05-25")),
        ("gina", "G-3", 0, at("2026-05-26")),
        ("hank", "H-1", 20_000, at("2025-12-01")),
        ("hank", "H-2", 3_000, at("2025-11-05")),
    ]:
        await buy(program, name, order_id, amount, when)
    await refund(program, "A-3", "A-3-r", 4_000)
    await refund(program, "C-2", "C-2-r", 30_000)
    await refund(program, "H-1", "H-1-r1", 5_000)
    await refund(program, "H-1", "H-1-r2", 15_000)
    redeemed = await program.post("/v1/members/alice/points/redeem", json={"points": 50})
    assert redeemed.status_code == 201, redeemed.text
    held = await program.post("/v1/members/bob/holds", json={"points": 20})
    assert held.status_code == 201, held.text
    # Points with an expiry: 100 expire within 30 days of NOW, 50 later.
    await program.patch("/v1/program", json={"points_expiry_days": 40})
    clock.freeze(NOW - timedelta(days=15))
    await program.post("/v1/members/erin/points/earn", json={"points": 100, "reason": "welcome"})
    clock.freeze(NOW)
    await program.post("/v1/members/gina/points/earn", json={"points": 50, "reason": "survey"})
    for name, score, when in [
        ("alice", 3, at("2026-04-20")),
        ("alice", 10, at("2026-05-10")),
        ("bob", 9, at("2026-05-05")),
        ("bob", 5, at("2026-05-25")),
        ("carol", 9, at("2026-05-15")),
        ("dave", 2, at("2026-05-20")),
        ("dave", 10, at("2026-06-03")),
        ("gina", 9, datetime(2026, 5, 31, 23, 59, 59, tzinfo=UTC)),
        ("erin", 10, TO),
    ]:
        await feedback_at(program, name, score, when)
    clock.freeze(NOW)


async def expected_overview(program: Program, start: datetime, end: datetime) -> dict[str, Any]:
    """Every figure of docs/insights.md, from the raw rows."""
    pid = program.id
    settings = (
        await rows(
            "SELECT currency, point_value_minor, lifecycle_churn_days, "
            "lifecycle_churn_interval_multiple FROM programs WHERE id = :pid",
            pid=pid,
        )
    )[0]
    members = await rows("SELECT id, created_at FROM members WHERE program_id = :pid", pid=pid)
    orders = await rows(
        "SELECT member_id, amount, refunded_amount, occurred_at FROM orders "
        "WHERE program_id = :pid",
        pid=pid,
    )
    accounts = await rows("SELECT * FROM accounts WHERE program_id = :pid", pid=pid)
    lots = await rows(
        "SELECT remaining, expires_at FROM point_lots WHERE program_id = :pid", pid=pid
    )
    feedback = await rows(
        "SELECT id, member_id, score, created_at FROM member_feedback WHERE program_id = :pid",
        pid=pid,
    )

    counted = [o for o in orders if o.refunded_amount < o.amount]
    in_period = [o for o in counted if start <= o.occurred_at < end]
    per_member = Counter(o.member_id for o in in_period)
    # Churn: when each customer lapses under the lifecycle rule, from their whole history.
    history: dict[int, list[datetime]] = defaultdict(list)
    for o in counted:
        history[o.member_id].append(o.occurred_at)
    at_start, churned = set(), set()
    for member_id, times in history.items():
        first, last, count = min(times), max(times), len(times)
        threshold = timedelta(days=settings.lifecycle_churn_days)
        if count > 1:
            usual = (last - first) / (count - 1)
            threshold = max(threshold, usual * settings.lifecycle_churn_interval_multiple)
        lapse = last + threshold
        if first < start and lapse >= start:
            at_start.add(member_id)
            if lapse < end:
                churned.add(member_id)
    revenue = sum(o.amount - o.refunded_amount for o in in_period)
    customers = {o.member_id for o in counted}
    lifetime_spend = sum(o.amount - o.refunded_amount for o in counted)
    outstanding = sum(max(a.available + a.held, 0) + a.pending for a in accounts)
    latest: dict[int, Any] = {}
    for f in sorted(feedback, key=lambda f: (f.created_at, f.id)):
        if start <= f.created_at < end:
            latest[f.member_id] = f.score
    promoters = sum(1 for score in latest.values() if score >= 9)
    detractors = sum(1 for score in latest.values() if score <= 6)
    nps = (
        (Decimal(100) * (promoters - detractors) / len(latest)).quantize(
            Decimal("0.1"), rounding=ROUND_HALF_UP
        )
        if latest
        else Decimal(0)
    )
    return {
        "currency": settings.currency,
        "members": sum(1 for m in members if m.created_at < end),
        "new_members": sum(1 for m in members if start <= m.created_at < end),
        "active_members": len(per_member),
        "repeat_purchase_rate": share(
            sum(1 for n in per_member.values() if n > 1), len(per_member)
        ),
        "churn_rate": share(len(churned), len(at_start)),
        "average_order_value": revenue // len(in_period) if in_period else 0,
        "customer_lifetime_value": lifetime_spend // len(customers) if customers else 0,
        "points_outstanding": outstanding,
        "points_outstanding_value": int(
            (outstanding * settings.point_value_minor).to_integral_value(rounding=ROUND_FLOOR)
        ),
        "points_expiring_30d": sum(
            lot.remaining
            for lot in lots
            if lot.remaining > 0
            and lot.expires_at is not None
            and lot.expires_at < NOW + timedelta(days=30)
        ),
        "redemption_rate": share(
            sum(a.lifetime_redeemed for a in accounts), sum(a.lifetime_earned for a in accounts)
        ),
        "referral_conversion_rate": "0",
        "nps": format(nps.normalize(), "f") if nps != 0 else "0",
        "nps_responses": len(latest),
    }


class TestOverview:
    async def test_matches_the_raw_rows(self, program: Program, other_program: Program) -> None:
        await seed(program)
        # Another program's data must not count.
        clock.freeze(NOW)
        await other_program.member("alice")
        await buy(other_program, "alice", "A-1", 99_000, at("2026-05-05"))
        await refresh(program)
        response = await program.get(f"/v1/insights/overview?{PERIOD}")
        assert response.status_code == 200, response.text
        body = response.json()
        expected = await expected_overview(program, FROM, TO)
        assert {key: body[key] for key in expected} == expected
        assert datetime.fromisoformat(body["from"]) == FROM
        assert datetime.fromisoformat(body["to"]) == TO
        assert datetime.fromisoformat(body["insights_refreshed_at"]) == NOW
        # The seed is built so that no figure is trivially zero.
        # Churned: bob and hank lapsed in May; alice, carol and gina did not (of 5 at start).
        assert body["churn_rate"] == "0.4"
        assert body["repeat_purchase_rate"] == "0.3333"
        assert body["nps"] == "20"
        assert (body["members"], body["new_members"], body["active_members"]) == (7, 2, 3)
        assert body["average_order_value"] == 8_750
        assert body["customer_lifetime_value"] == 10_714
        assert body["points_expiring_30d"] == 100

    async def test_every_field_of_the_contract(self, program: Program) -> None:
        response = await program.get("/v1/insights/overview")
        assert response.status_code == 200, response.text
        body = response.json()
        for field in (
            "members",
            "new_members",
            "active_members",
            "repeat_purchase_rate",
            "churn_rate",
            "average_order_value",
            "customer_lifetime_value",
            "points_outstanding",
            "points_outstanding_value",
            "points_expiring_30d",
            "redemption_rate",
            "referral_conversion_rate",
            "nps",
        ):
            assert field in body
        for field in ("repeat_purchase_rate", "churn_rate", "redemption_rate"):
            assert isinstance(body[field], str) and 0 <= Decimal(body[field]) <= 1
        assert -100 <= Decimal(body["nps"]) <= 100

    async def test_empty_program(self, program: Program) -> None:
        body = (await program.get("/v1/insights/overview")).json()
        assert body["members"] == 0
        assert body["churn_rate"] == body["repeat_purchase_rate"] == body["nps"] == "0"
        assert body["referral_conversion_rate"] == "0"
        assert body["insights_refreshed_at"] is None

    async def test_defaults_to_the_last_30_days(self, program: Program) -> None:
        clock.freeze(NOW)
        body = (await program.get("/v1/insights/overview")).json()
        assert datetime.fromisoformat(body["to"]) == NOW
        assert datetime.fromisoformat(body["from"]) == NOW - timedelta(days=30)

    async def test_other_periods_match_too(self, program: Program) -> None:
        await seed(program)
        await refresh(program)
        for start, end in [
            (at("2025-11-01"), at("2026-01-01")),
            (at("2026-05-15"), at("2026-05-16")),
            (at("2024-01-01"), NOW),
        ]:
            body = (await program.get(f"/v1/insights/overview?{period(start, end)}")).json()
            expected = await expected_overview(program, start, end)
            assert {key: body[key] for key in expected} == expected, (start, end)

    async def test_from_must_be_before_to(self, program: Program) -> None:
        response = await program.get(
            "/v1/insights/overview?from=2026-05-01T00:00:00Z&to=2026-05-01T00:00:00Z"
        )
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"

    async def test_bad_dates(self, program: Program) -> None:
        response = await program.get("/v1/insights/overview?from=yesterday")
        assert response.status_code == 422

    async def test_needs_admin(self, program: Program) -> None:
        key = await program.key_with("members:read", "points:read")
        for path in (
            "/v1/insights/overview",
            "/v1/insights/segments",
            "/v1/insights/points-expiry",
            "/v1/insights/tiers",
            "/v1/insights/referral-funnel",
        ):
            response = await program.get(path, key=key)
            assert response.status_code == 403, path
        assert (await program.client.get("/v1/insights/overview")).status_code == 401


class TestSegments:
    async def test_shares_match_the_members_and_orders(self, program: Program) -> None:
        await seed(program)
        await refresh(program)
        response = await program.get("/v1/insights/segments")
        assert response.status_code == 200, response.text
        body = response.json()
        assert [s["segment"] for s in body] == [
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
            "prospects",
        ]
        members = await all_members(program)
        ids = {
            r.external_id: r.id
            for r in await rows(
                "SELECT id, external_id FROM members WHERE program_id = :pid", pid=program.id
            )
        }
        orders = await rows(
            "SELECT member_id, amount, refunded_amount FROM orders WHERE program_id = :pid",
            pid=program.id,
        )
        spend: dict[int, int] = defaultdict(int)
        for o in orders:
            if o.refunded_amount < o.amount:
                spend[o.member_id] += o.amount - o.refunded_amount
        per_segment = Counter(m["segment"] for m in members)
        revenue: dict[str, int] = defaultdict(int)
        for m in members:
            revenue[m["segment"]] += spend[ids[m["external_id"]]]
        total = sum(revenue.values())
        for s in body:
            assert s["members"] == per_segment[s["segment"]]
            assert s["share_of_members"] == share(per_segment[s["segment"]], len(members))
            assert s["share_of_revenue"] == share(revenue[s["segment"]], total)
            assert s["revenue"] == revenue[s["segment"]]
        assert per_segment["prospects"] == 1  # erin

    async def test_new_members_count_as_prospects_before_a_refresh(self, program: Program) -> None:
        await program.member("m1")
        body = (await program.get("/v1/insights/segments")).json()
        prospects = next(s for s in body if s["segment"] == "prospects")
        assert (prospects["members"], prospects["share_of_members"]) == (1, "1")
        assert prospects["share_of_revenue"] == "0"


class TestChartData:
    async def test_points_by_expiry_month(self, program: Program) -> None:
        clock.freeze(NOW)
        await program.member("m1", points=70)
        await program.patch("/v1/program", json={"points_expiry_days": 30})
        await program.post("/v1/members/m1/points/earn", json={"points": 40, "reason": "a"})
        clock.freeze(NOW + timedelta(days=40))
        await program.post("/v1/members/m1/points/earn", json={"points": 25, "reason": "b"})
        clock.freeze(NOW)
        body = (await program.get("/v1/insights/points-expiry")).json()
        # Lots expire at the end of the local day 30 days on: 2026-07-11 and 2026-08-20.
        assert body["data"] == [
            {"month": "2026-07", "points": 40},
            {"month": "2026-08", "points": 25},
            {"month": "never", "points": 70},
        ]
        lots = await rows(
            "SELECT coalesce(sum(remaining), 0) AS total FROM point_lots WHERE program_id = :pid",
            pid=program.id,
        )
        assert sum(month["points"] for month in body["data"]) == lots[0].total

    async def test_expiry_month_is_the_programs_local_month(self, program: Program) -> None:
        await program.patch(
            "/v1/program", json={"points_expiry_days": 1, "timezone": "Asia/Shanghai"}
        )
        # Earned on 30 June (Shanghai): expires at the end of 1 July local, 16:00 UTC 1 July.
        clock.freeze(datetime(2026, 6, 29, 17, tzinfo=UTC))
        await program.member("m1", points=10)
        body = (await program.get("/v1/insights/points-expiry")).json()
        assert body["data"] == [{"month": "2026-07", "points": 10}]

    async def test_empty_charts_say_why(self, program: Program) -> None:
        tiers = (await program.get("/v1/insights/tiers")).json()
        assert tiers == {"data": [], "note": "no tiers yet"}
        funnel = (await program.get("/v1/insights/referral-funnel")).json()
        assert funnel == {"data": [], "note": "no referrals yet"}
        expiry = (await program.get("/v1/insights/points-expiry")).json()
        assert expiry == {"data": [], "note": "no points outstanding"}


class TestDashboardPage:
    async def test_served_from_the_package_without_a_key(self, program: Program) -> None:
        page = await program.client.get("/dashboard")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "http://" not in page.text and "https://" not in page.text
        for asset, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
            response = await program.client.get(f"/dashboard/{asset}")
            assert response.status_code == 200
            assert response.headers["content-type"].startswith(kind)
            assert "https://" not in response.text

    async def test_unknown_asset(self, program: Program) -> None:
        assert (await program.client.get("/dashboard/../app/main.py")).status_code == 404
        assert (await program.client.get("/dashboard/secrets.txt")).status_code == 404
