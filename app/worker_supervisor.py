"""The periodic jobs beside ``patron serve``: one ``patron worker`` child process, started
with the server and restarted whenever it exits, until the server stops.

A child process rather than a task in the server's event loop: the jobs' batches would take
turns with requests on the loop (and with ``--workers N`` every server process would run
them), and a job that crashes its process must not take the API with it. Deployments that run
``patron worker`` on their own pass ``patron serve --no-worker``.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time

log = logging.getLogger("patron.worker")

# Restart delays after a crash: doubling from the first to the last, reset after a child that
# ran for a while.
FIRST_RESTART_DELAY = 1.0
LAST_RESTART_DELAY = 30.0
HEALTHY_AFTER_SECONDS = 60.0


class WorkerSupervisor:
    """Runs ``command`` (by default ``python -m app.cli worker``) and restarts it when it
    exits, from a thread of its own, until ``stop()``."""

    def __init__(self, command: list[str] | None = None) -> None:
        self.command = command or [sys.executable, "-m", "app.cli", "worker"]
        self._stopping = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._supervise, name="worker-supervisor")
        self._thread.daemon = True

    def start(self) -> None:
        self._thread.start()

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None else None

    def _spawn(self) -> subprocess.Popen[bytes] | None:
        with self._lock:
            if self._stopping.is_set():
                return None
            # A session of its own: Ctrl-C in a terminal reaches the server, which then stops
            # the child, instead of both at once (and a restart racing the shutdown).
            self._process = subprocess.Popen(self.command, start_new_session=True)
            log.info("worker process %d started", self._process.pid)
            return self._process

    def _supervise(self) -> None:
        delay = FIRST_RESTART_DELAY
        while not self._stopping.is_set():
            process = self._spawn()
            if process is None:
                return
            ran_for = _wait_timed(process)
            if self._stopping.is_set():
                return
            log.warning(
                "worker process %d exited with code %s; restarting in %.0f s",
                process.pid,
                process.returncode,
                delay,
            )
            if self._stopping.wait(delay):
                return
            delay = (
                FIRST_RESTART_DELAY
                if ran_for >= HEALTHY_AFTER_SECONDS
                else min(delay * 2, LAST_RESTART_DELAY)
            )

    def stop(self, timeout: float = 30.0) -> None:
        """Stop restarting, then end the child (SIGTERM: it finishes its current batch)."""
        with self._lock:
            self._stopping.set()
            process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)


def _wait_timed(process: subprocess.Popen[bytes]) -> float:
    """Wait for ``process`` to exit; how many seconds it ran."""
    began = time.monotonic()
    process.wait()
    return time.monotonic() - began
