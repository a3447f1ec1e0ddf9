"""Helpers for the import tests: upload a file, run the worker's job until it is done."""

from __future__ import annotations

from typing import Any

import orjson

from app.clock import clock
from app.services.imports import runner
from tests.conftest import Program

# Tables an import may write, for "a dry run writes nothing".
BUSINESS_TABLES = (
    "members",
    "accounts",
    "member_insights",
    "point_entries",
    "point_lots",
    "orders",
    "events",
    "tier_changes",
)


def order_line(
    order_id: str,
    member: str = "m1",
    amount: int = 10000,
    occurred_at: str = "2025-06-01T10:00:00+00:00",
    **extra: Any,
) -> dict[str, Any]:
    """One line of an orders import file."""
    return {
        "order_id": order_id,
        "member_id": member,
        "amount": amount,
        "currency": "CNY",
        "occurred_at": occurred_at,
        **extra,
    }


def jsonl(*lines: Any) -> bytes:
    """A file: dicts become JSON lines, bytes and str are written as they are."""
    out = []
    for line in lines:
        if isinstance(line, bytes):
            out.append(line)
        elif isinstance(line, str):
            out.append(line.encode())
        else:
            out.append(orjson.dumps(line))
    return b"\n".join(out) + b"\n"


async def upload(
    program: Program, kind: str, body: bytes, dry_run: bool = False, **headers: str
) -> dict[str, Any]:
    response = await program.post(
        f"/v1/imports?type={kind}&dry_run={'true' if dry_run else 'false'}",
        content=body,
        headers={"Content-Type": "application/x-ndjson", **headers},
    )
    assert response.status_code == 202, response.text
    queued: dict[str, Any] = response.json()
    return queued


async def run_worker() -> None:
    while await runner.run_imports(clock.now()):
        pass


async def report(program: Program, import_id: str) -> dict[str, Any]:
    response = await program.get(f"/v1/imports/{import_id}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def run_import(
    program: Program, kind: str, body: bytes, dry_run: bool = False
) -> dict[str, Any]:
    queued = await upload(program, kind, body, dry_run)
    await run_worker()
    done = await report(program, queued["id"])
    assert done["status"] == "done", done
    return done


def counts(report: dict[str, Any]) -> tuple[int, int, int, int]:
    return (report["created"], report["updated"], report["unchanged"], report["rejected"])


def error_codes(report: dict[str, Any]) -> list[tuple[int, str]]:
    return [(error["line"], error["code"]) for error in report["errors"]]
