"""POST /v1/members/{member}/feedback, the member's latest score, and NPS over a period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.clock import clock
from tests.conftest import Program
from tests.insights_support import member, rows

NOW = datetime(2026, 3, 1, 9, tzinfo=UTC)


async def give(program: Program, name: str, score: int, **extra: object) -> dict[str, object]:
    response = await program.post(f"/v1/members/{name}/feedback", json={"score": score, **extra})
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


async def nps(program: Program, start: datetime, end: datetime) -> tuple[str, int]:
    params = {"from": start.isoformat(), "to": end.isoformat()}
    body = (await program.get("/v1/insights/overview", params=params)).json()
    return body["nps"], body["nps_responses"]


class TestGiveFeedback:
    async def test_created(self, program: Program) -> None:
        clock.freeze(NOW)
        await program.member("m1")
        body = await give(program, "m1", 9, comment="Quick delivery", channel="app")
        assert body["member_id"] == "m1"
        assert (body["score"], body["comment"], body["channel"]) == (9, "Quick delivery", "app")
        assert datetime.fromisoformat(str(body["created_at"])) == NOW
        assert isinstance(body["id"], int)

    async def test_member_shows_the_latest_score(self, program: Program) -> None:
        clock.freeze(NOW)
        await program.member("m1")
        assert (await member(program, "m1"))["latest_feedback"] is None
        await give(program, "m1", 3)
        clock.freeze(NOW + timedelta(days=2))
        await give(program, "m1", 10)
        shown = (await member(program, "m1"))["latest_feedback"]
        assert shown["score"] == 10
        assert datetime.fromisoformat(shown["created_at"]) == NOW + timedelta(days=2)

    @pytest.mark.parametrize("score", [0, 10])
    async def test_score_bounds_accepted(self, program: Program, score: int) -> None:
        await program.member("m1")
        assert (await give(program, "m1", score))["score"] == score

    @pytest.mark.parametrize(
        "body",
        [
            {"score": -1},
            {"score": 11},
            {"score": "9"},
            {"score": 9.0},
            {"score": True},
            {},
            {"score": 9, "comment": ""},
            {"score": 9, "comment": "x" * 2001},
            {"score": 9, "channel": "in store"},
            {"score": 9, "channel": "c" * 33},
            {"score": 9, "member_id": "m2"},
        ],
    )
    async def test_invalid(self, program: Program, body: dict[str, object]) -> None:
        await program.member("m1")
        response = await program.post("/v1/members/m1/feedback", json=body)
        assert response.status_code == 422, body
        assert response.json()["code"] == "validation_error"

    async def test_unknown_member(self, program: Program, other_program: Program) -> None:
        await other_program.member("m1")
        response = await program.post("/v1/members/m1/feedback", json={"score": 5})
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"

    async def test_needs_members_write(self, program: Program) -> None:
        await program.member("m1")
        reader = await program.key_with("members:read", "points:write")
        response = await program.post("/v1/members/m1/feedback", key=reader, json={"score": 5})
        assert response.status_code == 403
        writer = await program.key_with("members:write")
        response = await program.post("/v1/members/m1/feedback", key=writer, json={"score": 5})
        assert response.status_code == 201

    async def test_idempotency_key_replays(self, program: Program) -> None:
        await program.member("m1")
        headers = {"Idempotency-Key": "fb-1"}
        first = await program.post("/v1/members/m1/feedback", json={"score": 7}, headers=headers)
        again = await program.post("/v1/members/m1/feedback", json={"score": 7}, headers=headers)
        assert (first.status_code, again.status_code) == (201, 201)
        assert again.headers["Idempotency-Replayed"] == "true"
        assert first.text == again.text
        stored = await rows(
            "SELECT count(*) AS n FROM member_feedback WHERE program_id = :pid", pid=program.id
        )
        assert stored[0].n == 1
        other = await program.post("/v1/members/m1/feedback", json={"score": 8}, headers=headers)
        assert other.status_code == 422
        assert other.json()["code"] == "idempotency_key_reused"

    async def test_erasing_a_member_drops_comments_keeps_scores(self, program: Program) -> None:
        clock.freeze(NOW)
        await program.member("m1", name="Li")
        await give(program, "m1", 2, comment="Rude staff at the Pudong store")
        assert (await program.delete("/v1/members/m1")).status_code == 204
        body = await give(program, "m1", 4, comment="Still unhappy")
        assert body["comment"] is None
        stored = await rows(
            "SELECT score, comment FROM member_feedback WHERE program_id = :pid ORDER BY id",
            pid=program.id,
        )
        assert [(r.score, r.comment) for r in stored] == [(2, None), (4, None)]
        assert await nps(program, NOW, NOW + timedelta(days=1)) == ("-100", 1)


class TestNps:
    async def test_latest_score_per_member_in_the_period(self, program: Program) -> None:
        start, end = NOW, NOW + timedelta(days=30)
        for name in ("a", "b", "c", "d", "e", "f", "g"):
            await program.member(name)
        for name, score, when in [
            ("a", 0, start - timedelta(seconds=1)),  # before the period: ignored
            ("a", 9, start),  # promoter
            ("b", 10, start + timedelta(days=1)),
            ("b", 6, start + timedelta(days=2)),  # latest: detractor
            ("c", 7, start + timedelta(days=3)),  # passive
            ("d", 8, start + timedelta(days=4)),
            ("d", 9, start + timedelta(days=4)),  # same moment: the later one counts
            ("e", 6, start + timedelta(days=5)),  # detractor
            ("f", 10, start + timedelta(days=6)),  # promoter
            ("g", 1, end),  # at the end: outside the period
        ]:
            clock.freeze(when)
            await give(program, name, score)
        # Promoters a, d, f; detractors b, e; passive c: 100 * (3 - 2) / 6 = 16.7.
        assert await nps(program, start, end) == ("16.7", 6)

    async def test_all_promoters_and_all_detractors(self, program: Program) -> None:
        clock.freeze(NOW)
        await program.member("a")
        await program.member("b")
        await give(program, "a", 10)
        await give(program, "b", 9)
        assert await nps(program, NOW, NOW + timedelta(days=1)) == ("100", 2)
        clock.freeze(NOW + timedelta(days=2))
        await give(program, "a", 0)
        await give(program, "b", 6)
        assert await nps(program, NOW, NOW + timedelta(days=3)) == ("-100", 2)

    async def test_no_answers(self, program: Program) -> None:
        assert await nps(program, NOW, NOW + timedelta(days=1)) == ("0", 0)
