"""Benchmark of the insights: refreshing RFM segments and lifecycle stages for a large program,
and answering the overview for it.

One run, start to end:

1. creates a fresh database ``patron_bench_insights_<random>`` on ``BENCH_DATABASE_URL``
   (default ``postgresql://postgres@127.0.0.1/postgres``), migrates it, and creates a program
   with the app's own service function;
2. bulk-loads ``--members`` members (each with an account, one ``earn`` entry and its lot,
   so the ledger invariants hold, and the prospect row the API gives a new member) and
   ``--orders`` orders spread over two years (skewed: some
   members buy often, 10% never), 5% of them fully and 5% partly refunded, plus feedback
   scores, with ``INSERT ... SELECT generate_series``; then VACUUM ANALYZE, as a database in
   steady state would be;
3. times ``refresh_program`` (the service function behind the worker job and
   ``POST /v1/insights/refresh``): first (every buyer's row changes from prospect), warm
   (nothing changed), and a day later (recency and lifecycle move);
4. times the overview (service function, and through HTTP in-process) ``--runs`` times and
   prints the median and the 90th percentile, with the other insights reads beside it;
5. drops the database (also on error or Ctrl-C) unless ``--keep-database``.

It prints figures; it asserts no timings.

    uv run python bench/insights.py [--members 1000000] [--orders 10000000] [--runs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from app import db
from app.clock import clock
from app.migrate import upgrade
from app.services.insights import insights
from app.services.programs.programs import create_program

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=10_000_000)
    parser.add_argument("--feedback", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=20, help="overview requests to time")
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument(
        "--reuse-database",
        metavar="URL",
        help="measure on a database kept by an earlier run (--keep-database) instead of "
        "loading a new one; its insights are reset to prospect rows first, as after the load",
    )
    return parser.parse_args(argv)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


# Orders go to the first 90% of members, most to the lowest ids (random()^2), over the two
# years before NOW. A member's orders are not in time order, as in life.
LOAD_SQL = [
    (
        "members",
        """
        INSERT INTO members (program_id, external_id, created_at, updated_at)
        SELECT $1, 'm' || g, $2::timestamptz - make_interval(secs => random() * 3 * 365 * 86400),
               $2::timestamptz
          FROM generate_series(1, $3::bigint) AS g
        """,
    ),
    (
        "accounts",
        """
        INSERT INTO accounts (member_id, program_id, available, lifetime_earned, updated_at)
        SELECT id, program_id, 500, 500, $2::timestamptz FROM members WHERE program_id = $1
        """,
    ),
    (
        # As the API does when it creates a member: a prospect row until the first refresh.
        "prospect rows",
        """
        INSERT INTO member_insights (member_id, program_id, segment, lifecycle, orders_count,
                                     net_spend, changed_at)
        SELECT id, program_id, 'prospects', 'prospect', 0, 0, created_at
          FROM members WHERE program_id = $1
        """,
    ),
    (
        "earn entries",
        """
        INSERT INTO point_entries (program_id, member_id, kind, points, status, reason, actor,
                                   created_at, expires_at)
        SELECT program_id, id, 'earn', 500, 'available', 'bench', 'bench', $2::timestamptz,
               CASE WHEN id % 5 = 0 THEN NULL
                    ELSE $2::timestamptz + make_interval(days => (id % 365)::int) END
          FROM members WHERE program_id = $1
        """,
    ),
    (
        "lots",
        """
        INSERT INTO point_lots (program_id, member_id, entry_id, points, remaining, expires_at,
                                created_at)
        SELECT program_id, member_id, id, points, points, expires_at, created_at
          FROM point_entries WHERE program_id = $1
        """,
    ),
    (
        "orders",
        """
        INSERT INTO orders (program_id, order_id, member_id, amount, currency, occurred_at,
                            points_earned, points_redeemed, breakdown, status, available_at,
                            request_hash, created_at, released_at, refunded_amount)
        SELECT $1, 'o' || g, first_member + floor(0.9 * $4::bigint * random() ^ 2)::bigint,
               o.amount, 'USD', o.occurred_at, 0, 0, '[]'::jsonb, 'available', o.occurred_at,
               '\\x00'::bytea, o.occurred_at, o.occurred_at,
               CASE WHEN r < 0.05 THEN o.amount
                    WHEN r < 0.10 THEN o.amount / 2 ELSE 0 END
          FROM generate_series(1, $3::bigint) AS g
         CROSS JOIN (SELECT min(id) AS first_member FROM members WHERE program_id = $1) AS f
         CROSS JOIN LATERAL (
             SELECT 1000 + floor(random() * 49000)::bigint AS amount,
                    $2::timestamptz - make_interval(secs => random() * 730 * 86400)
                        AS occurred_at,
                    random() AS r, g AS tie) AS o
        """,
    ),
    (
        "feedback",
        """
        INSERT INTO member_feedback (program_id, member_id, score, channel, created_at)
        SELECT $1, first_member + floor($4::bigint * random())::bigint,
               floor(random() * 11)::smallint, 'app',
               $2::timestamptz - make_interval(secs => random() * 730 * 86400)
          FROM generate_series(1, $3::bigint) AS g
         CROSS JOIN (SELECT min(id) AS first_member FROM members WHERE program_id = $1) AS f
        """,
    ),
]


async def bulk_load(url: str, program_id: int, args: argparse.Namespace) -> dict[str, float]:
    timings: dict[str, float] = {}
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET maintenance_work_mem = '1GB'")
        await conn.execute("SET synchronous_commit = off")
        # Bulk-load only: foreign keys are not checked row by row (the generator keeps them),
        # and the orders' secondary indexes are built once at the end, not 10M times over.
        await conn.execute("SET session_replication_role = replica")
        indexes = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'orders' "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint)"
        )
        uniques = await conn.fetch(
            "SELECT conname, pg_get_constraintdef(oid) AS definition FROM pg_constraint "
            "WHERE conrelid = 'orders'::regclass AND contype = 'u'"
        )
        for index in indexes:
            await conn.execute(f'DROP INDEX "{index["indexname"]}"')
        for unique in uniques:
            await conn.execute(f'ALTER TABLE orders DROP CONSTRAINT "{unique["conname"]}"')
        for name, sql in LOAD_SQL:
            started = time.perf_counter()
            await conn.execute("SELECT setseed(0.42)")
            count = {"orders": args.orders, "feedback": args.feedback}.get(name, args.members)
            values: list[Any] = [program_id, NOW, count, args.members]
            params = [value for index, value in enumerate(values, 1) if f"${index}" in sql]
            await conn.execute(sql, *params)
            timings[f"load {name}"] = time.perf_counter() - started
            log(f"loaded {name} in {timings[f'load {name}']:.1f} s")
        started = time.perf_counter()
        for unique in uniques:
            await conn.execute(
                f'ALTER TABLE orders ADD CONSTRAINT "{unique["conname"]}" {unique["definition"]}'
            )
        for index in indexes:
            await conn.execute(index["indexdef"])
        timings["build order indexes"] = time.perf_counter() - started
        log(f"built the orders' indexes in {timings['build order indexes']:.1f} s")
        started = time.perf_counter()
        await conn.execute("VACUUM ANALYZE")
        timings["vacuum analyze"] = time.perf_counter() - started
        log(f"vacuum analyze in {timings['vacuum analyze']:.1f} s")
    finally:
        await conn.close()
    return timings


async def timed(work: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await work()
    return time.perf_counter() - started, result


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def measure(url: str, program_id: int, key: str, args: argparse.Namespace) -> None:
    db.configure(db.make_engine(url))
    try:
        clock.freeze(NOW)
        figures: list[tuple[str, str]] = []
        first, result = await timed(lambda: insights.refresh_program(program_id))
        figures.append(("refresh, first (buyers leave prospects)", f"{first:.1f} s"))
        log(f"refresh first: {first:.1f} s for {result.members} members")
        warm, _ = await timed(lambda: insights.refresh_program(program_id))
        figures.append(("refresh, warm (nothing changed)", f"{warm:.1f} s"))
        log(f"refresh warm: {warm:.1f} s")
        clock.freeze(NOW + timedelta(days=1))
        later, _ = await timed(lambda: insights.refresh_program(program_id))
        figures.append(("refresh, a day later", f"{later:.1f} s"))
        log(f"refresh a day later: {later:.1f} s")

        segments = await insights.segments(program_id)
        figures.append(
            ("segments", ", ".join(f"{s.segment} {s.members}" for s in segments if s.members))
        )

        start, end = NOW - timedelta(days=30), NOW
        service_times = []
        for _ in range(args.runs):
            elapsed, overview = await timed(lambda: insights.overview(program_id, start, end))
            service_times.append(elapsed)
        figures.append(
            (
                "overview (service), p50 / p90",
                f"{statistics.median(service_times) * 1000:.0f} ms / "
                f"{percentile(service_times, 0.9) * 1000:.0f} ms",
            )
        )

        from app.main import create_app

        transport = httpx.ASGITransport(app=create_app())
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers=headers, timeout=60
        ) as client:
            http_times = []
            query = {"from": start.isoformat(), "to": end.isoformat()}
            for _ in range(args.runs):
                started = time.perf_counter()
                response = await client.get("/v1/insights/overview", params=query)
                http_times.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
            figures.append(
                (
                    "overview (HTTP, in-process), p50 / p90",
                    f"{statistics.median(http_times) * 1000:.0f} ms / "
                    f"{percentile(http_times, 0.9) * 1000:.0f} ms",
                )
            )
            for label, path in [
                ("GET /v1/insights/segments", "/v1/insights/segments"),
                ("GET /v1/insights/points-expiry", "/v1/insights/points-expiry"),
                ("GET /v1/members?segment=champions", "/v1/members?segment=champions&limit=100"),
                ("GET /v1/members?lifecycle=churned", "/v1/members?lifecycle=churned&limit=100"),
            ]:
                times = []
                for _ in range(5):
                    started = time.perf_counter()
                    response = await client.get(path)
                    times.append(time.perf_counter() - started)
                    assert response.status_code == 200, response.text
                figures.append((f"{label}, p50", f"{statistics.median(times) * 1000:.0f} ms"))

        print()
        print(f"Insights benchmark: {args.members:,} members, {args.orders:,} orders")
        print(f"machine: {os.cpu_count()} cores")
        for label, value in figures:
            print(f"  {label:<44} {value}")
        print("  overview:", overview.model_dump_json(by_alias=True))
    finally:
        await db.dispose()


PROSPECT_ROWS_SQL = next(sql for name, sql in LOAD_SQL if name == "prospect rows")


async def reuse(url: str, args: argparse.Namespace) -> None:
    conn = await asyncpg.connect(url)
    try:
        program_id = await conn.fetchval(
            "SELECT id FROM programs WHERE name = 'Insights bench' ORDER BY id LIMIT 1"
        )
        await conn.execute("TRUNCATE member_insights, insight_refreshes")
        await conn.execute(PROSPECT_ROWS_SQL, program_id)
        await conn.execute("VACUUM ANALYZE member_insights")
    finally:
        await conn.close()
    db.configure(db.make_engine(url))
    try:
        # A fresh admin key: the first one was shown once and is gone.
        from app.services.programs.programs import create_api_key

        _, created = await create_api_key(program_id, "bench", ["admin"], None)
    finally:
        await db.dispose()
    assert created is not None and created.key is not None
    await measure(url, program_id, created.key, args)


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.reuse_database:
        await reuse(db.to_plain_url(args.reuse_database), args)
        return 0
    admin_url = db.to_plain_url(
        os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1/postgres")
    )
    name = f"patron_bench_insights_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = with_database(admin_url, name)
    log(f"database {name}")
    try:
        await asyncio.to_thread(upgrade, url)
        db.configure(db.make_engine(url))
        program_id, key = await create_program("Insights bench", "USD")
        await db.dispose()
        started = time.perf_counter()
        await bulk_load(url, program_id, args)
        log(f"bulk load done in {time.perf_counter() - started:.0f} s")
        await measure(url, program_id, key, args)
    finally:
        if args.keep_database:
            print(f"kept: {url}")
        else:
            with contextlib.suppress(Exception):
                admin = await asyncpg.connect(admin_url)
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                await admin.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
