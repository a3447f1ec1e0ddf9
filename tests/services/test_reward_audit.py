"""The audit's reward invariants (6-8): each finds the break it is there for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text

from app import db
from app.services.ledger.audit import audit
from tests.conftest import Program


async def execute(statement: str, **params: Any) -> None:
    async with db.transaction() as conn:
        await conn.execute(text(statement), params)


@pytest.fixture
async def redemption(program: Program) -> AsyncIterator[dict[str, Any]]:
    """A member who redeemed a reward once; the program's audit is clean to begin with."""
    await program.member("m1", points=500)
    reward = (
        await program.post(
            "/v1/rewards",
            json={"name": "r", "kind": "gift", "points_cost": 100, "stock": 5},
        )
    ).json()
    body = (await program.post(f"/v1/members/m1/rewards/{reward['id']}/redeem")).json()
    assert await audit(program.id) == []
    yield {"reward_id": reward["id"], **body}


def invariants(found: list[Any]) -> set[int]:
    return {violation.invariant for violation in found}


class TestRewardAudit:
    async def test_redemption_without_its_redeem_entry(
        self, program: Program, redemption: dict[str, Any]
    ) -> None:
        # Read, then written back as values: on Citus an INSERT ... SELECT is planned for
        # every shard of the table, which the test session refuses.
        async with db.transaction() as conn:
            first = (
                await conn.execute(
                    text(
                        "SELECT reward_id, member_id, points_spent, created_at "
                        "FROM reward_redemptions WHERE program_id = :p AND id = :id"
                    ),
                    {"p": program.id, "id": redemption["redemption_id"]},
                )
            ).one()
        await execute(
            "INSERT INTO reward_redemptions (program_id, reward_id, member_id, points_spent, "
            "created_at, voided_at) VALUES (:p, :r, :m, :points, :at, now())",
            p=program.id,
            r=first.reward_id,
            m=first.member_id,
            points=first.points_spent,
            at=first.created_at,
        )
        try:
            assert 6 in invariants(await audit(program.id))
        finally:
            await execute(
                "DELETE FROM reward_redemptions "
                "WHERE program_id = :p AND reward_id = :r AND id <> :id",
                p=program.id,
                r=redemption["reward_id"],
                id=redemption["redemption_id"],
            )

    async def test_void_without_restore(self, program: Program, redemption: dict[str, Any]) -> None:
        await execute(
            "UPDATE coupons SET status = 'void' WHERE program_id = :p AND redemption_id = :id",
            p=program.id,
            id=redemption["redemption_id"],
        )
        try:
            assert invariants(await audit(program.id)) == {7}
        finally:
            await execute(
                "UPDATE coupons SET status = 'active' "
                "WHERE program_id = :p AND redemption_id = :id",
                p=program.id,
                id=redemption["redemption_id"],
            )

    async def test_stock_count_drift(self, program: Program, redemption: dict[str, Any]) -> None:
        await execute(
            "UPDATE rewards SET redeemed_count = 0 WHERE program_id = :p AND id = :id",
            p=program.id,
            id=redemption["reward_id"],
        )
        try:
            found = await audit(program.id)
            assert invariants(found) == {8}
            assert found[0].member == f"reward #{redemption['reward_id']}"
        finally:
            await execute(
                "UPDATE rewards SET redeemed_count = 1 WHERE program_id = :p AND id = :id",
                p=program.id,
                id=redemption["reward_id"],
            )

    async def test_clean_after_void(self, program: Program, redemption: dict[str, Any]) -> None:
        code = redemption["coupon"]["code"]
        assert (await program.post(f"/v1/coupons/{code}/void")).status_code == 200
        assert await audit(program.id) == []
