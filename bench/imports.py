"""Benchmark of imports and the ledger export, with checkout traffic while they run.

One run, start to end:

1. creates a fresh database ``patron_bench_imports_<random>`` on ``BENCH_DATABASE_URL``,
   migrates it, and creates two programs with the app's own service function: the *import*
   program and a *shop* program that takes checkout traffic meanwhile (``--shop-members``
   members, loaded through the import itself before anything is timed);
2. writes JSON Lines files: ``--members`` members, one opening balance each, and
   ``--orders`` historical orders spread over them, in files of ``ORDERS_PER_FILE`` lines
   (none earns points unless ``--earn-every n`` makes every n-th one do, which also posts
   ledger entries);
3. starts ``patron serve`` (which runs the worker jobs in a child process) and a worker
   process running only the import job (the job the ``patron worker`` loop runs), then for
   each type in turn: uploads its files one after the other (``POST /v1/imports``, streamed
   from disk) and waits until all are ``done``, while ``--clients`` clients post orders to the
   shop program back to back; it prints each phase's upload and apply time, rows/s, peak RSS
   of the service and of the worker (sampled every 0.2 s) and the checkout p50/p99;
4. streams ``GET /v1/exports/ledger`` to nowhere and prints its time, rows and the service's
   peak RSS during it: of a third program holding ``--ledger-rows`` ledger entries (100 per
   member, each with its lot, the accounts matching them; loaded in plain SQL, not timed as
   an import, because history earns no points by default and the import program's ledger is
   only its opening balances), or of the import program with ``--ledger-rows 0``;
5. runs the ledger audit on those programs, and drops the database (unless
   ``--keep-database``).

It prints figures; it asserts no timings.

    uv run --extra embedded python bench/imports.py [--members 1000000] [--orders 10000000]
        [--earn-every 0] [--ledger-rows 10000000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import psutil
from run import create_database, drop_database, free_port, with_database

from app import db
from app.migrate import upgrade
from app.services.ledger.audit import audit
from app.services.programs.programs import create_program

ROOT = Path(__file__).resolve().parent.parent
WORKER = """
import asyncio, logging
from app import db
from app.clock import clock
from app.services.imports import runner

async def main():
    db.configure(db.make_engine(db.resolve_database_url()))
    while True:
        if not await runner.run_imports(clock.now()):
            await asyncio.sleep(0.2)

asyncio.run(main())
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=10_000_000)
    # History earns no points by default: a shop moving in brings its points as opening
    # balances, and earning on the same history again would count them twice
    # (docs/imports.md). Earning lines stay supported; measure them with --earn-every 2.
    parser.add_argument(
        "--earn-every", type=int, default=0, help="every n-th order earns (0: none does)"
    )
    parser.add_argument(
        "--ledger-rows", type=int, default=10_000_000, help="ledger entries to export (0: none)"
    )
    parser.add_argument("--shop-members", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4, help="checkout clients meanwhile")
    parser.add_argument("--keep-database", action="store_true")
    return parser.parse_args()


# Orders per file: about 400 MiB, under the service's default limit of 512 MiB per upload
# (PATRON_MAX_IMPORT_BYTES). A larger history goes in several files, one import each.
ORDERS_PER_FILE = 3_000_000


def write_files(folder: Path, members: int, orders: int, earn_every: int) -> dict[str, list[Path]]:
    paths = {kind: [folder / f"{kind}.jsonl"] for kind in ("members", "balances")}
    paths["orders"] = [
        folder / f"orders-{part}.jsonl" for part in range(max(1, -(-orders // ORDERS_PER_FILE)))
    ]
    with paths["members"][0].open("wb") as out:
        for i in range(members):
            line = {"external_id": f"c{i}", "name": f"Customer {i}", "email": f"c{i}@example.com"}
            out.write(orjson.dumps(line) + b"\n")
    with paths["balances"][0].open("wb") as out:
        for i in range(members):
            out.write(orjson.dumps({"external_id": f"c{i}", "points": 100 + i % 900}) + b"\n")
    for part, path in enumerate(paths["orders"]):
        with path.open("wb") as out:
            write_orders(out, part * ORDERS_PER_FILE, orders, members, earn_every)
    return paths


def write_orders(out: Any, first: int, orders: int, members: int, earn_every: int) -> None:
    for j in range(first, min(orders, first + ORDERS_PER_FILE)):
        day = 1 + j % 28
        month = 1 + (j // 28) % 12
        line = {
            "order_id": f"o{j}",
            "member_id": f"c{(j * 7919) % members}",
            "amount": 1000 + (j * 37) % 50000,
            "currency": "CNY",
            "occurred_at": f"{2023 + j % 3}-{month:02d}-{day:02d}T12:00:00+00:00",
            "earn_points": earn_every > 0 and j % earn_every == 0,
        }
        out.write(orjson.dumps(line) + b"\n")


_ENTRIES_PER_MEMBER = 100
# A program whose ledger has ``$3`` members x ``$4`` entries of 10 points, each with its lot,
# and accounts that match them (so the audit holds): only for the export to read.
_LEDGER_SEED = (
    """
INSERT INTO members (program_id, external_id, created_at, updated_at)
SELECT $1, 'l' || g, $2, $2 FROM generate_series(1, $3::int) AS g
""",
    """
INSERT INTO accounts (member_id, program_id, available, lifetime_earned, version, updated_at)
SELECT id, program_id, 10 * $3::int, 10 * $3::int, 1, $2 FROM members WHERE program_id = $1
""",
    """
INSERT INTO point_entries (program_id, member_id, kind, points, status, reason, actor,
                           created_at)
SELECT m.program_id, m.id, 'earn', 10, 'available', 'bench seed', 'bench',
       CAST($2 AS timestamptz) + make_interval(secs => k)
  FROM generate_series(1, $3::int) AS k CROSS JOIN members AS m
 WHERE m.program_id = $1
""",
    """
INSERT INTO point_lots (program_id, member_id, entry_id, points, remaining, created_at)
SELECT program_id, member_id, id, points, points, created_at
  FROM point_entries WHERE program_id = $1
""",
)


async def seed_ledger(url: str, program_id: int, rows: int) -> None:
    members_sql, accounts_sql, entries_sql, lots_sql = _LEDGER_SEED
    members = max(1, rows // _ENTRIES_PER_MEMBER)
    conn = await asyncpg.connect(url)
    try:
        now = await conn.fetchval("SELECT now()")
        await conn.execute(members_sql, program_id, now, members)
        await conn.execute(accounts_sql, program_id, now, _ENTRIES_PER_MEMBER)
        await conn.execute(entries_sql, program_id, now, _ENTRIES_PER_MEMBER)
        await conn.execute(lots_sql, program_id)
        await conn.execute("ANALYZE members, accounts, point_entries, point_lots")
    finally:
        await conn.close()


class PeakRss:
    """The largest resident set of a process (and its children) while the block runs."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                family = [self.process, *self.process.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in family))
            except psutil.Error:
                pass
            self._stop.wait(0.2)

    @contextmanager
    def watching(self) -> Iterator[None]:
        self.peak = 0
        self._stop.clear()
        thread = threading.Thread(target=self._sample, daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join()


async def checkout_traffic(base: str, key: str, members: int, stop: asyncio.Event) -> list[float]:
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {key}"}

    async def client(index: int) -> None:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
            n = 0
            while not stop.is_set():
                n += 1
                body = {
                    "order_id": f"live-{index}-{n}-{secrets.token_hex(3)}",
                    "member_id": f"s{n % members}",
                    "amount": 12000,
                    "currency": "CNY",
                }
                started = time.perf_counter()
                response = await http.post("/v1/orders", json=body)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 201:
                    print("checkout failed:", response.status_code, response.text[:200])

    await asyncio.gather(*(client(i) for i in range(ARGS.clients)))
    return latencies


async def upload_and_wait(http: httpx.AsyncClient, kind: str, paths: list[Path]) -> dict[str, Any]:
    """Upload the files one after the other (the worker applies the first while the next
    one uploads), then wait until every import is done; the counts are their sums."""
    started = time.perf_counter()
    uploaded = 0.0
    ids = []
    for path in paths:
        upload_started = time.perf_counter()
        ids.append(await upload(http, kind, path))
        uploaded += time.perf_counter() - upload_started
    reports = [await wait_import(http, import_id) for import_id in ids]
    report = {
        field: sum(r[field] for r in reports) for field in ("rows_total", "created", "rejected")
    }
    report["status"] = ",".join(sorted({r["status"] for r in reports}))
    report["upload_seconds"] = uploaded
    report["total_seconds"] = time.perf_counter() - started
    return report


async def upload(http: httpx.AsyncClient, kind: str, path: Path) -> str:

    async def chunks() -> Any:
        with path.open("rb") as handle:
            while chunk := handle.read(1_048_576):
                yield chunk

    response = await http.post(
        f"/v1/imports?type={kind}",
        content=chunks(),
        timeout=3600,
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 202, response.text
    import_id: str = response.json()["id"]
    return import_id


async def wait_import(http: httpx.AsyncClient, import_id: str) -> dict[str, Any]:
    while True:
        report: dict[str, Any] = (await http.get(f"/v1/imports/{import_id}")).json()
        if report["status"] in ("done", "failed"):
            return report
        await asyncio.sleep(0.5)


def start_processes(url: str) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes], str]:
    """``patron serve`` and the import worker; returns them and the service's base URL once
    it is ready."""
    env = {**os.environ, "DATABASE_URL": url}
    env.pop("PATRON_DATABASE_URL", None)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER], env={**env, "PATRON_DATABASE_URL": url}, cwd=ROOT
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    return server, worker, base


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def main() -> None:
    admin_url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1/postgres")
    name = f"patron_bench_imports_{secrets.token_hex(4)}"
    version = await create_database(admin_url, name)
    url = with_database(admin_url, name)
    print(f"PostgreSQL {version}, database {name}")
    server = worker = None
    try:
        await asyncio.to_thread(upgrade, url)
        db.configure(db.make_engine(url))
        program_id, key = await create_program("Import bench", "CNY")
        _, shop_key = await create_program("Shop", "CNY")
        export_id, export_key = program_id, key
        if ARGS.ledger_rows:
            export_id, export_key = await create_program("Ledger export", "CNY")
        await db.dispose()
        folder = Path(tempfile.mkdtemp(prefix="patron-bench-imports-"))
        started = time.perf_counter()
        paths = write_files(folder, ARGS.members, ARGS.orders, ARGS.earn_every)
        print(
            f"files written in {time.perf_counter() - started:.1f} s "
            f"({sum(p.stat().st_size for ps in paths.values() for p in ps) / 2**20:.0f} MiB, "
            f"orders in {len(paths['orders'])} file(s))"
        )

        server, worker, base = await asyncio.to_thread(start_processes, url)
        server_rss, worker_rss = PeakRss(server.pid), PeakRss(worker.pid)
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
            shop = jsonl_members(ARGS.shop_members)
            async with httpx.AsyncClient(
                base_url=base, headers={"Authorization": f"Bearer {shop_key}"}, timeout=60
            ) as shop_http:
                response = await shop_http.post("/v1/imports?type=members", content=shop)
                await wait_import(shop_http, response.json()["id"])
            stop = asyncio.Event()
            baseline = asyncio.create_task(
                checkout_traffic(base, shop_key, ARGS.shop_members, stop)
            )
            await asyncio.sleep(10)
            stop.set()
            alone = await baseline
            print(
                f"checkout alone: {len(alone) / 10:.0f} req/s, p50 "
                f"{percentile(alone, 0.5) * 1000:.1f} ms, "
                f"p99 {percentile(alone, 0.99) * 1000:.1f} ms"
            )
            for kind in ("members", "balances", "orders"):
                stop = asyncio.Event()
                traffic = asyncio.create_task(
                    checkout_traffic(base, shop_key, ARGS.shop_members, stop)
                )
                with server_rss.watching(), worker_rss.watching():
                    report = await upload_and_wait(http, kind, paths[kind])
                stop.set()
                latencies = await traffic
                rows = report["rows_total"]
                print(
                    f"{kind}: {rows:,} rows, status {report['status']}, created "
                    f"{report['created']:,}, rejected {report['rejected']:,}; upload "
                    f"{report['upload_seconds']:.1f} s, total {report['total_seconds']:.1f} s "
                    f"({rows / report['total_seconds']:,.0f} rows/s); peak RSS service "
                    f"{server_rss.peak / 2**20:.0f} MiB, worker {worker_rss.peak / 2**20:.0f} MiB; "
                    f"checkout meanwhile {len(latencies) / report['total_seconds']:.0f} req/s, p50 "
                    f"{percentile(latencies, 0.5) * 1000:.1f} ms, p99 "
                    f"{percentile(latencies, 0.99) * 1000:.1f} ms"
                )
            if ARGS.ledger_rows:
                started = time.perf_counter()
                await seed_ledger(url, export_id, ARGS.ledger_rows)
                print(
                    f"ledger seeded in plain SQL in {time.perf_counter() - started:.1f} s "
                    "(not an import)"
                )
            started = time.perf_counter()
            lines = size = 0
            export_headers = {"Authorization": f"Bearer {export_key}"}
            with server_rss.watching():
                async with http.stream(
                    "GET", "/v1/exports/ledger", timeout=3600, headers=export_headers
                ) as response:
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        lines += chunk.count(b"\n")
            took = time.perf_counter() - started
            print(
                f"ledger export: {lines - 1:,} rows, {size / 2**20:.0f} MiB in {took:.1f} s "
                f"({(lines - 1) / took:,.0f} rows/s); peak RSS service "
                f"{server_rss.peak / 2**20:.0f} MiB"
            )
        db.configure(db.make_engine(url))
        for audited in dict.fromkeys((program_id, export_id)):
            started = time.perf_counter()
            violations = await audit(audited)
            print(
                f"audit of program {audited}: {len(violations)} violation(s) "
                f"({time.perf_counter() - started:.1f} s)"
            )
        await db.dispose()
    finally:
        for process in (worker, server):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
        if not ARGS.keep_database:
            await drop_database(admin_url, name)


def jsonl_members(count: int) -> bytes:
    return b"".join(orjson.dumps({"external_id": f"s{i}"}) + b"\n" for i in range(count))


ARGS = parse_args()

if __name__ == "__main__":
    asyncio.run(main())
