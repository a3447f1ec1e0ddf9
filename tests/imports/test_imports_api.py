from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app import db
from app.config import get_settings
from app.errors import PayloadTooLargeError
from app.services.imports import staging
from tests.conftest import Program
from tests.imports.support import jsonl, report, run_worker, upload


class TestCreateImport:
    async def test_queued_then_done(self, program: Program) -> None:
        queued = await upload(program, "members", jsonl({"external_id": "a"}))
        assert queued["status"] == "queued" and queued["type"] == "members"
        assert queued["dry_run"] is False
        waiting = await report(program, queued["id"])
        assert (waiting["status"], waiting["rows_total"], waiting["rows_done"]) == ("queued", 1, 0)
        await run_worker()
        done = await report(program, queued["id"])
        assert done["status"] == "done" and done["finished_at"] is not None

    async def test_unknown_type(self, program: Program) -> None:
        response = await program.post("/v1/imports?type=coupons", content=b"{}\n")
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"

    async def test_needs_admin(self, program: Program) -> None:
        key = await program.key_with("members:write")
        response = await program.post("/v1/imports?type=members", key=key, content=b"{}\n")
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"

    async def test_needs_a_key(self, program: Program) -> None:
        response = await program.client.post("/v1/imports?type=members", content=b"{}\n")
        assert response.status_code == 401
        assert response.json()["code"] == "unauthorized"

    async def test_too_large(self, program: Program) -> None:
        limit = get_settings().max_import_bytes
        response = await program.post(
            "/v1/imports?type=members",
            content=b"{}\n",
            headers={"Content-Length": str(limit + 1)},
        )
        assert response.status_code == 413
        assert response.json()["code"] == "payload_too_large"

    async def test_idempotency_key_replays_and_stages_once(self, program: Program) -> None:
        body = jsonl({"external_id": "a"})
        first = await upload(program, "members", body, **{"Idempotency-Key": "imp-1"})
        again = await program.post(
            "/v1/imports?type=members&dry_run=false",
            content=body,
            headers={"Idempotency-Key": "imp-1"},
        )
        assert again.status_code == 202
        assert again.headers["Idempotency-Replayed"] == "true"
        assert again.json() == first
        async with db.read_only() as conn:
            imports = (
                await conn.execute(
                    "SELECT count(*) FROM imports WHERE program_id = :p", {"p": program.id}
                )
            ).scalar_one()
        assert imports == 1

    async def test_idempotency_key_with_another_file(self, program: Program) -> None:
        await upload(program, "members", jsonl({"external_id": "a"}), **{"Idempotency-Key": "k"})
        response = await program.post(
            "/v1/imports?type=members",
            content=jsonl({"external_id": "b"}),
            headers={"Idempotency-Key": "k"},
        )
        assert response.status_code == 422
        assert response.json()["code"] == "idempotency_key_reused"


class TestGetImport:
    async def test_another_programs_import_is_not_found(
        self, program: Program, other_program: Program
    ) -> None:
        queued = await upload(program, "members", jsonl({"external_id": "a"}))
        response = await other_program.get(f"/v1/imports/{queued['id']}")
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
        await run_worker()

    async def test_malformed_id_is_not_found(self, program: Program) -> None:
        response = await program.get("/v1/imports/not-a-uuid")
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"


class TestImportFinishedEvent:
    async def test_summary_in_the_feed(self, program: Program) -> None:
        queued = await upload(program, "members", jsonl({"external_id": "a"}, "x"))
        await run_worker()
        events = (await program.get("/v1/events?type=import.finished")).json()["data"]
        assert [e["data"] for e in events] == [
            {
                "id": queued["id"],
                "type": "members",
                "dry_run": False,
                "rows_total": 2,
                "created": 1,
                "updated": 0,
                "unchanged": 0,
                "rejected": 1,
            }
        ]


class TestStagingInBatches:
    """Each COPY runs while the next batch is parsed (app/services/imports/staging.py)."""

    @staticmethod
    async def staged(program: Program) -> list[tuple[int, str | None]]:
        async with db.read_only() as conn:
            rows = await conn.execute(
                "SELECT line, error_code FROM import_rows WHERE program_id = :p ORDER BY line",
                {"p": program.id},
            )
            return [(row.line, row.error_code) for row in rows]

    async def test_every_batch_is_staged(
        self, program: Program, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(staging, "COPY_BATCH", 2)
        lines = [{"external_id": f"m{i}"} for i in range(6)] + ["not json"]

        async def chunks() -> AsyncIterator[bytes]:
            for line in jsonl(*lines).splitlines(keepends=True):
                yield line

        await staging.receive_import(program.id, "members", False, "test", chunks(), None, 10**6)
        assert await self.staged(program) == [
            *((i, None) for i in range(1, 7)),
            (7, "malformed_json"),
        ]

    async def test_a_file_over_the_limit_half_way_leaves_nothing(
        self, program: Program, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(staging, "COPY_BATCH", 2)
        body = jsonl(*({"external_id": f"m{i}"} for i in range(40)))

        async def chunks() -> AsyncIterator[bytes]:
            for line in body.splitlines(keepends=True):
                yield line

        with pytest.raises(PayloadTooLargeError):
            await staging.receive_import(
                program.id, "members", False, "test", chunks(), None, len(body) // 2
            )
        assert await self.staged(program) == []
        async with db.read_only() as conn:
            imports = (
                await conn.execute(
                    "SELECT count(*) FROM imports WHERE program_id = :p", {"p": program.id}
                )
            ).scalar()
        assert imports == 0
