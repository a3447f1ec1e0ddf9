"""The member-batch jobs (pending release, points expiry) run in lanes, in several replicas at
once, and next to checkout traffic: every order is released once, every lot expires once, and
a member a checkout holds is left for a later batch instead of waited for."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from app import db
from app.clock import clock
from app.services.ledger import expiry, pending
from app.services.members.member_batches import Lane
from app.worker import LaneJob, run_in_lanes_until_done
from tests.conftest import Program

START = datetime(2026, 6, 1, 10, tzinfo=UTC)
PENDING_DAYS = 7


async def query(sql: str, **params: Any) -> list[Any]:
    async with db.read_only() as conn:
        return list((await conn.execute(text(sql), params)).all())


async def member_ids(program: Program) -> dict[str, int]:
    rows = await query("SELECT external_id, id FROM members WHERE program_id = :p", p=program.id)
    return {row.external_id: row.id for row in rows}


async def place_pending_orders(program: Program, members: int, orders_each: int) -> None:
    """``members`` members m0.. with ``orders_each`` pending orders of 100 points each."""
    clock.freeze(START)
    await program.patch("/v1/program", json={"pending_days": PENDING_DAYS})
    for m in range(members):
        await program.member(f"m{m}")
        for o in range(orders_each):
            response = await program.post(
                "/v1/orders",
                json={
                    "order_id": f"m{m}-{o}",
                    "member_id": f"m{m}",
                    "amount": 10_000,
                    "currency": "CNY",
                },
            )
            assert response.status_code == 201, response.text
            assert response.json()["status"] == "pending"


def in_batches_of(job: Callable[..., Awaitable[int]], batch_size: int) -> LaneJob:
    """The job with small batches, so that concurrent loops interleave."""

    async def small(now: datetime, *, lane: Lane) -> int:
        return await job(now, lane=lane, batch_size=batch_size)

    return small


@asynccontextmanager
async def checkout_holding(program: Program, member_id: int) -> AsyncIterator[None]:
    """A transaction that holds the member's account lock, as a checkout in progress does."""
    async with db.transaction() as conn:
        await conn.execute(
            text("SELECT 1 FROM accounts WHERE program_id = :p AND member_id = :id FOR UPDATE"),
            {"p": program.id, "id": member_id},
        )
        # The checkout stands for another process: the job beside it takes its own connection.
        with db.allow_second_connection():
            yield


async def releases_per_pending_entry(program: Program) -> list[int]:
    rows = await query(
        "SELECT count(r.entry_id) AS releases FROM point_entries AS e "
        "LEFT JOIN point_releases AS r ON r.program_id = e.program_id AND r.entry_id = e.id "
        "WHERE e.program_id = :p AND e.status = 'pending' GROUP BY e.id",
        p=program.id,
    )
    return [row.releases for row in rows]


async def released_events_per_order(program: Program) -> dict[str, int]:
    rows = await query(
        "SELECT data ->> 'order_id' AS order_id, count(*) AS events FROM events "
        "WHERE program_id = :p AND type = 'points.released' GROUP BY 1",
        p=program.id,
    )
    return {row.order_id: row.events for row in rows}


async def queued_orders(program: Program) -> list[str]:
    rows = await query(
        "SELECT o.order_id FROM order_release_queue AS q "
        "JOIN orders AS o ON o.program_id = q.program_id AND o.id = q.order_pk "
        "WHERE q.program_id = :p ORDER BY 1",
        p=program.id,
    )
    return [row.order_id for row in rows]


class TestReleaseQueue:
    async def test_pending_order_waits_in_the_queue_until_released(self, program: Program) -> None:
        await place_pending_orders(program, members=1, orders_each=2)
        assert await queued_orders(program) == ["m0-0", "m0-1"]
        clock.advance(timedelta(days=PENDING_DAYS))
        await run_in_lanes_until_done("release", pending.release_due_points, clock.now())
        assert await queued_orders(program) == []
        assert (await program.get("/v1/orders/m0-0")).json()["status"] == "available"

    async def test_refund_while_pending_is_released_with_the_order(self, program: Program) -> None:
        await place_pending_orders(program, members=1, orders_each=1)
        refund = await program.post(
            "/v1/orders/m0-0/refunds", json={"refund_id": "r1", "amount": 2_500}
        )
        assert refund.json()["points_reversed"] == 25
        clock.advance(timedelta(days=PENDING_DAYS))
        await run_in_lanes_until_done("release", pending.release_due_points, clock.now())
        entries = (await program.get("/v1/members/m0/points/transactions")).json()["data"]
        assert [(e["kind"], e["points"], e["status"]) for e in entries] == [
            ("refund", -25, "available"),
            ("order", 100, "available"),
        ]
        assert await releases_per_pending_entry(program) == [1, 1]
        balance = await program.balance("m0")
        assert (balance["available"], balance["pending"]) == (75, 0)
        assert await released_events_per_order(program) == {"m0-0": 1}

    async def test_pending_order_without_points_is_released(self, program: Program) -> None:
        clock.freeze(START)
        await program.patch("/v1/program", json={"pending_days": PENDING_DAYS})
        await program.member("m0")
        response = await program.post(
            "/v1/orders",
            json={"order_id": "free", "member_id": "m0", "amount": 0, "currency": "CNY"},
        )
        assert response.json()["status"] == "pending"
        clock.advance(timedelta(days=PENDING_DAYS))
        await run_in_lanes_until_done("release", pending.release_due_points, clock.now())
        assert (await program.get("/v1/orders/free")).json()["status"] == "available"
        assert await queued_orders(program) == []

    async def test_order_available_at_once_is_not_queued(self, program: Program) -> None:
        await program.member("m0")
        response = await program.post(
            "/v1/orders",
            json={"order_id": "now", "member_id": "m0", "amount": 500, "currency": "CNY"},
        )
        assert response.json()["status"] == "available"
        assert await queued_orders(program) == []


class TestReleaseInLanesAndReplicas:
    async def test_replicas_in_lanes_release_each_order_once(self, program: Program) -> None:
        await place_pending_orders(program, members=12, orders_each=3)
        clock.advance(timedelta(days=PENDING_DAYS))
        small = in_batches_of(pending.release_due_points, 2)
        # Two replicas at once, each running both lanes.
        handled = await asyncio.gather(
            run_in_lanes_until_done("release", small, clock.now(), lanes=2),
            run_in_lanes_until_done("release", small, clock.now(), lanes=2),
        )
        assert sum(handled) >= 36  # the jobs also release what other tests left due
        assert await releases_per_pending_entry(program) == [1] * 36
        assert set((await released_events_per_order(program)).values()) == {1}
        assert len(await released_events_per_order(program)) == 36
        for m in range(12):
            balance = await program.balance(f"m{m}")
            assert (balance["available"], balance["pending"]) == (300, 0)

    async def test_a_lane_releases_only_its_members(self, program: Program) -> None:
        await place_pending_orders(program, members=6, orders_each=1)
        clock.advance(timedelta(days=PENDING_DAYS))
        while await pending.release_due_points(clock.now(), lane=Lane(1, 2)):
            pass
        ids = await member_ids(program)
        still_queued = {order_id.split("-")[0] for order_id in await queued_orders(program)}
        assert still_queued == {m for m, member_id in ids.items() if member_id % 2 == 0}
        for m, member_id in ids.items():
            balance = await program.balance(m)
            assert balance["pending"] == (100 if member_id % 2 == 0 else 0)

    async def test_member_busy_at_checkout_is_skipped_then_released(self, program: Program) -> None:
        await place_pending_orders(program, members=3, orders_each=2)
        clock.advance(timedelta(days=PENDING_DAYS))
        busy = (await member_ids(program))["m1"]
        async with checkout_holding(program, busy):
            # Never waits for the lock: the job finishes while the checkout still holds it.
            await asyncio.wait_for(
                run_in_lanes_until_done("release", pending.release_due_points, clock.now()),
                timeout=10,
            )
            assert await queued_orders(program) == ["m1-0", "m1-1"]
        assert (await program.balance("m1"))["pending"] == 200
        assert (await program.balance("m0"))["available"] == 200
        await run_in_lanes_until_done("release", pending.release_due_points, clock.now())
        assert await queued_orders(program) == []
        balance = await program.balance("m1")
        assert (balance["available"], balance["pending"]) == (200, 0)


async def expire_entries_per_member(program: Program) -> dict[str, int]:
    rows = await query(
        "SELECT m.external_id, count(e.id) AS entries FROM members AS m "
        "LEFT JOIN point_entries AS e "
        "ON e.program_id = m.program_id AND e.member_id = m.id AND e.kind = 'expire' "
        "WHERE m.program_id = :p GROUP BY 1",
        p=program.id,
    )
    return {row.external_id: row.entries for row in rows}


async def members_with_expiring_points(program: Program, members: int) -> None:
    clock.freeze(START)
    await program.patch("/v1/program", json={"points_expiry_days": 30})
    for m in range(members):
        await program.member(f"m{m}", points=40)
        await program.post(f"/v1/members/m{m}/points/earn", json={"points": 60, "reason": "x"})
    clock.advance(timedelta(days=32))


class TestExpiryInLanesAndReplicas:
    async def test_replicas_in_lanes_expire_each_member_once(self, program: Program) -> None:
        await members_with_expiring_points(program, members=10)
        small = in_batches_of(expiry.expire_due_points, 2)
        handled = await asyncio.gather(
            run_in_lanes_until_done("expire", small, clock.now(), lanes=2),
            run_in_lanes_until_done("expire", small, clock.now(), lanes=2),
        )
        assert sum(handled) >= 10
        assert set((await expire_entries_per_member(program)).values()) == {1}
        for m in range(10):
            assert (await program.balance(f"m{m}"))["available"] == 0

    async def test_member_busy_at_checkout_is_skipped_then_expired(self, program: Program) -> None:
        await members_with_expiring_points(program, members=3)
        busy = (await member_ids(program))["m2"]
        async with checkout_holding(program, busy):
            await asyncio.wait_for(
                run_in_lanes_until_done("expire", expiry.expire_due_points, clock.now()),
                timeout=10,
            )
        assert await expire_entries_per_member(program) == {"m0": 1, "m1": 1, "m2": 0}
        assert (await program.balance("m2"))["available"] == 100
        await run_in_lanes_until_done("expire", expiry.expire_due_points, clock.now())
        assert await expire_entries_per_member(program) == {"m0": 1, "m1": 1, "m2": 1}
        assert (await program.balance("m2"))["available"] == 0


class TestLane:
    def test_lane_outside_its_count_is_refused(self) -> None:
        with pytest.raises(ValueError, match="lane 2 of 2"):
            Lane(2, 2)
