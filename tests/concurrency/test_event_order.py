"""The events feed and the webhook fan-out never skip an event whose transaction commits late,
never show one twice, and agree on one order, with readers and writers running at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text

from app import db
from app.clock import clock
from app.services.events.events import write_event
from app.services.events.webhook_delivery import fan_out_events
from tests.conftest import Program
from tests.webhook_support import deliveries, register, remove_endpoints


async def read_after(program: Program, after: str | None) -> list[dict[str, Any]]:
    """Everything the feed has after the event ``after``, following next_cursor."""
    events: list[dict[str, Any]] = []
    query: dict[str, Any] = {"limit": 7}
    if after is not None:
        query["after"] = after
    while True:
        response = await program.get("/v1/events", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        events.extend(page["data"])
        if page["next_cursor"] is None:
            return events
        query["after"] = page["next_cursor"]


async def member_pk(program: Program, external_id: str) -> int:
    async with db.read_only() as conn:
        found: int = (
            await conn.execute(
                text("SELECT id FROM members WHERE program_id = :p AND external_id = :e"),
                {"p": program.id, "e": external_id},
            )
        ).scalar_one()
    return found


@pytest.fixture
async def endpoint_cleanup(program: Program) -> AsyncIterator[None]:
    yield
    await remove_endpoints(program.id)


class TestLateCommit:
    async def test_read_next_time_after_what_was_read(self, program: Program) -> None:
        """An event written first whose transaction commits after a later event was read is
        returned by the next read from the reader's cursor, once."""
        await program.member("slow")
        await program.member("fast")
        seen = await read_after(program, None)
        assert [e["type"] for e in seen] == ["member.created", "member.created"]
        slow_pk = await member_pk(program, "slow")
        async with db.get_engine().connect() as conn:
            transaction = await conn.begin()
            slow_id = await write_event(
                conn, program.id, "points.adjusted", slow_pk, {"member_id": "slow"}, clock.now()
            )
            # Another process: its event is written after the open one and commits first.
            with db.allow_second_connection():
                earned = await program.post(
                    "/v1/members/fast/points/earn", json={"points": 1, "reason": "x"}
                )
                assert earned.status_code == 201, earned.text
                later = await read_after(program, seen[-1]["id"])
            assert [(e["type"], e["member_id"]) for e in later] == [("points.earned", "fast")]
            assert int(later[0]["id"]) > slow_id
            await transaction.commit()
        late = await read_after(program, later[-1]["id"])
        assert [(e["id"], e["type"], e["member_id"]) for e in late] == [
            (slow_id, "points.adjusted", "slow")
        ]
        assert await read_after(program, late[-1]["id"]) == []
        # A reader starting from scratch sees the same order: the order is stored.
        assert await read_after(program, None) == seen + later + late

    async def test_a_rolled_back_event_never_shows(self, program: Program) -> None:
        await program.member("m1")
        pk = await member_pk(program, "m1")
        async with db.get_engine().connect() as conn:
            transaction = await conn.begin()
            await write_event(conn, program.id, "points.adjusted", pk, {}, clock.now())
            with db.allow_second_connection():
                await program.member("m2")
                assert len(await read_after(program, None)) == 2
            await transaction.rollback()
        assert [e["member_id"] for e in await read_after(program, None)] == ["m1", "m2"]

    async def test_delivered_once_to_a_webhook(
        self, program: Program, endpoint_cleanup: None
    ) -> None:
        endpoint = await register(program, "http://127.0.0.1:9/hooks")
        await program.member("slow")
        slow_pk = await member_pk(program, "slow")
        async with db.get_engine().connect() as conn:
            transaction = await conn.begin()
            slow_id = await write_event(
                conn, program.id, "points.adjusted", slow_pk, {"member_id": "slow"}, clock.now()
            )
            with db.allow_second_connection():
                await program.member("fast")
                while await fan_out_events(clock.now()):
                    pass
                before_commit = [row.event_id for row in await deliveries(endpoint["id"])]
            assert slow_id not in before_commit
            assert len(before_commit) == 2
            await transaction.commit()
        while await fan_out_events(clock.now()):
            pass
        after_commit = [row.event_id for row in await deliveries(endpoint["id"])]
        assert sorted(after_commit) == sorted([*before_commit, slow_id])


class TestReadersAndWritersAtOnce:
    async def test_every_follower_sees_every_event_once_in_one_order(
        self, program: Program, endpoint_cleanup: None
    ) -> None:
        """Writers commit while three followers poll the feed from their cursors and the
        fan-out runs: each follower ends with the whole feed, once each, in the same order,
        and each event has exactly one delivery."""
        endpoint = await register(program, "http://127.0.0.1:9/hooks")
        members = [f"m{i}" for i in range(8)]
        for member in members:
            await program.member(member)
        writing = True

        async def write(member: str) -> None:
            for _ in range(6):
                response = await program.post(
                    f"/v1/members/{member}/points/earn", json={"points": 1, "reason": "x"}
                )
                assert response.status_code == 201, response.text

        async def follow() -> list[dict[str, Any]]:
            got: list[dict[str, Any]] = []
            while True:
                done = not writing
                got += await read_after(program, got[-1]["id"] if got else None)
                if done:
                    return got
                await asyncio.sleep(0.01)

        async def fan_out() -> None:
            while writing:
                await fan_out_events(clock.now())
                await asyncio.sleep(0.01)

        followers = [asyncio.create_task(follow()) for _ in range(3)]
        fan_outs = [asyncio.create_task(fan_out()) for _ in range(2)]
        await asyncio.gather(*(write(member) for member in members))
        writing = False
        results = await asyncio.gather(*followers)
        await asyncio.gather(*fan_outs)
        while await fan_out_events(clock.now()):
            pass
        everything = await read_after(program, None)
        assert len(everything) == len(members) * 7
        assert len({e["id"] for e in everything}) == len(everything)
        for result in results:
            assert result == everything
        # Each member's events in its sequence order.
        for member in members:
            sequences = [e["data"]["sequence"] for e in everything if e["member_id"] == member]
            assert sequences == sorted(sequences)
        delivered = [row.event_id for row in await deliveries(endpoint["id"])]
        assert sorted(delivered) == sorted(int(e["id"]) for e in everything)
