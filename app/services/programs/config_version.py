"""``programs.config_version``: a number that changes whenever what an order earns could change
(the program's currency, earn rate or time zone, any earn rule, any tier). The checkout caches
a program's earning setup per process, and its order statement proceeds only while this number
is the one the cache was read at (app/services/checkout/earning.py).

Every service that changes one of those bumps it in the same transaction. Triggers kept it
until migration 0015; they wrote ``programs`` (a reference table on Citus) from rows of
distributed tables, which Citus does not run safely.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from app.db import Connection

# The program settings an order's earning depends on.
EARNING_SETTINGS = ("currency", "earn_rate", "timezone")

_BUMP = text("UPDATE programs SET config_version = config_version + 1 WHERE id = :program_id")


async def bump_config_version(conn: Connection, program_id: int) -> None:
    await conn.execute(_BUMP, {"program_id": program_id})


def earning_settings_change(current: Any, changes: dict[str, Any]) -> bool:
    """Whether ``changes`` (to the program row ``current``) change what an order earns."""
    return any(
        name in changes and changes[name] != getattr(current, name) for name in EARNING_SETTINGS
    )
