"""Benchmark of campaigns on a large program: the audience preview, a bonus run with checkout
traffic going on, and the results.

One run, start to end:

1. creates a fresh database ``patron_bench_campaigns_<random>`` on ``BENCH_DATABASE_URL``
   (default ``postgresql://postgres@127.0.0.1/postgres``), migrates it, and creates a program
   with the app's own service function;
2. bulk-loads ``--members`` members with ``INSERT ... SELECT generate_series`` (foreign-key
   triggers off, as a restore would), keeping the ledger invariants: each with an account, a
   500-point ``earn`` entry and its lot, a ``member_insights`` row (every fifth member
   ``at_risk``: the campaign's audience, ``--members`` / 5 members), a birthday, metadata for
   every tenth, feedback scores for 30%, and ``--orders`` orders over the year before the
   campaign and the 30 days after it; then VACUUM ANALYZE and CHECKPOINT;
3. times ``POST /v1/campaigns/preview``'s service function over several audiences, ``--runs``
   times each (target: p50 < 1 s);
4. starts ``patron serve --workers 2`` and wrk (``POST /v1/orders``, ``bench/checkout.lua``)
   for a baseline, then runs a bonus campaign over the ``at_risk`` members to completion
   in-process (``run_campaign_now``, as ``POST /v1/campaigns/{id}/run`` does; target < 60 s)
   while wrk runs, and reports checkout latency during the run;
5. runs a coupon campaign (a reward's coupon, at no points cost) over the ``at_risk``
   members at the ``new`` stage (``--members`` / 20), without traffic, and times it;
6. times ``GET /v1/campaigns/{id}/results``'s service function ``--runs`` times (target:
   p50 < 2 s), prints the result, and runs the ledger audit on the program;
7. drops the database (also on error or Ctrl-C) unless ``--keep-database``.

It prints figures; it asserts no timings.

    uv run --extra embedded python bench/campaigns.py [--members 1000000] [--orders 2000000]
        [--lanes 2] [--batch 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
from run import (
    CHECKOUT_SCRIPT,
    RESULTS_DIR,
    Server,
    ServiceProbe,
    create_database,
    drop_database,
    ensure_wrk,
    finish_wrk,
    free_port,
    log,
    start_wrk,
    with_database,
)

# Imported once, up front, like run.py: others may edit app/ while this runs.
from app import db
from app.config import get_settings
from app.migrate import upgrade
from app.schemas.campaigns import (
    Audience,
    CampaignAction,
    CampaignCreate,
    CampaignPreviewRequest,
)
from app.schemas.rewards import RewardCreate
from app.services.campaigns import campaigns, results, running
from app.services.ledger.audit import audit
from app.services.programs.programs import create_program
from app.services.rewards import catalog

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1/postgres"
# The campaign runs 30 days before the clock's now, so its 30-day window is complete.
RUN_AGO = timedelta(days=30)

# $1 program, $2 now, $3 members, $4 first member id, $5 count. Member ids are contiguous.
LOAD = [
    (
        "members",
        """
        INSERT INTO members (program_id, external_id, birthday, metadata, created_at,
                             updated_at)
        SELECT $1, 'm' || g, date '1960-01-01' + (g::bigint * 7919 % 18000)::int,
               CASE WHEN g % 10 = 0 THEN jsonb_build_object('store', 'store-' || g % 7) END,
               $2::timestamptz - interval '400 days', $2::timestamptz
          FROM generate_series(1, $3::int) AS g
        """,
    ),
    (
        "earn entries",
        """
        INSERT INTO point_entries (program_id, member_id, kind, points, status, reason, actor,
                                   created_at)
        SELECT $1, id, 'earn', 500, 'available', 'bench', 'bench', $2::timestamptz
                                                                   - interval '400 days'
          FROM members WHERE program_id = $1
        """,
    ),
    (
        "lots",
        """
        INSERT INTO point_lots (program_id, member_id, entry_id, points, remaining, created_at)
        SELECT program_id, member_id, id, points, points, created_at
          FROM point_entries WHERE program_id = $1
        """,
    ),
    (
        "accounts",
        """
        INSERT INTO accounts (member_id, program_id, available, lifetime_earned, version,
                              updated_at)
        SELECT id, program_id, 500, 500, 1, $2::timestamptz FROM members WHERE program_id = $1
        """,
    ),
    (
        "insights",
        # Every fifth member at risk (the campaign's audience); the rest spread over the others.
        """
        INSERT INTO member_insights (member_id, program_id, segment, lifecycle, recency_score,
                                     frequency_score, monetary_score, orders_count, net_spend,
                                     first_order_at, last_order_at, changed_at)
        SELECT id, program_id,
               CASE WHEN (id - $4) % 5 = 0 THEN 'at_risk'
                    ELSE (ARRAY['champions', 'loyal', 'potential_loyalists', 'new', 'promising',
                                'need_attention', 'cant_lose', 'hibernating', 'lost'])
                         [1 + (id - $4) % 9] END,
               (ARRAY['new', 'growing', 'mature', 'churned'])[1 + (id - $4) % 4],
               1 + (id % 5)::smallint, 1 + (id % 3)::smallint, 1 + (id % 4)::smallint, 3, 9000,
               $2::timestamptz - interval '390 days',
               $2::timestamptz - make_interval(days => 30 + (id % 300)::int), $2::timestamptz
          FROM members WHERE program_id = $1 AND $3::int > 0
        """,
    ),
    (
        "feedback",
        """
        INSERT INTO member_feedback (program_id, member_id, score, channel, created_at)
        SELECT $1, id, (id % 11)::smallint, 'app', $2::timestamptz - interval '100 days'
          FROM members WHERE program_id = $1 AND id % 10 < 3
        """,
    ),
    (
        "orders",
        # Over the year before the campaign run and the 30 days after it.
        """
        INSERT INTO orders (program_id, order_id, member_id, amount, currency, occurred_at,
                            points_earned, points_redeemed, breakdown, status, available_at,
                            request_hash, created_at, released_at, refunded_amount)
        SELECT $1, 'o' || s.g, $4::bigint + floor(random() * $3::int)::bigint, s.amount, 'USD',
               s.occurred_at, 0, 0, '[]'::jsonb, 'available', s.occurred_at, '\\x00'::bytea,
               s.occurred_at, s.occurred_at, 0
          FROM (SELECT g, 1000 + floor(random() * 20000)::bigint AS amount,
                       $2::timestamptz - make_interval(secs => random() * 395 * 86400)
                           AS occurred_at
                  FROM generate_series(1, $5::int) AS g OFFSET 0) AS s
        """,
    ),
]

PREVIEWS: dict[str, dict[str, Any]] = {
    "segments [at_risk]": {"segments": ["at_risk"]},
    "everyone {}": {},
    "lifecycle + days since order": {
        "lifecycles": ["churned", "mature"],
        "min_days_since_last_order": 60,
        "max_days_since_last_order": 180,
    },
    "nps [promoter]": {"nps_classes": ["promoter"]},
    "birthday within 7 days": {"birthday_within_days": 7},
    "metadata store": {"metadata": {"store": ["store-1", "store-2"]}},
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=9, help="timed repeats per read")
    parser.add_argument("--batch", type=int, default=running.BATCH_SIZE)
    parser.add_argument("--lanes", type=int, default=2, help="lanes of each campaign run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=10)
    parser.add_argument("--checkout-delay-ms", type=int, default=20)
    parser.add_argument("--baseline", type=int, default=15, help="seconds of checkout alone")
    parser.add_argument("--no-install", action="store_true", help="never build wrk")
    parser.add_argument("--keep-database", action="store_true")
    return parser.parse_args(argv)


async def load(url: str, program_id: int, args: argparse.Namespace) -> dict[str, float]:
    now = datetime.now(UTC)
    timings: dict[str, float] = {}
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET maintenance_work_mem = '512MB'")
        await conn.execute("SET synchronous_commit = off")
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("SELECT setseed(0.42)")
        first = None
        for name, sql in LOAD:
            started = time.perf_counter()
            values: list[Any] = [program_id, now, args.members, first, args.orders]
            highest = max(i for i in range(1, len(values) + 1) if f"${i}" in sql)
            await conn.execute(sql, *values[:highest])
            if name == "members":
                first = await conn.fetchval(
                    "SELECT min(id) FROM members WHERE program_id = $1", program_id
                )
            timings[name] = round(time.perf_counter() - started, 2)
            log(f"  {name}: {timings[name]:.1f} s")
        started = time.perf_counter()
        await conn.execute("VACUUM ANALYZE")
        await conn.execute("CHECKPOINT")
        timings["vacuum analyze + checkpoint"] = round(time.perf_counter() - started, 2)
        log(f"  vacuum analyze + checkpoint: {timings['vacuum analyze + checkpoint']:.1f} s")
    finally:
        await conn.close()
    return timings


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def timed_runs(runs: int, work: Callable[[], Awaitable[Any]]) -> tuple[dict[str, float], Any]:
    seconds = []
    answer = None
    for _ in range(runs):
        started = time.perf_counter()
        answer = await work()
        seconds.append(time.perf_counter() - started)
    figures = {
        "p50_s": round(statistics.median(seconds), 3),
        "p90_s": round(percentile(seconds, 0.9), 3),
        "max_s": round(max(seconds), 3),
    }
    return figures, answer


async def with_app(url: str, work: Callable[[], Awaitable[Any]]) -> Any:
    db.configure(db.make_engine(url))
    try:
        return await work()
    finally:
        await db.dispose()


async def time_previews(url: str, program_id: int, runs: int) -> dict[str, Any]:
    async def measure() -> dict[str, Any]:
        figures: dict[str, Any] = {}
        for label, audience in PREVIEWS.items():
            body = CampaignPreviewRequest(audience=Audience.model_validate(audience))
            timing, answer = await timed_runs(
                runs, lambda body=body: campaigns.preview_audience(program_id, body)
            )
            figures[label] = {**timing, "members": answer.members}
            log(f"  preview {label}: p50 {timing['p50_s']:.3f} s, {answer.members:,} members")
        return figures

    figures: dict[str, Any] = await with_app(url, measure)
    return figures


async def create_campaign(url: str, program_id: int, ran_at: datetime) -> int:
    async def create() -> int:
        body = CampaignCreate(
            name="Win back: 100 points",
            audience=Audience(segments=["at_risk"]),
            action=CampaignAction(bonus_points=100),
            holdout_percent=10,
            starts_at=ran_at - timedelta(days=1),
        )
        reply = await campaigns.create_campaign(program_id, body, None)
        campaign_id: int = orjson.loads(reply.body)["id"]
        return campaign_id

    campaign_id: int = await with_app(url, create)
    return campaign_id


async def create_coupon_campaign(url: str, program_id: int, ran_at: datetime) -> int:
    async def create() -> int:
        reward = RewardCreate(
            name="Come back: 20% off",
            kind="percent_discount",
            points_cost=500,
            value=20,
            coupon_ttl_days=30,
        )
        reply = await catalog.create_reward(program_id, reward, None)
        reward_id: int = orjson.loads(reply.body)["id"]
        body = CampaignCreate(
            name="Win back: a coupon",
            audience=Audience(segments=["at_risk"], lifecycles=["new"]),
            action=CampaignAction(reward_id=reward_id),
            holdout_percent=10,
            starts_at=ran_at - timedelta(days=1),
        )
        reply = await campaigns.create_campaign(program_id, body, None)
        campaign_id: int = orjson.loads(reply.body)["id"]
        return campaign_id

    campaign_id: int = await with_app(url, create)
    return campaign_id


async def run_campaign(
    url: str, program_id: int, campaign_id: int, ran_at: datetime, batch: int, lanes: int
) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        started = time.perf_counter()
        outcome = await running.run_campaign_now(
            program_id, campaign_id, batch, at=ran_at, lanes=lanes
        )
        return {"seconds": round(time.perf_counter() - started, 1), **outcome.model_dump()}

    figures: dict[str, Any] = await with_app(url, run)
    return figures


async def time_results(
    url: str, program_id: int, campaign_id: int, runs: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    async def measure() -> tuple[dict[str, Any], dict[str, Any]]:
        timing, answer = await timed_runs(
            runs, lambda: results.campaign_results(program_id, campaign_id, 30)
        )
        return timing, answer.model_dump()

    figures: tuple[dict[str, Any], dict[str, Any]] = await with_app(url, measure)
    return figures


async def run_audit(url: str, program_id: int) -> int:
    async def check() -> int:
        return len(await audit(program_id))

    # The audit reads the whole program at once: on a busy machine it can take longer than
    # the service's statement timeout, which is meant for requests.
    settings = get_settings().model_copy(update={"statement_timeout_ms": 600_000})
    db.configure(db.make_engine(url, settings))
    try:
        return await check()
    finally:
        await db.dispose()


def bench(args: argparse.Namespace) -> int:
    wrk = ensure_wrk(not args.no_install)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    admin_url = db.to_plain_url(os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL))
    name = f"patron_bench_campaigns_{secrets.token_hex(4)}"
    url = with_database(admin_url, name)
    server: Server | None = None
    try:
        log(f"creating database {name} (load average {os.getloadavg()})")
        asyncio.run(create_database(admin_url, name))
        upgrade(url)
        program_id, key = asyncio.run(with_app(url, lambda: create_program("Bench", "USD")))
        log(f"program {program_id}; bulk loading {args.members:,} members")
        load_seconds = asyncio.run(load(url, program_id, args))

        log(f"previews, {args.runs} runs each")
        previews = asyncio.run(time_previews(url, program_id, args.runs))

        ran_at = datetime.now(UTC) - RUN_AGO
        campaign_id = asyncio.run(create_campaign(url, program_id, ran_at))
        server = Server(url, free_port(), args.workers, RESULTS_DIR / "campaigns-server.log")
        log(f"starting patron serve --workers {args.workers}")
        server.wait_ready(url)

        def checkout(tag: str, seconds: int) -> Any:
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
                output_name=f"campaigns-wrk-{tag}",
                extra_env={
                    "BENCH_RUN_TAG": f"{tag}-{secrets.token_hex(3)}",
                    "BENCH_DELAY_MS": str(args.checkout_delay_ms),
                },
                probe=ServiceProbe(server.process.pid, server.port, name),
            )

        log(f"checkout baseline: {args.baseline} s")
        baseline = finish_wrk(checkout("baseline", args.baseline))
        latency = baseline["latency_ms"]
        log(f"  p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms")
        log("bonus run over the at_risk members, with checkout traffic")
        load_during = checkout("run", 3600)
        try:
            time.sleep(1)
            run_figures = asyncio.run(
                run_campaign(url, program_id, campaign_id, ran_at, args.batch, args.lanes)
            )
        except BaseException:
            # A failed run must not leave an hour of wrk behind it.
            load_during.process.kill()
            load_during.process.wait()
            raise
        during = finish_wrk(load_during, interrupt=True)
        log(
            f"  {run_figures['seconds']:.1f} s for {run_figures['targeted']:,} members "
            f"({run_figures['treated']:,} treated); checkout p50 "
            f"{during['latency_ms']['p50']:.1f} ms, p99 {during['latency_ms']['p99']:.1f} ms, "
            f"non-2xx {during['non_2xx']}"
        )
        server.stop()
        server = None

        log("coupon run over the at_risk members at the new stage, no traffic")
        coupon_campaign_id = asyncio.run(create_coupon_campaign(url, program_id, ran_at))
        coupon_figures = asyncio.run(
            run_campaign(url, program_id, coupon_campaign_id, ran_at, args.batch, args.lanes)
        )
        log(f"  {coupon_figures['seconds']:.1f} s for {coupon_figures['targeted']:,} members")

        log(f"results, {args.runs} runs")
        results_timing, answer = asyncio.run(time_results(url, program_id, campaign_id, args.runs))
        log(f"  p50 {results_timing['p50_s']:.3f} s: {answer}")
        log("ledger audit of the program")
        violations = asyncio.run(run_audit(url, program_id))
        log(f"  {violations} members break an invariant")

        print()
        print(f"campaigns bench: {args.members:,} members, {args.orders:,} orders")
        print(f"load: {load_seconds}")
        print("preview (service function, p50 / p90 / max seconds, members):")
        for label, figures in previews.items():
            print(
                f"  {label:<32} {figures['p50_s']:>7.3f} {figures['p90_s']:>7.3f} "
                f"{figures['max_s']:>7.3f} {figures['members']:>10,}"
            )
        print(
            f"bonus run: {run_figures['targeted']:,} targeted ({run_figures['treated']:,} "
            f"treated, {run_figures['holdout']:,} held out) in {run_figures['seconds']:.1f} s, "
            f"batches of {args.batch}, {args.lanes} lanes"
        )
        for label, wrk_result in (("baseline", baseline), ("during the run", during)):
            latency = wrk_result["latency_ms"]
            print(
                f"checkout {label:<15} {wrk_result['rps']:>7.1f} req/s  p50 "
                f"{latency['p50']:.1f} ms  p99 {latency['p99']:.1f} ms  max "
                f"{latency['max']:.1f} ms  non-2xx {wrk_result['non_2xx']}"
            )
        print(
            f"coupon run: {coupon_figures['targeted']:,} targeted ({coupon_figures['treated']:,} "
            f"coupons) in {coupon_figures['seconds']:.1f} s"
        )
        print(f"results: p50 {results_timing['p50_s']:.3f} s, p90 {results_timing['p90_s']:.3f} s")
        print(f"audit: {violations} violations")
        return 1 if violations else 0
    finally:
        if server is not None:
            server.stop()
        if not args.keep_database:
            asyncio.run(drop_database(admin_url, name))
            log(f"dropped {name}")


def main(argv: list[str] | None = None) -> int:
    return bench(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
