"""Races on real connections: many requests at once through the ASGI app, each with its own
pooled PostgreSQL connection. The program fixture audits the ledger after every test."""

from __future__ import annotations

import asyncio
import random
import time

from tests.conftest import Program


class TestConcurrentRedeems:
    async def test_exactly_the_balance_is_spent(self, program: Program) -> None:
        await program.member("hot", points=500)

        async def redeem() -> int:
            response = await program.post("/v1/members/hot/points/redeem", json={"points": 10})
            if response.status_code == 409:
                assert response.json()["code"] == "insufficient_points"
            return response.status_code

        statuses = await asyncio.gather(*(redeem() for _ in range(100)))
        assert statuses.count(201) == 50
        assert statuses.count(409) == 50
        balance = await program.balance("hot")
        assert balance["available"] == 0
        assert balance["lifetime_redeemed"] == 500


class TestConcurrentIdempotentRequests:
    async def test_one_key_applies_once(self, program: Program) -> None:
        await program.member("m1", points=100)
        headers = {"Idempotency-Key": "checkout-42"}

        async def redeem() -> tuple[int, str, str | None]:
            response = await program.post(
                "/v1/members/m1/points/redeem", json={"points": 30}, headers=headers
            )
            return response.status_code, response.text, response.headers.get("Idempotency-Replayed")

        results = await asyncio.gather(*(redeem() for _ in range(50)))
        assert {status for status, _, _ in results} == {201}
        assert len({body for _, body, _ in results}) == 1
        assert sum(1 for _, _, replayed in results if replayed is None) == 1
        entries = await program.get("/v1/members/m1/points/transactions")
        redeems = [e for e in entries.json()["data"] if e["kind"] == "redeem"]
        assert len(redeems) == 1
        assert (await program.balance("m1"))["available"] == 70

    async def test_concurrent_earn_with_one_key(self, program: Program) -> None:
        await program.member("m1")
        headers = {"Idempotency-Key": "earn-7"}
        responses = await asyncio.gather(
            *(
                program.post(
                    "/v1/members/m1/points/earn",
                    json={"points": 5, "reason": "x"},
                    headers=headers,
                )
                for _ in range(50)
            )
        )
        assert {r.status_code for r in responses} == {201}
        assert len({r.text for r in responses}) == 1
        assert (await program.balance("m1"))["available"] == 5

    async def test_same_key_different_body_is_refused(self, program: Program) -> None:
        await program.member("m1", points=100)
        headers = {"Idempotency-Key": "k"}
        first, second = await asyncio.gather(
            program.post("/v1/members/m1/points/redeem", json={"points": 1}, headers=headers),
            program.post("/v1/members/m1/points/redeem", json={"points": 2}, headers=headers),
        )
        statuses = sorted([first.status_code, second.status_code])
        assert statuses == [201, 422]
        refused = first if first.status_code == 422 else second
        assert refused.json()["code"] == "idempotency_key_reused"
        assert (await program.balance("m1"))["available"] in (98, 99)


class TestMixedLoad:
    async def test_balances_equal_sum_of_entries(self, program: Program) -> None:
        members = [f"m{i}" for i in range(20)]
        for member in members:
            await program.member(member, points=50)
        expected = dict.fromkeys(members, 50)
        rng = random.Random(11)
        deadline = time.monotonic() + 4.0

        async def worker() -> None:
            while time.monotonic() < deadline:
                member = rng.choice(members)
                points = rng.randint(1, 30)
                if rng.random() < 0.5:
                    response = await program.post(
                        f"/v1/members/{member}/points/earn",
                        json={"points": points, "reason": "load"},
                    )
                    assert response.status_code == 201, response.text
                    expected[member] += points
                else:
                    response = await program.post(
                        f"/v1/members/{member}/points/redeem", json={"points": points}
                    )
                    assert response.status_code in (201, 409), response.text
                    if response.status_code == 201:
                        expected[member] -= points

        await asyncio.gather(*(worker() for _ in range(16)))
        for member in members:
            assert (await program.balance(member))["available"] == expected[member]
