"""`patron serve` runs the periodic jobs in a supervised child process (`patron worker`),
restarted when it dies and stopped with the server; `--no-worker` leaves them to a worker
run on its own (README "Run")."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.live import PATRON, cli_env, create_program_key, free_port

WORKER_STARTED = re.compile(r"worker process (\d+) started")


@contextmanager
def serve(database_url: str, log: Path, *extra: str) -> Iterator[str]:
    port = free_port()
    with log.open("w") as output:
        process = subprocess.Popen(
            [*PATRON, "serve", "--port", str(port), *extra],
            env=cli_env(database_url),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: ready(base) or process.poll() is not None, 60)
        assert process.poll() is None, log.read_text()[-3000:]
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def wait_for(condition: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def workers_started(log: Path) -> list[int]:
    return [int(pid) for pid in WORKER_STARTED.findall(log.read_text())]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child that exited but was not reaped yet is a zombie: gone for our purpose.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


class Shop:
    def __init__(self, base: str, key: str) -> None:
        self.client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"})
        assert self.client.put("/v1/members/m1", json={}).status_code == 201
        earned = self.client.post("/v1/members/m1/points/earn", json={"points": 100, "reason": "x"})
        assert earned.status_code == 201, earned.text

    def short_hold(self) -> str:
        hold = self.client.post("/v1/members/m1/holds", json={"points": 5, "ttl_seconds": 1})
        assert hold.status_code == 201, hold.text
        hold_id: str = hold.json()["hold_id"]
        return hold_id

    def expired_by_the_job(self, hold_id: str) -> bool:
        # Only the worker's job writes the event (a read shows "expired" on its own).
        events = self.client.get("/v1/events", params={"type": "hold.expired", "limit": 100})
        assert events.status_code == 200, events.text
        return any(event["data"]["hold"]["hold_id"] == hold_id for event in events.json()["data"])


class TestServeRunsTheWorker:
    def test_jobs_run_and_a_killed_worker_is_restarted(
        self, database_url: str, tmp_path: Path
    ) -> None:
        log = tmp_path / "serve.log"
        key = create_program_key(database_url, "Worker")
        with serve(database_url, log) as base:
            shop = Shop(base, key)
            first_hold = shop.short_hold()
            assert wait_for(lambda: shop.expired_by_the_job(first_hold), 30), log.read_text()
            [first] = workers_started(log)
            assert any("app.cli worker" in command for command in child_commands(server_pid(log)))
            os.kill(first, signal.SIGKILL)
            assert wait_for(lambda: len(workers_started(log)) == 2, 30), log.read_text()
            second = workers_started(log)[1]
            assert second != first
            second_hold = shop.short_hold()
            assert wait_for(lambda: shop.expired_by_the_job(second_hold), 30), log.read_text()
        # The worker stops with the server.
        assert wait_for(lambda: not alive(second), 30)

    def test_no_worker(self, database_url: str, tmp_path: Path) -> None:
        log = tmp_path / "serve.log"
        with serve(database_url, log, "--no-worker") as base:
            assert ready(base)
            assert not any("worker" in command for command in child_commands(server_pid(log)))
        assert workers_started(log) == []


def server_pid(log: Path) -> int:
    return int(re.findall(r"Started server process \[(\d+)\]", log.read_text())[0])


def child_commands(pid: int) -> list[str]:
    """The command lines of the processes whose parent is ``pid``."""
    commands = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                commands.append((stat.parent / "cmdline").read_text().replace("\0", " "))
        except (OSError, IndexError, ValueError):
            continue
    return commands
