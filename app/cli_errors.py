"""What the ``patron`` command prints instead of a traceback: one line that says what went
wrong, for the failures a user can fix (a database that cannot be reached, bad input)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import asyncpg

from app.errors import PatronError, ServiceUnavailableError

# Exit codes: 1 for a database that cannot be reached, 2 for input the command refuses (as
# argparse does for bad arguments).
UNREACHABLE = 1
BAD_INPUT = 2


def explain(exc: BaseException, database_url: str | None) -> tuple[str, int] | None:
    """``(message, exit code)`` for a failure the user can act on, else None (a bug: the
    traceback is worth more than a line)."""
    for cause in _chain(exc):
        reason = _connection_failure(cause)
        if reason is not None:
            return f"cannot connect to PostgreSQL at {_where(database_url)}: {reason}", UNREACHABLE
    if isinstance(exc, PatronError) and not isinstance(exc, ServiceUnavailableError):
        return f"{exc.detail}", BAD_INPUT
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _connection_failure(exc: BaseException) -> str | None:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    if isinstance(
        exc,
        asyncpg.InvalidAuthorizationSpecificationError
        | asyncpg.InvalidPasswordError
        | asyncpg.InvalidCatalogNameError
        | asyncpg.CannotConnectNowError
        | asyncpg.TooManyConnectionsError,
    ):
        # "password authentication failed for user ...", 'database "x" does not exist'.
        return str(exc)
    return None


def _where(database_url: str | None) -> str:
    if not database_url:
        return "the configured address"
    parts = urlsplit(database_url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
