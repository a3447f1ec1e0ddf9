"""Redemptions racing from parallel connections: never more than the stock, never past a
member's limit, never a negative balance; the audit (run after each test) agrees."""

from __future__ import annotations

import asyncio
from collections import Counter

from tests.conftest import Program


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
