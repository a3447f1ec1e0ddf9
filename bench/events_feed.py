"""What the feed's per-program positions cost: handing them out to a backlog, a feed read when
caught up and with new events, and the webhook fan-out over the backlog.

One run: creates ``patron_bench_feed_<random>`` on ``BENCH_DATABASE_URL``, migrates it,
creates a program with one webhook endpoint subscribed to every event type (inserted
directly: no receiver is called, the fan-out only creates delivery rows), bulk-loads
``--events`` events without positions (as checkout writes them), then, in-process through
the service functions:

1. hands out positions to the whole backlog (``position_committed_events``, at most 10,000
   per call, as a feed read after a long quiet spell would), timing each call;
2. times ``--reads`` feed reads of 100 events from the end (caught up: the cheap check, the
   cursor lookup and the read), then as many reads that each follow 5 new events (check,
   lock, positions for 5 events, cursor, read);
3. fans the backlog out (``fan_out_events`` until it returns 0, 500 events per batch).

Prints figures; asserts none. Drops the database at the end.

    uv run --extra embedded python bench/events_feed.py [--events 200000] [--reads 500]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import orjson
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import db
from app.clock import clock
from app.migrate import upgrade
from app.services.events import positions
from app.services.events.events import list_events, write_event
from app.services.events.webhook_delivery import fan_out_events
from app.services.programs.programs import create_program

ADMIN_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

_LOAD_EVENTS = """
INSERT INTO events (program_id, type, member_id, data, created_at)
SELECT $1, 'points.earned', NULL, jsonb_build_object('n', n, 'points', 10), now()
  FROM generate_series(1, $2) AS n
"""
_ENDPOINT = """
INSERT INTO webhook_endpoints (id, program_id, url, events, secret, starts_after_position,
                               created_at, updated_at)
VALUES ($1, $2, 'https://hooks.example.com/patron', ARRAY['*'], 'whsec_bench', 0, now(), now())
"""
# The event 101st from the end: a read after it returns the last 100.
_FROM_THE_END = text(
    "SELECT id FROM events WHERE program_id = :p ORDER BY position DESC OFFSET 100 LIMIT 1"
)


def _ms(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered) * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms"


async def _bench(url: str, events: int, reads: int) -> None:
    db.configure(db.make_engine(url))
    program_id, _ = await create_program("Feed bench", "CNY")
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(_ENDPOINT, uuid.uuid4(), program_id)
        started = time.perf_counter()
        await conn.execute(_LOAD_EVENTS, program_id, events)
        await conn.execute("VACUUM ANALYZE events")
        print(
            f"loaded {events:,} events without positions in {time.perf_counter() - started:.1f} s"
        )
    finally:
        await conn.close()

    calls: list[float] = []
    started = time.perf_counter()
    while True:
        began = time.perf_counter()
        async with db.transaction() as tx:
            await positions.lock_stream(tx, program_id)
            handed = await positions.assign(tx, program_id)
        calls.append(time.perf_counter() - began)
        if handed == 0:
            calls.pop()
            break
    total = time.perf_counter() - started
    print(
        f"positions for the backlog: {total:.2f} s in {len(calls)} calls of up to "
        f"{positions.ASSIGN_LIMIT:,} ({events / total:,.0f} events/s; per call {_ms(calls)})"
    )

    async with db.read_only() as tx:
        last_id = (
            await tx.execute(
                _FROM_THE_END,
                {"p": program_id},
            )
        ).scalar_one()
    caught_up: list[float] = []
    for _ in range(reads):
        began = time.perf_counter()
        page, _cursor = await list_events(program_id, last_id, None, 100)
        caught_up.append(time.perf_counter() - began)
        assert len(page) == 100
    print(f"feed read of 100 events, caught up: {_ms(caught_up)}")

    following: list[float] = []
    after = last_id
    for _ in range(reads):
        async with db.transaction() as tx:
            for _ in range(5):
                await write_event(tx, program_id, "points.adjusted", None, {}, clock.now())
        began = time.perf_counter()
        page, _cursor = await list_events(program_id, after, None, 100)
        following.append(time.perf_counter() - began)
        after = int(orjson.loads(page[-1])["id"])
    print(f"feed read after 5 new events (positions handed out in the read): {_ms(following)}")

    started = time.perf_counter()
    fanned = 0
    while handled := await fan_out_events(clock.now()):
        fanned += handled
    total = time.perf_counter() - started
    print(
        f"fan-out of {fanned:,} events to 1 endpoint: {total:.2f} s "
        f"({fanned / total:,.0f} events/s)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--reads", type=int, default=500)
    args = parser.parse_args()
    name = f"patron_bench_feed_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        await asyncio.to_thread(upgrade, url)
        await _bench(url, args.events, args.reads)
    finally:
        await db.dispose()
        admin = await asyncpg.connect(ADMIN_URL)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    os.environ.setdefault("PATRON_LOG_LEVEL", "warning")
    asyncio.run(main())
