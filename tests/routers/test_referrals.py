"""Referrals through HTTP: codes and links, attribution and its refusals, qualification,
payout, rejection and caps, with time moved by the test clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from app import db
from app.clock import clock
from app.schemas.programs import ReferralSettings
from app.services.referrals import referrals
from app.worker import run_once
from tests.conftest import Program

START = datetime(2026, 3, 1, 10, tzinfo=UTC)
SETTINGS = {
    "referrer_points": 500,
    "referee_points": 200,
    "min_order_amount": 10_000,
    "link_template": "https://shop.example/invite/{code}",
}


async def setup(program: Program, **overrides: Any) -> str:
    """Referral settings, a referrer, and the referrer's code."""
    response = await program.patch("/v1/program", json={"referral": {**SETTINGS, **overrides}})
    assert response.status_code == 200, response.text
    await program.member("alice", email="alice@example.com", phone="+86 138 0000 0001")
    link = await program.post("/v1/members/alice/referral-link")
    assert link.status_code == 200, link.text
    code: str = link.json()["code"]
    return code


async def join(program: Program, member: str, code: str, **fields: Any) -> Any:
    return await program.put(f"/v1/members/{member}", json={"referral_code": code, **fields})


async def order(program: Program, order_id: str, member: str, amount: int) -> Any:
    response = await program.post(
        "/v1/orders",
        json={"order_id": order_id, "member_id": member, "amount": amount, "currency": "CNY"},
    )
    assert response.status_code == 201, response.text
    return response.json()


async def status_of(program: Program, referee: str) -> str:
    listed = (await program.get("/v1/referrals")).json()["data"]
    return next(r["status"] for r in listed if r["referee_id"] == referee)


class TestCodesAndLinks:
    async def test_same_code_every_time_with_url(self, program: Program) -> None:
        code = await setup(program)
        again = (await program.post("/v1/members/alice/referral-link")).json()
        assert again == {"code": code, "url": f"https://shop.example/invite/{code}"}
        assert len(code) == 8
        assert set(code) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
        assert (await program.get("/v1/members/alice")).json()["referral_code"] == code

    async def test_lookup_is_case_insensitive(self, program: Program) -> None:
        code = await setup(program)
        shown = await program.get(f"/v1/referral-codes/{code.lower()}")
        assert shown.status_code == 200
        assert shown.json() == {"code": code, "valid": True, "referee_points": 200}
        unknown = await program.get("/v1/referral-codes/ZZZZZZZZ")
        assert (unknown.status_code, unknown.json()["code"]) == (404, "referral_code_invalid")

    async def test_lookup_is_rate_limited_per_key(self, program: Program, monkeypatch: Any) -> None:
        from app.config import get_settings

        monkeypatch.setattr(get_settings(), "referral_lookups_per_minute", 3)
        code = await setup(program)
        key = await program.key_with("referrals:read")
        other = await program.key_with("referrals:read")
        results = [
            (await program.get(f"/v1/referral-codes/{code}", key=key)).status_code for _ in range(4)
        ]
        assert results == [200, 200, 200, 429]
        limited = await program.get(f"/v1/referral-codes/{code}", key=key)
        assert limited.json()["code"] == "rate_limited"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert (await program.get(f"/v1/referral-codes/{code}", key=other)).status_code == 200

    async def test_erased_referrer_code_stops_working(self, program: Program) -> None:
        code = await setup(program)
        await program.delete("/v1/members/alice")
        assert (await program.get(f"/v1/referral-codes/{code}")).status_code == 404
        refused = await join(program, "bob", code)
        assert (refused.status_code, refused.json()["code"]) == (404, "referral_code_invalid")
        assert (await program.get("/v1/members/bob")).status_code == 404


class TestAttribution:
    async def test_at_creation_and_shown_on_member(self, program: Program) -> None:
        code = await setup(program)
        created = await join(program, "bob", code)
        assert created.status_code == 201
        assert created.json()["referred_by"] == "alice"
        listed = (await program.get("/v1/referrals")).json()["data"]
        assert [(r["referrer_id"], r["referee_id"], r["status"]) for r in listed] == [
            ("alice", "bob", "pending")
        ]

    async def test_code_on_update_is_ignored(self, program: Program) -> None:
        code = await setup(program)
        await program.member("bob")
        updated = await join(program, "bob", code)
        assert updated.status_code == 200
        assert updated.json()["referred_by"] is None

    async def test_post_referrals(self, program: Program) -> None:
        code = await setup(program)
        await program.member("bob")
        response = await program.post("/v1/referrals", json={"code": code, "referee_id": "bob"})
        assert response.status_code == 201
        assert response.json()["referrer_id"] == "alice"
        assert response.json()["status"] == "pending"

    async def test_self_referral_same_member_email_or_phone(self, program: Program) -> None:
        code = await setup(program)
        same = await program.post("/v1/referrals", json={"code": code, "referee_id": "alice"})
        email = await join(program, "alias", code, email="ALICE@Example.COM")
        phone = await join(program, "phone", code, phone="+86-138-0000-0001")
        for response in (same, email, phone):
            assert (response.status_code, response.json()["code"]) == (422, "self_referral")

    async def test_already_referred(self, program: Program) -> None:
        code = await setup(program)
        await join(program, "bob", code)
        await program.member("carol")
        carol_code = (await program.post("/v1/members/carol/referral-link")).json()["code"]
        again = await program.post("/v1/referrals", json={"code": carol_code, "referee_id": "bob"})
        assert (again.status_code, again.json()["code"]) == (409, "already_referred")

    async def test_not_new_customer(self, program: Program) -> None:
        code = await setup(program)
        await program.member("bob")
        await order(program, "B-0", "bob", 100)
        response = await program.post("/v1/referrals", json={"code": code, "referee_id": "bob"})
        assert (response.status_code, response.json()["code"]) == (409, "not_new_customer")


class TestLifecycle:
    async def test_rewarded_at_once_without_return_window(self, program: Program) -> None:
        code = await setup(program)
        await join(program, "bob", code)
        await order(program, "B-1", "bob", 9_999)  # below the minimum: stays pending
        assert await status_of(program, "bob") == "pending"
        await order(program, "B-2", "bob", 10_000)
        assert await status_of(program, "bob") == "rewarded"
        assert (await program.balance("alice"))["available"] == 500
        assert (await program.balance("bob"))["available"] == 99 + 100 + 200
        funnel = (await program.get("/v1/members/alice/referrals")).json()
        assert funnel == {
            "code": code,
            "url": f"https://shop.example/invite/{code}",
            "invited": 1,
            "qualified": 1,
            "rewarded": 1,
            "points_earned": 500,
        }
        entries = (await program.get("/v1/members/alice/points/transactions")).json()["data"]
        assert [(e["kind"], e["points"]) for e in entries] == [("referral", 500)]

    async def test_rewarded_when_the_return_window_passes(self, program: Program) -> None:
        clock.freeze(START)
        await program.patch("/v1/program", json={"pending_days": 14})
        code = await setup(program)
        await join(program, "bob", code)
        await order(program, "B-1", "bob", 20_000)
        assert await status_of(program, "bob") == "qualified"
        clock.advance(timedelta(days=13))
        await run_once(clock.now())
        assert await status_of(program, "bob") == "qualified"
        clock.advance(timedelta(days=1))
        await run_once(clock.now())
        assert await status_of(program, "bob") == "rewarded"
        assert (await program.balance("alice"))["available"] == 500

    async def test_rejected_when_refunded_before_the_window(self, program: Program) -> None:
        clock.freeze(START)
        await program.patch("/v1/program", json={"pending_days": 14})
        code = await setup(program)
        await join(program, "bob", code)
        await order(program, "B-1", "bob", 20_000)
        await program.post("/v1/orders/B-1/refunds", json={"refund_id": "R-1", "amount": 20_000})
        assert await status_of(program, "bob") == "rejected"
        clock.advance(timedelta(days=15))
        await run_once(clock.now())
        assert await status_of(program, "bob") == "rejected"
        assert (await program.balance("alice"))["available"] == 0

    async def test_partial_refund_above_the_minimum_still_pays(self, program: Program) -> None:
        clock.freeze(START)
        await program.patch("/v1/program", json={"pending_days": 14})
        code = await setup(program)
        await join(program, "bob", code)
        await order(program, "B-1", "bob", 20_000)
        await program.post("/v1/orders/B-1/refunds", json={"refund_id": "R-1", "amount": 10_000})
        assert await status_of(program, "bob") == "qualified"
        clock.advance(timedelta(days=14))
        await run_once(clock.now())
        assert await status_of(program, "bob") == "rewarded"

    async def test_cap_over_thirty_days(self, program: Program) -> None:
        clock.freeze(START)
        code = await setup(program, max_rewards_per_referrer_30d=2)
        for index in range(3):
            await join(program, f"friend{index}", code)
            await order(program, f"F-{index}", f"friend{index}", 10_000)
            clock.advance(timedelta(days=1))
        statuses = [await status_of(program, f"friend{i}") for i in range(3)]
        assert statuses == ["rewarded", "rewarded", "capped"]
        assert (await program.balance("alice"))["available"] == 1000
        assert (await program.balance("friend2"))["available"] == 100 + 200
        clock.freeze(START + timedelta(days=31))
        await join(program, "friend3", code)
        await order(program, "F-3", "friend3", 10_000)
        assert await status_of(program, "friend3") == "rewarded"

    async def test_filters(self, program: Program) -> None:
        code = await setup(program)
        await join(program, "bob", code)
        await join(program, "carol", code)
        await order(program, "C-1", "carol", 10_000)
        rewarded = (await program.get("/v1/referrals", params={"status": "rewarded"})).json()
        assert [r["referee_id"] for r in rewarded["data"]] == ["carol"]
        by_alice = (await program.get("/v1/referrals", params={"referrer_id": "alice"})).json()
        assert len(by_alice["data"]) == 2


class TestRaces:
    async def test_same_referee_by_two_codes_at_once(self, program: Program) -> None:
        code = await setup(program)
        await program.member("carol")
        carol_code = (await program.post("/v1/members/carol/referral-link")).json()["code"]
        await program.member("bob")
        first, second = await asyncio.gather(
            program.post("/v1/referrals", json={"code": code, "referee_id": "bob"}),
            program.post("/v1/referrals", json={"code": carol_code, "referee_id": "bob"}),
        )
        assert sorted([first.status_code, second.status_code]) == [201, 409]
        assert len((await program.get("/v1/referrals")).json()["data"]) == 1

    async def test_qualifying_order_twice_concurrently_pays_once(self, program: Program) -> None:
        code = await setup(program)
        await join(program, "bob", code)
        body = {"order_id": "B-1", "member_id": "bob", "amount": 10_000, "currency": "CNY"}
        responses = await asyncio.gather(*(program.post("/v1/orders", json=body) for _ in range(5)))
        assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 201]
        assert (await program.balance("alice"))["available"] == 500

    async def test_payout_job_by_two_workers_pays_once(self, program: Program) -> None:
        clock.freeze(START)
        await program.patch("/v1/program", json={"pending_days": 1})
        code = await setup(program)
        for index in range(6):
            await join(program, f"f{index}", code)
            await order(program, f"F-{index}", f"f{index}", 10_000)
        clock.advance(timedelta(days=2))
        await asyncio.gather(run_once(clock.now()), run_once(clock.now()))
        assert (await program.balance("alice"))["available"] == 6 * 500
        for index in range(6):
            assert (await program.balance(f"f{index}"))["available"] == 100 + 200


class TestPayoutGuard:
    async def test_a_referral_closed_meanwhile_is_not_paid(
        self, program: Program, monkeypatch: Any
    ) -> None:
        # The payout reads the referral, then pays it. Make the read see "qualified" for a
        # referral that was already rejected (what a transaction that read it just before a
        # concurrent rejection committed would see): the pay statement itself must refuse.
        clock.freeze(START)
        await program.patch("/v1/program", json={"pending_days": 14})
        code = await setup(program)
        await join(program, "bob", code)
        await order(program, "B-1", "bob", 20_000)
        await program.post("/v1/orders/B-1/refunds", json={"refund_id": "R-1", "amount": 20_000})
        assert await status_of(program, "bob") == "rejected"
        stale_read = text(
            "SELECT id, program_id, referrer_id, referee_id, 'qualified' AS status "
            "FROM referrals WHERE program_id = :program_id AND id = :id"
        )
        monkeypatch.setattr(referrals, "_READ_FOR_PAYOUT", stale_read)
        referral_id = (await program.get("/v1/referrals")).json()["data"][0]["id"]
        settings = ReferralSettings.model_validate(SETTINGS)
        async with db.transaction() as conn:
            paid = await referrals.pay_in(conn, program.id, int(referral_id), settings, clock.now())
        assert paid is False
        assert await status_of(program, "bob") == "rejected"
        assert (await program.balance("alice"))["available"] == 0
        bob_entries = (await program.get("/v1/members/bob/points/transactions")).json()["data"]
        assert "referral" not in {entry["kind"] for entry in bob_entries}
