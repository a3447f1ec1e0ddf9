"""The events feed: every change writes exactly one event in its own transaction, with the
member and a per-member sequence; nothing is emitted for a change that did not happen; the
feed never skips an event that commits late."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text

from app import db
from app.clock import clock
from app.services.events.events import write_event
from app.services.ledger import postings as ledger
from tests.conftest import PgServer, Program


async def feed(program: Program, **params: Any) -> list[dict[str, Any]]:
    """Every event of the program in feed order, following next_cursor to the end."""
    events: list[dict[str, Any]] = []
    query = {"limit": 100, **params}
    while True:
        response = await program.get("/v1/events", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        events.extend(page["data"])
        if page["next_cursor"] is None:
            return events
        query["after"] = page["next_cursor"]


async def feed_until(program: Program, count: int, **params: Any) -> list[dict[str, Any]]:
    """The feed once it holds ``count`` events; waits for events still being committed."""
    async with asyncio.timeout(10):
        while len(events := await feed(program, **params)) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    assert len(events) == count, events
    return events


async def account_version(program: Program, member: str) -> int:
    async with db.read_only() as conn:
        version: int = (
            await conn.execute(
                text(
                    "SELECT a.version FROM accounts AS a "
                    "JOIN members AS m ON m.id = a.member_id AND m.program_id = a.program_id "
                    "WHERE m.program_id = :p AND m.external_id = :member"
                ),
                {"p": program.id, "member": member},
            )
        ).scalar_one()
    return version


class TestEachTypeOnce:
    async def test_member_created(self, program: Program) -> None:
        await program.member("m1", name="Li Wei")
        await program.member("m1", name="Li Wei Renamed")  # an update emits nothing
        (event,) = await feed_until(program, 1)
        assert event["type"] == "member.created"
        assert event["member_id"] == "m1"
        assert event["data"] == {"member_id": "m1", "sequence": 1}
        assert isinstance(event["id"], int)
        assert event["created_at"].endswith("+00:00")
        # No personal data travels in events.
        assert "Li Wei" not in str(event)

    async def test_member_erased(self, program: Program) -> None:
        await program.member("m1", email="li@example.com")
        assert (await program.delete("/v1/members/m1")).status_code == 204
        assert (await program.delete("/v1/members/m1")).status_code == 204  # a no-op
        created, erased = await feed_until(program, 2)
        assert created["type"] == "member.created"
        assert erased["type"] == "member.erased"
        assert erased["member_id"] == "m1"
        assert erased["data"] == {"member_id": "m1", "sequence": 2}

    async def test_points_earned(self, program: Program) -> None:
        await program.member("m1")
        entry = (
            await program.post("/v1/members/m1/points/earn", json={"points": 120, "reason": "r"})
        ).json()
        _, earned = await feed_until(program, 2)
        assert earned["type"] == "points.earned"
        assert earned["member_id"] == "m1"
        assert earned["data"]["entry"] == entry
        assert earned["data"]["balance"] == {"available": 120, "pending": 0, "held": 0}
        assert earned["data"]["sequence"] == 2

    async def test_points_redeemed(self, program: Program) -> None:
        await program.member("m1", points=100)
        entry = (await program.post("/v1/members/m1/points/redeem", json={"points": 30})).json()
        events = await feed_until(program, 3)
        assert [e["type"] for e in events] == [
            "member.created",
            "points.earned",
            "points.redeemed",
        ]
        redeemed = events[2]
        assert redeemed["member_id"] == "m1"
        assert redeemed["data"]["entry"] == entry
        assert redeemed["data"]["entry"]["points"] == -30
        assert redeemed["data"]["balance"]["available"] == 70

    async def test_points_adjusted_both_ways(self, program: Program) -> None:
        await program.member("m1", points=10)
        await program.post("/v1/members/m1/points/adjust", json={"points": 5, "reason": "a"})
        await program.post("/v1/members/m1/points/adjust", json={"points": -3, "reason": "b"})
        adjusted = await feed_until(program, 2, type="points.adjusted")
        assert [e["data"]["entry"]["points"] for e in adjusted] == [5, -3]
        assert [e["data"]["balance"]["available"] for e in adjusted] == [15, 12]
        assert all(e["member_id"] == "m1" for e in adjusted)

    async def test_sequence_counts_each_change_of_the_member(self, program: Program) -> None:
        await program.member("m1", points=50)
        await program.member("m2", points=5)
        await program.post("/v1/members/m1/points/redeem", json={"points": 10})
        await program.post("/v1/members/m1/points/adjust", json={"points": 1, "reason": "x"})
        await program.delete("/v1/members/m1")
        events = await feed_until(program, 7)
        mine = [e["data"]["sequence"] for e in events if e["member_id"] == "m1"]
        assert mine == [1, 2, 3, 4, 5]
        assert [e["data"]["sequence"] for e in events if e["member_id"] == "m2"] == [1, 2]
        assert await account_version(program, "m1") == 5

    async def test_idempotent_replay_emits_nothing(self, program: Program) -> None:
        await program.member("m1")
        for _ in range(2):
            response = await program.post(
                "/v1/members/m1/points/earn",
                json={"points": 7, "reason": "r"},
                headers={"Idempotency-Key": "once"},
            )
            assert response.status_code == 201
        await feed_until(program, 2)
        await asyncio.sleep(0.1)
        assert len(await feed(program)) == 2


class TestNothingForWhatDidNotHappen:
    async def test_refused_changes(self, program: Program) -> None:
        await program.member("m1", points=10)
        insufficient = await program.post("/v1/members/m1/points/redeem", json={"points": 11})
        unknown = await program.post(
            "/v1/members/ghost/points/earn", json={"points": 1, "reason": "x"}
        )
        assert (insufficient.status_code, unknown.status_code) == (409, 404)
        await program.member("m2")  # a marker that commits after the refused calls
        events = await feed_until(program, 3)
        assert [e["type"] for e in events] == ["member.created", "points.earned", "member.created"]

    async def test_failure_halfway_rolls_back_the_event(
        self, program: Program, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        await program.member("m1", points=100)
        version = await account_version(program, "m1")
        monkeypatch.setitem(ledger._DEBIT, False, text("SELECT 1 / 0"))
        response = await program.post("/v1/members/m1/points/redeem", json={"points": 40})
        assert response.status_code == 500
        monkeypatch.undo()
        await program.member("m2")
        events = await feed_until(program, 3)
        assert "points.redeemed" not in [e["type"] for e in events]
        assert await account_version(program, "m1") == version

    async def test_write_event_in_a_rolled_back_transaction(self, program: Program) -> None:
        await program.member("m1")
        member_id = await _member_pk(program, "m1")
        with pytest.raises(RuntimeError):
            async with db.transaction() as conn:
                await write_event(
                    conn, program.id, "member.erased", member_id, {"member_id": "m1"}, clock.now()
                )
                raise RuntimeError("the change fails after its event was written")
        await program.member("m2")
        events = await feed_until(program, 2)
        assert [e["member_id"] for e in events] == ["m1", "m2"]
        assert await account_version(program, "m1") == 1


async def _member_pk(program: Program, external_id: str) -> int:
    async with db.read_only() as conn:
        pk: int = (
            await conn.execute(
                text("SELECT id FROM members WHERE program_id = :p AND external_id = :m"),
                {"p": program.id, "m": external_id},
            )
        ).scalar_one()
    return pk


class TestWriteEvent:
    async def test_program_scoped_event_has_no_member(self, program: Program) -> None:
        async with db.transaction() as conn:
            await write_event(conn, program.id, "tier.changed", None, {"k": 1}, clock.now())
        (event,) = await feed_until(program, 1)
        assert event["member_id"] is None
        assert event["data"] == {"k": 1}

    async def test_caller_supplied_sequence_is_kept(self, program: Program) -> None:
        await program.member("m1")
        member_id = await _member_pk(program, "m1")
        async with db.transaction() as conn:
            await write_event(
                conn, program.id, "tier.changed", member_id, {"sequence": 42}, clock.now()
            )
        events = await feed_until(program, 2)
        assert events[1]["data"] == {"sequence": 42}
        assert await account_version(program, "m1") == 1


class TestFeed:
    async def test_pages_oldest_first(self, program: Program) -> None:
        for n in range(5):
            await program.member(f"m{n}")
        await feed_until(program, 5)
        first = (await program.get("/v1/events", params={"limit": 2})).json()
        assert [e["member_id"] for e in first["data"]] == ["m0", "m1"]
        assert first["next_cursor"] == str(first["data"][-1]["id"])
        second = (
            await program.get("/v1/events", params={"limit": 2, "after": first["next_cursor"]})
        ).json()
        third = (
            await program.get("/v1/events", params={"limit": 2, "after": second["next_cursor"]})
        ).json()
        assert [e["member_id"] for e in second["data"]] == ["m2", "m3"]
        assert [e["member_id"] for e in third["data"]] == ["m4"]
        assert third["next_cursor"] is None
        # Caught up: polling from the last id returns nothing until something happens.
        last = third["data"][-1]["id"]
        empty = (await program.get("/v1/events", params={"after": last})).json()
        assert empty == {"data": [], "next_cursor": None}

    async def test_type_filter(self, program: Program) -> None:
        await program.member("m1", points=5)
        await program.member("m2", points=6)
        earned = await feed_until(program, 2, type="points.earned")
        assert [e["member_id"] for e in earned] == ["m1", "m2"]
        assert {e["type"] for e in earned} == {"points.earned"}

    async def test_only_the_callers_program(self, program: Program, other_program: Program) -> None:
        await program.member("mine")
        await other_program.member("theirs")
        assert [e["member_id"] for e in await feed_until(program, 1)] == ["mine"]
        theirs = (await feed_until(other_program, 1))[0]["id"]
        # Another program's event id is not a valid position here.
        response = await program.get("/v1/events", params={"after": theirs})
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"

    @pytest.mark.parametrize(
        "params",
        [{"limit": 0}, {"limit": 101}, {"type": "points.stolen"}, {"after": -1}, {"after": "x"}],
    )
    async def test_invalid_query(self, program: Program, params: dict[str, Any]) -> None:
        response = await program.get("/v1/events", params=params)
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"

    async def test_needs_admin(self, program: Program) -> None:
        key = await program.key_with("points:read", "members:read")
        response = await program.get("/v1/events", key=key)
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"

    async def test_transactions_of_other_databases_do_not_hold_it_back(
        self, program: Program, pg_server: PgServer
    ) -> None:
        """A long transaction elsewhere on the server does not delay the feed (late commits
        in this program: tests/concurrency/test_event_order.py)."""
        url = await pg_server.create_database("patron_elsewhere")
        elsewhere = await asyncpg.connect(url)
        try:
            transaction = elsewhere.transaction()
            await transaction.start()
            await elsewhere.fetchval("SELECT pg_current_xact_id()")  # holds a transaction id
            await program.member("m1")
            assert [e["member_id"] for e in await feed(program)] == ["m1"]
            await transaction.rollback()
        finally:
            await elsewhere.close()
            await pg_server.drop_database(url)
