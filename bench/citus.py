"""Earn and orders direct vs on a local Citus cluster: same run, same data, same servers.

One run, start to end:

1. starts a throw-away Citus cluster (``.ci/citus``: a coordinator and two workers, each a
   PostgreSQL 15 of its own on loopback);
2. on the coordinator's server, a plain database (no Citus in it: one PostgreSQL, as
   deployed today) and a distributed one (``patron migrate --citus``), each migrated, with
   the same program, earn rule and ``--members`` members seeded the same way;
3. for each: ``patron serve`` (``PATRON_GENERIC_PLANS=false`` on Citus, which needs it) and
   wrk on earn and orders (``bench/run.py``'s requests), while sampling the CPU of the
   service and of each node's PostgreSQL processes; on Citus twice: the service connected to
   the coordinator, then to the worker that does not hold the program's shard (any node can
   plan a statement; with many programs most requests would arrive at such a node);
4. audits both ledgers, prints the figures, writes ``bench/results/citus.json``, and stops
   the cluster.

The direct database lives on the coordinator's server so that both sides run on the same
PostgreSQL build and settings (the throw-away cluster runs with fsync off). It prints
figures; it asserts no timings.

    uv run --extra embedded python bench/citus.py [--duration 15] [--members 20000]
        [--only earn,orders]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil
from run import (
    EARN_RULE,
    ENDPOINTS,
    RESULTS_DIR,
    ROOT,
    Server,
    ServiceProbe,
    create_database,
    create_earn_rule,
    drop_database,
    ensure_wrk,
    free_port,
    log,
    run_wrk,
    seed_members,
    with_database,
)

from app import db
from app.citus import distribute
from app.config import get_settings
from app.migrate import upgrade
from app.services.ledger.audit import audit
from app.services.programs.programs import create_program

CITUS = ROOT / ".ci" / "citus"
NODES = ("coordinator", "worker1", "worker2")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per wrk run")
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="patron serve --workers")
    parser.add_argument("--only", default="earn,orders", help="of earn,redeem,points,orders")
    parser.add_argument("--seed-points", type=int, default=1_000)
    parser.add_argument("--warmup", type=int, default=3, help="seconds of unreported GETs")
    parser.add_argument("--timeout", type=int, default=10)
    parser.add_argument("--hold-points", type=int, default=5)
    parser.add_argument("--server", default="uvicorn")
    parser.add_argument("--server-log-level", default="warning")
    args = parser.parse_args(argv)
    args.modes = [m.strip() for m in args.only.split(",") if m.strip()]
    return args


class NodeCpu(threading.Thread):
    """CPU seconds used by each node's PostgreSQL (the postmaster and every process under
    it: backends, Citus's own daemons), sampled every 0.25 s while it runs."""

    def __init__(self, cluster: Path) -> None:
        super().__init__(daemon=True)
        self.postmasters = {
            node: int((cluster / node / "postmaster.pid").read_text().split()[0]) for node in NODES
        }
        self._stopping = threading.Event()
        self._seen: dict[int, tuple[str, float]] = {}
        self._start = self._sample()

    def _sample(self) -> dict[int, tuple[str, float]]:
        found: dict[int, tuple[str, float]] = {}
        for node, pid in self.postmasters.items():
            try:
                root = psutil.Process(pid)
                processes = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            for proc in processes:
                try:
                    times = proc.cpu_times()
                except psutil.Error:
                    continue
                found[proc.pid] = (node, times.user + times.system)
        return found

    def run(self) -> None:
        while not self._stopping.wait(0.25):
            self._seen.update(self._sample())

    def stop(self) -> dict[str, float]:
        self._stopping.set()
        self.join()
        self._seen.update(self._sample())
        used = dict.fromkeys(NODES, 0.0)
        for pid, (node, seconds) in self._seen.items():
            used[node] += seconds - self._start.get(pid, (node, 0.0))[1]
        return {node: round(seconds, 2) for node, seconds in used.items()}


def engine_settings(on_citus: bool) -> Any:
    return get_settings().model_copy(update={"generic_plans": not on_citus})


async def setup_program(url: str, on_citus: bool) -> tuple[int, str]:
    db.configure(db.make_engine(url, engine_settings(on_citus)))
    try:
        return await create_program("Patron bench", "USD")
    finally:
        await db.dispose()


async def audit_program(url: str, program_id: int, on_citus: bool) -> list[str]:
    db.configure(db.make_engine(url, engine_settings(on_citus)))
    try:
        return [str(v) for v in await audit(program_id)]
    finally:
        await db.dispose()


def prepare(admin_url: str, cluster: Path, name: str, on_citus: bool, args: Any) -> tuple[int, str]:
    asyncio.run(create_database(admin_url, name))
    url = with_database(admin_url, name)
    if on_citus:
        subprocess.run([str(CITUS), "prepare", str(cluster), name], check=True)
    upgrade(url)
    if on_citus:
        asyncio.run(distribute(url))
    program_id, key = asyncio.run(setup_program(url, on_citus))
    began = time.monotonic()
    asyncio.run(seed_members(url, program_id, args.members, args.seed_points))
    log(f"{name}: program {program_id}, {args.members} members in {time.monotonic() - began:.1f}s")
    return program_id, key


def measure(
    wrk: str, args: Any, cluster: Path, url: str, name: str, key: str, label: str
) -> dict[str, Any]:
    """``url`` is the node the service connects to."""
    on_citus = label != "direct"
    if on_citus:
        os.environ["PATRON_GENERIC_PLANS"] = "false"
    else:
        os.environ.pop("PATRON_GENERIC_PLANS", None)
    server = Server(
        url,
        free_port(),
        args.workers,
        RESULTS_DIR / f"server-{label}.log",
        args.server_log_level,
        args.server,
    )
    results: dict[str, Any] = {}
    try:
        server.wait_ready(url)
        server.wait_workers_idle(args.workers)
        probe = ServiceProbe(server.process.pid, server.port, name)
        # One rule per database: the second Citus side finds the one the first created.
        if "orders" in args.modes and label != "citus_other_node":
            create_earn_rule(server.base_url, key)
        if args.warmup:
            warmup = next(e for e in ENDPOINTS if e.mode == "points")
            run_wrk(wrk, args, server.base_url, warmup, key, args.warmup)
        for endpoint in (e for e in ENDPOINTS if e.mode in args.modes):
            nodes = NodeCpu(cluster)
            nodes.start()
            r = run_wrk(wrk, args, server.base_url, endpoint, key, args.duration, probe, label)
            node_cpu = nodes.stop()
            ok = r["requests"] - r["non_2xx"]
            service_cpu = (r.get("cpu_seconds") or {}).get("service", 0.0)
            results[endpoint.mode] = {
                "rps": round(r["rps"], 1),
                "p50_ms": r["latency_ms"]["p50"],
                "p99_ms": r["latency_ms"]["p99"],
                "requests": r["requests"],
                "non_2xx": r["non_2xx"],
                "socket_errors": sum(r["socket_errors"].values()),
                "first_error": r["first_error"] or None,
                "cpu_seconds": {"service": round(service_cpu, 2), **node_cpu},
                "cpu_ms_per_request": {
                    part: round(1000 * seconds / ok, 3) if ok else None
                    for part, seconds in {"service": service_cpu, **node_cpu}.items()
                },
            }
            log(
                f"{label} {endpoint.mode}: {r['rps']:.1f} req/s, p99 "
                f"{r['latency_ms']['p99']:.2f} ms, non-2xx {r['non_2xx']}, CPU ms/request "
                f"{results[endpoint.mode]['cpu_ms_per_request']}"
            )
    finally:
        server.stop()
        os.environ.pop("PATRON_GENERIC_PLANS", None)
    return results


def other_node(cluster: Path, url: str, program_id: int) -> str:
    """The URL of the worker that does not hold the program's shard: where most requests of a
    cluster of many programs would arrive, were the service to connect to every node."""

    async def holder() -> int:
        conn = await asyncpg.connect(url)
        try:
            port: int = await conn.fetchval(
                "SELECT nodeport FROM pg_dist_shard_placement "
                "WHERE shardid = get_shard_id_for_distribution_column('accounts', $1::bigint)",
                program_id,
            )
        finally:
            await conn.close()
        return port

    shard_port = asyncio.run(holder())
    ports = [int((cluster / f"{node}.port").read_text()) for node in ("worker1", "worker2")]
    port = next(p for p in ports if p != shard_port)
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, f"postgres@127.0.0.1:{port}", parts.path, "", ""))


def print_comparison(report: dict[str, Any]) -> None:
    print(f"\nEarn and orders, direct vs Citus (1 coordinator + 2 workers), {report['load']}:")
    for mode, direct in report["direct"].items():
        for side in ("citus", "citus_other_node"):
            citus = report[side][mode]
            print(
                f"  {mode:<7} {direct['rps']:8.1f} -> {citus['rps']:8.1f} req/s "
                f"({citus['rps'] / direct['rps']:.2f}x), p99 {direct['p99_ms']:.1f} -> "
                f"{citus['p99_ms']:.1f} ms ({side})"
            )
        for side in ("direct", "citus", "citus_other_node"):
            per = report[side][mode]["cpu_ms_per_request"]
            shown = ", ".join(f"{part} {ms:.2f}" for part, ms in per.items() if ms is not None)
            print(f"          CPU ms per request, {side}: {shown}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = ensure_wrk(True)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    tag = secrets.token_hex(4)
    names = {False: f"patron_bench_direct_{tag}", True: f"patron_bench_citus_{tag}"}
    load_start = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="patron-citus-bench-") as folder:
        # The nodes run as the postgres user, who must reach their data directories.
        os.chmod(folder, 0o755)
        cluster = Path(folder) / "cluster"
        started = subprocess.run(
            [str(CITUS), "start", str(cluster)], capture_output=True, text=True, check=False
        )
        if started.returncode != 0:
            print(f"the Citus cluster did not start: {started.stderr.strip()}", file=sys.stderr)
            return 2
        admin_url = f"postgresql://postgres@127.0.0.1:{started.stdout.strip()}/postgres"
        report: dict[str, Any] = {"members": args.members, "duration_s": args.duration}
        failed = False
        try:
            for on_citus in (False, True):
                name = names[on_citus]
                url = with_database(admin_url, name)
                program_id, key = prepare(admin_url, cluster, name, on_citus, args)
                sides = {"direct": url}
                if on_citus:
                    sides = {"citus": url, "citus_other_node": other_node(cluster, url, program_id)}
                for side, service_url in sides.items():
                    report[side] = measure(wrk, args, cluster, service_url, name, key, side)
                    failed = failed or any(
                        r["non_2xx"] or r["socket_errors"] for r in report[side].values()
                    )
                violations = asyncio.run(audit_program(url, program_id, on_citus))
                report[f"{'citus' if on_citus else 'direct'}_audit_violations"] = len(violations)
                failed = failed or bool(violations)
        finally:
            for name in names.values():
                asyncio.run(drop_database(admin_url, name))
            subprocess.run([str(CITUS), "stop", str(cluster)], check=False)
    report["load"] = (
        f"load average {load_start[0]} at start, {round(os.getloadavg()[0], 2)} at end, "
        f"{os.cpu_count()} CPUs"
    )
    report["earn_rule"] = EARN_RULE
    print_comparison(report)
    out = RESULTS_DIR / "citus.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results written to {out.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
