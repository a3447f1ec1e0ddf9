"""The `patron` command, run as a real process against the test database."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from app import db
from app.services.programs.programs import create_program
from tests.conftest import assert_ledger_consistent
from tests.live import running_server


def patron(database_url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    env.pop("PATRON_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def program_by_cli(database_url: str, currency: str = "CNY") -> dict[str, Any]:
    """`patron program create --json`, run as a process; its parsed output."""
    result = await asyncio.to_thread(
        patron,
        database_url,
        "program",
        "create",
        "--name",
        "CLI",
        "--currency",
        currency,
        "--json",
    )
    assert result.returncode == 0, result.stderr
    printed: dict[str, Any] = json.loads(result.stdout)
    return printed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class TestProgramCreate:
    async def test_json_output_is_exactly_id_and_key(self, database_url: str) -> None:
        printed = await program_by_cli(database_url)
        assert set(printed) == {"program_id", "api_key"}
        async with db.read_only() as conn:
            currency = (
                await conn.execute(
                    text("SELECT currency FROM programs WHERE id = :id"),
                    {"id": printed["program_id"]},
                )
            ).scalar()
        assert currency == "CNY"

    async def test_unknown_currency_fails(self, database_url: str) -> None:
        result = await asyncio.to_thread(
            patron, database_url, "program", "create", "--name", "X", "--currency", "ZZZ"
        )
        assert result.returncode != 0


class TestApiKeyCreate:
    async def test_json_output_and_scopes(self, database_url: str) -> None:
        program_id = (await program_by_cli(database_url, "JPY"))["program_id"]
        result = await asyncio.to_thread(
            patron,
            database_url,
            "api-key",
            "create",
            "--program",
            str(program_id),
            "--scopes",
            "points:read",
            "points:write",
            "--json",
        )
        assert result.returncode == 0, result.stderr
        printed = json.loads(result.stdout)
        assert set(printed) == {"id", "api_key"}
        async with db.read_only() as conn:
            scopes = (
                await conn.execute(
                    text("SELECT scopes FROM api_keys WHERE id = CAST(:id AS uuid)"),
                    {"id": printed["id"]},
                )
            ).scalar()
        assert sorted(scopes) == ["points:read", "points:write"]

    async def test_unknown_scope_is_refused(self, database_url: str) -> None:
        result = await asyncio.to_thread(
            patron, database_url, "api-key", "create", "--program", "1", "--scopes", "root"
        )
        assert result.returncode == 2
        assert "unknown" in result.stderr


class TestAudit:
    async def test_exit_code_follows_the_invariants(self, database_url: str) -> None:
        program_id = (await program_by_cli(database_url))["program_id"]
        from app.services import ledger
        from app.services.members.members import upsert_member

        await upsert_member(program_id, "m1", {})
        await ledger.credit(
            ledger.Posting(program_id, "m1", 10, "earn", "points.earned", "test", "x"), None
        )
        clean = await asyncio.to_thread(patron, database_url, "audit", "--program", str(program_id))
        assert clean.returncode == 0, clean.stdout + clean.stderr

        # Corrupt the cached balance behind the ledger's back, then put it right again.
        async with db.transaction() as conn:
            await conn.execute(
                text("UPDATE accounts SET available = available + 1 WHERE program_id = :p"),
                {"p": program_id},
            )
        broken = await asyncio.to_thread(
            patron, database_url, "audit", "--program", str(program_id)
        )
        async with db.transaction() as conn:
            await conn.execute(
                text("UPDATE accounts SET available = available - 1 WHERE program_id = :p"),
                {"p": program_id},
            )
        assert broken.returncode == 1
        assert "m1" in broken.stdout
        assert "invariant 1" in broken.stdout


class TestServeEmbedded:
    """The README's first command: no DATABASE_URL, an embedded PostgreSQL, migrated, served."""

    def test_serves_ready_on_embedded_postgres(self, tmp_path: Path) -> None:
        port = _free_port()
        env = {**os.environ, "PATRON_DATA_DIR": str(tmp_path / "data")}
        for name in ("DATABASE_URL", "PATRON_DATABASE_URL"):
            env.pop(name, None)
        server = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 90
            ready = None
            while time.monotonic() < deadline and server.poll() is None:
                try:
                    ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                    if ready.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.3)
            assert ready is not None and ready.status_code == 200, "server never became ready"
            assert ready.json()["status"] == "ready"
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        assert (tmp_path / "data" / "pg").is_dir()


class TestServeOnGranian:
    """`patron serve --server granian`: the same application behind the other HTTP server."""

    async def test_serves_the_api(self, database_url: str) -> None:
        program_id, key = await create_program("Granian Shop", "CNY")
        headers = {"Authorization": f"Bearer {key}"}
        with running_server(database_url, http_server="granian") as base:
            async with httpx.AsyncClient(base_url=base, headers=headers) as client:
                created = await client.put("/v1/members/g1", json={})
                earned = await client.post(
                    "/v1/members/g1/points/earn", json={"points": 7, "reason": "granian"}
                )
                points = await client.get("/v1/members/g1/points")
                refused = await client.post("/v1/members/g1/points/redeem", json={"points": 8})
        assert (created.status_code, earned.status_code) == (201, 201)
        assert points.json()["available"] == 7
        assert refused.status_code == 409
        assert refused.headers["content-type"] == "application/problem+json"
        await assert_ledger_consistent(program_id)
