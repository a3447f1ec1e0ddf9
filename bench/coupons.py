"""Load benchmark of coupons at checkout: a plain order, an order with one coupon, and
``POST /v1/coupons/{code}/validate``, in one run against one service.

One run, start to end:

1. creates a fresh database ``patron_bench_<random>`` on ``BENCH_DATABASE_URL``, migrates it,
   creates a program (USD) and its admin key, and bulk-loads ``--members`` members (as
   bench/run.py does);
2. starts ``patron serve --workers N``, creates one reward through the API (500 off) and
   bulk-loads ``--coupons`` campaign coupons of it in plain SQL: coupons of no member, so any
   member may use one, each once (codes ``B`` and 11 digits);
3. drives, with wrk (``bench/coupons.lua``), each for ``--duration`` seconds at
   ``--connections``: plain orders (``{order_id, member_id, amount, currency}``), the same
   order with ``coupon_codes: [one unused coupon]``, and validation of a random coupon;
4. stops the service, audits the ledger, prints req/s, p50 and p99 of each and the coupon
   order's throughput as a share of the plain order's, and writes
   ``bench/results/coupons.json``; drops the database, also on error or Ctrl-C.

It prints figures; it asserts no timings. The exit status is 1 when the audit fails or any
request got a non-2xx answer or a socket error, else 0.

    uv run --extra embedded python bench/coupons.py [--duration 15] [--members 20000]
        [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import statistics
import sys
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import run

MODES = ("plain", "coupon", "validate")
LABELS = {
    "plain": "POST /v1/orders (no coupon)",
    "coupon": "POST /v1/orders (1 coupon)",
    "validate": "POST /v1/coupons/{code}/validate",
}
REWARD = {"name": "bench: 5 off", "kind": "fixed_discount", "points_cost": 1, "value": 500}
_COUPONS_SQL = """
INSERT INTO coupons (program_id, code, member_id, source, reward_id, campaign_id, kind, value,
                     currency, status, expires_at, created_at)
SELECT $1, 'B' || lpad(g::text, 11, '0'), NULL, 'campaign', $2, 0, 'fixed_discount', 500,
       'USD', 'active', now() + interval '30 days', now()
  FROM generate_series(1, $3::int) AS g
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per wrk run")
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--coupons", type=int, default=300_000, help="coupons loaded")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="patron serve --workers")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of unreported orders")
    parser.add_argument("--timeout", type=int, default=10, help="wrk request timeout, seconds")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure plain, coupon, validate this many times over, interleaved (on a busy "
        "machine, the median of the rounds drifts less than one round)",
    )
    return parser.parse_args(argv)


async def load_coupons(url: str, program_id: int, reward_id: int, count: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(_COUPONS_SQL, program_id, reward_id, count)
        await conn.execute("VACUUM (ANALYZE) coupons")
    finally:
        await conn.close()


def create_reward(base_url: str, key: str) -> int:
    answer = httpx.post(
        f"{base_url}/v1/rewards",
        json=REWARD,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    if answer.status_code != 201:
        raise RuntimeError(f"POST /v1/rewards answered {answer.status_code}: {answer.text}")
    reward_id: int = answer.json()["id"]
    return reward_id


def drive(
    wrk: str,
    args: argparse.Namespace,
    server: run.Server,
    key: str,
    mode: str,
    seconds: int,
    tag: str,
    database: str,
    round_index: int = 0,
) -> dict[str, Any]:
    """One wrk run of ``mode``. Each round's coupon orders take a share of the pool of their
    own (and each wrk thread a share of that), so no coupon is offered twice."""
    share = args.coupons // (args.threads * args.rounds)
    load = run.start_wrk(
        wrk,
        script=run.BENCH_DIR / "coupons.lua",
        mode=mode,
        base_url=server.base_url,
        key=key,
        members=args.members,
        connections=args.connections,
        threads=args.threads,
        seconds=seconds,
        timeout=args.timeout,
        output_name=f"wrk-coupons-{mode}",
        extra_env={
            "BENCH_RUN_TAG": tag,
            "BENCH_CURRENCY": "USD",
            "BENCH_COUPONS": str(args.coupons),
            "BENCH_COUPONS_PER_THREAD": str(share),
            "BENCH_COUPON_OFFSET": str(round_index * share * args.threads),
        },
        probe=run.ServiceProbe(server.process.pid, server.port, database),
    )
    result = run.finish_wrk(load)
    cpu = result["cpu_seconds"]
    requests = max(result["rps"] * seconds, 1.0)
    # CPU per request moves much less with other people's load than req/s and p99 do.
    result["cpu_ms_per_request"] = {
        "service": cpu["service"] * 1000 / requests,
        "postgres": cpu["postgres_backends"] * 1000 / requests,
    }
    return result


def median_round(results: list[dict[str, Any]]) -> dict[str, Any]:
    """req/s, p50, p99 and CPU per request as the medians over the rounds; error counts
    summed; the CPU-seconds others used on the machine, each round's."""
    return {
        "rps": statistics.median(r["rps"] for r in results),
        "latency_ms": {
            name: statistics.median(r["latency_ms"][name] for r in results)
            for name in ("p50", "p99")
        },
        "cpu_ms_per_request": {
            name: statistics.median(r["cpu_ms_per_request"][name] for r in results)
            for name in ("service", "postgres")
        },
        "others_cpu_seconds": [r["cpu_seconds"]["others"] for r in results],
        "non_2xx": sum(r["non_2xx"] for r in results),
    }


def report_line(mode: str, result: dict[str, Any]) -> str:
    latency, cpu = result["latency_ms"], result["cpu_ms_per_request"]
    others = result.get("others_cpu_seconds", [result.get("cpu_seconds", {}).get("others")])
    return (
        f"{LABELS[mode]:<36} {result['rps']:>9.1f} req/s  p50 {latency['p50']:>7.2f} ms  "
        f"p99 {latency['p99']:>7.2f} ms  CPU/request: service {cpu['service']:.3f} ms, "
        f"PostgreSQL {cpu['postgres']:.3f} ms  others {others} CPU-s  "
        f"non-2xx {result['non_2xx']}"
    )


def bench(args: argparse.Namespace) -> int:
    wrk = run.ensure_wrk(True)
    run.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    admin_url = run.db.to_plain_url(os.environ.get("BENCH_DATABASE_URL", run.DEFAULT_DATABASE_URL))
    name = f"patron_bench_{secrets.token_hex(4)}"
    url = run.with_database(admin_url, name)
    server: run.Server | None = None
    created = False
    try:
        run.log(f"creating database {name}")
        created = True
        asyncio.run(run.create_database(admin_url, name))
        run.upgrade(url)
        program_id, key = asyncio.run(run.create_program(url))
        run.log(f"program {program_id}; loading {args.members} members")
        asyncio.run(run.seed_members(url, program_id, args.members, 1000))
        server = run.Server(
            url, run.free_port(), args.workers, run.RESULTS_DIR / "server-coupons.log"
        )
        server.wait_ready(url)
        if not server.wait_workers_idle(args.workers):
            run.log("warning: the workers did not all settle; measuring anyway")
        reward_id = create_reward(server.base_url, key)
        run.log(f"reward {reward_id}; loading {args.coupons} coupons")
        asyncio.run(load_coupons(url, program_id, reward_id, args.coupons))
        tag = name.removeprefix("patron_bench_")
        if args.warmup:
            run.log(f"warming up for {args.warmup}s (plain orders, not reported)")
            drive(wrk, args, server, key, "plain", args.warmup, tag + "w", name)
        rounds: list[dict[str, dict[str, Any]]] = []
        for number in range(1, args.rounds + 1):
            measured: dict[str, dict[str, Any]] = {}
            # Each round starts with another mode, so that a load that builds up during a
            # round (other people's work on a shared machine) does not always hit the same one.
            shift = (number - 1) % len(MODES)
            for mode in MODES[shift:] + MODES[:shift]:
                run.log(
                    f"round {number}: wrk {LABELS[mode]}: {args.connections} connections, "
                    f"{args.duration}s"
                )
                measured[mode] = drive(
                    wrk, args, server, key, mode, args.duration, f"{tag}r{number}", name, number - 1
                )
                run.log("  " + report_line(mode, measured[mode]))
            rounds.append(measured)
        server.stop()
        server = None
        violations = asyncio.run(run.run_audit(url, program_id))
        results = {mode: median_round([r[mode] for r in rounds]) for mode in MODES}
        shares = [r["coupon"]["rps"] / r["plain"]["rps"] for r in rounds]
        share = statistics.median(shares)
        print()
        print(
            f"at {args.connections} connections, {args.workers} workers, {args.duration}s each, "
            f"median of {args.rounds} round(s) (load average now {os.getloadavg()[0]:.1f}):"
        )
        for mode in MODES:
            print("  " + report_line(mode, results[mode]))
        print(
            f"  an order with a coupon runs at {share:.3f} of a plain order's throughput "
            f"(per round: {', '.join(f'{x:.3f}' for x in shares)})"
        )
        print(f"  audit: {'passed' if not violations else f'{len(violations)} violations'}")
        report = {
            "finished_at": datetime.now(UTC).isoformat(),
            "git_commit": run.git_commit(),
            "config": vars(args),
            "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()},
            "results": results,
            "rounds": rounds,
            "coupon_share_of_plain_rps": round(share, 3),
            "audit_violations": violations[:10],
        }
        out = run.RESULTS_DIR / "coupons.json"
        out.write_text(json.dumps(report, indent=2) + "\n")
        failed = bool(violations) or any(
            r[mode]["non_2xx"] or any(r[mode]["socket_errors"].values())
            for r in rounds
            for mode in MODES
        )
        return 1 if failed else 0
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if server is not None:
                server.stop()
            if created:
                run.log(f"dropping database {name}")
                asyncio.run(run.drop_database(admin_url, name))
        finally:
            signal.signal(signal.SIGINT, previous)


def main(argv: list[str] | None = None) -> int:
    return bench(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
