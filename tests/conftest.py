"""Test harness: real PostgreSQL, schema built by Alembic, HTTP through the ASGI app.

The database is a fresh one made for this session on the server of ``TEST_DATABASE_URL``
when it is set, otherwise on an embedded PostgreSQL started in a temporary folder. With
``TEST_POOLER_URL`` also set (a PgBouncer in transaction mode in front of that server, passing
every database name through), the database is still created and migrated directly, and the
service's pool reaches it through the pooler in transaction pooling mode. Every test
works in a program (tenant) of its own, and the ledger audit runs on that program after the
test, so every test that writes also proves the invariants of architecture.md.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from sqlalchemy import text

from app import db
from app.citus import distribute
from app.clock import clock
from app.config import get_settings
from app.main import create_app
from app.migrate import upgrade
from app.services.ledger.audit import audit
from app.services.programs import api_keys
from app.services.programs.programs import create_program


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(db.to_plain_url(url))
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@dataclass
class PgServer:
    """Where the tests' PostgreSQL lives: an admin URL and a database made for this run."""

    admin_url: str
    embedded: Any = None

    async def create_database(self, prefix: str = "patron_test") -> str:
        name = f"{prefix}_{secrets.token_hex(4)}"
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return _with_database(self.admin_url, name)

    async def drop_database(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    given = os.environ.get("TEST_DATABASE_URL")
    if given:
        yield PgServer(admin_url=db.to_plain_url(given))
        return
    import pgserver

    with tempfile.TemporaryDirectory(prefix="patron-pg-") as folder:
        server = pgserver.get_server(Path(folder) / "pg", cleanup_mode="stop")
        yield PgServer(admin_url=server.get_uri(), embedded=server)
        server.cleanup()


def service_process_env() -> dict[str, str]:
    """What a service process started by a test adds to its environment: on a Citus cluster
    no generic plans, as the deployment requires there (docs/deployment.md)."""
    return {"PATRON_GENERIC_PLANS": "false"} if os.environ.get("TEST_CITUS_DIR") else {}


def service_engine(url: str) -> db.Engine:
    """The pool the services use: direct, or through ``TEST_POOLER_URL`` in transaction mode;
    on a Citus cluster without generic plans."""
    pooler = os.environ.get("TEST_POOLER_URL")
    if os.environ.get("TEST_CITUS_DIR"):
        return db.make_engine(url, get_settings().model_copy(update={"generic_plans": False}))
    if not pooler:
        return db.make_engine(url)
    through_pooler = _with_database(pooler, urlsplit(url).path.lstrip("/"))
    settings = get_settings().model_copy(update={"database_pooling": "transaction"})
    return db.make_engine(through_pooler, settings)


CITUS_SCRIPT = Path(__file__).resolve().parent.parent / ".ci" / "citus"


async def make_citus_cluster_database(url: str, citus_dir: str) -> None:
    """The database on every node of the cluster ``.ci/citus`` started, the workers added."""
    name = urlsplit(url).path.lstrip("/")
    process = await asyncio.create_subprocess_exec(
        str(CITUS_SCRIPT), "prepare", citus_dir, name, stderr=asyncio.subprocess.PIPE
    )
    _, errors = await process.communicate()
    assert process.returncode == 0, errors.decode()


async def _refuse_multi_shard_statements(url: str) -> None:
    """Every statement about one program must run on one shard: on the cluster, a statement
    that needs several fails the test that ran it. (A job that looks across programs on
    purpose says so with ``SET LOCAL citus.multi_task_query_log_level``.)"""
    conn = await asyncpg.connect(url)
    try:
        name = urlsplit(url).path.lstrip("/")
        await conn.execute(
            f"ALTER DATABASE \"{name}\" SET citus.multi_task_query_log_level TO 'error'"
        )
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def database_url(pg_server: PgServer) -> AsyncIterator[str]:
    """The session's database, direct (migrations, processes, tests that need a connection
    of their own). With ``TEST_CITUS_DIR`` (a cluster ``.ci/citus`` started, whose coordinator
    ``TEST_DATABASE_URL`` names) it is distributed as ``patron migrate --citus`` does."""
    url = await pg_server.create_database()
    citus_dir = os.environ.get("TEST_CITUS_DIR")
    if citus_dir:
        await make_citus_cluster_database(url, citus_dir)
    await asyncio.to_thread(upgrade, url)
    if citus_dir:
        await distribute(url)
        await _refuse_multi_shard_statements(url)
    db.configure(service_engine(url))
    db.refuse_second_connection()
    yield url
    await db.dispose()
    await pg_server.drop_database(url)


# Tests that must tell a Citus cluster from one PostgreSQL (where a lock wait shows, say).
ON_CITUS = bool(os.environ.get("TEST_CITUS_DIR"))


@pytest.fixture(scope="session")
def app(database_url: str) -> Any:
    return create_app()


@pytest.fixture(autouse=True)
def _reset_clock_and_caches() -> Iterator[None]:
    yield
    clock.reset()
    api_keys.clear_cache()


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://patron.test") as c:
        yield c


@dataclass
class Program:
    id: int
    admin_key: str
    client: httpx.AsyncClient

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.admin_key}"}

    async def request(
        self, method: str, path: str, key: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = {**self.headers(key), **kwargs.pop("headers", {})}
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PUT", path, **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PATCH", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", path, **kwargs)

    async def key_with(self, *scopes: str) -> str:
        response = await self.post("/v1/api-keys", json={"name": "test", "scopes": list(scopes)})
        assert response.status_code == 201, response.text
        key: str = response.json()["key"]
        return key

    async def member(self, external_id: str, points: int = 0, **fields: Any) -> str:
        response = await self.put(f"/v1/members/{external_id}", json=fields)
        assert response.status_code in (200, 201), response.text
        if points:
            earned = await self.post(
                f"/v1/members/{external_id}/points/earn",
                json={"points": points, "reason": "seed"},
            )
            assert earned.status_code == 201, earned.text
        return external_id

    async def balance(self, external_id: str) -> dict[str, Any]:
        response = await self.get(f"/v1/members/{external_id}/points")
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is an RFC 9457 problem document with this status and api.md ``code``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert (body["status"], body["code"]) == (status, code), body
    for field in ("type", "title", "detail"):
        assert isinstance(body[field], str) and body[field], field
    return body


async def assert_ledger_consistent(program_id: int) -> None:
    violations = await audit(program_id)
    assert not violations, "ledger audit failed:\n" + "\n".join(map(str, violations))


# The tests share one database, and a test that runs the worker (``run_once``) at a time of
# its own finds the insights of every program of the tests before it due and refreshes them
# one by one (about 5 ms each, thousands of programs by the end of the suite). A finished
# test's program is marked refreshed for ever, so that a later test's worker run is about
# its own programs, whatever ran before it.
_OUT_OF_REFRESH_SWEEPS = text(
    "INSERT INTO insight_refreshes (program_id, refreshed_at, members, duration_ms) "
    "VALUES (:program_id, 'infinity', 0, 0) "
    "ON CONFLICT (program_id) DO UPDATE SET refreshed_at = 'infinity'"
)


async def finish_program(program_id: int) -> None:
    """After a test: its program's ledger audited, then left out of later refresh sweeps."""
    await assert_ledger_consistent(program_id)
    async with db.transaction() as conn:
        await conn.execute(_OUT_OF_REFRESH_SWEEPS, {"program_id": program_id})


@pytest.fixture
async def program(client: httpx.AsyncClient, database_url: str) -> AsyncIterator[Program]:
    """A fresh program (tenant) with an admin key; audited after the test."""
    program_id, key = await create_program("Test Shop", "CNY")
    yield Program(program_id, key, client)
    await finish_program(program_id)


@pytest.fixture
async def other_program(client: httpx.AsyncClient, database_url: str) -> AsyncIterator[Program]:
    program_id, key = await create_program("Other Shop", "CNY")
    yield Program(program_id, key, client)
    await finish_program(program_id)
