"""Capture, release and expiry of one hold, racing from parallel connections."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from app.clock import clock
from app.worker import run_once
from tests.conftest import Program


class TestCaptureReleaseExpiryRace:
    async def test_exactly_one_outcome(self, program: Program) -> None:
        for round_number in range(10):
            member = f"m{round_number}"
            await program.member(member, points=100)
            created = await program.post(f"/v1/members/{member}/holds", json={"points": 40})
            hold_id = created.json()["hold_id"]
            results = await asyncio.gather(
                program.post(f"/v1/holds/{hold_id}/capture"),
                program.post(f"/v1/holds/{hold_id}/release"),
                program.post(f"/v1/holds/{hold_id}/capture", json={"points": 10}),
                program.post(f"/v1/holds/{hold_id}/release"),
            )
            winners = [r for r in results if r.status_code == 200]
            assert len(winners) == 1, [r.text for r in results]
            assert all(r.json()["code"] == "hold_not_active" for r in results if r not in winners)
            balance = await program.balance(member)
            assert balance["held"] == 0
            final = winners[0].json()
            captured = final["points_captured"] or 0
            assert balance["available"] == 100 - captured

    async def test_capture_racing_the_expiry_job(self, program: Program) -> None:
        clock.freeze(datetime(2026, 6, 1, 12, tzinfo=UTC))
        await program.member("m1", points=100)
        created = await program.post("/v1/members/m1/holds", json={"points": 40, "ttl_seconds": 5})
        hold_id = created.json()["hold_id"]
        clock.advance(timedelta(seconds=5))
        capture, _ = await asyncio.gather(
            program.post(f"/v1/holds/{hold_id}/capture"), run_once(clock.now())
        )
        # Past expires_at the hold can only expire, whoever gets there first.
        assert capture.status_code == 409
        balance = await program.balance("m1")
        assert (balance["available"], balance["held"]) == (100, 0)
        assert (await program.get(f"/v1/holds/{hold_id}")).json()["status"] == "expired"
