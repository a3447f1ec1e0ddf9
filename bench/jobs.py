"""Benchmark of the worker jobs and the tier re-evaluation at scale, with checkout traffic.

One run, start to end:

1. creates a fresh database ``patron_bench_jobs_<random>`` on ``BENCH_DATABASE_URL``, migrates
   it, and creates two programs with the app's own service function: the *jobs* program
   (``pending_days`` 14, ``points_expiry_days`` 365) and the *tiers* program (metric points,
   365-day window, no grace, three tiers);
2. bulk-loads with ``INSERT ... SELECT generate_series`` (foreign-key triggers off, as a
   restore would), keeping the ledger invariants of ``app/services/ledger/audit.py``:
   - jobs program: ``--members`` members, each with a 1,000-point ``earn`` entry and lot that
     never expire; ``--lots`` ``earn`` entries and their lots already past ``expires_at``;
     ``--pending`` orders with ``status`` pending and ``available_at`` in the past, each with its
     pending ``order`` entry; ``accounts`` hold the sums (available, pending);
   - tiers program: ``--tier-members`` members with three ``earn`` entries (and lots) each,
     spread so that the tiers bronze 1,000 / silver 4,000 / gold 8,000 all have members, and
     each member's tier set as an evaluation would have set it;
   then VACUUM ANALYZE and CHECKPOINT;
3. starts ``patron serve --workers 2`` and measures checkout latency with wrk
   (``POST /v1/orders``, ``bench/checkout.lua``, ``--connections`` connections, each request
   after a random pause of ``--checkout-delay-ms`` on average): first alone (``--baseline``
   seconds), then during each job;
4. runs ``release_due_points`` to completion, then ``expire_due_points`` to completion,
   in-process through ``app.worker.run_in_lanes_until_done`` (``--lanes`` loops side by side,
   as the worker runs them), timing each (target: < 60 s) and each batch, while wrk runs; wrk
   is stopped when the job is done;
5. tiers: times ``POST /v1/tiers/preview`` over the tiers program (HTTP; target < 2 s), then a
   threshold change through ``app.services.tiers.tiers.update_tier`` (``scheduled`` above 20,000
   members) and the complete re-evaluation by ``continue_program_reevaluation`` in a loop
   (target: the whole < 10 s), once lowering silver (upgrades) and once raising it
   (downgrades), with the members moved;
6. stops the service, runs the audit (what ``patron audit --program ID`` runs) on both
   programs, prints the figures and writes ``bench/results/jobs.json``;
7. drops the database, also on error or Ctrl-C (unless ``--keep-database``).

It prints figures; it asserts no timings. The exit status is 1 when the audit fails, a job
left work behind, or a checkout request failed; else 0.

    uv run --extra embedded python bench/jobs.py [--lots 1000000] [--pending 1000000]
        [--members 200000] [--tier-members 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import psutil
from run import (
    CHECKOUT_SCRIPT,
    RESULTS_DIR,
    ROOT,
    Server,
    ServiceProbe,
    WrkLoad,
    abort_wrk,
    create_database,
    drop_database,
    ensure_wrk,
    finish_wrk,
    free_port,
    git_commit,
    log,
    start_wrk,
    with_database,
)

# Imported once, up front, like run.py: others may edit app/ while this runs.
from app import db
from app.config import Settings, get_settings
from app.migrate import upgrade
from app.services.ledger import pending
from app.services.ledger.audit import audit
from app.services.ledger.expiry import expire_due_points
from app.services.members.member_batches import Lane
from app.services.programs.programs import create_program
from app.services.tiers import tier_evaluation, tiers
from app.worker import run_in_lanes_until_done

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1/postgres"
JOB_TARGET_S = 60.0
PREVIEW_TARGET_S = 2.0
REEVALUATION_TARGET_S = 10.0
TIERS = (("bronze", "Bronze", 1_000, "1"), ("silver", "Silver", 4_000, "1.25"))
TIERS += (("gold", "Gold", 8_000, "1.5"),)
LOWERED_SILVER = 3_000  # the first change: upgrades bronze members with 3,000 .. 3,999
RAISED_SILVER = 5_000  # the second: downgrades silver members with 3,000 .. 4,999
SEED_POINTS = 1_000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lots", type=int, default=1_000_000, help="lots past expires_at")
    parser.add_argument("--pending", type=int, default=1_000_000, help="due pending orders")
    parser.add_argument("--members", type=int, default=200_000, help="jobs program members")
    parser.add_argument("--tier-members", type=int, default=100_000)
    parser.add_argument(
        "--release-batch", type=int, default=None, help="batch_size= of release_due_points"
    )
    parser.add_argument(
        "--expire-batch", type=int, default=None, help="batch_size= of expire_due_points"
    )
    parser.add_argument(
        "--lanes",
        type=int,
        default=None,
        help="job loops side by side (default: the worker's PATRON_WORKER_LANES setting)",
    )
    parser.add_argument(
        "--reevaluation-batch",
        type=int,
        default=None,
        help="batch_size= of continue_program_reevaluation",
    )
    parser.add_argument(
        "--baseline", type=int, default=15, help="seconds of checkout traffic before the jobs"
    )
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument(
        "--checkout-delay-ms",
        type=int,
        default=100,
        help="mean pause before each checkout request per connection (0: closed loop)",
    )
    parser.add_argument("--workers", type=int, default=2, help="patron serve --workers")
    parser.add_argument("--timeout", type=int, default=10, help="wrk request timeout, seconds")
    parser.add_argument("--preview-runs", type=int, default=3)
    parser.add_argument("--skip-tiers", action="store_true", help="only the two jobs")
    parser.add_argument("--skip-jobs", action="store_true", help="only the tiers part")
    parser.add_argument(
        "--no-install", action="store_true", help="fail instead of apt-get installing wrk"
    )
    parser.add_argument("--server-log-level", default="warning")
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument(
        "--load-only",
        action="store_true",
        help="load, then keep the database and stop (to profile the job statements by hand)",
    )
    args = parser.parse_args(argv)
    if args.load_only:
        args.keep_database = True
    if args.lanes is None:
        args.lanes = get_settings().worker_lanes
    if min(args.members, args.tier_members) < 1 or min(args.lots, args.pending) < 0:
        parser.error("need --members and --tier-members >= 1, --lots and --pending >= 0")
    if args.connections < args.threads:
        parser.error("need --connections >= --threads")
    return args


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- bulk load -----------------------------------------------------------------------------

# $1 program, $2 now, $3 members. Member ids are contiguous (one INSERT in one session).
_MEMBERS = """
INSERT INTO members (program_id, external_id, created_at, updated_at)
SELECT $1, 'm' || g, $2::timestamptz - interval '400 days', $2::timestamptz
  FROM generate_series(1, $3::int) AS g
"""

# The jobs program. $1 program, $2 now, $3 members, $4 first member id, $5 count.
JOBS_LOAD = [
    (
        "seed entries (never expire)",
        f"""
        INSERT INTO point_entries (program_id, member_id, kind, points, status, reason, actor,
                                   created_at)
        SELECT $1, $4::bigint + g - 1, 'earn', {SEED_POINTS}, 'available', 'bench seed',
               'bench:seed', $2::timestamptz - interval '400 days'
          FROM generate_series(1, $3::int) AS g
        """,
    ),
    (
        "expired entries",
        # expires_at 1 minute to 30 days ago; OFFSET 0 keeps random() to one value per row.
        """
        INSERT INTO point_entries (program_id, member_id, kind, points, status, reason, actor,
                                   created_at, expires_at)
        SELECT $1, $4::bigint + (s.g - 1) % $3::int, 'earn', 10 + s.g % 91, 'available',
               'bench expiring', 'bench:expiring', s.expires_at - interval '365 days',
               s.expires_at
          FROM (SELECT g, $2::timestamptz - make_interval(secs => 60 + random() * 30 * 86400)
                          AS expires_at
                  FROM generate_series(1, $5::int) AS g OFFSET 0) AS s
        """,
    ),
    (
        "lots",
        """
        INSERT INTO point_lots (program_id, member_id, entry_id, points, remaining, expires_at,
                                created_at)
        SELECT program_id, member_id, id, points, points, expires_at, created_at
          FROM point_entries WHERE program_id = $1 AND kind = 'earn'
        """,
    ),
    (
        "pending orders",
        # Occurred 14 days + 1 minute .. 19 days ago: available_at (occurred + 14 days) has
        # passed. Orders of one member are scattered over the available_at order.
        """
        INSERT INTO orders (program_id, order_id, member_id, amount, currency, occurred_at,
                            points_earned, points_redeemed, breakdown, status, available_at,
                            request_hash, created_at)
        SELECT $1, 'p' || s.g, $4::bigint + (s.g - 1) % $3::int, s.amount, 'USD',
               s.occurred_at, s.amount / 100, 0,
               jsonb_build_array(jsonb_build_object('source', 'base', 'points', s.amount / 100)),
               'pending', s.occurred_at + interval '14 days',
               sha256(convert_to('p' || s.g, 'UTF8')), s.occurred_at
          FROM (SELECT g, 1000 + floor(random() * 20000)::bigint AS amount,
                       $2::timestamptz - make_interval(secs => 14 * 86400 + 60
                                                               + random() * 5 * 86400)
                           AS occurred_at
                  FROM generate_series(1, $5::int) AS g OFFSET 0) AS s
        """,
    ),
    (
        "pending order entries",
        """
        INSERT INTO point_entries (program_id, member_id, kind, points, status, actor,
                                   order_id, created_at, available_at)
        SELECT program_id, member_id, 'order', points_earned, 'pending', 'bench:pending',
               order_id, created_at, available_at
          FROM orders WHERE program_id = $1 AND status = 'pending'
        """,
    ),
    (
        "release queue",
        # What checkout writes with each pending order, in the order checkouts wrote them.
        """
        INSERT INTO order_release_queue (member_id, order_pk, program_id, available_at,
                                         entry_id)
        SELECT o.member_id, o.id, o.program_id, o.available_at, e.id
          FROM orders AS o
          JOIN point_entries AS e
            ON e.program_id = o.program_id AND e.order_id = o.order_id AND e.kind = 'order'
         WHERE o.program_id = $1 AND o.status = 'pending'
         ORDER BY o.created_at
        """,
    ),
]

# Both programs: the account caches the sums of the member's entries (audit invariants 1, 3).
_ACCOUNTS = """
INSERT INTO accounts (member_id, program_id, available, pending, held, lifetime_earned,
                      version, updated_at)
SELECT m.id, m.program_id, COALESCE(e.available, 0), COALESCE(e.pending, 0), 0,
       COALESCE(e.available, 0) + COALESCE(e.pending, 0), COALESCE(e.entries, 0),
       $2::timestamptz
  FROM members AS m
  LEFT JOIN (SELECT member_id,
                    sum(points) FILTER (WHERE status = 'available') AS available,
                    sum(points) FILTER (WHERE status = 'pending') AS pending,
                    count(*) AS entries
               FROM point_entries WHERE program_id = $1 GROUP BY member_id) AS e
    ON e.member_id = m.id
 WHERE m.program_id = $1
"""

# The tiers program. $1 program, $2 now, $3 members, $4 first member id. Three entries per
# member in the window, 1 .. 4,000 points each, most small (random()^2): qualifying values
# from 3 to 12,000, about a third of members under 1,000 and a few percent over 8,000.
TIERS_LOAD = [
    (
        "tier entries",
        """
        INSERT INTO point_entries (program_id, member_id, kind, points, status, reason, actor,
                                   created_at)
        SELECT $1, s.member_id, 'earn', s.points, 'available', 'bench tiers', 'bench:tiers',
               s.created_at
          FROM (SELECT $4::bigint + (g - 1) % $3::int AS member_id,
                       1 + floor(4000 * random() ^ 2)::bigint AS points,
                       $2::timestamptz - make_interval(secs => random() * 300 * 86400)
                           AS created_at
                  FROM generate_series(1, 3 * $3::int) AS g OFFSET 0) AS s
        """,
    ),
    (
        "tier lots",
        """
        INSERT INTO point_lots (program_id, member_id, entry_id, points, remaining, expires_at,
                                created_at)
        SELECT program_id, member_id, id, points, points, NULL, created_at
          FROM point_entries WHERE program_id = $1
        """,
    ),
]

# Each member's tier as an evaluation at load time would have set it (lifetime = window here:
# every entry is in the window).
_SET_TIERS = """
UPDATE accounts AS a
   SET tier_key = (SELECT t.key FROM tiers AS t
                    WHERE t.program_id = a.program_id AND t.threshold <= a.lifetime_earned
                    ORDER BY t.threshold DESC LIMIT 1),
       tier_checked_at = $2::timestamptz
 WHERE a.program_id = $1
"""


async def load(
    url: str, jobs_program: int, tiers_program: int, args: argparse.Namespace
) -> dict[str, float]:
    now = datetime.now(UTC)
    timings: dict[str, float] = {}
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET maintenance_work_mem = '512MB'")
        await conn.execute("SET synchronous_commit = off")
        # Bulk load only: foreign keys are not checked row by row (the generator keeps them).
        await conn.execute("SET session_replication_role = replica")

        async def step(name: str, sql: str, *params: Any) -> None:
            started = time.perf_counter()
            await conn.execute(sql, *params)
            timings[name] = round(time.perf_counter() - started, 2)
            log(f"  {name}: {timings[name]:.1f} s")

        await conn.execute(
            "UPDATE programs SET pending_days = 14, points_expiry_days = 365 WHERE id = $1",
            jobs_program,
        )
        await conn.execute(
            "UPDATE programs SET tier_metric = 'points', tier_window_days = 365, "
            "tier_grace_days = 0 WHERE id = $1",
            tiers_program,
        )
        for program, members, plan in (
            (jobs_program, args.members, JOBS_LOAD),
            (tiers_program, args.tier_members, TIERS_LOAD),
        ):
            label = "jobs" if program == jobs_program else "tiers"
            await step(f"{label}: members", _MEMBERS, program, now, members)
            first, last = await conn.fetchrow(
                "SELECT min(id), max(id) FROM members WHERE program_id = $1", program
            )
            if last - first + 1 != members:
                raise RuntimeError(f"member ids of program {program} are not contiguous")
            for name, sql in plan:
                count = args.pending if "pending orders" in name else args.lots
                values: list[Any] = [program, now, members, first, count]
                used = [v for i, v in enumerate(values, 1) if f"${i}" in sql]
                await step(f"{label}: {name}", sql, *used)
            if program == tiers_program:
                await conn.executemany(
                    "INSERT INTO tiers (program_id, key, name, threshold, earn_multiplier, "
                    "benefits, created_at, updated_at) "
                    "VALUES ($1, $2, $3, $4, $5::numeric, '{}', $6, $6)",
                    [(program, k, n, t, m, now) for k, n, t, m in TIERS],
                )
            await step(f"{label}: accounts", _ACCOUNTS, program, now)
            if program == tiers_program:
                await step("tiers: set tiers", _SET_TIERS, program, now)
        started = time.perf_counter()
        await conn.execute("VACUUM ANALYZE")
        await conn.execute("CHECKPOINT")
        timings["vacuum analyze + checkpoint"] = round(time.perf_counter() - started, 2)
        log(f"  vacuum analyze + checkpoint: {timings['vacuum analyze + checkpoint']:.1f} s")
    finally:
        await conn.close()
    return timings


async def setup_programs(url: str) -> tuple[tuple[int, str], tuple[int, str]]:
    db.configure(db.make_engine(url))
    try:
        return (
            await create_program("Patron bench: jobs", "USD"),
            await create_program("Patron bench: tiers", "USD"),
        )
    finally:
        await db.dispose()


async def fetch_one(url: str, sql: str, *params: Any) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(sql, *params)
    finally:
        await conn.close()
    return dict(row) if row else {}


# --- jobs ------------------------------------------------------------------------------------

Job = Callable[..., Awaitable[int]]


async def time_job(
    url: str, name: str, job: Job, batch_size: int | None, lanes: int, now: datetime
) -> dict[str, Any]:
    """Run ``job`` to completion in ``lanes`` loops side by side, as the worker does
    (``run_in_lanes_until_done``), timing it and each batch."""
    batches: list[tuple[float, int]] = []

    async def one_batch(at: datetime, *, lane: Lane) -> int:
        started = time.perf_counter()
        sized = {} if batch_size is None else {"batch_size": batch_size}
        handled = await job(at, lane=lane, **sized)
        batches.append((time.perf_counter() - started, handled))
        return handled

    db.configure(db.make_engine(url))
    try:
        started = time.perf_counter()
        handled = await run_in_lanes_until_done(name, one_batch, now, lanes)
        elapsed = time.perf_counter() - started
    finally:
        await db.dispose()
    times = [seconds * 1000 for seconds, _ in batches]
    work = [seconds * 1000 for seconds, n in batches if n]
    quarter = max(len(work) // 4, 1)
    return {
        "seconds": round(elapsed, 2),
        "handled": handled,
        "batch_size": batch_size,
        "lanes": lanes,
        "batches": len(batches),
        "batch_ms": {
            "p50": round(statistics.median(times), 1),
            "max": round(max(times), 1),
            # Growth over the run (dead index entries, bloat) shows here.
            "first_quarter_mean": round(statistics.fmean(work[:quarter]), 1) if work else None,
            "last_quarter_mean": round(statistics.fmean(work[-quarter:]), 1) if work else None,
        },
        "target_s": JOB_TARGET_S,
        "met": elapsed < JOB_TARGET_S,
    }


_LEFT_RELEASE = """
SELECT (SELECT count(*) FROM orders
         WHERE program_id = $1 AND status = 'pending' AND available_at <= $2)
           AS due_pending_orders,
       (SELECT count(*) FROM order_release_queue
         WHERE program_id = $1 AND available_at <= $2) AS due_in_queue
"""
_LEFT_EXPIRE = """
SELECT count(*) AS expired_lots_left,
       count(*) FILTER (WHERE a.available > 0) AS expired_lots_left_spendable
  FROM point_lots AS l JOIN accounts AS a ON a.member_id = l.member_id
 WHERE l.program_id = $1 AND l.remaining > 0 AND l.expires_at <= $2
"""


def checkout_load(
    wrk: str,
    args: argparse.Namespace,
    server: Server,
    database: str,
    key: str,
    tag: str,
    seconds: int,
) -> WrkLoad:
    return start_wrk(
        wrk,
        script=CHECKOUT_SCRIPT,
        mode="orders",
        base_url=server.base_url,
        key=key,
        members=args.members,
        connections=args.connections,
        threads=args.threads,
        seconds=seconds,
        timeout=args.timeout,
        output_name=f"jobs-wrk-{tag}",
        extra_env={
            "BENCH_RUN_TAG": f"{tag}-{secrets.token_hex(3)}",
            "BENCH_DELAY_MS": str(args.checkout_delay_ms),
        },
        probe=ServiceProbe(server.process.pid, server.port, database),
    )


def checkout_figures(result: dict[str, Any]) -> dict[str, Any]:
    latency = result["latency_ms"]
    return {
        "requests": result["requests"],
        "seconds": result["duration_s"],
        "rps": round(result["rps"], 1),
        "p50_ms": latency["p50"],
        "p90_ms": latency["p90"],
        "p99_ms": latency["p99"],
        "max_ms": latency["max"],
        "non_2xx": result["non_2xx"],
        "statuses": result["statuses"],
        "first_error": result["first_error"] or None,
        "socket_errors": sum(result["socket_errors"].values()),
        "cpu_seconds": result["cpu_seconds"],
    }


# --- tiers -----------------------------------------------------------------------------------


def preview_body(silver: int) -> dict[str, Any]:
    thresholds = {"bronze": TIERS[0][2], "silver": silver, "gold": TIERS[2][2]}
    return {"tiers": [{"key": k, "threshold": t} for k, t in thresholds.items()]}


async def preview_answer(base_url: str, key: str, silver: int) -> dict[str, Any]:
    async with httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=120
    ) as client:
        response = await client.post("/v1/tiers/preview", json=preview_body(silver))
    if response.status_code != 200:
        raise RuntimeError(f"preview answered {response.status_code}: {response.text}")
    answer: dict[str, Any] = response.json()
    return answer


async def time_previews(base_url: str, key: str, runs: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    times: list[float] = []
    answer: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=120) as client:
        for _ in range(runs):
            started = time.perf_counter()
            response = await client.post("/v1/tiers/preview", json=preview_body(LOWERED_SILVER))
            times.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"preview answered {response.status_code}: {response.text}")
            answer = response.json()
    return {
        "request": preview_body(LOWERED_SILVER),
        "seconds": [round(t, 3) for t in times],
        "first_s": round(times[0], 3),
        "median_s": round(statistics.median(times), 3),
        "max_s": round(max(times), 3),
        "target_s": PREVIEW_TARGET_S,
        "met": max(times) < PREVIEW_TARGET_S,
        "answer": answer,
    }


_TIER_COUNTS = """
SELECT count(*) FILTER (WHERE reason <> 'below_threshold') AS upgraded,
       count(*) FILTER (WHERE reason = 'below_threshold') AS downgraded
  FROM tier_changes WHERE program_id = $1
"""
_TIER_HOLDERS = """
SELECT COALESCE(tier_key, '(none)') AS tier, count(*) AS members FROM accounts
 WHERE program_id = $1 GROUP BY 1 ORDER BY 1
"""


async def time_reevaluation(
    url: str, program_id: int, silver: int, batch_size: int | None
) -> dict[str, Any]:
    """PATCH silver's threshold through the service function, then run the scheduled
    re-evaluation to the end; times both, and counts the tier changes it recorded."""
    before = await fetch_one(url, _TIER_COUNTS, program_id)
    db.configure(db.make_engine(url))
    batches = 0
    try:
        started = time.perf_counter()
        stored = await tiers.update_tier(program_id, "silver", {"threshold": silver})
        saved = time.perf_counter() - started
        now = datetime.now(UTC)
        while True:
            batches += 1
            more = await (
                tier_evaluation.continue_program_reevaluation(program_id, now)
                if batch_size is None
                else tier_evaluation.continue_program_reevaluation(
                    program_id, now, batch_size=batch_size
                )
            )
            if not more:
                break
        elapsed = time.perf_counter() - started
    finally:
        await db.dispose()
    after = await fetch_one(url, _TIER_COUNTS, program_id)
    body = json.loads(stored.body)
    return {
        "change": {"tier": "silver", "threshold": silver},
        "replayed": stored.replayed,
        "reevaluation": body.get("reevaluation"),
        "update_tier_s": round(saved, 3),
        "reevaluation_batches": batches,
        "batch_size": batch_size,
        "seconds": round(elapsed, 3),
        "upgraded": after["upgraded"] - before["upgraded"],
        "downgraded": after["downgraded"] - before["downgraded"],
        "target_s": REEVALUATION_TARGET_S,
        "met": elapsed < REEVALUATION_TARGET_S,
    }


async def tier_holders(url: str, program_id: int) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(_TIER_HOLDERS, program_id)
    finally:
        await conn.close()
    return {row["tier"]: row["members"] for row in rows}


# --- audit -----------------------------------------------------------------------------------


async def run_audit(url: str, program_id: int) -> dict[str, Any]:
    """``audit(program_id)`` as ``patron audit --program ID`` runs it (the service's settings,
    so its statement_timeout too); if that times out, again without the timeout, so the
    verdict is still known."""
    result: dict[str, Any] = {"program_id": program_id, "timed_out_with_default_settings": False}
    for settings in (None, Settings(statement_timeout_ms=3_600_000)):
        db.configure(db.make_engine(url, settings))
        try:
            started = time.perf_counter()
            violations = await audit(program_id)
            result["seconds"] = round(time.perf_counter() - started, 2)
        except db.DatabaseError as exc:
            if "statement timeout" not in str(exc) or settings is not None:
                raise
            result["timed_out_with_default_settings"] = True
            continue
        finally:
            await db.dispose()
        result.update(
            passed=not violations,
            violations=len(violations),
            sample=[str(v) for v in violations[:10]],
        )
        break
    return result


# --- the run ---------------------------------------------------------------------------------


def print_report(report: dict[str, Any]) -> None:
    config = report["config"]
    print()
    print(
        f"Jobs benchmark: {config['lots']:,} expired lots, {config['pending']:,} due pending "
        f"orders over {config['members']:,} members; {config['tier_members']:,} tier members"
    )
    print(
        f"checkout traffic: POST /v1/orders, {config['connections']} connections, mean pause "
        f"{config['checkout_delay_ms']} ms between requests per connection"
    )
    checkout = report["checkout"]
    header = (
        f"  {'phase':<34} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'non-2xx':>7}"
    )
    print(header)
    for phase, c in checkout.items():
        print(
            f"  {phase:<34} {c['rps']:>7.1f} {c['p50_ms']:>8.1f} {c['p99_ms']:>8.1f} "
            f"{c['max_ms']:>8.1f} {c['non_2xx'] + c['socket_errors']:>7}"
        )
    for name, job in report["jobs"].items():
        verdict = "met" if job["met"] else "MISSED"
        b = job["batch_ms"]
        print(
            f"  {name:<22} {job['seconds']:7.1f} s (target < {job['target_s']:.0f} s: {verdict}); "
            f"{job['handled']:,} {job['handled_unit']} in {job['batches']} batches of batch_size="
            f"{job['batch_size'] or 'default'} in {job['lanes']} lanes; batch p50 "
            f"{b['p50']:.0f} ms, max {b['max']:.0f} ms, mean first/last quarter "
            f"{b['first_quarter_mean']} / {b['last_quarter_mean']} ms; left: {job['left']}; "
            f"load {job['loadavg']}"
        )
    t = report.get("tiers")
    if t:
        p = t["preview"]
        print(
            f"  tier preview (HTTP)    first {p['first_s']:.2f} s, median {p['median_s']:.2f} s,"
            f" max {p['max_s']:.2f} s (target < {p['target_s']:.0f} s: "
            f"{'met' if p['met'] else 'MISSED'}); answer {json.dumps(p['answer'])}"
        )
        for r in t["reevaluations"]:
            plan = r["reevaluation"] or {}
            print(
                f"  threshold silver -> {r['change']['threshold']:<6} update_tier "
                f"{r['update_tier_s']:.2f} s ({plan.get('status')}), whole re-evaluation "
                f"{r['seconds']:.2f} s in {r['reevaluation_batches']} calls (target < "
                f"{r['target_s']:.0f} s: {'met' if r['met'] else 'MISSED'}); upgraded "
                f"{r['upgraded']:,}, downgraded {r['downgraded']:,} (announced: "
                f"{plan.get('upgraded')} / {plan.get('downgraded')}, members {plan.get('members')})"
            )
        print(f"  tier holders: before {t['holders_before']}, after {t['holders_after']}")
        left = t["preview_of_saved_tiers"]
        print(
            f"  preview of the saved tiers afterwards: {left['upgrades']} upgrades, "
            f"{left['downgrades']} downgrades (0 / 0: the re-evaluation reached every member); "
            f"preview said {p['answer']['upgrades']} upgrades for the first change, "
            f"saving did {t['reevaluations'][0]['upgraded']}"
        )
    print(f"  load: {report['load_seconds']}")
    for a in report["audit"]:
        verdict = "PASSED" if a.get("passed") else f"FAILED ({a.get('violations')} violations)"
        slow = " (timed out at the default statement_timeout first)" * bool(
            a["timed_out_with_default_settings"]
        )
        print(f"  patron audit --program {a['program_id']}: {verdict} in {a['seconds']} s{slow}")
        for line in a.get("sample", []):
            print(f"    {line}")
    m = report["machine"]
    print(
        f"  load average at start {m['loadavg_start']}, end {m['loadavg_end']} on {m['cpus']} "
        "CPUs (other work on the machine skews the figures)"
    )


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def bench(args: argparse.Namespace) -> int:
    wrk = ensure_wrk(not args.no_install)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    admin_url = db.to_plain_url(os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL))
    name = f"patron_bench_jobs_{secrets.token_hex(4)}"
    url = with_database(admin_url, name)
    started_at = datetime.now(UTC)
    loadavg_start = loadavg()
    server: Server | None = None
    running: WrkLoad | None = None
    database_created = False
    try:
        log(f"creating database {name} (load average {loadavg_start})")
        database_created = True  # from here on, cleanup drops it (IF EXISTS)
        pg_version = asyncio.run(create_database(admin_url, name))
        upgrade(url)
        (jobs_program, jobs_key), (tiers_program, tiers_key) = asyncio.run(setup_programs(url))
        log(f"programs {jobs_program} (jobs) and {tiers_program} (tiers); bulk loading")
        began = time.monotonic()
        load_seconds = asyncio.run(load(url, jobs_program, tiers_program, args))
        load_seconds["total"] = round(time.monotonic() - began, 1)
        log(f"loaded in {load_seconds['total']:.0f} s")
        if args.load_only:
            log(f"--load-only: programs jobs={jobs_program}, tiers={tiers_program}")
            return 0

        server = Server(
            url, free_port(), args.workers, RESULTS_DIR / "jobs-server.log", args.server_log_level
        )
        log(f"starting patron serve --workers {args.workers}")
        server.wait_ready(url)
        if not server.wait_workers_idle(args.workers):
            log("warning: the workers did not all settle; measuring anyway")

        checkout: dict[str, dict[str, Any]] = {}
        jobs: dict[str, dict[str, Any]] = {}
        if not args.skip_jobs:
            log(f"checkout baseline: {args.baseline} s (load average {loadavg()})")
            running = checkout_load(wrk, args, server, name, jobs_key, "baseline", args.baseline)
            result, running = finish_wrk(running), None
            checkout["baseline (no job running)"] = checkout_figures(result)
            latency = result["latency_ms"]
            log(f"  p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms")

            for job_name, label, job, batch, left_sql in (
                (
                    "release_pending_points",
                    "release",
                    pending.release_due_points,
                    args.release_batch,
                    _LEFT_RELEASE,
                ),
                ("expire_points", "expire", expire_due_points, args.expire_batch, _LEFT_EXPIRE),
            ):
                before = loadavg()
                log(f"{job_name}: starting with checkout traffic (load average {before})")
                running = checkout_load(wrk, args, server, name, jobs_key, label, 3600)
                time.sleep(1)  # wrk's connections are up before the job starts
                now = datetime.now(UTC)
                figures = asyncio.run(time_job(url, job_name, job, batch, args.lanes, now))
                result, running = finish_wrk(running, interrupt=True), None
                figures["left"] = asyncio.run(fetch_one(url, left_sql, jobs_program, now))
                # What one "handled" is: the job functions' own return values.
                figures["handled_unit"] = (
                    "orders released" if label == "release" else "members with an expire entry"
                )
                figures["loadavg"] = {"before": before, "after": loadavg()}
                jobs[job_name] = figures
                checkout[f"during {job_name}"] = checkout_figures(result)
                log(
                    f"  {figures['seconds']:.1f} s, {figures['handled']:,} handled in "
                    f"{figures['batches']} batches; checkout p99 "
                    f"{result['latency_ms']['p99']:.1f} ms; left {figures['left']}"
                )

        tier_figures: dict[str, Any] | None = None
        if not args.skip_tiers:
            log(f"tiers: preview over {args.tier_members:,} members (load average {loadavg()})")
            holders_before = asyncio.run(tier_holders(url, tiers_program))
            preview = asyncio.run(time_previews(server.base_url, tiers_key, args.preview_runs))
            log(f"  preview {preview['seconds']} s: {preview['answer']}")
            reevaluations = []
            for silver in (LOWERED_SILVER, RAISED_SILVER):
                log(f"tiers: silver threshold -> {silver}, then the whole re-evaluation")
                r = asyncio.run(
                    time_reevaluation(url, tiers_program, silver, args.reevaluation_batch)
                )
                r["loadavg_after"] = loadavg()
                reevaluations.append(r)
                log(
                    f"  {r['seconds']:.2f} s ({r['reevaluation_batches']} calls): "
                    f"{r['upgraded']} upgraded, {r['downgraded']} downgraded"
                )
            tier_figures = {
                "preview": preview,
                "reevaluations": reevaluations,
                "holders_before": holders_before,
                "holders_after": asyncio.run(tier_holders(url, tiers_program)),
                # A preview of the tiers now saved: nothing left to change when the
                # re-evaluation reached every member.
                "preview_of_saved_tiers": asyncio.run(
                    preview_answer(server.base_url, tiers_key, RAISED_SILVER)
                ),
            }

        server.stop()
        server = None
        log("auditing both programs")
        audits = [asyncio.run(run_audit(url, p)) for p in (jobs_program, tiers_program)]
        report = {
            "started_at": started_at.isoformat(),
            "finished_at": datetime.now(UTC).isoformat(),
            "git_commit": git_commit(),
            "programs": {"jobs": jobs_program, "tiers": tiers_program},
            "machine": {
                "cpus": os.cpu_count(),
                "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
                "python": platform.python_version(),
                "postgres": pg_version,
                "loadavg_start": loadavg_start,
                "loadavg_end": loadavg(),
            },
            "config": {
                k: getattr(args, k)
                for k in (
                    "lots",
                    "pending",
                    "members",
                    "tier_members",
                    "lanes",
                    "release_batch",
                    "expire_batch",
                    "reevaluation_batch",
                    "baseline",
                    "connections",
                    "threads",
                    "checkout_delay_ms",
                    "workers",
                )
            },
            "load_seconds": load_seconds,
            "checkout": checkout,
            "jobs": jobs,
            "tiers": tier_figures,
            "audit": audits,
        }
        print_report(report)
        out = RESULTS_DIR / "jobs.json"
        out.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"results written to {out.relative_to(ROOT)}")
        failed = (
            any(not a.get("passed") for a in audits)
            or any(any(job["left"].values()) for job in jobs.values())
            or any(c["non_2xx"] or c["socket_errors"] for c in checkout.values())
        )
        return 1 if failed else 0
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if running is not None:
                abort_wrk(running)
            if server is not None:
                log("stopping the service")
                server.stop()
            if database_created:
                if args.keep_database:
                    log(f"keeping database {name} (--keep-database): {url}")
                else:
                    log(f"dropping database {name}")
                    asyncio.run(drop_database(admin_url, name))
        finally:
            signal.signal(signal.SIGINT, previous)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return bench(args)
    except KeyboardInterrupt:
        print("\ninterrupted; the service was stopped and the database dropped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
