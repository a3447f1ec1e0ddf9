"""The `patron` command, run as a real process against the test database."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import text

from app import db
from app.migrate import head_revision
from app.services.programs.programs import create_program
from tests.conftest import PgServer, assert_ledger_consistent, service_process_env
from tests.live import running_server


def patron(database_url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return patron_with(database_url, {}, *args, timeout=timeout)


def patron_with(
    database_url: str, extra_env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    env.pop("PATRON_DATABASE_URL", None)
    env.pop("PATRON_MIGRATION_DATABASE_URL", None)
    env.update(service_process_env())
    env.update(extra_env)
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


@asynccontextmanager
async def asyncpg_connection(url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


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


class TestErrorsAreOneLine:
    """A database that cannot be reached, or input the command refuses: one line saying so
    on stderr and a non-zero exit, never a traceback."""

    @staticmethod
    def assert_one_line(result: subprocess.CompletedProcess[str], code: int, says: str) -> None:
        assert result.returncode == code, result.stderr
        lines = result.stderr.strip().splitlines()
        assert lines == [lines[0]] and lines[0].startswith("patron: "), result.stderr
        assert says in lines[0], lines[0]
        assert "Traceback" not in result.stderr + result.stdout

    @pytest.mark.parametrize(
        "args",
        [
            ("program", "create", "--name", "X", "--currency", "CNY"),
            ("audit",),
        ],
        ids=lambda args: args[0],
    )
    def test_connection_refused(self, args: tuple[str, ...]) -> None:
        port = _free_port()
        result = patron(f"postgresql://postgres@127.0.0.1:{port}/x", *args)
        self.assert_one_line(
            result, 1, f"cannot connect to PostgreSQL at 127.0.0.1:{port}: connection refused"
        )

    def test_unknown_host(self) -> None:
        result = patron("postgresql://postgres@no-such-host.invalid/x", "audit")
        self.assert_one_line(result, 1, "no-such-host.invalid:5432: unknown host")

    def test_database_that_does_not_exist(self, database_url: str) -> None:
        missing = database_url.rsplit("/", 1)[0] + "/patron_no_such_database"
        result = patron(missing, "migrate")
        self.assert_one_line(result, 1, 'database "patron_no_such_database" does not exist')

    def test_unknown_currency(self, database_url: str) -> None:
        result = patron(database_url, "program", "create", "--name", "X", "--currency", "XXXX")
        self.assert_one_line(result, 2, "Unknown ISO 4217 currency 'XXXX'")


class TestServeEmbedded:
    """The README's first command: no DATABASE_URL, an embedded PostgreSQL, migrated, served."""

    def test_serves_ready_on_embedded_postgres(self, tmp_path: Path) -> None:
        port = _free_port()
        env = {**os.environ, "PATRON_DATA_DIR": str(tmp_path / "data")}
        # As in containers and CI: platformdirs would warn on every command.
        for name in ("DATABASE_URL", "PATRON_DATABASE_URL", "XDG_RUNTIME_DIR"):
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
            if ready is None or ready.status_code != 200:
                server.terminate()
                printed = server.stdout.read() if server.stdout else ""
                pytest.fail(f"server never became ready:\n{printed[-4000:]}")
            assert ready.json()["status"] == "ready"
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        assert (tmp_path / "data" / "pg").is_dir()
        printed = server.stdout.read() if server.stdout else ""
        assert "XDG_RUNTIME_DIR" not in printed
        assert f"its data in {tmp_path / 'data' / 'pg'}" in printed


@pytest.fixture
async def empty_database(pg_server: PgServer) -> AsyncIterator[str]:
    """A database of its own with no schema at all."""
    url = await pg_server.create_database("patron_empty")
    yield url
    await pg_server.drop_database(url)


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()
    return {row["tablename"] for row in rows}


UNREACHABLE = "postgresql://postgres@127.0.0.1:1/nowhere"


class TestMigrate:
    async def test_uses_the_migration_url(self, empty_database: str) -> None:
        """The service's URL may be a pooler; migrations go over the direct one."""
        env = {"PATRON_MIGRATION_DATABASE_URL": empty_database}
        result = await asyncio.to_thread(patron_with, UNREACHABLE, env, "migrate")
        assert result.returncode == 0, result.stderr
        async with asyncpg_connection(empty_database) as conn:
            assert await conn.fetchval("SELECT version_num FROM alembic_version") == (
                head_revision()
            )


class TestCommandsLeaveTheSchemaAlone:
    async def test_program_create_does_not_migrate(self, empty_database: str) -> None:
        result = await asyncio.to_thread(
            patron, empty_database, "program", "create", "--name", "X", "--currency", "CNY"
        )
        assert result.returncode != 0
        assert await _tables(empty_database) == set()

    async def test_migrate_option_migrates_first(self, empty_database: str) -> None:
        result = await asyncio.to_thread(
            patron,
            empty_database,
            "program",
            "create",
            "--name",
            "X",
            "--currency",
            "CNY",
            "--json",
            "--migrate",
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["program_id"] >= 1
        assert "alembic_version" in await _tables(empty_database)


class TestServeWithoutMigrating:
    def test_serves_and_leaves_the_schema_alone(self, empty_database: str) -> None:
        port = _free_port()
        env = {**os.environ, "DATABASE_URL": empty_database}
        env.pop("PATRON_DATABASE_URL", None)
        server = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--no-migrate", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            ready = None
            while time.monotonic() < deadline and server.poll() is None:
                try:
                    ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                    break
                except httpx.TransportError:
                    time.sleep(0.3)
            assert ready is not None, "server never answered"
            # Up, and honest that the schema is not there.
            assert ready.status_code == 503
            assert ready.json()["status"] == "not_ready"
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        assert asyncio.run(_tables(empty_database)) == set()


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
