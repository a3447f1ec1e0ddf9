"""``patron import``: the same staging and the same steps as the API and the worker, run in
the command's own process, with a progress bar on a terminal and the API's report at the
end."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from typing import IO, Any

import orjson
from sqlalchemy import text

from app import db
from app.clock import clock
from app.config import get_settings
from app.services.imports import runner, staging

CHUNK = 1_048_576
ACTOR = "cli"
_PROGRAM_EXISTS = text("SELECT 1 FROM programs WHERE id = :id")


async def _chunks(handle: IO[bytes]) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(handle.read, CHUNK):
        yield chunk


def _draw(report: dict[str, Any]) -> None:
    total = max(report["rows_total"], 1)
    done = report["rows_done"]
    filled = 30 * done // total
    bar = "#" * filled + "." * (30 - filled)
    sys.stderr.write(f"\r[{bar}] {done:,}/{report['rows_total']:,} lines  {report['status']}")
    sys.stderr.flush()


async def run_import_file(
    program_id: int, kind: str, handle: IO[bytes], dry_run: bool, *, progress: bool
) -> dict[str, Any] | None:
    """Stage the file, run the import to its end, and return its report (None when there is
    no such program). A worker running at the same time may take some of the steps; this
    waits for those."""
    async with db.read_only() as conn:
        if (await conn.execute(_PROGRAM_EXISTS, {"id": program_id})).first() is None:
            return None
    queued = await staging.receive_import(
        program_id, kind, dry_run, ACTOR, _chunks(handle), None, get_settings().max_import_bytes
    )
    import_id = orjson.loads(queued.body)["id"]
    while True:
        stepped = await runner.advance_import(program_id, uuid.UUID(import_id), clock.now())
        report = await runner.get_import(program_id, import_id)
        if progress:
            _draw(report)
        if report["status"] in ("done", "failed"):
            break
        if not stepped:
            await asyncio.sleep(0.2)
    if progress:
        sys.stderr.write("\n")
    return report
