"""Programs (tenants), their settings and their API keys."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from sqlalchemy import text

from app import db
from app.clock import clock
from app.db import Connection
from app.errors import NotFoundError, ValidationError
from app.schemas.programs import ApiKeyCreated, ApiKeyOut, ProgramOut, ReferralSettings
from app.services.checkout.money import CURRENCY_MINOR_UNITS, decimal_text
from app.services.idempotency import IdempotencyRequest, Reply, run_once
from app.services.programs import api_keys

_PROGRAM_COLUMNS = (
    "id, name, currency, earn_rate, pending_days, points_expiry_days, hold_ttl_seconds, "
    "timezone, birthday_bonus_points, webhooks_allow_private_hosts, referral, created_at, "
    "updated_at, lifecycle_mature_days, lifecycle_churn_days, "
    "lifecycle_churn_interval_multiple, point_value_minor"
)


def _program_out(row: Any) -> ProgramOut:
    return ProgramOut(
        id=row.id,
        name=row.name,
        currency=row.currency,
        earn_rate=decimal_text(row.earn_rate),
        pending_days=row.pending_days,
        points_expiry_days=row.points_expiry_days,
        hold_ttl_seconds=row.hold_ttl_seconds,
        timezone=row.timezone,
        birthday_bonus_points=row.birthday_bonus_points,
        webhooks_allow_private_hosts=row.webhooks_allow_private_hosts,
        referral=ReferralSettings.model_validate(row.referral or {}),
        created_at=row.created_at,
        updated_at=row.updated_at,
        lifecycle_mature_days=row.lifecycle_mature_days,
        lifecycle_churn_days=row.lifecycle_churn_days,
        lifecycle_churn_interval_multiple=row.lifecycle_churn_interval_multiple,
        point_value_minor=decimal_text(row.point_value_minor),
    )


async def create_program(name: str, currency: str) -> tuple[int, str]:
    """A new program with an admin key. Returns (program id, the key, shown once)."""
    currency = currency.upper()
    if currency not in CURRENCY_MINOR_UNITS:
        raise ValidationError(f"Unknown ISO 4217 currency {currency!r}.", loc=["currency"])
    now = clock.now()
    async with db.transaction() as conn:
        program_id = (
            await conn.execute(
                text(
                    "INSERT INTO programs (name, currency, created_at, updated_at) "
                    "VALUES (:name, :currency, :now, :now) RETURNING id"
                ),
                {"name": name, "currency": currency, "now": now},
            )
        ).scalar_one()
        created = await insert_api_key(conn, program_id, "admin", [api_keys.ADMIN])
    return program_id, created.key or ""


async def get_program(program_id: int) -> ProgramOut:
    async with db.read_only() as conn:
        row = (
            await conn.execute(
                text(f"SELECT {_PROGRAM_COLUMNS} FROM programs WHERE id = :id"), {"id": program_id}
            )
        ).first()
    if row is None:
        raise NotFoundError("No such program.")
    return _program_out(row)


async def update_program(program_id: int, changes: dict[str, Any]) -> ProgramOut:
    """Apply the fields an admin sent; ``referral`` merges into the current referral settings."""
    async with db.transaction() as conn:
        current = (
            await conn.execute(
                text(f"SELECT {_PROGRAM_COLUMNS} FROM programs WHERE id = :id FOR UPDATE"),
                {"id": program_id},
            )
        ).first()
        if current is None:
            raise NotFoundError("No such program.")
        values = dict(changes)
        if "referral" in values:
            merged = {**ReferralSettings.model_validate(current.referral or {}).model_dump()}
            merged.update(values["referral"] or {})
            values["referral"] = orjson.dumps(merged).decode()
        if values:
            assignments = ", ".join(
                f"{column} = CAST(:{column} AS jsonb)"
                if column == "referral"
                else f"{column} = :{column}"
                for column in values
            )
            await conn.execute(
                text(f"UPDATE programs SET {assignments}, updated_at = :now WHERE id = :id"),
                {**values, "now": clock.now(), "id": program_id},
            )
        row = (
            await conn.execute(
                text(f"SELECT {_PROGRAM_COLUMNS} FROM programs WHERE id = :id"), {"id": program_id}
            )
        ).first()
    return _program_out(row)


async def insert_api_key(
    conn: Connection, program_id: int, name: str, scopes: list[str]
) -> ApiKeyCreated:
    key, key_hash, prefix = api_keys.generate_api_key()
    key_id = uuid.uuid4()
    now = clock.now()
    await conn.execute(
        text(
            "INSERT INTO api_keys (id, program_id, name, prefix, key_hash, scopes, created_at) "
            "VALUES (:id, :program_id, :name, :prefix, :hash, :scopes, :now)"
        ),
        {
            "id": key_id,
            "program_id": program_id,
            "name": name,
            "prefix": prefix,
            "hash": key_hash,
            "scopes": sorted(set(scopes)),
            "now": now,
        },
    )
    return ApiKeyCreated(
        id=str(key_id),
        name=name,
        scopes=sorted(set(scopes)),
        prefix=prefix,
        key=key,
        created_at=now,
    )


async def create_api_key(
    program_id: int, name: str, scopes: list[str], request: IdempotencyRequest | None
) -> tuple[Reply, ApiKeyCreated | None]:
    """Create a key. A replay returns the same metadata but never the secret again, because
    the secret is not stored anywhere (``key`` is null in a replayed response)."""
    created: list[ApiKeyCreated] = []

    async def work(conn: Connection) -> Reply:
        result = await insert_api_key(conn, program_id, name, scopes)
        created.append(result)
        return Reply(result.model_copy(update={"key": None}).model_dump_json())

    stored = await run_once(program_id, request, work)
    return stored, (created[0] if created and not stored.replayed else None)


async def list_api_keys(program_id: int) -> list[ApiKeyOut]:
    async with db.read_only() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT id, name, scopes, prefix, created_at, revoked_at FROM api_keys "
                    "WHERE program_id = :program_id ORDER BY created_at DESC, id"
                ),
                {"program_id": program_id},
            )
        ).all()
    return [
        ApiKeyOut(
            id=str(row.id),
            name=row.name,
            scopes=list(row.scopes),
            prefix=row.prefix,
            created_at=row.created_at,
            revoked_at=row.revoked_at,
        )
        for row in rows
    ]


async def revoke_api_key(program_id: int, key_id: str) -> None:
    try:
        parsed = uuid.UUID(key_id)
    except ValueError as exc:
        raise NotFoundError("No such API key.") from exc
    async with db.transaction() as conn:
        found = (
            await conn.execute(
                text(
                    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, :now) "
                    "WHERE id = :id AND program_id = :program_id RETURNING id"
                ),
                {"id": parsed, "program_id": program_id, "now": clock.now()},
            )
        ).first()
    if found is None:
        raise NotFoundError("No such API key.")
    api_keys.forget_key(parsed)
