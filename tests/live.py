"""Test helpers that need real processes: a `patron serve` on a free port, and Chromium."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


PATRON = (sys.executable, "-m", "app.cli")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cli_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": database_url, **extra}
    env.pop("PATRON_DATABASE_URL", None)
    return env


def create_program_key(database_url: str, name: str = "Live") -> str:
    """A new program's admin key, made with `patron program create --json`."""
    result = subprocess.run(
        [*PATRON, "program", "create", "--json", "--name", name, "--currency", "CNY"],
        env=cli_env(database_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    key: str = json.loads(result.stdout)["api_key"]
    return key


@contextmanager
def running_server(
    database_url: str,
    workers: int = 1,
    http_server: str = "uvicorn",
    env: dict[str, str] | None = None,
) -> Iterator[str]:
    """`patron serve` against the test database; yields its base URL once it is ready."""
    port = free_port()
    env = cli_env(database_url, **(env or {}))
    process = subprocess.Popen(
        [
            *(*PATRON, "serve", "--port", str(port)),
            *("--workers", str(workers), "--server", http_server),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("patron serve did not become ready")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def chromium_path() -> str:
    """Debian's Chromium, installed on first use. Skips (outside CI only) where it cannot be
    installed; in CI a missing browser is a failure, never a skip."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.STDOUT}
        subprocess.run(["apt-get", "update"], check=False, **quiet)  # type: ignore[call-overload]
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
            check=False,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            **quiet,  # type: ignore[arg-type]
        )
        found = shutil.which("chromium")
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail("Chromium is not installed and could not be installed (apt-get chromium)")
    pytest.skip("Chromium is not installed and cannot be installed here (needs root and apt)")
