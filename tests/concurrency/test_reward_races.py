"""Redemptions racing from parallel connections: never more than the stock, never past a
member's limit, never a negative balance; the audit (run after each test) agrees."""

from __future__ import annotations

import asyncio
from collections import Counter

import asyncpg

from app import db
from app.clock import clock
from app.services.rewards.coupons import issue_campaign_coupon
from tests.conftest import ON_CITUS, Program


async def new_reward(program: Program, **fields: object) -> int:
    body = {"name": "Gift", "kind": "gift", "points_cost": 100, **fields}
    response = await program.post("/v1/rewards", json=body)
    assert response.status_code == 201, response.text
    reward_id: int = response.json()["id"]
    return reward_id


class TestStockRace:
    async def test_40_members_on_stock_10(self, program: Program) -> None:
        members = [await program.member(f"m{n:02d}", points=150) for n in range(40)]
        reward_id = await new_reward(program, stock=10)
        results = await asyncio.gather(
            *(program.post(f"/v1/members/{m}/rewards/{reward_id}/redeem") for m in members)
        )
        statuses = Counter(r.status_code for r in results)
        assert statuses == {201: 10, 409: 30}, [r.text for r in results if r.status_code >= 500]
        assert {r.json()["code"] for r in results if r.status_code == 409} == {"out_of_stock"}
        reward = (await program.get(f"/v1/rewards/{reward_id}")).json()
        assert (reward["redeemed_count"], reward["stock_remaining"]) == (10, 0)
        spent = [m for m, r in zip(members, results, strict=True) if r.status_code == 201]
        for member in members:
            expected = 50 if member in spent else 150
            assert (await program.balance(member))["available"] == expected


class TestPerMemberLimitRace:
    async def test_limit_1_hammered_10_times(self, program: Program) -> None:
        await program.member("m1", points=10_000)
        reward_id = await new_reward(program, per_member_limit=1)
        results = await asyncio.gather(
            *(program.post(f"/v1/members/m1/rewards/{reward_id}/redeem") for _ in range(10))
        )
        statuses = Counter(r.status_code for r in results)
        assert statuses == {201: 1, 409: 9}
        assert {r.json()["code"] for r in results if r.status_code == 409} == {
            "reward_limit_reached"
        }
        assert (await program.balance("m1"))["available"] == 9_900
        coupons = (await program.get("/v1/members/m1/coupons")).json()["data"]
        assert len(coupons) == 1


class TestBalanceRace:
    async def test_never_negative(self, program: Program) -> None:
        await program.member("m1", points=350)
        reward_id = await new_reward(program)
        results = await asyncio.gather(
            *(program.post(f"/v1/members/m1/rewards/{reward_id}/redeem") for _ in range(8))
        )
        statuses = Counter(r.status_code for r in results)
        assert statuses == {201: 3, 409: 5}
        assert (await program.balance("m1"))["available"] == 50


class TestVoidRace:
    async def test_concurrent_voids_restore_once(self, program: Program) -> None:
        await program.member("m1", points=100)
        reward_id = await new_reward(program, stock=1)
        redeemed = await program.post(f"/v1/members/m1/rewards/{reward_id}/redeem")
        code = redeemed.json()["coupon"]["code"]
        results = await asyncio.gather(
            *(program.post(f"/v1/coupons/{code}/void") for _ in range(6))
        )
        statuses = Counter(r.status_code for r in results)
        assert statuses == {200: 1, 409: 5}
        assert (await program.balance("m1"))["available"] == 100
        reward = (await program.get(f"/v1/rewards/{reward_id}")).json()
        assert reward["stock_remaining"] == 1


async def coupon_of(program: Program, member: str) -> str:
    reward_id = await new_reward(program, kind="fixed_discount", value=1000)
    response = await program.post(f"/v1/members/{member}/rewards/{reward_id}/redeem")
    assert response.status_code == 201, response.text
    code: str = response.json()["coupon"]["code"]
    return code


def order(order_id: str, code: str, member: str = "m1") -> dict[str, object]:
    return {
        "order_id": order_id,
        "member_id": member,
        "amount": 5000,
        "currency": "CNY",
        "coupon_codes": [code],
    }


class TestCouponOnTwoOrders:
    async def test_one_order_uses_it(self, program: Program) -> None:
        for round_number in range(5):
            member = f"m{round_number}"
            await program.member(member, points=100)
            code = await coupon_of(program, member)
            first, second = await asyncio.gather(
                program.post("/v1/orders", json=order(f"A-{member}", code, member)),
                program.post("/v1/orders", json=order(f"B-{member}", code, member)),
            )
            statuses = sorted((first.status_code, second.status_code))
            assert statuses == [201, 409], (first.text, second.text)
            loser = first if first.status_code == 409 else second
            assert (loser.json()["code"], loser.json()["reason"]) == ("coupon_not_usable", "used")
            winner = first if first.status_code == 201 else second
            shown = (await program.get(f"/v1/coupons/{code}")).json()
            assert (shown["status"], shown["order_id"]) == ("used", winner.json()["order_id"])
            loser_id = (
                "B-" + member if winner.json()["order_id"] == "A-" + member else "A-" + member
            )
            assert (await program.get(f"/v1/orders/{loser_id}")).status_code == 404

    async def test_campaign_coupon_of_no_member_on_two_members(self, program: Program) -> None:
        await program.member("m1")
        await program.member("m2")
        reward_id = await new_reward(program, kind="fixed_discount", value=1000)
        async with db.transaction() as conn:
            issued = await issue_campaign_coupon(conn, program.id, None, reward_id, 7, clock.now())
        first, second = await asyncio.gather(
            program.post("/v1/orders", json=order("A-1", issued.code, "m1")),
            program.post("/v1/orders", json=order("A-2", issued.code, "m2")),
        )
        assert sorted((first.status_code, second.status_code)) == [201, 409]


class TestVoidRacingAnOrder:
    async def test_exactly_one_wins(self, program: Program) -> None:
        outcomes: Counter[str] = Counter()
        for round_number in range(8):
            member = f"m{round_number}"
            await program.member(member, points=100)
            code = await coupon_of(program, member)
            placed, voided = await asyncio.gather(
                program.post("/v1/orders", json=order(f"A-{member}", code, member)),
                program.post(f"/v1/coupons/{code}/void"),
            )
            shown = (await program.get(f"/v1/coupons/{code}")).json()
            balance = await program.balance(member)
            if placed.status_code == 201:
                assert voided.status_code == 409, voided.text
                assert voided.json()["reason"] == "used"
                assert shown["status"] == "used"
                assert balance["available"] == 100 - 100 + 40  # spent, then earned on 4000
                outcomes["order"] += 1
            else:
                assert (placed.status_code, voided.status_code) == (409, 200), placed.text
                assert placed.json()["reason"] == "void"
                assert shown["status"] == "void"
                assert balance["available"] == 100
                outcomes["void"] += 1
        assert sum(outcomes.values()) == 8


_LOCK_ACCOUNT = """
SELECT a.member_id
  FROM accounts AS a JOIN members AS m ON m.id = a.member_id AND m.program_id = a.program_id
 WHERE m.program_id = $1 AND m.external_id = $2
   FOR UPDATE OF a
"""
_LOCK_COUPON_NOWAIT = "SELECT id FROM coupons WHERE program_id = $1 AND code = $2 FOR UPDATE NOWAIT"
_WAITING_ON_A_LOCK = """
SELECT count(*) FROM pg_stat_activity
 WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()
"""
# On Citus the row locks are taken on the shard's node, where the waiting step runs; the
# coordinator's backend waits on that node's answer, not on a lock. Citus lists the waits of
# the whole cluster.
_WAITING_ON_A_LOCK_IN_CLUSTER = "SELECT count(*) FROM citus_lock_waits"


async def wait_for_a_lock_wait(conn: asyncpg.Connection) -> None:
    probe = _WAITING_ON_A_LOCK_IN_CLUSTER if ON_CITUS else _WAITING_ON_A_LOCK
    for _ in range(200):
        if await conn.fetchval(probe):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no statement came to wait on a lock")


class TestCouponLockOrder:
    async def test_the_account_is_locked_before_any_coupon(
        self, program: Program, database_url: str
    ) -> None:
        """While another transaction holds the buyer's account, an order with a coupon waits
        for it without holding the coupon: the fixed lock order (account, then coupons) that
        keeps an order and a void of the same coupon from deadlocking."""
        await program.member("m1", points=100)
        code = await coupon_of(program, "m1")
        holder = await asyncpg.connect(db.to_plain_url(database_url))
        prober = await asyncpg.connect(db.to_plain_url(database_url))
        try:
            async with holder.transaction():
                assert await holder.fetchval(_LOCK_ACCOUNT, program.id, "m1") is not None
                placing = asyncio.create_task(program.post("/v1/orders", json=order("A-1", code)))
                await wait_for_a_lock_wait(prober)
                async with prober.transaction():
                    assert await prober.fetchval(_LOCK_COUPON_NOWAIT, program.id, code)
            placed = await placing
        finally:
            await holder.close()
            await prober.close()
        assert placed.status_code == 201, placed.text
        shown = (await program.get(f"/v1/coupons/{code}")).json()
        assert (shown["status"], shown["order_id"]) == ("used", "A-1")
