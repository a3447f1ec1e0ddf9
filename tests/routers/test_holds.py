"""Holds through HTTP: reserve, capture (full and partial), release, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.clock import clock
from tests.conftest import Program


async def _hold(program: Program, member: str, points: int, **extra: object) -> dict[str, object]:
    response = await program.post(f"/v1/members/{member}/holds", json={"points": points, **extra})
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


class TestCreateHold:
    async def test_moves_points_from_available_to_held(self, program: Program) -> None:
        clock.freeze(datetime(2026, 5, 1, 12, tzinfo=UTC))
        await program.member("m1", points=100)
        hold = await _hold(program, "m1", 60, order_id="A-1")
        assert hold["status"] == "active"
        assert hold["member_id"] == "m1"
        assert hold["order_id"] == "A-1"
        assert hold["points"] == 60
        assert datetime.fromisoformat(str(hold["expires_at"])) == clock.now() + timedelta(
            seconds=900
        )
        balance = await program.balance("m1")
        assert (balance["available"], balance["held"]) == (40, 60)

    async def test_ttl_seconds(self, program: Program) -> None:
        clock.freeze(datetime(2026, 5, 1, 12, tzinfo=UTC))
        await program.member("m1", points=10)
        hold = await _hold(program, "m1", 5, ttl_seconds=60)
        assert datetime.fromisoformat(str(hold["expires_at"])) == clock.now() + timedelta(
            seconds=60
        )

    async def test_insufficient(self, program: Program) -> None:
        await program.member("m1", points=10)
        response = await program.post("/v1/members/m1/holds", json={"points": 11})
        assert response.status_code == 409
        assert response.json()["code"] == "insufficient_points"

    async def test_held_points_cannot_be_redeemed(self, program: Program) -> None:
        await program.member("m1", points=10)
        await _hold(program, "m1", 8)
        response = await program.post("/v1/members/m1/points/redeem", json={"points": 3})
        assert response.status_code == 409

    async def test_ttl_bounds(self, program: Program) -> None:
        await program.member("m1", points=10)
        response = await program.post(
            "/v1/members/m1/holds", json={"points": 1, "ttl_seconds": 86401}
        )
        assert response.status_code == 422

    async def test_unknown_member(self, program: Program) -> None:
        response = await program.post("/v1/members/ghost/holds", json={"points": 1})
        assert response.status_code == 404


class TestCapture:
    async def test_full_capture_writes_a_redeem_entry(self, program: Program) -> None:
        await program.member("m1", points=100)
        hold = await _hold(program, "m1", 60, order_id="A-9")
        response = await program.post(f"/v1/holds/{hold['hold_id']}/capture", json={})
        assert response.status_code == 200
        assert response.json()["status"] == "captured"
        assert response.json()["points_captured"] == 60
        balance = await program.balance("m1")
        assert (balance["available"], balance["held"], balance["lifetime_redeemed"]) == (
            40,
            0,
            60,
        )
        entries = (await program.get("/v1/members/m1/points/transactions")).json()["data"]
        redeem = entries[0]
        assert redeem["kind"] == "redeem"
        assert redeem["points"] == -60
        assert redeem["hold_id"] == hold["hold_id"]
        assert redeem["order_id"] == "A-9"

    async def test_partial_capture_releases_the_rest(self, program: Program) -> None:
        await program.member("m1", points=100)
        hold = await _hold(program, "m1", 60)
        response = await program.post(f"/v1/holds/{hold['hold_id']}/capture", json={"points": 25})
        assert response.json()["points_captured"] == 25
        balance = await program.balance("m1")
        assert (balance["available"], balance["held"]) == (75, 0)

    async def test_more_than_held_is_refused(self, program: Program) -> None:
        await program.member("m1", points=100)
        hold = await _hold(program, "m1", 10)
        response = await program.post(f"/v1/holds/{hold['hold_id']}/capture", json={"points": 11})
        assert response.status_code == 409
        assert response.json()["code"] == "hold_not_active"
        assert (await program.balance("m1"))["held"] == 10

    async def test_twice_is_not_active(self, program: Program) -> None:
        await program.member("m1", points=100)
        hold = await _hold(program, "m1", 10)
        await program.post(f"/v1/holds/{hold['hold_id']}/capture")
        again = await program.post(f"/v1/holds/{hold['hold_id']}/capture")
        assert again.status_code == 409
        assert again.json()["code"] == "hold_not_active"

    async def test_idempotent_replay(self, program: Program) -> None:
        await program.member("m1", points=100)
        hold = await _hold(program, "m1", 10)
        headers = {"Idempotency-Key": "cap-1"}
        first = await program.post(f"/v1/holds/{hold['hold_id']}/capture", headers=headers)
        second = await program.post(f"/v1/holds/{hold['hold_id']}/capture", headers=headers)
        assert (first.status_code, second.status_code) == (200, 200)
        assert first.text == second.text
        assert second.headers["Idempotency-Replayed"] == "true"

    async def test_expired_hold_is_never_capturable(self, program: Program) -> None:
        clock.freeze(datetime(2026, 5, 1, 12, tzinfo=UTC))
        await program.member("m1", points=100)
        hold = await _hold(program, "m1", 30, ttl_seconds=60)
        clock.advance(timedelta(seconds=60))
        response = await program.post(f"/v1/holds/{hold['hold_id']}/capture")
        assert response.status_code == 409
        assert response.json()["code"] == "hold_not_active"
        # Found overdue, it was expired on the spot and its points given back.
        balance = await program.balance("m1")
        assert (balance["available"], balance["held"]) == (100, 0)
        shown = await program.get(f"/v1/holds/{hold['hold_id']}")
        assert shown.json()["status"] == "expired"

    async def test_other_programs_hold_is_not_found(
        self, program: Program, other_program: Program
    ) -> None:
        await program.member("m1", points=100)
        hold = await _hold(program, "m1", 10)
        response = await other_program.post(f"/v1/holds/{hold['hold_id']}/capture")
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
        garbage = await program.post("/v1/holds/not-a-uuid/capture")
        assert garbage.status_code == 404


class TestRelease:
    async def test_gives_points_back(self, program: Program) -> None:
        await program.member("m1", points=100)
        hold = await _hold(program, "m1", 60)
        response = await program.post(f"/v1/holds/{hold['hold_id']}/release")
        assert response.status_code == 200
        assert response.json()["status"] == "released"
        balance = await program.balance("m1")
        assert (balance["available"], balance["held"], balance["lifetime_redeemed"]) == (
            100,
            0,
            0,
        )
        again = await program.post(f"/v1/holds/{hold['hold_id']}/release")
        assert again.status_code == 409


class TestGetHold:
    async def test_shows_current_status(self, program: Program) -> None:
        await program.member("m1", points=100)
        hold = await _hold(program, "m1", 60)
        response = await program.get(f"/v1/holds/{hold['hold_id']}")
        assert response.status_code == 200
        assert response.json() == hold

    async def test_needs_points_read(self, program: Program) -> None:
        await program.member("m1", points=100)
        hold = await _hold(program, "m1", 60)
        key = await program.key_with("members:read")
        response = await program.get(f"/v1/holds/{hold['hold_id']}", key=key)
        assert response.status_code == 403


class TestExpiryJob:
    async def test_returns_points_of_overdue_holds_only(self, program: Program) -> None:
        from app.worker import run_once

        clock.freeze(datetime(2026, 5, 1, 12, tzinfo=UTC))
        await program.member("m1", points=100)
        await program.member("m2", points=100)
        short = await _hold(program, "m1", 30, ttl_seconds=60)
        await _hold(program, "m1", 20, ttl_seconds=60)
        long = await _hold(program, "m2", 50, ttl_seconds=3600)
        clock.advance(timedelta(seconds=61))
        await run_once(clock.now())
        assert (await program.get(f"/v1/holds/{short['hold_id']}")).json()["status"] == "expired"
        assert (await program.get(f"/v1/holds/{long['hold_id']}")).json()["status"] == "active"
        m1 = await program.balance("m1")
        m2 = await program.balance("m2")
        assert (m1["available"], m1["held"]) == (100, 0)
        assert (m2["available"], m2["held"]) == (50, 50)
        # Running again changes nothing.
        await run_once(clock.now())
        assert (await program.balance("m1"))["available"] == 100
