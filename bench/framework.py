"""What the framework costs per request on the hot routes, without the database's share.

The application is called in-process through ASGI (no sockets, no HTTP server) with the
service functions behind earn, redeem and GET points replaced by ones that answer at once, so
the CPU time measured is the request's way through the middleware, FastAPI's router, the
lean route's authentication and validation, and the response: the part of a request that
the one front door decides. The API key is looked up once against a real database (then
cached, as in production). Prints the median of five runs per route, and with ``--profile``
the functions that took the most time.

    uv run --extra embedded python bench/framework.py [--requests 20000] [--profile]

BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/postgres) must allow
creating a database; it is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import db
from app.main import create_app
from app.migrate import upgrade
from app.routers import points
from app.services.idempotency import Reply
from app.services.programs.programs import create_program

ADMIN_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ENTRY = '{"id":1,"kind":"earn","points":5,"status":"available"}'
BALANCE = {"available": 5, "pending": 0, "held": 0, "lifetime_earned": 5, "lifetime_redeemed": 0}

Call = Callable[[], Awaitable[int]]


async def _answer_entry(*_: Any) -> Reply:
    return Reply(ENTRY)


async def _answer_balance(*_: Any) -> dict[str, Any]:
    return {**BALANCE, "expiring": []}


def _stub_services() -> None:
    """The services behind the measured routes answer at once (bench only)."""
    points.ledger.credit = _answer_entry  # type: ignore[assignment]
    points.ledger.debit = _answer_entry  # type: ignore[assignment]
    points.ledger.get_points = _answer_balance  # type: ignore[assignment]


def _caller(app: Any, key: str, method: str, path: str, body: bytes) -> Call:
    headers = [
        (b"authorization", f"Bearer {key}".encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }

    async def call() -> int:
        status = 0

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app({**scope, "state": {}}, receive, send)
        return status

    return call


async def _measure(name: str, call: Call, requests: int, profile: bool) -> None:
    status = await call()
    if status not in (200, 201):
        raise SystemExit(f"{name}: answered {status}")
    for _ in range(500):
        await call()
    per_run = requests // 5
    runs = []
    for _ in range(5):
        started = time.process_time()
        for _ in range(per_run):
            await call()
        runs.append((time.process_time() - started) / per_run * 1e6)
    shown = ", ".join(f"{run:.1f}" for run in runs)
    print(f"{name:<34} {statistics.median(runs):7.1f} us CPU per request  (runs: {shown})")
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(per_run):
            await call()
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    name = f"patron_framework_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        await asyncio.to_thread(upgrade, url)
        db.configure(db.make_engine(url))
        app = create_app()
        _, key = await create_program("Framework bench", "CNY")
        _stub_services()
        routes = {
            "GET  /v1/members/{m}/points": ("GET", "/v1/members/m1/points", b""),
            "POST /v1/members/{m}/points/earn": (
                "POST",
                "/v1/members/m1/points/earn",
                b'{"points": 5, "reason": "bench"}',
            ),
            "POST /v1/members/{m}/points/redeem": (
                "POST",
                "/v1/members/m1/points/redeem",
                b'{"points": 5}',
            ),
        }
        async with app.router.lifespan_context(app):
            for label, (method, path, body) in routes.items():
                await _measure(
                    label, _caller(app, key, method, path, body), args.requests, args.profile
                )
    finally:
        await db.dispose()
        admin = await asyncpg.connect(ADMIN_URL)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    os.environ.setdefault("PATRON_LOG_LEVEL", "warning")
    asyncio.run(main())
