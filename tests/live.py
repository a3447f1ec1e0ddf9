"""Test helpers that need real processes: a `patron serve` on a free port, and Chromium."""

from __future__ import annotations

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_server(
    database_url: str, workers: int = 1, http_server: str = "uvicorn"
) -> Iterator[str]:
    """`patron serve` against the test database; yields its base URL once it is ready."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url}
    env.pop("PATRON_DATABASE_URL", None)
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "app.cli", "serve", "--port", str(port)),
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
