"""Transaction pooling mode (``PATRON_DATABASE_POOLING=transaction``): what makes a process
safe behind PgBouncer in transaction mode. With ``TEST_POOLER_URL`` set these run through that
PgBouncer; otherwise on the database directly, which a transaction-mode pooler only makes
stricter."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from app import db
from app.config import get_settings

SETTINGS_QUERY = (
    "SELECT current_setting('statement_timeout') AS statement_timeout, "
    "current_setting('lock_timeout') AS lock_timeout, "
    "current_setting('plan_cache_mode') AS plan_cache_mode, "
    "current_setting('jit') AS jit, current_setting('TimeZone') AS timezone"
)


def _through_pooler(url: str) -> str:
    pooler = os.environ.get("TEST_POOLER_URL")
    if not pooler:
        return url
    parts = urlsplit(db.to_plain_url(pooler))
    return urlunsplit((parts.scheme, parts.netloc, urlsplit(url).path, "", ""))


def _engine(url: str, **overrides: Any) -> db.Engine:
    settings = get_settings().model_copy(update={"database_pooling": "transaction", **overrides})
    return db.make_engine(_through_pooler(url), settings)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[db.Engine]:
    engine = _engine(database_url)
    yield engine
    await engine.dispose()


def _units_of_work(engine: db.Engine) -> dict[str, Callable[[], AbstractAsyncContextManager[Any]]]:
    """What ``db.transaction``, ``db.single_statement`` and ``db.read_only`` open."""
    return {"transaction": engine.begin, "outside a transaction": engine.connect}


class TestTransactionPoolingSettings:
    async def test_every_unit_of_work_runs_with_the_timeouts_and_the_plan_setting(
        self, engine: db.Engine
    ) -> None:
        for name, unit_of_work in _units_of_work(engine).items():
            async with unit_of_work() as conn:
                row = (await conn.execute(SETTINGS_QUERY)).one()
            assert dict(row.items()) == {
                "statement_timeout": "15s",
                "lock_timeout": "15s",
                "plan_cache_mode": "force_generic_plan",
                "jit": "off",
                "timezone": "UTC",
            }, name

    async def test_a_long_statement_is_cancelled(self, database_url: str) -> None:
        engine = _engine(database_url, statement_timeout_ms=200)
        try:
            for name, unit_of_work in _units_of_work(engine).items():
                with pytest.raises(asyncpg.QueryCanceledError):
                    async with unit_of_work() as conn:
                        await conn.execute("SELECT pg_sleep(3)")
                    pytest.fail(f"not cancelled {name}")
        finally:
            await engine.dispose()

    async def test_nothing_is_set_for_the_session(self, engine: db.Engine) -> None:
        """A server connection goes to another client after each transaction: no setting may
        come from the startup packet (a pooler refuses or drops those) or outlive a
        transaction."""
        async with engine.begin() as conn:
            await conn.execute(SETTINGS_QUERY)
        pool = await engine._get_pool()
        async with pool.acquire() as raw:
            session_set = await raw.fetch(
                "SELECT name, source FROM pg_settings WHERE source IN ('client', 'session') "
                "AND name IN ('statement_timeout', 'lock_timeout', 'plan_cache_mode', 'jit')"
            )
        assert session_set == []


class TestNoPreparedStatementSurvives:
    async def test_none_left_on_the_server_connection(self, engine: db.Engine) -> None:
        for points in range(5):
            async with engine.begin() as conn:
                await conn.execute("SELECT CAST(:points AS integer) + 1", {"points": points})
        async with engine.begin() as conn:
            named = (await conn.execute("SELECT count(*) FROM pg_prepared_statements")).scalar()
        assert named == 0

    async def test_the_session_mode_keeps_them(self, database_url: str) -> None:
        """The contrast: a direct connection caches its prepared statements (and is faster)."""
        engine = db.make_engine(database_url)
        try:
            async with engine.connect() as conn:
                await conn.execute("SELECT CAST(:points AS integer) + 1", {"points": 1})
                named = (await conn.execute("SELECT count(*) FROM pg_prepared_statements")).scalar()
            assert named >= 1
        finally:
            await engine.dispose()
