"""Earn rules (campaigns): create, list, read, change and delete them.

A rule is configuration, not money: changing or deleting one never touches an order that
already earned with it (the order keeps its breakdown). At most ``MAX_ACTIVE_RULES`` rules of a
program are active at once, because every checkout evaluates all of them.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import text

from app import db
from app.clock import clock
from app.db import Connection
from app.errors import NotFoundError, ValidationError
from app.schemas.earn_rules import (
    EarnRuleConditions,
    EarnRuleConditionsOut,
    EarnRuleCreate,
    EarnRuleEffect,
    EarnRuleEffectOut,
    EarnRuleOut,
    EarnRulePatch,
)
from app.services.checkout.money import decimal_text
from app.services.idempotency import IdempotencyRequest, Reply, run_once
from app.services.pagination import decode_cursor, encode_cursor

MAX_ACTIVE_RULES = 100

_COLUMNS = "id, name, active, starts_at, ends_at, conditions, effect, created_at, updated_at"

_LOCK_PROGRAM = text(
    # NO KEY UPDATE: serialises rule changes of one program without blocking the inserts
    # elsewhere whose foreign keys take KEY SHARE locks on the program row.
    "SELECT 1 FROM programs WHERE id = :program_id FOR NO KEY UPDATE"
)
_COUNT_ACTIVE = text(
    "SELECT count(*) FROM earn_rules WHERE program_id = :program_id AND active AND id <> :except"
)
_INSERT = text(
    "INSERT INTO earn_rules (program_id, name, active, starts_at, ends_at, conditions, effect, "
    "created_at, updated_at) VALUES (:program_id, :name, :active, :starts_at, :ends_at, "
    f"CAST(:conditions AS jsonb), CAST(:effect AS jsonb), :now, :now) RETURNING {_COLUMNS}"
)
_SELECT_ONE = text(f"SELECT {_COLUMNS} FROM earn_rules WHERE program_id = :program_id AND id = :id")
_SELECT_FOR_UPDATE = text(
    f"SELECT {_COLUMNS} FROM earn_rules WHERE program_id = :program_id AND id = :id FOR UPDATE"
)
_UPDATE = text(
    "UPDATE earn_rules SET name = :name, active = :active, starts_at = :starts_at, "
    "ends_at = :ends_at, conditions = CAST(:conditions AS jsonb), "
    "effect = CAST(:effect AS jsonb), updated_at = :now "
    f"WHERE program_id = :program_id AND id = :id RETURNING {_COLUMNS}"
)
_LIST = text(
    f"SELECT {_COLUMNS} FROM earn_rules WHERE program_id = :program_id AND id < :before "
    "ORDER BY id DESC LIMIT :limit"
)
_DELETE = text("DELETE FROM earn_rules WHERE program_id = :program_id AND id = :id RETURNING id")


def _stored_conditions(conditions: EarnRuleConditions) -> dict[str, Any]:
    return conditions.model_dump(exclude_none=True)


def _stored_effect(effect: EarnRuleEffect) -> dict[str, Any]:
    if effect.multiplier is not None:
        return {"multiplier": decimal_text(effect.multiplier)}
    return {"bonus_points": effect.bonus_points}


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _rule_out(row: Any) -> EarnRuleOut:
    return EarnRuleOut(
        id=row.id,
        name=row.name,
        active=row.active,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        conditions=EarnRuleConditionsOut.model_validate(_json(row.conditions)),
        effect=EarnRuleEffectOut.model_validate(_json(row.effect)),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def _ensure_room_for_active_rule(
    conn: Connection, program_id: int, except_rule_id: int = 0
) -> None:
    """Lock the program's rule set and refuse one active rule too many."""
    await conn.execute(_LOCK_PROGRAM, {"program_id": program_id})
    active = (
        await conn.execute(_COUNT_ACTIVE, {"program_id": program_id, "except": except_rule_id})
    ).scalar_one()
    if active >= MAX_ACTIVE_RULES:
        raise ValidationError(
            f"A program has at most {MAX_ACTIVE_RULES} active earn rules; "
            "deactivate or delete one first.",
            loc=["body", "active"],
        )


async def create_earn_rule(
    program_id: int, body: EarnRuleCreate, request: IdempotencyRequest | None
) -> Reply:
    async def work(conn: Connection) -> Reply:
        if body.active:
            await _ensure_room_for_active_rule(conn, program_id)
        row = (
            await conn.execute(
                _INSERT,
                {
                    "program_id": program_id,
                    "name": body.name,
                    "active": body.active,
                    "starts_at": body.starts_at,
                    "ends_at": body.ends_at,
                    "conditions": orjson.dumps(_stored_conditions(body.conditions)).decode(),
                    "effect": orjson.dumps(_stored_effect(body.effect)).decode(),
                    "now": clock.now(),
                },
            )
        ).one()
        return Reply(_rule_out(row).model_dump_json())

    return await run_once(program_id, request, work)


async def get_earn_rule(program_id: int, rule_id: int) -> EarnRuleOut:
    async with db.read_only() as conn:
        row = (await conn.execute(_SELECT_ONE, {"program_id": program_id, "id": rule_id})).first()
    if row is None:
        raise NotFoundError(f"No earn rule {rule_id} in this program.")
    return _rule_out(row)


async def list_earn_rules(
    program_id: int, limit: int, cursor: str | None
) -> tuple[list[EarnRuleOut], str | None]:
    """A page of the program's rules, newest first."""
    before = decode_cursor(cursor) if cursor else 2**63 - 1
    async with db.read_only() as conn:
        rows = (
            await conn.execute(
                _LIST, {"program_id": program_id, "before": before, "limit": limit + 1}
            )
        ).all()
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1].id) if len(rows) > limit else None
    return [_rule_out(row) for row in page], next_cursor


async def update_earn_rule(program_id: int, rule_id: int, patch: EarnRulePatch) -> EarnRuleOut:
    """Apply the fields sent. Conditions merge one by one (null removes a condition); the
    effect is replaced whole; the result must still have ends_at after starts_at."""
    sent = patch.model_fields_set
    async with db.transaction() as conn:
        current = (
            await conn.execute(_SELECT_FOR_UPDATE, {"program_id": program_id, "id": rule_id})
        ).first()
        if current is None:
            raise NotFoundError(f"No earn rule {rule_id} in this program.")
        if not sent:
            return _rule_out(current)

        active = patch.active if patch.active is not None else current.active
        starts_at = patch.starts_at if "starts_at" in sent else current.starts_at
        ends_at = patch.ends_at if "ends_at" in sent else current.ends_at
        if starts_at is not None and ends_at is not None and ends_at <= starts_at:
            raise ValidationError("ends_at must be later than starts_at.", loc=["body", "ends_at"])
        conditions = dict(_json(current.conditions))
        if patch.conditions is not None:
            for name, value in patch.conditions.model_dump(exclude_unset=True).items():
                if value is None:
                    conditions.pop(name, None)
                else:
                    conditions[name] = value
        effect = _stored_effect(patch.effect) if patch.effect is not None else _json(current.effect)
        if active and not current.active:
            await _ensure_room_for_active_rule(conn, program_id, except_rule_id=rule_id)

        row = (
            await conn.execute(
                _UPDATE,
                {
                    "program_id": program_id,
                    "id": rule_id,
                    "name": patch.name if patch.name is not None else current.name,
                    "active": active,
                    "starts_at": starts_at,
                    "ends_at": ends_at,
                    "conditions": orjson.dumps(conditions).decode(),
                    "effect": orjson.dumps(effect).decode(),
                    "now": clock.now(),
                },
            )
        ).one()
    return _rule_out(row)


async def delete_earn_rule(program_id: int, rule_id: int) -> None:
    """Delete a rule. Orders it already applied to keep their ``rule:<id>`` lines."""
    async with db.single_statement() as conn:
        deleted = (await conn.execute(_DELETE, {"program_id": program_id, "id": rule_id})).first()
    if deleted is None:
        raise NotFoundError(f"No earn rule {rule_id} in this program.")
