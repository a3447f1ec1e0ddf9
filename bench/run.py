"""Load benchmark of the ledger hot paths, measured against a pgbench reference transaction.

One run, start to end:

1. creates a fresh database ``patron_bench_<random>`` on ``BENCH_DATABASE_URL``, migrates it,
   creates a program and its admin key with the app's own service function, and bulk-loads
   ``--members`` members (account, one seed ``earn`` entry and its lot each) in plain SQL;
2. starts ``patron serve --workers N`` on a free port and waits for ``/readyz``;
3. drives earn, redeem and GET points (``bench/ledger.lua``), then ``POST /v1/orders`` with a
   3-item basket under one active earn rule and the hold -> capture pair
   (``bench/checkout.lua``) in turn with wrk, each for ``--duration`` seconds (``--only``
   picks some), while sampling the memory and CPU of the service and the CPU of its
   PostgreSQL backends;
4. stops the service and runs pgbench (``bench/reference.sql``: one INSERT plus one
   ``UPDATE ... RETURNING`` in a transaction) on a reference schema in the same database,
   and, when orders were measured, on the order statement itself (bench/order_statement.py);
   with ``--pgbouncer``, measures the same endpoints again on the same database through a
   throw-away PgBouncer in transaction mode (``.ci/pgbouncer``), the service in
   ``PATRON_DATABASE_POOLING=transaction`` and started with ``--no-migrate``;
5. audits the ledger invariants, prints a table and writes ``bench/results/latest.json``;
6. stops the service and drops the database, also on error or Ctrl-C.

It prints figures; it asserts no timings. The exit status is 1 when the audit fails or cannot
run, or any request got a non-2xx answer or a socket error (the figures would then not describe
the hot paths), else 0.

    uv run --extra embedded python bench/run.py [--duration 20] [--members 100000]
        [--only earn,redeem,points,orders,holds] [--pgbouncer]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from order_statement import order_statement_script

try:
    import psutil
except ImportError:  # pragma: no cover - depends on the install
    sys.exit("psutil is missing: run with `uv run --extra embedded python bench/run.py`")

# Imported once, up front: other people may be editing app/ while a run is under way, and the
# migrations, the program setup and the audit should all come from the same snapshot.
from app import db
from app.migrate import upgrade
from app.services.ledger.audit import audit
from app.services.programs.programs import create_program as create_program_with_key

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
RESULTS_DIR = BENCH_DIR / "results"
LUA_SCRIPT = BENCH_DIR / "ledger.lua"
CHECKOUT_SCRIPT = BENCH_DIR / "checkout.lua"
PGBENCH_SCRIPT = BENCH_DIR / "reference.sql"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1/postgres"


@dataclass(frozen=True)
class Endpoint:
    """One wrk run: ``mode`` selects the request in ``script``; ``unit`` is what req/s counts
    ("pair" for the hold -> capture pair, which is two requests)."""

    mode: str
    label: str
    body: str
    script: Path = LUA_SCRIPT
    unit: str = "request"


# The basket every order sends (checkout.lua builds it with a fresh order_id and member), and
# the earn rule created before the orders run: double points on the "tea" items.
ORDER_BODY = (
    '{"order_id": "<tag>-<thread>-<n>", "member_id": "m<random>", "amount": 7400, '
    '"currency": "USD", "items": [{"sku": "TEA-01", "category": "tea", "quantity": 2, '
    '"unit_price": 1250}, {"sku": "CUP-02", "category": "ware", "quantity": 1, '
    '"unit_price": 3400}, {"sku": "BAG-03", "category": "gift", "quantity": 3, '
    '"unit_price": 500}]}'
)
EARN_RULE = {
    "name": "bench: double points on tea",
    "active": True,
    "conditions": {"categories": ["tea"]},
    "effect": {"multiplier": "2"},
}

# Measured in this order.
ENDPOINTS = (
    Endpoint("earn", "POST /v1/members/{m}/points/earn", '{"points": 10, "reason": "bench"}'),
    Endpoint("redeem", "POST /v1/members/{m}/points/redeem", '{"points": 1}'),
    Endpoint("points", "GET  /v1/members/{m}/points", ""),
    Endpoint("orders", "POST /v1/orders (3 items, 1 rule)", ORDER_BODY, CHECKOUT_SCRIPT),
    Endpoint(
        "holds",
        "hold -> capture pair",
        'POST /v1/members/m<random>/holds {"points": <--hold-points>}, then '
        "POST /v1/holds/<hold_id>/capture {}",
        CHECKOUT_SCRIPT,
        unit="pair",
    ),
)
MODES = tuple(e.mode for e in ENDPOINTS)
SEED_ACTOR = "bench:seed"
MIB = 1024 * 1024


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=20, help="seconds per wrk/pgbench run")
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=32, help="wrk and pgbench clients")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads and pgbench -j")
    parser.add_argument("--workers", type=int, default=2, help="patron serve --workers")
    parser.add_argument(
        "--server",
        choices=("uvicorn", "granian"),
        default="uvicorn",
        help="patron serve --server: the HTTP server to measure",
    )
    parser.add_argument(
        "--seed-points", type=int, default=1_000, help="points each member starts with"
    )
    parser.add_argument("--warmup", type=int, default=3, help="seconds of unreported GETs")
    parser.add_argument("--timeout", type=int, default=10, help="wrk request timeout, seconds")
    parser.add_argument(
        "--only",
        type=_modes,
        default=MODES,
        metavar="MODES",
        help=f"comma-separated endpoints to measure, of {','.join(MODES)} (default: all)",
    )
    parser.add_argument(
        "--hold-points", type=int, default=5, help="points per hold in the hold -> capture pair"
    )
    parser.add_argument(
        "--no-install", action="store_true", help="fail instead of apt-get installing wrk"
    )
    parser.add_argument(
        "--server-log-level", default="warning", help="PATRON_LOG_LEVEL for the service"
    )
    parser.add_argument(
        "--keep-database", action="store_true", help="leave the bench database for inspection"
    )
    parser.add_argument(
        "--pgbouncer",
        action="store_true",
        help="then measure the same endpoints through PgBouncer in transaction mode",
    )
    args = parser.parse_args(argv)
    if args.members < 1 or args.duration < 1 or args.connections < args.threads:
        parser.error("need --members >= 1, --duration >= 1 and --connections >= --threads")
    if args.hold_points < 1:
        parser.error("need --hold-points >= 1")
    return args


def _modes(value: str) -> tuple[str, ...]:
    chosen = {part.strip() for part in value.split(",") if part.strip()}
    unknown = chosen - set(MODES)
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown endpoint(s) {', '.join(sorted(unknown)) or '(none)'}; "
            f"choose from {','.join(MODES)}"
        )
    return tuple(mode for mode in MODES if mode in chosen)


def selected(args: argparse.Namespace) -> list[Endpoint]:
    return [e for e in ENDPOINTS if e.mode in args.only]


# --- tools -------------------------------------------------------------------------------


def ensure_wrk(allow_install: bool) -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if not allow_install:
        sys.exit("wrk is not installed (apt-get install -y wrk), and --no-install was given")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    log("wrk is not installed: installing it now with apt-get update && apt-get install -y wrk")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)
    found = shutil.which("wrk")
    if not found:
        sys.exit("apt-get finished but wrk is still not on PATH")
    log(f"wrk installed at {found}")
    return found


def find_pgbench() -> str:
    found = shutil.which("pgbench")
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"), reverse=True):
        return str(candidate)
    sys.exit("pgbench not found (Debian: apt-get install -y postgresql-client)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


# --- database setup ----------------------------------------------------------------------


async def create_database(admin_url: str, name: str) -> str:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        version: str = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    return version


async def drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def create_program(url: str) -> tuple[int, str]:
    """The program and admin key, through the app's own service function."""
    db.configure(db.make_engine(url))
    try:
        return await create_program_with_key("Patron bench", "USD")
    finally:
        await db.dispose()


# The seed: per member one account, one 'earn' entry and the lot it created, so that
# available = sum of available entries and sum of remaining lots = available + held (audit.py).
# The program has no points expiry (create_program's default), so entries and lots have none.
_SEED_SQL = (
    """
INSERT INTO members (program_id, external_id, created_at, updated_at)
SELECT $1, 'm' || g, $2, $2 FROM generate_series(1, $3::int) AS g
""",
    """
INSERT INTO accounts (member_id, program_id, available, lifetime_earned, version, updated_at)
SELECT id, program_id, $2, $2, 1, $3 FROM members WHERE program_id = $1
""",
    """
INSERT INTO point_entries (program_id, member_id, kind, points, status, reason, actor,
                           created_at)
SELECT program_id, id, 'earn', $2, 'available', 'bench seed', $3, $4
  FROM members WHERE program_id = $1 ORDER BY id
""",
    """
INSERT INTO point_lots (program_id, member_id, entry_id, points, remaining, expires_at,
                        created_at)
SELECT program_id, member_id, id, points, points, expires_at, created_at
  FROM point_entries WHERE program_id = $1 AND actor = $2
""",
)


async def seed_members(url: str, program_id: int, members: int, points: int) -> None:
    now = datetime.now(UTC)
    members_sql, accounts_sql, entries_sql, lots_sql = _SEED_SQL
    conn = await asyncpg.connect(url)
    try:
        expiry = await conn.fetchval(
            "SELECT points_expiry_days FROM programs WHERE id = $1", program_id
        )
        if expiry is not None:
            raise RuntimeError("the seed assumes a program without points expiry")
        async with conn.transaction():
            await conn.execute(members_sql, program_id, now, members)
            await conn.execute(accounts_sql, program_id, points, now)
            await conn.execute(entries_sql, program_id, points, SEED_ACTOR, now)
            await conn.execute(lots_sql, program_id, SEED_ACTOR)
        await conn.execute("VACUUM (ANALYZE) members, accounts, point_entries, point_lots")
    finally:
        await conn.close()


async def create_reference_schema(url: str, rows: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            """
            CREATE TABLE bench_accounts (id int PRIMARY KEY, balance bigint NOT NULL);
            CREATE TABLE bench_entries (
                id bigserial PRIMARY KEY,
                account_id int,
                points bigint,
                created_at timestamptz DEFAULT now()
            );
            """
        )
        await conn.execute(
            "INSERT INTO bench_accounts (id, balance) SELECT g, 0 FROM generate_series(1, $1) g",
            rows,
        )
        await conn.execute("VACUUM (ANALYZE) bench_accounts, bench_entries")
    finally:
        await conn.close()


async def ledger_counts(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            """
            SELECT count(*) FILTER (WHERE kind = 'earn' AND actor <> $1) AS earn_entries,
                   count(*) FILTER (WHERE kind = 'redeem' AND hold_id IS NULL)
                       AS redeem_entries,
                   count(*) FILTER (WHERE kind = 'order') AS order_entries,
                   count(*) FILTER (WHERE kind = 'redeem' AND hold_id IS NOT NULL)
                       AS capture_entries,
                   (SELECT count(*) FROM orders) AS orders,
                   -- orders whose breakdown has a rule:<id> line (the earn rule applied)
                   (SELECT count(*) FROM orders
                     WHERE jsonb_path_exists(breakdown, '$[*] ? (@.source like_regex "^rule:")'))
                       AS orders_with_rule,
                   (SELECT count(*) FROM holds) AS holds,
                   (SELECT count(*) FROM holds WHERE status = 'captured') AS holds_captured,
                   (SELECT count(*) FROM events) AS events
              FROM point_entries
            """,
            SEED_ACTOR,
        )
    finally:
        await conn.close()
    return dict(row)


def create_earn_rule(base_url: str, key: str) -> int:
    """The one active earn rule the orders run goes against, through the API."""
    answer = httpx.post(
        f"{base_url}/v1/earn-rules",
        json=EARN_RULE,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    if answer.status_code != 201:
        raise RuntimeError(f"POST /v1/earn-rules answered {answer.status_code}: {answer.text}")
    rule_id: int = answer.json()["id"]
    return rule_id


async def run_audit(url: str, program_id: int) -> list[str]:
    db.configure(db.make_engine(url))
    try:
        return [str(v) for v in await audit(program_id)]
    finally:
        await db.dispose()


# --- the service -------------------------------------------------------------------------


class Server:
    """``patron serve`` in its own session, so that it and its workers stop together."""

    def __init__(
        self,
        url: str,
        port: int,
        workers: int,
        log_path: Path,
        log_level: str = "warning",
        http_server: str = "uvicorn",
        pooled_url: str | None = None,
    ) -> None:
        """``pooled_url``: serve through that transaction-mode pooler instead, leaving the
        schema (migrated over ``url``) alone."""
        patron = Path(sys.executable).with_name("patron")
        command = [str(patron)] if patron.exists() else [sys.executable, "-m", "app.cli"]
        command += ["serve", "--host", "127.0.0.1", "--port", str(port)]
        # The jobs would run beside the measured requests: the bench measures requests only.
        command += ["--workers", str(workers), "--server", http_server, "--no-worker"]
        env = {
            **os.environ,
            "DATABASE_URL": pooled_url or url,
            "PATRON_DATABASE_URL": pooled_url or url,
            "PATRON_MIGRATION_DATABASE_URL": url,
            "PATRON_LOG_LEVEL": log_level,
        }
        if pooled_url:
            command.append("--no-migrate")
            env["PATRON_DATABASE_POOLING"] = "transaction"
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.command = command
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, url: str, limit_seconds: float = 90) -> None:
        deadline = time.monotonic() + limit_seconds
        last = "no answer yet"
        migrated_for: set[str] = set()
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"patron serve exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                answer = httpx.get(f"{self.base_url}/readyz", timeout=2)
                if answer.status_code == 200:
                    return
                last = f"{answer.status_code} {answer.text}"
                detail = str(answer.json().get("detail", ""))
                if detail.startswith("migrations behind") and detail not in migrated_for:
                    # A migration was added to the tree after `patron serve` migrated (people
                    # edit app/ while benchmarks run): bring the database to the new head.
                    migrated_for.add(detail)
                    log(f"/readyz: {detail}; running the migrations again")
                    upgrade(url)
            except (httpx.HTTPError, ValueError) as exc:
                last = type(exc).__name__
            time.sleep(0.25)
        raise RuntimeError(f"/readyz not ready after {limit_seconds}s ({last}):\n{self.log_tail()}")

    def wait_workers_idle(self, workers: int, limit_seconds: float = 90) -> bool:
        """Wait until ``workers`` workers exist, have not changed for 2 s and are all idle.

        /readyz answers as soon as one worker serves. uvicorn kills and replaces a worker that
        misses its 5 s health check, which a worker still importing the app can do on a busy
        machine; a run that starts before the replacement is up has every wrk connection on the
        other worker. Returns False when the workers do not settle in time."""
        deadline = time.monotonic() + limit_seconds
        previous: dict[int, float] = {}
        stable_since = time.monotonic()
        while time.monotonic() < deadline:
            current: dict[int, float] = {}
            for proc, role in _service_processes(self.process.pid):
                if role == "worker":
                    with contextlib.suppress(psutil.Error):
                        times = proc.cpu_times()
                        current[proc.pid] = times.user + times.system
            now = time.monotonic()
            if current.keys() != previous.keys():
                stable_since = now
            elif (
                len(current) == workers
                and now - stable_since >= 2
                and all(current[pid] - previous[pid] < 0.05 for pid in current)
            ):
                return True
            previous = current
            time.sleep(1)
        return False

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            # The process group is the one this object started (start_new_session).
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.process.wait(timeout=10)
        # Workers may outlive the supervisor by a moment; make sure none is left.
        self._signal(signal.SIGKILL)
        self._log.close()

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)


class RssSampler(threading.Thread):
    """Samples the resident memory of the service's process tree a few times a second."""

    def __init__(self, root_pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.root_pid = root_pid
        self.interval = interval
        self.peak_total = 0
        self.peaks: dict[int, tuple[str, int]] = {}
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.is_set():
            self.sample()
            self._stopping.wait(self.interval)

    def stop(self) -> None:
        self._stopping.set()
        self.join()
        self.sample()

    def sample(self) -> None:
        tree = _process_tree(self.root_pid)
        self.peak_total = max(self.peak_total, sum(rss for _, _, rss in tree))
        for pid, role, rss in tree:
            _, peak = self.peaks.get(pid, (role, 0))
            self.peaks[pid] = (role, max(peak, rss))

    def summary(self) -> dict[str, Any]:
        return {
            "peak_total_mib": round(self.peak_total / MIB, 1),
            "processes": [
                {"pid": pid, "role": role, "peak_rss_mib": round(rss / MIB, 1)}
                for pid, (role, rss) in sorted(self.peaks.items())
            ],
        }


def _process_tree(root_pid: int) -> list[tuple[int, str, int]]:
    """(pid, role, rss bytes) for the process and its descendants."""
    found: list[tuple[int, str, int]] = []
    for proc, role in _service_processes(root_pid):
        try:
            found.append((proc.pid, role, proc.memory_info().rss))
        except psutil.Error:
            continue
    return found


def _service_processes(root_pid: int) -> list[tuple[psutil.Process, str]]:
    """The service's processes with their role: supervisor, worker, resource tracker."""
    try:
        root = psutil.Process(root_pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:  # the service has stopped
        return []
    found = []
    for proc in tree:
        try:
            cmdline = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if proc.pid == root_pid:
            role = "supervisor"
        elif "resource_tracker" in cmdline:
            role = "resource tracker"
        elif "spawn_main" in cmdline:
            role = "worker"
        else:
            role = proc.name()
        found.append((proc, role))
    return found


@dataclass(frozen=True)
class ServiceProbe:
    """What run_wrk needs to look at the service while wrk drives it."""

    pid: int
    port: int
    database: str

    def connections_per_worker(self) -> list[int]:
        counts = []
        for proc, role in _service_processes(self.pid):
            if role != "worker":
                continue
            try:
                connections = proc.net_connections(kind="tcp")
            except psutil.Error:
                continue
            counts.append(
                sum(
                    1
                    for c in connections
                    if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == self.port
                )
            )
        return counts


class CpuMeter(threading.Thread):
    """CPU seconds used while it runs by the service's processes (when given) and by the bench
    database's PostgreSQL backends. It samples every 0.25 s, so a backend that exits (pgbench's
    do, at its end) keeps what it had used at its last sample: the figures are approximate."""

    def __init__(self, database: str, service_pid: int | None = None) -> None:
        super().__init__(daemon=True)
        self.database = database
        self.service_pid = service_pid
        self._stopping = threading.Event()
        self._began = time.monotonic()
        self._machine = psutil.cpu_times()
        self._children = _children_cpu()
        self._baseline = self._snapshot()
        self._latest = dict(self._baseline)

    def _snapshot(self) -> dict[tuple[str, int], float]:
        processes = _service_processes(self.service_pid) if self.service_pid else []
        for proc in psutil.process_iter(["cmdline"]):
            title = " ".join(proc.info["cmdline"] or ())
            if title.startswith("postgres:") and f" {self.database} " in title:
                processes.append((proc, "postgres"))
        seconds: dict[tuple[str, int], float] = {}
        for proc, role in processes:
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            seconds[(role, proc.pid)] = times.user + times.system
        return seconds

    def run(self) -> None:
        while not self._stopping.wait(0.25):
            self._latest.update(self._snapshot())

    def stop(self) -> dict[str, Any]:
        """Seconds used: by the service in all, per worker, by PostgreSQL backends."""
        self._stopping.set()
        self.join()
        self._latest.update(self._snapshot())
        used = {key: value - self._baseline.get(key, 0.0) for key, value in self._latest.items()}
        service = sum(v for (role, _), v in used.items() if role != "postgres")
        backends = sum(v for (role, _), v in used.items() if role == "postgres")
        load_generator = _children_cpu() - self._children
        machine = psutil.cpu_times()
        busy = _busy(machine) - _busy(self._machine)
        return {
            "service": round(service, 2),
            "workers": [round(v, 2) for (role, _), v in sorted(used.items()) if role == "worker"],
            "postgres_backends": round(backends, 2),
            # wrk or pgbench: the child process that finished while this meter ran.
            "load_generator": round(load_generator, 2),
            "machine_available": round((time.monotonic() - self._began) * _cpus(), 2),
            "machine_busy": round(busy, 2),
            # Whatever else ran meanwhile (other people's tests, the system): noise.
            "others": round(max(busy - service - backends - load_generator, 0.0), 2),
        }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _busy(times: Any) -> float:
    idle = times.idle + getattr(times, "iowait", 0.0)
    return (
        float(sum(times)) - idle - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    )


def _cpus() -> int:
    return psutil.cpu_count() or 1


# --- load generators ---------------------------------------------------------------------


@dataclass
class WrkLoad:
    """A wrk run under way (see ``start_wrk``)."""

    process: subprocess.Popen[str]
    mode: str
    output_name: str
    meter: CpuMeter | None


def start_wrk(
    wrk: str,
    *,
    script: Path,
    mode: str,
    base_url: str,
    key: str,
    members: int,
    connections: int,
    threads: int,
    seconds: int,
    timeout: int,
    output_name: str,
    extra_env: dict[str, str] | None = None,
    probe: ServiceProbe | None = None,
) -> WrkLoad:
    """Start wrk in the background; ``finish_wrk`` collects its BENCH_RESULT, either when the
    ``seconds`` are over or at once (it then stops wrk with SIGINT, after which wrk still
    reports what it measured until then)."""
    env = {
        **os.environ,
        "BENCH_MODE": mode,
        "BENCH_MEMBERS": str(members),
        "BENCH_API_KEY": key,
        **(extra_env or {}),
    }
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        f"--timeout={timeout}s",
        "-s",
        str(script),
        base_url,
    ]
    meter = CpuMeter(probe.database, probe.pid) if probe else None
    if meter:
        meter.start()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return WrkLoad(process, mode, output_name, meter)


def finish_wrk(load: WrkLoad, *, interrupt: bool = False) -> dict[str, Any]:
    process = load.process
    try:
        if interrupt and process.poll() is None:
            process.send_signal(signal.SIGINT)  # wrk stops and still prints its summary
        stdout, stderr = process.communicate(timeout=None if not interrupt else 60)
    except BaseException:
        process.kill()
        process.wait()
        raise
    finally:
        cpu = load.meter.stop() if load.meter else None
    (RESULTS_DIR / f"{load.output_name}.txt").write_text(stdout + stderr)
    for line in stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            result: dict[str, Any] = json.loads(line.removeprefix("BENCH_RESULT "))
            break
    else:
        raise RuntimeError(
            f"wrk ({load.mode}) exited with {process.returncode} and printed no "
            f"BENCH_RESULT line:\n{stdout}{stderr}"
        )
    statuses: Counter[str] = Counter()
    for part in filter(None, result["statuses"].split(",")):
        code, _, count = part.partition(":")
        statuses[code] += int(count)
    result["statuses"] = dict(sorted(statuses.items()))
    result["cpu_seconds"] = cpu
    return result


def abort_wrk(load: WrkLoad) -> None:
    """Stop a wrk run whose figures are not wanted (on errors)."""
    if load.process.poll() is None:
        load.process.kill()
    load.process.communicate()
    if load.meter:
        load.meter.stop()


def run_wrk(
    wrk: str,
    args: argparse.Namespace,
    base_url: str,
    endpoint: Endpoint,
    key: str,
    seconds: int,
    probe: ServiceProbe | None = None,
    run_tag: str = "bench",
) -> dict[str, Any]:
    # The hold -> capture pair needs one connection per wrk thread (see checkout.lua).
    threads = args.connections if endpoint.mode == "holds" else args.threads
    load = start_wrk(
        wrk,
        script=endpoint.script,
        mode=endpoint.mode,
        base_url=base_url,
        key=key,
        members=args.members,
        connections=args.connections,
        threads=threads,
        seconds=seconds,
        timeout=args.timeout,
        output_name=f"wrk-{endpoint.mode}",
        extra_env={"BENCH_RUN_TAG": run_tag, "BENCH_HOLD_POINTS": str(args.hold_points)},
        probe=probe,
    )
    spread = None
    try:
        if probe:
            time.sleep(min(1.0, seconds / 4))
            spread = probe.connections_per_worker()
    except BaseException:
        abort_wrk(load)
        raise
    result = finish_wrk(load)
    result["connections_per_worker"] = spread
    result["wrk_threads"] = threads
    return result


def run_pgbench(
    pgbench: str,
    args: argparse.Namespace,
    url: str,
    database: str,
    script: Path = PGBENCH_SCRIPT,
    output_name: str = "pgbench.txt",
) -> dict[str, Any]:
    command = [
        pgbench,
        "-M",
        "prepared",
        "-c",
        str(args.connections),
        "-j",
        str(args.threads),
        "-T",
        str(args.duration),
        "-n",
        "-f",
        str(script),
        "-D",
        f"accounts={args.members}",
        url,
    ]
    # The service's own connection settings (app.db), so both run the same plans.
    env = {**os.environ, "PGOPTIONS": "-c plan_cache_mode=force_generic_plan -c jit=off"}
    meter = CpuMeter(database)
    meter.start()
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    finally:
        cpu = meter.stop()
    output = done.stdout + done.stderr
    (RESULTS_DIR / output_name).write_text(output)
    if done.returncode != 0:
        raise RuntimeError(f"pgbench failed ({done.returncode}):\n{output}")
    parsed = parse_pgbench(output)
    transactions = parsed.get("transactions") or 0
    return {
        "command": " ".join([*command[:-1], "<bench database>"]),
        **parsed,
        "cpu_seconds": cpu,
        "postgres_cpu_ms_per_txn": (
            round(1000 * cpu["postgres_backends"] / transactions, 3) if transactions else None
        ),
    }


def parse_pgbench(output: str) -> dict[str, Any]:
    """TPS without connection time: PostgreSQL 14+ prints one 'tps' line, older versions print
    'including connections establishing' and 'excluding ...'; take the one without."""
    tps = None
    for line in output.splitlines():
        match = re.match(r"tps = ([\d.]+) \((.*)\)", line.strip())
        if match and ("without" in match[2] or "excluding" in match[2]):
            tps = float(match[1])
    if tps is None:
        found = re.search(r"tps = ([\d.]+)", output)
        if found is None:
            raise RuntimeError(f"no tps in pgbench output:\n{output}")
        tps = float(found[1])
    parsed: dict[str, Any] = {"tps": tps}
    if found := re.search(r"latency average = ([\d.]+) ms", output):
        parsed["latency_avg_ms"] = float(found[1])
    if found := re.search(r"number of transactions actually processed: (\d+)", output):
        parsed["transactions"] = int(found[1])
    if found := re.search(r"number of failed transactions: (\d+)", output):
        parsed["failed"] = int(found[1])
    return parsed


# --- report ------------------------------------------------------------------------------


def print_report(report: dict[str, Any]) -> None:
    tps = report["pgbench"]["tps"]
    endpoints: dict[str, dict[str, Any]] = report["endpoints"]
    header = (
        f"{'endpoint':<36} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} "
        f"{'sock err':>8} {'÷ pgbench':>9}"
    )
    print()
    print(header)
    print("-" * len(header))
    for e in endpoints.values():
        label = e["request"] if e["unit"] == "request" else f"{e['request']} ({e['unit']}s/s)"
        print(
            f"{label:<36} {e['rps']:>9.1f} {e['p50_ms']:>8.2f} {e['p99_ms']:>8.2f} "
            f"{e['non_2xx']:>8} {e['socket_errors_total']:>8} {e['ratio_to_pgbench']:>9.3f}"
        )
        for call, figures in (e.get("calls_ms") or {}).items():
            if figures:
                print(
                    f"  {call + ' call (of ' + str(figures['count']) + ')':<34} "
                    f"{'':>9} {figures['p50']:>8.2f} {figures['p99']:>8.2f}"
                )
    pg = report["pgbench"]
    print("-" * len(header))
    latency = f", latency avg {pg['latency_avg_ms']:.2f} ms" if "latency_avg_ms" in pg else ""
    print(
        f"{'pgbench reference (INSERT + UPDATE)':<36} {tps:>9.1f} tps "
        f"(without connection time{latency})"
    )
    own = report.get("pgbench_order_statement")
    if own is not None and "orders" in endpoints:
        print(
            f"{'pgbench, the order statement itself':<36} {own['tps']:>9.1f} tps; "
            f"POST /v1/orders reaches {endpoints['orders']['rps'] / own['tps']:.3f} of it"
        )
    if "holds" in endpoints:
        e = endpoints["holds"]
        print(
            f"  holds: a pair is one hold and its capture; {e['requests']} requests "
            f"({e['requests_per_s']:.1f}/s), p50/p99 in the row above are over both calls, "
            f"per call below it (wrk with {e['wrk_threads']} threads, one connection each)"
        )
    if "orders" in endpoints:
        print(f"  orders: earn rule {report.get('earn_rule_id')} active ({EARN_RULE['name']})")
    for mode, e in endpoints.items():
        if e["non_2xx"]:
            print(f"  {mode}: non-2xx by status {e['statuses']}; first: {e['first_error']}")
    print(
        f"CPU per request, ms (CPU seconds used in each {report['config']['duration_s']} s run "
        "÷ requests; per pair for holds):"
    )
    for mode, e in endpoints.items():
        cpu, per = e["cpu_seconds"], e["cpu_ms_per_request"]
        per = per or {"service": float("nan"), "postgres_backends": float("nan")}
        workers = " + ".join(f"{w:.1f}" for w in cpu["workers"])
        spread = "/".join(str(n) for n in e["connections_per_worker"] or [])
        if len(cpu["workers"]) > report["config"]["workers"]:
            spread += f"; {len(cpu['workers'])} worker processes: uvicorn replaced one"
        print(
            f"  {mode:<8} service {per['service']:6.3f}  PostgreSQL {per['postgres_backends']:6.3f}"
            f"   (service {cpu['service']:.1f} s: workers {workers}; PostgreSQL "
            f"{cpu['postgres_backends']:.1f} s; wrk connections per worker {spread})"
        )
    if pg.get("postgres_cpu_ms_per_txn") is not None:
        print(
            f"  {'pgbench':<8} {'':<14}  PostgreSQL {pg['postgres_cpu_ms_per_txn']:6.3f}"
            f"   (PostgreSQL {pg['cpu_seconds']['postgres_backends']:.1f} s)"
        )
    print_pgbouncer_comparison(report)
    print("CPU seconds on the machine during each run (others = work not part of the bench):")
    for mode, e in endpoints.items():
        _print_machine(mode, "wrk", e["cpu_seconds"])
    _print_machine("pgbench", "pgbench", pg["cpu_seconds"])
    rss = report["service_rss"]
    parts = ", ".join(f"{p['role']} {p['pid']}: {p['peak_rss_mib']:.1f}" for p in rss["processes"])
    print(f"service peak RSS: {rss['peak_total_mib']:.1f} MiB in all ({parts} MiB)")
    counts = report["ledger_rows"]
    ok = {mode: e["ok"] for mode, e in endpoints.items()}
    print(
        f"ledger rows written: {counts['earn_entries']} earn (wrk 2xx {ok.get('earn', 0)}), "
        f"{counts['redeem_entries']} redeem ({ok.get('redeem', 0)}), "
        f"{counts['orders']} orders ({ok.get('orders', 0)}; {counts['orders_with_rule']} "
        f"with the rule's line) with {counts['order_entries']} order entries, "
        f"{counts['holds']} holds of which {counts['holds_captured']} captured "
        f"({counts['capture_entries']} capture entries; wrk pairs "
        f"{endpoints.get('holds', {}).get('pairs', 0)}), {counts['events']} events"
    )
    audit = report["audit"]
    if audit["error"]:
        verdict = f"COULD NOT RUN ({audit['error']})"
    elif audit["passed"]:
        verdict = "PASSED (every invariant holds)"
    else:
        verdict = f"FAILED ({audit['violations']} violations)"
    print(f"patron audit --program {report['program_id']}: {verdict}")
    for line in audit["sample"]:
        print(f"  {line}")
    load = report["machine"]
    print(
        f"load average before/after: {load['loadavg_start']} / {load['loadavg_end']} "
        f"on {load['cpus']} CPUs (other work on the machine skews the figures)"
    )


def print_pgbouncer_comparison(report: dict[str, Any]) -> None:
    pooled: dict[str, dict[str, Any]] | None = report.get("through_pgbouncer")
    if not pooled:
        return
    print(
        "Direct (session pooling, cached prepared statements) vs through PgBouncer "
        "(transaction pooling), same data, same run:"
    )
    for mode, e in pooled.items():
        direct = report["endpoints"][mode]
        per = e["cpu_ms_per_request"] or {
            "service": float("nan"),
            "postgres_backends": float("nan"),
        }
        print(
            f"  {mode:<8} {direct['rps']:8.1f} -> {e['rps']:8.1f} req/s "
            f"({e['rps'] / direct['rps']:.3f}), "
            f"p99 {direct['p99_ms']:.2f} -> {e['p99_ms']:.2f} ms, "
            f"non-2xx {e['non_2xx']}; CPU ms per request through PgBouncer: service "
            f"{per['service']:.3f}, PostgreSQL {per['postgres_backends']:.3f} "
            "(PgBouncer's own CPU counts as others)"
        )


def _print_machine(name: str, generator: str, cpu: dict[str, Any]) -> None:
    print(
        f"  {name:<8} {cpu['machine_available']:5.1f} available, {cpu['machine_busy']:5.1f} busy: "
        f"service {cpu['service']:.1f}, PostgreSQL {cpu['postgres_backends']:.1f}, "
        f"{generator} {cpu['load_generator']:.1f}, others {cpu['others']:.1f}"
    )


def endpoint_figures(result: dict[str, Any], endpoint: Endpoint, tps: float) -> dict[str, Any]:
    """The report's figures for one wrk run. For the hold -> capture pair the rate is pairs/s
    (captures answered 2xx per second) and the ratio and CPU are per pair."""
    latency = result["latency_ms"]
    socket_errors = result["socket_errors"]
    cpu, requests = result.get("cpu_seconds"), result["requests"]
    pairs = endpoint.unit == "pair"
    rate = result["pairs_per_s"] if pairs else result["rps"]
    units = result["pairs"] if pairs else requests
    return {
        "request": endpoint.label,
        "body": endpoint.body or None,
        "unit": endpoint.unit,
        "rps": round(rate, 1),
        "requests_per_s": round(result["rps"], 1),
        "p50_ms": latency["p50"],
        "p90_ms": latency["p90"],
        "p99_ms": latency["p99"],
        "mean_ms": latency["mean"],
        "max_ms": latency["max"],
        "calls_ms": result.get("calls_ms"),
        "requests": requests,
        "pairs": result.get("pairs") if pairs else None,
        "ok": requests - result["non_2xx"],
        "non_2xx": result["non_2xx"],
        "statuses": result["statuses"],
        "first_error": result["first_error"] or None,
        "socket_errors": socket_errors,
        "socket_errors_total": sum(socket_errors.values()),
        "ratio_to_pgbench": round(rate / tps, 4) if tps else None,
        "cpu_seconds": cpu,
        "cpu_ms_per_request": {
            "service": round(1000 * cpu["service"] / units, 3),
            "postgres_backends": round(1000 * cpu["postgres_backends"] / units, 3),
        }
        if cpu and units
        else None,
        "connections_per_worker": result.get("connections_per_worker"),
        "wrk_threads": result.get("wrk_threads"),
        # More workers than configured means uvicorn replaced one during the run.
        "worker_processes_seen": len(cpu["workers"]) if cpu else None,
    }


# --- the run -----------------------------------------------------------------------------


def measure_through_pgbouncer(
    wrk: str,
    args: argparse.Namespace,
    url: str,
    database: str,
    key: str,
    endpoints: list[Endpoint],
    run_tag: str,
) -> dict[str, dict[str, Any]]:
    """The same endpoints, same data, through a throw-away PgBouncer in transaction mode in
    front of the same PostgreSQL (``.ci/pgbouncer``, which needs 127.0.0.1:5432)."""
    folder = RESULTS_DIR / "pgbouncer"
    started = subprocess.run(
        [str(ROOT / ".ci" / "pgbouncer"), "start", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if started.returncode != 0:
        raise RuntimeError(f"PgBouncer did not start: {started.stderr.strip()}")
    parts = urlsplit(url)
    pooled_url = urlunsplit(
        (parts.scheme, f"postgres@127.0.0.1:{started.stdout.strip()}", parts.path, "", "")
    )
    server = None
    results: dict[str, dict[str, Any]] = {}
    try:
        server = Server(
            url,
            free_port(),
            args.workers,
            RESULTS_DIR / "server-pgbouncer.log",
            args.server_log_level,
            args.server,
            pooled_url=pooled_url,
        )
        log(f"through PgBouncer in transaction mode ({pooled_url}): patron serve --no-migrate")
        server.wait_ready(url)
        if not server.wait_workers_idle(args.workers):
            log(f"warning: the {args.workers} workers did not all settle; measuring anyway")
        probe = ServiceProbe(server.process.pid, server.port, database)
        if args.warmup:
            warmup = next(e for e in ENDPOINTS if e.mode == "points")
            run_wrk(wrk, args, server.base_url, warmup, key, args.warmup)
        for endpoint in endpoints:
            log(f"wrk {endpoint.label} through PgBouncer: {args.connections} connections")
            r = run_wrk(
                wrk, args, server.base_url, endpoint, key, args.duration, probe, run_tag + "-pgb"
            )
            results[endpoint.mode] = r
            log(
                f"  {r['rps']:.1f} req/s, p50 {r['latency_ms']['p50']:.2f} ms, "
                f"p99 {r['latency_ms']['p99']:.2f} ms, non-2xx {r['non_2xx']}"
            )
    finally:
        if server is not None:
            server.stop()
        subprocess.run([str(ROOT / ".ci" / "pgbouncer"), "stop", str(folder)], check=False)
    return results


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def bench(args: argparse.Namespace) -> int:
    wrk = ensure_wrk(not args.no_install)
    pgbench = find_pgbench()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    admin_url = db.to_plain_url(os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL))
    name = f"patron_bench_{secrets.token_hex(4)}"
    url = with_database(admin_url, name)
    started_at = datetime.now(UTC)
    loadavg_start = [round(x, 2) for x in os.getloadavg()]
    server: Server | None = None
    database_created = False
    try:
        log(f"creating database {name}")
        database_created = True  # from here on, cleanup drops it (IF EXISTS)
        pg_version = asyncio.run(create_database(admin_url, name))
        log("running migrations")
        upgrade(url)
        program_id, key = asyncio.run(create_program(url))
        log(f"program {program_id} created; loading {args.members} members")
        began = time.monotonic()
        asyncio.run(seed_members(url, program_id, args.members, args.seed_points))
        log(f"members loaded in {time.monotonic() - began:.1f}s")

        server = Server(
            url,
            free_port(),
            args.workers,
            RESULTS_DIR / "server.log",
            args.server_log_level,
            args.server,
        )
        shown = " ".join(server.command[server.command.index("serve") :])
        log(f"starting patron {shown} (log: {server.log_path.relative_to(ROOT)})")
        server.wait_ready(url)
        if not server.wait_workers_idle(args.workers):
            log(f"warning: the {args.workers} workers did not all settle; measuring anyway")
        sampler = RssSampler(server.process.pid)
        probe = ServiceProbe(server.process.pid, server.port, name)
        sampler.start()
        endpoints = selected(args)
        rule_id = None
        if any(e.mode == "orders" for e in endpoints):
            rule_id = create_earn_rule(server.base_url, key)
            log(f"earn rule {rule_id} created: {json.dumps(EARN_RULE)}")
        if args.warmup:
            log(f"warming up for {args.warmup}s (GET points, not reported)")
            warmup = next(e for e in ENDPOINTS if e.mode == "points")
            run_wrk(wrk, args, server.base_url, warmup, key, args.warmup)
        results: dict[str, dict[str, Any]] = {}
        run_tag = name.removeprefix("patron_bench_")
        for endpoint in endpoints:
            log(f"wrk {endpoint.label}: {args.connections} connections, {args.duration}s")
            r = run_wrk(wrk, args, server.base_url, endpoint, key, args.duration, probe, run_tag)
            results[endpoint.mode] = r
            pairs = f"{r['pairs_per_s']:.1f} pairs/s, " if endpoint.unit == "pair" else ""
            log(
                f"  {pairs}{r['rps']:.1f} req/s, p50 {r['latency_ms']['p50']:.2f} ms, "
                f"p99 {r['latency_ms']['p99']:.2f} ms, non-2xx {r['non_2xx']}"
            )
        sampler.stop()
        server.stop()
        server = None
        pooled: dict[str, dict[str, Any]] = {}
        if args.pgbouncer:
            pooled = measure_through_pgbouncer(wrk, args, url, name, key, endpoints, run_tag)
        counts = asyncio.run(ledger_counts(url))

        log(f"pgbench reference: {args.connections} clients, {args.duration}s")
        asyncio.run(create_reference_schema(url, args.members))
        pg = run_pgbench(pgbench, args, url, name)
        log(f"  {pg['tps']:.1f} tps")
        own: dict[str, Any] | None = None
        if "orders" in results:
            log(f"pgbench, the order's own statement: {args.connections} clients, {args.duration}s")
            script = RESULTS_DIR / "order_statement.sql"
            script.write_text(asyncio.run(order_statement_script(url, program_id, args.members)))
            own = run_pgbench(pgbench, args, url, name, script, "pgbench-order-statement.txt")
            log(f"  {own['tps']:.1f} tps")

        log("auditing the ledger")
        audit_error: str | None = None
        try:
            violations = asyncio.run(run_audit(url, program_id))
        except Exception as exc:  # report the figures even when the audit cannot run
            audit_error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            violations = []
        tps = pg["tps"]
        report = {
            "started_at": started_at.isoformat(),
            "finished_at": datetime.now(UTC).isoformat(),
            "git_commit": git_commit(),
            "program_id": program_id,
            "earn_rule_id": rule_id,
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "postgres": pg_version,
                "loadavg_start": loadavg_start,
                "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            },
            "config": {
                "duration_s": args.duration,
                "members": args.members,
                "connections": args.connections,
                "threads": args.threads,
                "workers": args.workers,
                "seed_points": args.seed_points,
                "hold_points": args.hold_points,
                "wrk_timeout_s": args.timeout,
                "only": list(args.only),
            },
            "endpoints": {e.mode: endpoint_figures(results[e.mode], e, tps) for e in endpoints},
            "through_pgbouncer": {
                e.mode: endpoint_figures(pooled[e.mode], e, tps) for e in endpoints if pooled
            }
            or None,
            "pgbench": pg,
            "pgbench_order_statement": own,
            "service_rss": sampler.summary(),
            "ledger_rows": counts,
            "audit": {
                "passed": None if audit_error else not violations,
                "error": audit_error,
                "violations": len(violations),
                "sample": violations[:10],
            },
        }
        print_report(report)
        out = RESULTS_DIR / "latest.json"
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"results written to {out.relative_to(ROOT)}")
        measured = [*report["endpoints"].values(), *(report["through_pgbouncer"] or {}).values()]
        failed = bool(violations or audit_error) or any(
            e["non_2xx"] or e["socket_errors_total"] for e in measured
        )
        return 1 if failed else 0
    finally:
        # A second Ctrl-C must not leave the server running or the database behind.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
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
        print(
            "\ninterrupted; the service was stopped and the bench database cleaned up",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
