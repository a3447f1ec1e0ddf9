"""The connection pool, the unit-of-work helpers every service uses, and the embedded
PostgreSQL.

A public service function is one unit of work: it calls ``transaction()`` (or, for a use case
that is one single SQL statement, ``single_statement()``, which runs it in autocommit mode:
PostgreSQL makes one statement atomic on its own, which saves the BEGIN and COMMIT round trips).

Statements are SQLAlchemy ``text()`` constructs, but they run on asyncpg directly: each is
compiled once (SQLAlchemy turns its ``:name`` parameters into asyncpg's ``$n``) and then
executed as a prepared statement from asyncpg's per-connection cache. SQLAlchemy's own
execution layer (connection and result wrappers, greenlet hops) cost about a fifth of the
service's CPU per checkout request (docs/performance.md), and the services use nothing of it
but ``text()``. ``Connection.execute`` keeps the small part of SQLAlchemy's result API the
services use (``first``, ``one``, ``scalar``, ``scalars``, ``all``, ``mappings``), and rows
read like SQLAlchemy's (``row.column``).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import socket
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

import asyncpg
import orjson
from sqlalchemy import TextClause
from sqlalchemy.dialects.postgresql.asyncpg import dialect as AsyncpgDialect

from app.config import Settings, get_settings
from app.errors import ServiceUnavailableError

log = logging.getLogger("patron.db")
T = TypeVar("T")

# What a violated unique, foreign-key or check constraint raises (``.constraint_name``).
IntegrityError = asyncpg.IntegrityConstraintViolationError
DatabaseError = asyncpg.PostgresError

_engine: Engine | None = None
_embedded_server: Any = None


class Row(asyncpg.Record):  # type: ignore[misc]
    """A result row, read by name (``row.points``), key (``row["points"]``) or position."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class NoRowError(LookupError):
    """``one()`` or ``scalar_one()`` found no row, or more than one."""


class Values(Generic[T]):
    """One value per row: the rows themselves (``Result``), their first column
    (``scalars()``) or each row as a dict (``mappings()``)."""

    __slots__ = ("values",)

    def __init__(self, values: list[T]) -> None:
        self.values = values

    def __iter__(self) -> Iterator[T]:
        return iter(self.values)

    def all(self) -> list[T]:
        return self.values

    def first(self) -> T | None:
        return self.values[0] if self.values else None


class Result(Values[Row]):
    """The rows a statement returned."""

    __slots__ = ()

    def one(self) -> Row:
        if len(self.values) != 1:
            raise NoRowError(f"expected exactly one row, got {len(self.values)}")
        return self.values[0]

    def scalar(self) -> Any:
        return self.values[0][0] if self.values else None

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalars(self) -> Values[Any]:
        return Values([row[0] for row in self.values])

    def mappings(self) -> Values[dict[str, Any]]:
        return Values([dict(row.items()) for row in self.values])


_DIALECT = AsyncpgDialect()  # type: ignore[no-untyped-call]
# SQL text -> (asyncpg SQL, parameter names in $n order). Statements are module constants,
# so this stays small; the few built per call are keyed by their text all the same.
_COMPILED: dict[str, tuple[str, tuple[str, ...]]] = {}


def compiled(statement: TextClause | str) -> tuple[str, tuple[str, ...]]:
    """The asyncpg form of a statement: ``$n`` placeholders and the names they stand for."""
    key = statement if isinstance(statement, str) else statement.text
    found = _COMPILED.get(key)
    if found is None:
        clause = statement if isinstance(statement, TextClause) else TextClause(statement)
        result = clause.compile(dialect=_DIALECT)
        found = (str(result), tuple(result.positiontup or ()))
        _COMPILED[key] = found
    return found


# Citus names a constraint on a shard after the table's, plus "_" and the shard's id; from a
# worker the error names it only in its message.
_SHARD_SUFFIX = re.compile(r"_[0-9]+$")
_QUOTED_CONSTRAINT = re.compile(r'constraint "([^"]+)"')


def violated_constraint(exc: asyncpg.IntegrityConstraintViolationError) -> str | None:
    """The violated constraint's name as the schema has it, also when a Citus shard reported
    it (the schema's own names never end in digits)."""
    name: str | None = exc.constraint_name
    if name is None:
        found = _QUOTED_CONSTRAINT.search(str(exc.args[0]) if exc.args else "")
        name = found.group(1) if found else None
    return None if name is None else _SHARD_SUFFIX.sub("", name)


_UNIQUE_VIOLATION_MESSAGE = "duplicate key value violates unique constraint "


def unique_violation_from_shard_copy(
    exc: asyncpg.InternalServerError,
) -> asyncpg.UniqueViolationError | None:
    """The unique violation an internal error stands for, if it is one. On Citus an INSERT
    CTE that reads another CTE runs as a step of its own: its rows are pulled to the
    coordinator and copied into the shard, and a unique violation met in that copy arrives as
    an internal error (XX000) with PostgreSQL's own message. The idempotency wrapper and the
    natural keys rely on seeing it as the violation it is."""
    message = str(exc.args[0]) if exc.args else ""
    if not message.startswith(_UNIQUE_VIOLATION_MESSAGE):
        return None
    quoted = message[len(_UNIQUE_VIOLATION_MESSAGE) :].strip('"')
    violation: asyncpg.UniqueViolationError = asyncpg.UniqueViolationError.new(
        {"M": message, "C": "23505", "n": quoted, "D": exc.detail or ""}
    )
    return violation


class Connection:
    """One pooled connection, inside or outside a transaction."""

    __slots__ = ("raw",)

    def __init__(self, raw: asyncpg.Connection) -> None:
        self.raw = raw

    async def execute(
        self, statement: TextClause | str, params: Mapping[str, Any] | None = None
    ) -> Result:
        sql, names = compiled(statement)
        try:
            if names:
                assert params is not None, "the statement has parameters"
                rows = await self.raw.fetch(sql, *[params[name] for name in names])
            else:
                rows = await self.raw.fetch(sql)
        except asyncpg.InternalServerError as exc:
            violation = unique_violation_from_shard_copy(exc)
            if violation is None:
                raise
            raise violation from exc
        return Result(rows)

    async def execute_count(
        self, statement: TextClause | str, params: Mapping[str, Any] | None = None
    ) -> int:
        """Run a statement that returns no rows; how many rows it changed (its status tag,
        e.g. ``UPDATE 3``)."""
        sql, names = compiled(statement)
        args = [params[name] for name in names] if names and params is not None else []
        status: str = await self.raw.execute(sql, *args)
        count = status.rpartition(" ")[2]
        return int(count) if count.isdigit() else 0

    def savepoint(self) -> Any:
        """``async with conn.savepoint():`` rolls back only its block when it raises."""
        return self.raw.transaction()

    async def begin(self) -> asyncpg.transaction.Transaction:
        """Start a transaction that the caller commits or rolls back itself."""
        transaction = self.raw.transaction()
        await transaction.start()
        return transaction


async def _prepare_connection(raw: asyncpg.Connection) -> None:
    # json and jsonb arrive decoded and are sent as JSON text, as the services expect.
    for name in ("json", "jsonb"):
        await raw.set_type_codec(
            name, schema="pg_catalog", encoder=_json_text, decoder=orjson.loads, format="text"
        )


async def _prepare_pooled_connection(raw: asyncpg.Connection) -> None:
    # Behind a transaction-mode pooler a statement outside a transaction may reach another
    # server connection between its Parse and its Bind: the codecs' type lookups run in one.
    async with raw.transaction():
        await _prepare_connection(raw)


async def _keep_session(raw: asyncpg.Connection) -> None:
    """Nothing to reset when a connection goes back to the pool (asyncpg rolls back an open
    transaction itself). The services keep no session state (settings are ``SET LOCAL``,
    advisory locks transaction-level), and asyncpg's default reset is a round trip of four
    statements on every release."""


def _connection_settings(settings: Settings) -> dict[str, str]:
    """What every statement runs under, in either pooling mode."""
    return {
        "timezone": "UTC",
        # The hot statements are short; JIT compilation only adds latency to them.
        "jit": "off",
        # Statements are prepared once per connection; a generic plan saves re-planning the
        # multi-CTE ledger statements on every execution (not on Citus: Settings).
        "plan_cache_mode": "force_generic_plan" if settings.generic_plans else "force_custom_plan",
        "statement_timeout": str(settings.statement_timeout_ms),
        "lock_timeout": str(settings.statement_timeout_ms),
    }


def _session_pooling_options(settings: Settings) -> dict[str, Any]:
    """A connection of its own to PostgreSQL (or a session-mode pooler): statements prepared
    once and cached, settings sent once at connect."""
    return {
        "init": _prepare_connection,
        # Every statement of every service fits; the large ones (insights) too.
        "statement_cache_size": 1024,
        "max_cacheable_statement_size": 64 * 1024,
        "server_settings": {"application_name": "patron", **_connection_settings(settings)},
    }


def _transaction_pooling_options() -> dict[str, Any]:
    """A server connection shared by transaction (PgBouncer's transaction mode): a named
    prepared statement would outlive the transaction on a connection other clients then use,
    and a startup parameter would be refused or dropped. So no statement cache (asyncpg
    prepares each statement unnamed, in its transaction) and only the parameters every pooler
    passes on; the rest is ``set_local_statement`` at the start of each transaction."""
    return {
        "init": _prepare_pooled_connection,
        "statement_cache_size": 0,
        "server_settings": {"application_name": "patron"},
    }


def set_local_statement(settings: Settings) -> str:
    """The settings of ``_connection_settings`` for one transaction, in one round trip."""
    return "; ".join(
        f"SET LOCAL {name} = '{value}'" for name, value in _connection_settings(settings).items()
    )


def _json_text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


# Whether the running task holds a connection. A unit of work uses one connection: a second
# one taken while the first holds a member's lock can wait for a pool (or PgBouncer's server
# pool) full of requests waiting for that same lock. Tests turn the check on.
_holding: contextvars.ContextVar[bool] = contextvars.ContextVar("patron_db_holding", default=False)
_refuse_second_connection = False


class SecondConnectionError(RuntimeError):
    """A task asked for a connection while it held one (only when the check is on)."""


def refuse_second_connection(refuse: bool = True) -> None:
    global _refuse_second_connection
    _refuse_second_connection = refuse


@contextmanager
def allow_second_connection() -> Iterator[None]:
    """Inside this block the task may take another connection: for work that cannot wait on
    a lock the first one holds (a read-only companion), or a test standing for another
    process."""
    holding = _holding.set(False)
    try:
        yield
    finally:
        _holding.reset(holding)


# Called with +1 when a connection is taken from the pool and -1 when it goes back
# (app.metrics reports the sum as connections in use).
_pool_use_listeners: list[Callable[[int], None]] = []


def on_pool_use(listener: Callable[[int], None]) -> None:
    _pool_use_listeners.append(listener)


class Engine:
    """The pool of one database URL. It opens connections on first use, in the event loop
    that uses it, so creating one needs no loop and no reachable database."""

    def __init__(self, url: str, settings: Settings) -> None:
        self.url = to_plain_url(url)
        self._settings = settings
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        # In transaction pooling mode, the settings each transaction starts with.
        self._set_local = (
            set_local_statement(settings) if settings.database_pooling == "transaction" else None
        )

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    self._pool = await self._open_pool()
        return self._pool

    async def _open_pool(self) -> asyncpg.Pool:
        settings = self._settings
        return await asyncpg.create_pool(
            self.url,
            min_size=0,
            max_size=settings.pool_size + settings.pool_max_overflow,
            max_inactive_connection_lifetime=60,
            timeout=CONNECT_TIMEOUT_SECONDS,
            record_class=Row,
            reset=_keep_session,
            **(
                _transaction_pooling_options()
                if self._set_local is not None
                else _session_pooling_options(settings)
            ),
        )

    @asynccontextmanager
    async def _acquire(self) -> AsyncIterator[Connection]:
        if _refuse_second_connection and _holding.get():
            raise SecondConnectionError("this task already holds a connection")
        pool = await self._get_pool()
        raw = await acquire_or_unavailable(pool, self._settings.pool_timeout_seconds)
        for listener in _pool_use_listeners:
            listener(1)
        holding = _holding.set(True)
        try:
            yield Connection(raw)
        except Exception as exc:
            if is_outage(exc, raw):
                raise unavailable(exc, raw) from exc
            raise
        finally:
            _holding.reset(holding)
            for listener in _pool_use_listeners:
                listener(-1)
            await pool.release(raw)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Connection]:
        """A connection outside a transaction; in transaction pooling mode, inside one all the
        same (a pooler may hand each statement outside a transaction to another server
        connection), which changes nothing for one statement or for reads at READ COMMITTED."""
        if self._set_local is None:
            async with self._acquire() as conn:
                yield conn
        else:
            async with self.begin() as conn:
                yield conn

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[Connection]:
        async with self._acquire() as conn, conn.raw.transaction():
            if self._set_local is not None:
                await conn.raw.execute(self._set_local)
            yield conn

    async def dispose(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()


# Outages: how a client is told to wait, and which failures are one. A request that meets one
# answers 503 ``service_unavailable`` with Retry-After, never a 500 (api.md Conventions); a
# connection that broke is closed, not handed to the next request, so the pool recovers by
# itself once PostgreSQL is back.
RETRY_AFTER_SECONDS = 2
# How long opening one connection may take (asyncpg waits 60 s by default).
CONNECT_TIMEOUT_SECONDS = 5.0
# asyncpg's error for an argument it cannot encode: a bug or bad input, not an outage.
_ArgumentError = asyncpg.exceptions._base.DataError
_OUTAGE_ERRORS = (
    ConnectionError,  # refused, reset, aborted
    socket.gaierror,  # the host name does not resolve
    asyncpg.PostgresConnectionError,  # class 08: the connection is gone
    asyncpg.CannotConnectNowError,  # the server is starting up or shutting down
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,  # the role's or the server's connection limit
)


def is_outage(exc: BaseException, raw: asyncpg.Connection | None = None) -> bool:
    """Whether ``exc`` says the database is unreachable or out of connections, rather than
    that the request or the code is wrong."""
    if isinstance(exc, _OUTAGE_ERRORS):
        return True
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError) and not isinstance(
        exc, _ArgumentError
    ):
        # A connection that broke under a statement: closed, or its protocol left in the
        # middle of an operation ("cannot switch to state 12; another operation (2) is in
        # progress": the server ended it while it sat idle in the pool).
        return raw is None or _is_broken(raw) or "another operation" in str(exc)
    return False


def _is_broken(raw: asyncpg.Connection) -> bool:
    try:
        return bool(raw.is_closed())
    except asyncpg.InterfaceError:
        # The pool already detached a connection that closed under it.
        return True


def unavailable(exc: Exception, raw: asyncpg.Connection | None) -> ServiceUnavailableError:
    """What a request that met the outage ``exc`` answers; the broken connection is closed so
    that the pool opens a new one."""
    if raw is not None and not _is_broken(raw):
        raw.terminate()
    log.warning("database unavailable: %s: %s", type(exc).__name__, exc)
    return ServiceUnavailableError(
        RETRY_AFTER_SECONDS,
        "The database is unreachable or out of connections; nothing was done. "
        f"Retry in {RETRY_AFTER_SECONDS} seconds.",
    )


async def acquire_or_unavailable(pool: asyncpg.Pool, wait_seconds: float) -> asyncpg.Connection:
    """A connection from the pool; ``ServiceUnavailableError`` when none frees up within
    ``wait_seconds`` or a new one cannot be opened (any socket error: no route, refused,
    timed out)."""
    try:
        return await pool.acquire(timeout=wait_seconds)
    except OSError as exc:
        raise unavailable(exc, None) from exc
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        if is_outage(exc):
            raise unavailable(exc, None) from exc
        raise


def to_plain_url(url: str) -> str:
    """The libpq form of a URL (for asyncpg, psql and pgbench); ``postgres://``,
    ``postgresql://`` and SQLAlchemy's ``postgresql+asyncpg://`` are all accepted."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    raise ValueError("DATABASE_URL must be a postgresql:// URL")


def to_async_url(url: str) -> str:
    """SQLAlchemy's form of a URL, for Alembic."""
    return "postgresql+asyncpg://" + to_plain_url(url)[len("postgresql://") :]


def start_embedded(data_dir: Path) -> str:
    """Start (or reuse) an embedded PostgreSQL in ``data_dir`` and return its URL.

    The server stops when the last process that started it exits.
    """
    global _embedded_server
    with warnings.catch_warnings():
        # platformdirs warns on every start where XDG_RUNTIME_DIR is unset (containers, CI)
        # and falls back to /tmp, which is fine for the server's socket.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
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
    logging.getLogger("patron.embedded").info(
        "embedded PostgreSQL running, its data in %s", data_dir / "pg"
    )
    return url


def resolve_database_url(settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    if settings.database_url:
        return settings.database_url
    return start_embedded(settings.data_dir)


def resolve_migration_url(settings: Settings | None = None) -> str:
    """The direct connection migrations use (``PATRON_MIGRATION_DATABASE_URL``), by default the
    service's own."""
    settings = settings or get_settings()
    return settings.migration_database_url or resolve_database_url(settings)


def make_engine(url: str, settings: Settings | None = None) -> Engine:
    return Engine(url, settings or get_settings())


def configure(engine: Engine) -> None:
    global _engine
    _engine = engine


def get_engine() -> Engine:
    if _engine is None:
        raise RuntimeError("database not configured; call app.db.configure() first")
    return _engine


async def dispose() -> None:
    global _engine
    if _engine is not None:
        await _engine.dispose()
    _engine = None


@asynccontextmanager
async def transaction() -> AsyncIterator[Connection]:
    """One unit of work: commits when the block ends, rolls back when it raises."""
    async with get_engine().begin() as conn:
        yield conn


@asynccontextmanager
async def single_statement() -> AsyncIterator[Connection]:
    """A connection in autocommit mode, for a use case that is exactly one SQL statement."""
    async with get_engine().connect() as conn:
        yield conn


@asynccontextmanager
async def read_only() -> AsyncIterator[Connection]:
    """Reads that need no transaction (each statement sees committed data)."""
    async with get_engine().connect() as conn:
        yield conn
