"""Campaigns as configuration: create, list, read, change, delete, and the preview.

A campaign's targetings, bonus entries and events stay when it changes or is deleted: DELETE
hides the campaign (``deleted_at``) and stops its runs, so the entries that name it keep
meaning something.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import text

from app import db
from app.clock import clock
from app.db import Connection
from app.errors import NotFoundError, ValidationError
from app.schemas.campaigns import (
    Audience,
    CampaignAction,
    CampaignActionOut,
    CampaignCreate,
    CampaignOut,
    CampaignPatch,
    CampaignPreviewOut,
    CampaignPreviewRequest,
)
from app.services.campaigns.audience import audience_sql
from app.services.idempotency import IdempotencyRequest, Reply, run_once, run_recomputation
from app.services.pagination import decode_cursor, encode_cursor

COLUMNS = (
    "id, name, audience, bonus_points, reward_id, notify_only, message, holdout_percent, "
    "cooldown_days, active, starts_at, ends_at, created_at, updated_at, last_run_at"
)
_INSERT = text(
    "INSERT INTO campaigns (program_id, name, audience, bonus_points, reward_id, notify_only, "
    "message, holdout_percent, cooldown_days, active, starts_at, ends_at, created_at, "
    "updated_at) VALUES (:program_id, :name, CAST(:audience AS jsonb), :bonus_points, "
    ":reward_id, :notify_only, :message, :holdout_percent, :cooldown_days, :active, "
    f":starts_at, :ends_at, :now, :now) RETURNING {COLUMNS}"
)
_SELECT = (
    f"SELECT {COLUMNS} FROM campaigns "
    "WHERE program_id = :program_id AND id = :id AND deleted_at IS NULL"
)
_SELECT_ONE = text(_SELECT)
_SELECT_FOR_UPDATE = text(_SELECT + " FOR UPDATE")
_UPDATE = text(
    "UPDATE campaigns SET name = :name, audience = CAST(:audience AS jsonb), "
    "bonus_points = :bonus_points, reward_id = :reward_id, notify_only = :notify_only, "
    "message = :message, holdout_percent = :holdout_percent, cooldown_days = :cooldown_days, "
    "active = :active, starts_at = :starts_at, ends_at = :ends_at, updated_at = :now "
    f"WHERE program_id = :program_id AND id = :id RETURNING {COLUMNS}"
)
_LIST = text(
    f"SELECT {COLUMNS} FROM campaigns WHERE program_id = :program_id AND deleted_at IS NULL "
    "AND id < :before ORDER BY id DESC LIMIT :limit"
)
_DELETE = text(
    "UPDATE campaigns SET deleted_at = :now, active = false, run_cursor = NULL "
    "WHERE program_id = :program_id AND id = :id AND deleted_at IS NULL RETURNING id"
)
_PROGRAM_TIMEZONE = text("SELECT timezone FROM programs WHERE id = :program_id")


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def campaign_out(row: Any) -> CampaignOut:
    return CampaignOut(
        id=row.id,
        name=row.name,
        audience=_json(row.audience),
        action=CampaignActionOut(
            bonus_points=row.bonus_points,
            reward_id=row.reward_id,
            notify_only=True if row.notify_only else None,
        ),
        message=row.message,
        holdout_percent=row.holdout_percent,
        cooldown_days=row.cooldown_days,
        active=row.active,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_run_at=row.last_run_at,
    )


def _stored_audience(audience: Audience) -> str:
    return orjson.dumps(audience.model_dump(exclude_none=True)).decode()


def _action_params(action: CampaignAction) -> dict[str, Any]:
    return {
        "bonus_points": action.bonus_points,
        "reward_id": action.reward_id,
        "notify_only": bool(action.notify_only),
    }


_REWARD_EXISTS = text("SELECT 1 FROM rewards WHERE program_id = :program_id AND id = :id")


async def _check_reward(conn: Connection, program_id: int, action: dict[str, Any]) -> None:
    """A coupon action names a reward of this program (active or not: a campaign may give
    a reward that is not in the catalog)."""
    reward_id = action["reward_id"]
    if reward_id is None:
        return
    found = await conn.execute(_REWARD_EXISTS, {"program_id": program_id, "id": reward_id})
    if found.first() is None:
        raise ValidationError(
            f"No reward {reward_id} in this program.", loc=["body", "action", "reward_id"]
        )


def _check_window(starts_at: datetime | None, ends_at: datetime | None) -> None:
    if starts_at and ends_at and ends_at <= starts_at:
        raise ValidationError("ends_at must be later than starts_at", loc=["body", "ends_at"])


async def create_campaign(
    program_id: int, body: CampaignCreate, request: IdempotencyRequest | None
) -> Reply:
    action = _action_params(body.action)

    async def work(conn: Connection) -> Reply:
        await _check_reward(conn, program_id, action)
        row = (
            await conn.execute(
                _INSERT,
                {
                    "program_id": program_id,
                    "name": body.name,
                    "audience": _stored_audience(body.audience),
                    **action,
                    "message": body.message,
                    "holdout_percent": body.holdout_percent,
                    "cooldown_days": body.cooldown_days,
                    "active": body.active,
                    "starts_at": body.starts_at,
                    "ends_at": body.ends_at,
                    "now": clock.now(),
                },
            )
        ).one()
        return Reply(campaign_out(row).model_dump_json())

    return await run_once(program_id, request, work)


async def get_campaign(program_id: int, campaign_id: int) -> CampaignOut:
    async with db.read_only() as conn:
        row = (
            await conn.execute(_SELECT_ONE, {"program_id": program_id, "id": campaign_id})
        ).first()
    if row is None:
        raise NotFoundError(f"No campaign {campaign_id} in this program.")
    return campaign_out(row)


async def list_campaigns(
    program_id: int, limit: int, cursor: str | None
) -> tuple[list[CampaignOut], str | None]:
    before = decode_cursor(cursor) if cursor else 2**63 - 1
    async with db.read_only() as conn:
        rows = (
            await conn.execute(
                _LIST, {"program_id": program_id, "before": before, "limit": limit + 1}
            )
        ).all()
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1].id) if len(rows) > limit else None
    return [campaign_out(row) for row in page], next_cursor


async def update_campaign(program_id: int, campaign_id: int, body: CampaignPatch) -> CampaignOut:
    sent = body.model_fields_set
    action = _action_params(body.action) if body.action is not None else None
    async with db.transaction() as conn:
        current = (
            await conn.execute(_SELECT_FOR_UPDATE, {"program_id": program_id, "id": campaign_id})
        ).first()
        if current is None:
            raise NotFoundError(f"No campaign {campaign_id} in this program.")
        if action is not None:
            await _check_reward(conn, program_id, action)
        starts_at = body.starts_at if "starts_at" in sent else current.starts_at
        ends_at = body.ends_at if "ends_at" in sent else current.ends_at
        _check_window(starts_at, ends_at)
        row = (
            await conn.execute(
                _UPDATE,
                {
                    "program_id": program_id,
                    "id": campaign_id,
                    "name": body.name if body.name is not None else current.name,
                    "audience": _stored_audience(body.audience)
                    if body.audience is not None
                    else orjson.dumps(_json(current.audience)).decode(),
                    **(
                        action
                        if action is not None
                        else {
                            "bonus_points": current.bonus_points,
                            "reward_id": current.reward_id,
                            "notify_only": current.notify_only,
                        }
                    ),
                    "message": body.message if "message" in sent else current.message,
                    "holdout_percent": body.holdout_percent
                    if body.holdout_percent is not None
                    else current.holdout_percent,
                    "cooldown_days": body.cooldown_days
                    if body.cooldown_days is not None
                    else current.cooldown_days,
                    "active": body.active if body.active is not None else current.active,
                    "starts_at": starts_at,
                    "ends_at": ends_at,
                    "now": clock.now(),
                },
            )
        ).one()
    return campaign_out(row)


async def delete_campaign(program_id: int, campaign_id: int) -> None:
    async with db.transaction() as conn:
        deleted = (
            await conn.execute(
                _DELETE, {"program_id": program_id, "id": campaign_id, "now": clock.now()}
            )
        ).first()
    if deleted is None:
        raise NotFoundError(f"No campaign {campaign_id} in this program.")


def expected_holdout(members: int, holdout_percent: int) -> int:
    """members x holdout_percent / 100, rounded half up (integers only)."""
    return (members * holdout_percent * 2 + 100) // 200


async def program_timezone(conn: Connection, program_id: int) -> str:
    timezone: str | None = (
        await conn.execute(_PROGRAM_TIMEZONE, {"program_id": program_id})
    ).scalar()
    if timezone is None:
        raise NotFoundError("No such program.")
    return timezone


async def preview_audience(program_id: int, body: CampaignPreviewRequest) -> CampaignPreviewOut:
    """How many members the audience matches now, and the expected split. Writes nothing."""
    async with db.read_only() as conn:
        timezone = await program_timezone(conn, program_id)
        today = clock.now().astimezone(ZoneInfo(timezone)).date()
        sql = audience_sql(
            body.audience.model_dump(exclude_none=True),
            program_id,
            today,
            timezone,
            whole_program=True,
        )
        members: int = (
            await conn.execute(
                text(f"SELECT count(*) FROM members AS m {sql.joins} WHERE {sql.where}"),
                sql.params,
            )
        ).scalar_one()
    holdout = expected_holdout(members, body.holdout_percent)
    return CampaignPreviewOut(members=members, treated=members - holdout, holdout=holdout)


async def preview_once(
    program_id: int, body: CampaignPreviewRequest, request: IdempotencyRequest | None
) -> Reply:
    """The preview, honouring Idempotency-Key like every POST (it changes nothing)."""

    async def compute() -> Reply:
        return Reply((await preview_audience(program_id, body)).model_dump_json(), created=False)

    return await run_recomputation(program_id, request, compute)
