"""The statement behind ``POST /v1/orders``, as a pgbench script: what PostgreSQL alone does
with exactly the SQL the service sends for an order, so the service's overhead shows as the
ratio of the two rates.

The script is built from the app's own compiled statement (``orders._CREATE_DIRECT``, the
one-round-trip form every bench order takes) with the values of an order the service really
wrote in this run (its items, breakdown and points); only the member (random, like wrk's) and
the order id (fresh) change per transaction. pgbench substitutes ``:name`` for its variables
even inside string literals, so text values travel hex-encoded and no literal holds a colon.
"""

from __future__ import annotations

import re
from typing import Any

import asyncpg

from app.db import compiled
from app.services.checkout import orders

_VARIABLE = re.compile(r"(?<!:):([A-Za-z_]\w*)")
_OWN_VARIABLES = {"mid", "oid"}


def _text(value: str) -> str:
    """A text literal pgbench leaves alone."""
    return f"convert_from(decode('{value.encode().hex()}', 'hex'), 'UTF8')"


async def order_statement_script(url: str, program_id: int, members: int) -> str:
    """The pgbench script (``-M prepared``) of one order per transaction."""
    conn = await asyncpg.connect(url)
    try:
        sample = await conn.fetchrow(
            "SELECT o.amount, o.currency, o.items::text AS items, o.breakdown::text AS breakdown,"
            "       o.points_earned, p.config_version"
            "  FROM orders AS o JOIN programs AS p ON p.id = o.program_id"
            " WHERE o.program_id = $1 ORDER BY o.id DESC LIMIT 1",
            program_id,
        )
    finally:
        await conn.close()
    if sample is None:
        raise RuntimeError("no order to copy: run the orders endpoint first")
    values: dict[str, Any] = {
        "program_id": str(program_id),
        "order_id": "'pgbench-' || CAST(:oid AS text)",
        "member": "'m' || CAST(:mid AS text)",
        "amount": str(sample["amount"]),
        "currency": _text(sample["currency"]),
        "items": _text(sample["items"]),
        "occurred_at": "now()",
        "now": "now()",
        "earned": str(sample["points_earned"]),
        "breakdown": _text(sample["breakdown"]),
        "hold_id": "NULL",
        "coupons": "NULL",
        "points": "0",
        "request_hash": "decode('00', 'hex')",
        "actor": _text("bench-pgbench"),
        "config_version": str(sample["config_version"]),
    }
    sql, names = compiled(orders._CREATE_DIRECT[False])
    body = re.sub(r"\$(\d+)", lambda m: f"({values[names[int(m[1]) - 1]]})", sql)
    # One line for pgbench: comments go first, or each would swallow the rest of the line.
    body = " ".join(re.sub(r"--[^\n]*", "", body).split())
    stray = set(_VARIABLE.findall(body)) - _OWN_VARIABLES
    if stray:
        raise RuntimeError(f"pgbench would read these as variables: {sorted(stray)}")
    return f"\\set mid random(1, {members})\n\\set oid random(1, 9000000000000000000)\n{body};\n"
