"""Outages: while PostgreSQL is unreachable, restarting or out of connections every request
answers 503 ``service_unavailable`` with Retry-After (never a 500, never a dropped
connection), and the pool recovers by itself once the database is back (api.md Conventions).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from app import db
from app.errors import ServiceUnavailableError
from tests.conftest import Program
from tests.live import free_port
from tests.routers.test_errors import assert_problem


def assert_unavailable(response: httpx.Response) -> None:
    assert_problem(response, 503, "service_unavailable")
    assert int(response.headers["Retry-After"]) >= 1


@contextmanager
def engine_on(url: str) -> Iterator[db.Engine]:
    """The service's engine swapped for one on ``url`` for the block."""
    previous = db.get_engine()
    engine = db.make_engine(url)
    db.configure(engine)
    try:
        yield engine
    finally:
        db.configure(previous)


def with_user(url: str, user: str, password: str) -> str:
    parts = urlsplit(db.to_plain_url(url))
    netloc = f"{user}:{password}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@asynccontextmanager
async def limited_role(database_url: str, limit: int) -> AsyncIterator[str]:
    """A login role that may hold at most ``limit`` connections; yields its URL."""
    name = f"patron_limited_{secrets.token_hex(4)}"
    password = secrets.token_hex(8)
    admin = await asyncpg.connect(db.to_plain_url(database_url))
    try:
        await admin.execute(
            f"CREATE ROLE {name} LOGIN PASSWORD '{password}' CONNECTION LIMIT {limit}"
        )
        await admin.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {name}")
        await admin.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {name}")
        yield with_user(database_url, name, password)
    finally:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", name
        )
        await admin.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {name}")
        await admin.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {name}")
        await admin.execute(f"DROP ROLE {name}")
        await admin.close()


class TestUnreachable:
    async def test_every_request_is_503(self, program: Program) -> None:
        await program.member("m1", points=5)
        with engine_on(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing") as engine:
            try:
                for _ in range(3):
                    assert_unavailable(await program.get("/v1/members/m1/points"))
                    assert_unavailable(
                        await program.post(
                            "/v1/members/m1/points/earn", json={"points": 1, "reason": "x"}
                        )
                    )
                    assert_unavailable(await program.put("/v1/members/m2", json={}))
                ready = await program.client.get("/readyz")
                assert ready.status_code == 503
            finally:
                await engine.dispose()
        # Nothing was written while the database was away.
        assert (await program.balance("m1"))["available"] == 5

    async def test_unresolvable_host_is_503(self, program: Program) -> None:
        with engine_on("postgresql://postgres@no-such-host.invalid/nothing") as engine:
            try:
                assert_unavailable(await program.get("/v1/members"))
            finally:
                await engine.dispose()


class TestOutOfConnections:
    async def test_503_while_the_role_is_at_its_limit_then_recovers(
        self, program: Program, database_url: str
    ) -> None:
        await program.member("m1", points=5)
        async with limited_role(database_url, 2) as url:
            with engine_on(url) as engine:
                try:
                    # Another process holds every connection the role may have.
                    others = [await asyncpg.connect(url) for _ in range(2)]
                    for _ in range(3):
                        assert_unavailable(await program.get("/v1/members/m1/points"))
                    for other in others:
                        await other.close()
                    response = await program.get("/v1/members/m1/points")
                    assert response.status_code == 200, response.text
                    assert response.json()["available"] == 5
                finally:
                    await engine.dispose()


class TestConnectionsKilled:
    async def test_no_500_and_the_pool_recovers(self, program: Program, database_url: str) -> None:
        await program.member("m1", points=5)
        # Warm the pool, then end every connection it holds, as a PostgreSQL restart does.
        statuses = []
        for _ in range(5):
            statuses.append((await program.get("/v1/members/m1/points")).status_code)
        admin = await asyncpg.connect(db.to_plain_url(database_url))
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = 'patron'"
            )
        finally:
            await admin.close()
        assert killed >= 1
        answers = []
        for _ in range(killed + 5):
            response = await program.post(
                "/v1/members/m1/points/earn", json={"points": 1, "reason": "x"}
            )
            answers.append(response)
        for response in answers:
            assert response.status_code in (201, 503), response.text
            if response.status_code == 503:
                assert_unavailable(response)
        # Every dead connection is dropped on first use; the next requests all succeed.
        assert [r.status_code for r in answers[-5:]] == [201] * 5
        earned = sum(1 for r in answers if r.status_code == 201)
        assert (await program.balance("m1"))["available"] == 5 + earned

    async def test_connection_killed_under_a_statement(self, database_url: str) -> None:
        # A restart ends connections in the middle of statements: the unit of work fails as
        # an outage (503), and its connection is not handed to anyone again.
        admin = await asyncpg.connect(db.to_plain_url(database_url))
        try:
            with pytest.raises(ServiceUnavailableError) as raised:
                async with db.transaction() as conn:
                    pid = conn.raw.get_server_pid()
                    sleeping = asyncio.create_task(conn.execute("SELECT pg_sleep(10)"))
                    await asyncio.sleep(0.2)
                    await admin.execute("SELECT pg_terminate_backend($1)", pid)
                    await sleeping
            assert raised.value.retry_after >= 1
        finally:
            await admin.close()
        async with db.read_only() as conn:
            assert conn.raw.get_server_pid() != pid
            assert (await conn.execute("SELECT 1")).scalar() == 1


class TestWhatIsAnOutage:
    @pytest.mark.parametrize(
        "error",
        [
            asyncpg.InternalClientError(
                "cannot switch to state 12; another operation (2) is in progress"
            ),
            asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
            ConnectionResetError("reset by peer"),
            asyncpg.TooManyConnectionsError("sorry, too many clients already"),
            asyncpg.CannotConnectNowError("the database system is starting up"),
        ],
        ids=repr,
    )
    def test_outages(self, error: Exception) -> None:
        assert db.is_outage(error)

    @pytest.mark.parametrize(
        "error",
        [
            asyncpg.UniqueViolationError("duplicate key"),
            asyncpg.exceptions._base.DataError("invalid input for query argument $1"),
            ValueError("a bug"),
        ],
        ids=repr,
    )
    def test_not_outages(self, error: Exception) -> None:
        assert not db.is_outage(error)
