"""Engine, the transaction helpers every service uses, and the embedded PostgreSQL.

A public service function is one unit of work: it calls ``transaction()`` (or, for a use case
that is one single SQL statement, ``single_statement()``, which runs it in autocommit mode:
PostgreSQL makes one statement atomic on its own, which saves the BEGIN and COMMIT round trips).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from app.config import Settings, get_settings

log = logging.getLogger("patron.db")

_engine: AsyncEngine | None = None
_autocommit_engine: AsyncEngine | None = None
_embedded_server: Any = None


def to_async_url(url: str) -> str:
    """Accept the usual ``postgres://`` and ``postgresql://`` forms and pick the asyncpg driver."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("DATABASE_URL must be a postgresql:// URL")


def to_plain_url(url: str) -> str:
    """The libpq form of a URL (for psql, pgbench and asyncpg itself)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def start_embedded(data_dir: Path) -> str:
    """Start (or reuse) an embedded PostgreSQL in ``data_dir`` and return its URL.

    The server stops when the last process that started it exits.
    """
    global _embedded_server
    try:
        import pgserver
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "No DATABASE_URL is set and the embedded PostgreSQL is not installed; "
            "install with the 'embedded' extra or set DATABASE_URL."
        ) from exc
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    _embedded_server = pgserver.get_server(data_dir / "pg", cleanup_mode="stop")  # type: ignore[attr-defined]
    url: str = _embedded_server.get_uri()
    log.info("embedded PostgreSQL running in %s", data_dir)
    return url


def resolve_database_url(settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    if settings.database_url:
        return settings.database_url
    return start_embedded(settings.data_dir)


def make_engine(url: str, settings: Settings | None = None) -> AsyncEngine:
    settings = settings or get_settings()
    return create_async_engine(
        to_async_url(url),
        pool_size=settings.pool_size,
        max_overflow=settings.pool_max_overflow,
        pool_pre_ping=False,
        connect_args={
            "server_settings": {
                "timezone": "UTC",
                "application_name": "patron",
                # The hot statements are short; JIT compilation only adds latency to them.
                "jit": "off",
                # Statements are prepared once per connection (asyncpg); a generic plan
                # saves re-planning the multi-CTE ledger statements on every execution.
                "plan_cache_mode": "force_generic_plan",
                "statement_timeout": str(settings.statement_timeout_ms),
                "lock_timeout": str(settings.statement_timeout_ms),
            }
        },
    )


def configure(engine: AsyncEngine) -> None:
    global _engine, _autocommit_engine
    _engine = engine
    _autocommit_engine = engine.execution_options(isolation_level="AUTOCOMMIT")


def get_engine() -> AsyncEngine:
    if _engine is None:
        raise RuntimeError("database not configured; call app.db.configure() first")
    return _engine


async def dispose() -> None:
    global _engine, _autocommit_engine
    if _engine is not None:
        await _engine.dispose()
    _engine = None
    _autocommit_engine = None


@asynccontextmanager
async def transaction() -> AsyncIterator[AsyncConnection]:
    """One unit of work: commits when the block ends, rolls back when it raises."""
    async with get_engine().begin() as conn:
        yield conn


@asynccontextmanager
async def single_statement() -> AsyncIterator[AsyncConnection]:
    """A connection in autocommit mode, for a use case that is exactly one SQL statement."""
    if _autocommit_engine is None:
        raise RuntimeError("database not configured; call app.db.configure() first")
    async with _autocommit_engine.connect() as conn:
        yield conn


@asynccontextmanager
async def read_only() -> AsyncIterator[AsyncConnection]:
    """Reads that need no transaction (each statement sees committed data)."""
    async with single_statement() as conn:
        yield conn
