"""Helpers the insights tests share: hand-built order histories through the API, and the raw
rows those tests compute their expectations from."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text

from app import db
from tests.conftest import Program


async def buy(
    program: Program, member: str, order_id: str, amount: int, at: datetime
) -> dict[str, Any]:
    response = await program.post(
        "/v1/orders",
        json={
            "order_id": order_id,
            "member_id": member,
            "amount": amount,
            "currency": "CNY",
            "occurred_at": at.isoformat(),
        },
    )
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    return order


async def refund(program: Program, order_id: str, refund_id: str, amount: int) -> None:
    response = await program.post(
        f"/v1/orders/{order_id}/refunds", json={"refund_id": refund_id, "amount": amount}
    )
    assert response.status_code == 201, response.text


async def refresh(program: Program) -> dict[str, Any]:
    response = await program.post("/v1/insights/refresh")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def member(program: Program, external_id: str) -> dict[str, Any]:
    response = await program.get(f"/v1/members/{external_id}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def all_members(program: Program, query: str = "") -> list[dict[str, Any]]:
    """Every member through the list endpoint, following cursors."""
    found: list[dict[str, Any]] = []
    cursor = ""
    while True:
        separator = "&" if query else ""
        response = await program.get(f"/v1/members?limit=100{separator}{query}{cursor}")
        assert response.status_code == 200, response.text
        body = response.json()
        found.extend(body["data"])
        if body["next_cursor"] is None:
            return found
        cursor = f"&cursor={body['next_cursor']}"


async def rows(sql: str, **params: Any) -> list[Any]:
    async with db.read_only() as conn:
        return list((await conn.execute(text(sql), params)).all())


async def insights_by_member(program_id: int) -> dict[str, Any]:
    found = await rows(
        "SELECT m.external_id, mi.* FROM member_insights AS mi "
        "JOIN members AS m ON m.program_id = mi.program_id AND m.id = mi.member_id "
        "WHERE mi.program_id = :program_id",
        program_id=program_id,
    )
    return {row.external_id: row for row in found}
