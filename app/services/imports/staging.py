"""Receiving an import: the upload streams in, each line is validated as it arrives, and the
results are copied into ``import_rows`` a few thousand at a time (COPY), so memory holds one
chunk and one batch, never the file. The import is queued only once the whole file is staged;
an upload that fails half-way leaves nothing behind."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime

import orjson
from sqlalchemy import text

from app import db
from app.clock import clock
from app.db import Connection
from app.errors import PayloadTooLargeError
from app.services import idempotency
from app.services.idempotency import IdempotencyRequest, Reply, fingerprint
from app.services.imports.lines import MAX_LINE_BYTES, ParsedLine, parse_line, rejected

COPY_BATCH = 5000
_YIELD_EVERY = 200
_COLUMNS = [
    "import_id",
    "line",
    "program_id",
    "key",
    "payload",
    "error_code",
    "error_message",
    "request_hash",
]

_OPEN = text(
    "INSERT INTO imports (id, program_id, type, dry_run, status, actor, created_at) "
    "VALUES (:id, :program_id, :type, :dry_run, 'receiving', :actor, :now)"
)
_QUEUE = text(
    "UPDATE imports SET status = 'queued', rows_total = :total "
    "WHERE program_id = :program_id AND id = :id"
)
_DISCARD = text("DELETE FROM imports WHERE program_id = :program_id AND id = :id")


class LineSplitter:
    """Cuts a byte stream into numbered lines. A line longer than ``MAX_LINE_BYTES`` is not
    buffered: it comes out as ``None`` (rejected), and its bytes are dropped as they arrive."""

    def __init__(self) -> None:
        self.number = 0
        self._partial = bytearray()
        self._overlong = False

    def feed(self, chunk: bytes) -> Iterator[tuple[int, bytes | None]]:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                self._hold(chunk[start:])
                return
            self._hold(chunk[start:end])
            yield self._emit()
            start = end + 1

    def finish(self) -> Iterator[tuple[int, bytes | None]]:
        if self._partial or self._overlong:
            yield self._emit()

    def _hold(self, piece: bytes) -> None:
        if self._overlong:
            return
        if len(self._partial) + len(piece) > MAX_LINE_BYTES:
            self._overlong = True
            self._partial.clear()
            return
        self._partial += piece

    def _emit(self) -> tuple[int, bytes | None]:
        self.number += 1
        line = None if self._overlong else bytes(self._partial).rstrip(b"\r")
        self._partial.clear()
        self._overlong = False
        return self.number, line


def _parse(kind: str, number: int, raw: bytes | None) -> ParsedLine | None:
    """None for a blank line (skipped, but it keeps its number)."""
    if raw is None:
        return rejected(number, "line_too_long", f"longer than {MAX_LINE_BYTES} bytes")
    if not raw.strip():
        return None
    return parse_line(kind, number, raw)


async def _copy(
    conn: Connection, import_id: uuid.UUID, program_id: int, rows: list[ParsedLine]
) -> None:
    await conn.raw.copy_records_to_table(
        "import_rows",
        columns=_COLUMNS,
        records=[
            (
                import_id,
                r.line,
                program_id,
                r.key,
                r.payload,
                r.error_code,
                r.error_message,
                r.request_hash,
            )
            for r in rows
        ],
    )


async def _stage(
    conn: Connection,
    import_id: uuid.UUID,
    program_id: int,
    kind: str,
    chunks: AsyncIterator[bytes],
    max_bytes: int,
) -> tuple[int, bytes]:
    """Stage every line; returns (lines staged, SHA-256 of the file).

    Each batch's COPY runs while the next batch is parsed, so that the database stores one
    while the service validates the other instead of each waiting for the other in turn
    (memory holds two batches at most)."""
    digest = hashlib.sha256()
    splitter = LineSplitter()
    size = staged = 0
    batch: list[ParsedLine] = []
    copying: asyncio.Task[None] | None = None

    async def flush() -> None:
        nonlocal staged, batch, copying
        if copying is not None:
            await copying
            copying = None
        if batch:
            copying = asyncio.create_task(_copy(conn, import_id, program_id, batch))
            staged += len(batch)
            batch = []

    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLargeError(f"An import file is limited to {max_bytes} bytes.")
            digest.update(chunk)
            for number, raw in splitter.feed(chunk):
                parsed = _parse(kind, number, raw)
                if parsed is not None:
                    batch.append(parsed)
                if number % _YIELD_EVERY == 0:
                    # Parsing is CPU work in the service's event loop: let other requests (a
                    # checkout) run between a few hundred lines rather than after a chunk.
                    await asyncio.sleep(0)
            if len(batch) >= COPY_BATCH:
                await flush()
        for number, raw in splitter.finish():
            parsed = _parse(kind, number, raw)
            if parsed is not None:
                batch.append(parsed)
        await flush()
        await flush()  # the last batch's COPY
    finally:
        if copying is not None and not copying.done():
            # The upload failed while a COPY was under way: it ends before the connection is
            # given back (its rows go with the import, which the caller discards).
            copying.cancel()
            await asyncio.gather(copying, return_exceptions=True)
    return staged, digest.digest()


def import_json(import_id: uuid.UUID, kind: str, dry_run: bool) -> str:
    return orjson.dumps(
        {"id": str(import_id), "type": kind, "status": "queued", "dry_run": dry_run}
    ).decode()


async def receive_import(
    program_id: int,
    kind: str,
    dry_run: bool,
    actor: str,
    chunks: AsyncIterator[bytes],
    idempotency_key: str | None,
    max_bytes: int,
) -> Reply:
    """Stage an uploaded file and queue it for the worker. With an Idempotency-Key, the same
    file (by its SHA-256) sent again replays the first answer; the repeat's staged copy is
    discarded (the hash is known only once the file has streamed in)."""
    import_id = uuid.uuid4()
    now: datetime = clock.now()
    async with db.single_statement() as conn:
        await conn.execute(
            _OPEN,
            {
                "id": import_id,
                "program_id": program_id,
                "type": kind,
                "dry_run": dry_run,
                "actor": actor,
                "now": now,
            },
        )
    try:
        async with db.single_statement() as conn:
            total, file_hash = await _stage(conn, import_id, program_id, kind, chunks, max_bytes)
        request = (
            IdempotencyRequest(
                idempotency_key,
                fingerprint("POST", f"/v1/imports?type={kind}&dry_run={dry_run}", file_hash.hex()),
            )
            if idempotency_key is not None
            else None
        )

        async def queue(conn: Connection) -> Reply:
            await conn.execute(_QUEUE, {"program_id": program_id, "id": import_id, "total": total})
            return Reply(import_json(import_id, kind, dry_run))

        reply = await idempotency.run_once(program_id, request, queue)
    except BaseException:
        await _discard(program_id, import_id)
        raise
    if reply.replayed:
        await _discard(program_id, import_id)
    return reply


async def _discard(program_id: int, import_id: uuid.UUID) -> None:
    async with db.single_statement() as conn:
        await conn.execute(_DISCARD, {"program_id": program_id, "id": import_id})
