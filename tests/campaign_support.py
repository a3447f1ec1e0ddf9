"""Helpers the campaign tests share."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from app import db
from tests.conftest import Program


async def create(program: Program, **fields: Any) -> dict[str, Any]:
    body = {"name": "Test campaign", "audience": {}, "action": {"notify_only": True}, **fields}
    response = await program.post("/v1/campaigns", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def preview(program: Program, audience: dict[str, Any], holdout: int = 0) -> int:
    response = await program.post(
        "/v1/campaigns/preview", json={"audience": audience, "holdout_percent": holdout}
    )
    assert response.status_code == 200, response.text
    members: int = response.json()["members"]
    return members


async def run(program: Program, campaign_id: int) -> dict[str, Any]:
    response = await program.post(f"/v1/campaigns/{campaign_id}/run")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def targetings(program_id: int, campaign_id: int) -> list[Any]:
    async with db.read_only() as conn:
        return list(
            (
                await conn.execute(
                    text(
                        'SELECT m.external_id, m.id AS member_id, t."group", t.points, '
                        "t.entry_id, t.run_number, t.targeted_at "
                        "FROM campaign_targetings AS t JOIN members AS m "
                        "ON m.program_id = t.program_id AND m.id = t.member_id "
                        "WHERE t.program_id = :program_id AND t.campaign_id = :campaign_id "
                        "ORDER BY m.id, t.run_number"
                    ),
                    {"program_id": program_id, "campaign_id": campaign_id},
                )
            ).all()
        )


async def add_members_in_bulk(program_id: int, count: int, prefix: str = "bulk") -> None:
    """Members with empty accounts and prospect insights, written set-based (as the API
    would create them, minus the events), for tests that need thousands."""
    async with db.transaction() as conn:
        await conn.execute(
            text(
                """
WITH made AS (
    INSERT INTO members (program_id, external_id, created_at, updated_at)
    SELECT :program_id, :prefix || '-' || n, now(), now() FROM generate_series(1, :count) AS n
    RETURNING id
), acc AS (
    INSERT INTO accounts (member_id, program_id, updated_at)
    SELECT id, :program_id, now() FROM made
)
INSERT INTO member_insights (member_id, program_id, segment, lifecycle, orders_count,
                             net_spend, changed_at)
SELECT id, :program_id, 'prospects', 'prospect', 0, 0, now() FROM made
"""
            ),
            {"program_id": program_id, "prefix": prefix, "count": count},
        )
