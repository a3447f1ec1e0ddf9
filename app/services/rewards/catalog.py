"""The reward catalog: create, read, change and deactivate rewards, and a member's view of it
with ``eligible`` and ``reason`` (the same rules the redemption applies).

Rules the schema alone cannot check are checked here: kind and value agree (a discount has a
value, percent 1-100, other kinds none), the currency (when sent) is the program's, the tiers
named exist, ``starts_at`` is before ``ends_at``, and ``stock`` never drops below what is
already redeemed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text

from app import db
from app.clock import clock
from app.db import Connection
from app.errors import CurrencyMismatchError, NotFoundError, ValidationError
from app.schemas.rewards import RewardCreate, RewardPatch
from app.services import idempotency
from app.services.idempotency import IdempotencyRequest, Reply
from app.services.pagination import decode_cursor, encode_cursor
from app.services.rewards.coupons import dumps

REWARD_COLUMNS = """r.id, r.name, r.description, r.kind, r.points_cost, r.value, p.currency,
       r.min_order_amount, r.stock, r.per_member_limit, r.tiers, r.active, r.starts_at,
       r.ends_at, r.coupon_ttl_days, r.redeemed_count, r.created_at"""
_EDITABLE = (
    "name",
    "description",
    "kind",
    "points_cost",
    "value",
    "min_order_amount",
    "stock",
    "per_member_limit",
    "tiers",
    "active",
    "starts_at",
    "ends_at",
    "coupon_ttl_days",
)


# The reward's fields in api.md's order; ``stock_remaining`` is derived.
_WIRE_FIELDS = (
    "id",
    "name",
    "description",
    "kind",
    "points_cost",
    "value",
    "currency",
    "min_order_amount",
    "stock",
    "per_member_limit",
    "tiers",
    "active",
    "starts_at",
    "ends_at",
    "coupon_ttl_days",
    "redeemed_count",
)


def reward_wire(row: Any) -> dict[str, Any]:
    """A reward as api.md shows it, from a row of REWARD_COLUMNS."""
    reward = {name: row[name] for name in _WIRE_FIELDS}
    reward["stock_remaining"] = (
        None if row["stock"] is None else row["stock"] - row["redeemed_count"]
    )
    reward["created_at"] = row["created_at"]
    return reward


@dataclass(frozen=True, slots=True)
class Eligibility:
    eligible: bool
    reason: str | None


def not_offered(row: Any, tier_key: str | None, now: datetime) -> bool:
    """The reward is outside its dates, or not for this member's tier."""
    if row["starts_at"] is not None and now < row["starts_at"]:
        return True
    if row["ends_at"] is not None and now >= row["ends_at"]:
        return True
    return row["tiers"] is not None and tier_key not in row["tiers"]


def eligibility(
    row: Any, *, tier_key: str | None, available: int, held_by_member: int, now: datetime
) -> Eligibility:
    """Whether the member may redeem the reward now, and if not the first reason why (in the
    order the redemption checks them)."""
    if not_offered(row, tier_key, now):
        return Eligibility(False, "reward_not_eligible")
    limit = row["per_member_limit"]
    if limit is not None and held_by_member >= limit:
        return Eligibility(False, "reward_limit_reached")
    if row["stock"] is not None and row["redeemed_count"] >= row["stock"]:
        return Eligibility(False, "out_of_stock")
    if available < row["points_cost"]:
        return Eligibility(False, "insufficient_points")
    return Eligibility(True, None)


# --- Checking what an admin sends -------------------------------------------------------

_PROGRAM = text(
    """
SELECT p.currency, COALESCE(array_agg(t.key) FILTER (WHERE t.key IS NOT NULL), '{}') AS tiers
  FROM programs AS p LEFT JOIN tiers AS t ON t.program_id = p.id
 WHERE p.id = :program_id
 GROUP BY p.currency
"""
)


async def _check(
    conn: Connection, program_id: int, fields: dict[str, Any], currency: str | None
) -> None:
    program = (await conn.execute(_PROGRAM, {"program_id": program_id})).one()
    if currency is not None and currency != program.currency:
        raise CurrencyMismatchError(
            f"This program keeps {program.currency}; the reward was in {currency}."
        )
    kind, value = fields["kind"], fields["value"]
    if kind in ("fixed_discount", "percent_discount") and value is None:
        raise ValidationError(f"A {kind} reward needs a value.", loc=["body", "value"])
    if kind == "percent_discount" and not 1 <= value <= 100:
        raise ValidationError("A percent_discount value is 1 to 100.", loc=["body", "value"])
    if kind not in ("fixed_discount", "percent_discount") and value is not None:
        raise ValidationError(f"A {kind} reward has no value; send null.", loc=["body", "value"])
    unknown = sorted(set(fields["tiers"] or ()) - set(program.tiers))
    if unknown:
        raise ValidationError(f"No tier {unknown[0]!r} in this program.", loc=["body", "tiers"])
    starts_at, ends_at = fields["starts_at"], fields["ends_at"]
    if starts_at is not None and ends_at is not None and starts_at >= ends_at:
        raise ValidationError("starts_at must be before ends_at.", loc=["body", "ends_at"])


# --- Create, read, change, deactivate ---------------------------------------------------

_INSERT = text(
    f"""
WITH r AS (
    INSERT INTO rewards (program_id, name, description, kind, points_cost, value,
                         min_order_amount, stock, per_member_limit, tiers, active, starts_at,
                         ends_at, coupon_ttl_days, created_at, updated_at)
    VALUES (:program_id, :name, :description, :kind, :points_cost, :value, :min_order_amount,
            :stock, :per_member_limit, :tiers, :active, :starts_at, :ends_at, :coupon_ttl_days,
            :now, :now)
 RETURNING *
)
SELECT {REWARD_COLUMNS} FROM r JOIN programs AS p ON p.id = r.program_id
"""
)
_GET = text(
    f"""
SELECT {REWARD_COLUMNS}
  FROM rewards AS r JOIN programs AS p ON p.id = r.program_id
 WHERE r.program_id = :program_id AND r.id = :reward_id
"""
)
_LOCK = text("SELECT * FROM rewards WHERE program_id = :program_id AND id = :reward_id FOR UPDATE")
_UPDATE = text(
    f"""
WITH r AS (
    UPDATE rewards
       SET name = :name, description = :description, kind = :kind, points_cost = :points_cost,
           value = :value, min_order_amount = :min_order_amount, stock = :stock,
           per_member_limit = :per_member_limit, tiers = :tiers, active = :active,
           starts_at = :starts_at, ends_at = :ends_at, coupon_ttl_days = :coupon_ttl_days,
           updated_at = :now
     WHERE program_id = :program_id AND id = :reward_id
 RETURNING *
)
SELECT {REWARD_COLUMNS} FROM r JOIN programs AS p ON p.id = r.program_id
"""
)
_DEACTIVATE = text(
    "UPDATE rewards SET active = false, updated_at = :now "
    "WHERE program_id = :program_id AND id = :reward_id"
)
_LIST = text(
    f"""
SELECT {REWARD_COLUMNS}
  FROM rewards AS r JOIN programs AS p ON p.id = r.program_id
 WHERE r.program_id = :program_id AND r.id < :before
 ORDER BY r.id DESC
 LIMIT :limit
"""
)


async def create_reward(
    program_id: int, body: RewardCreate, request: IdempotencyRequest | None
) -> Reply:
    fields = body.model_dump(exclude={"currency"})

    async def work(conn: Connection) -> Reply:
        await _check(conn, program_id, fields, body.currency)
        row = (
            await conn.execute(_INSERT, {**fields, "program_id": program_id, "now": clock.now()})
        ).one()
        return Reply(dumps(reward_wire(row)))

    return await idempotency.run_once(program_id, request, work)


async def get_reward(program_id: int, reward_id: int) -> str:
    async with db.read_only() as conn:
        row = (await conn.execute(_GET, {"program_id": program_id, "reward_id": reward_id})).first()
    if row is None:
        raise NotFoundError(f"No reward {reward_id} in this program.")
    return dumps(reward_wire(row))


async def update_reward(program_id: int, reward_id: int, patch: RewardPatch) -> str:
    sent = patch.model_dump(exclude_unset=True, exclude={"currency"})
    async with db.transaction() as conn:
        current = (
            await conn.execute(_LOCK, {"program_id": program_id, "reward_id": reward_id})
        ).first()
        if current is None:
            raise NotFoundError(f"No reward {reward_id} in this program.")
        fields = {name: sent.get(name, current[name]) for name in _EDITABLE}
        if "kind" in sent and "value" not in sent and sent["kind"] != current.kind:
            # A new kind with the old value would rarely be meant; make the admin say it.
            fields["value"] = None
        await _check(conn, program_id, fields, patch.currency)
        if fields["stock"] is not None and fields["stock"] < current.redeemed_count:
            raise ValidationError(
                f"{current.redeemed_count} are already redeemed; stock cannot be less.",
                loc=["body", "stock"],
            )
        row = (
            await conn.execute(
                _UPDATE,
                {**fields, "program_id": program_id, "reward_id": reward_id, "now": clock.now()},
            )
        ).one()
    return dumps(reward_wire(row))


async def deactivate_reward(program_id: int, reward_id: int) -> None:
    """DELETE: the reward leaves the catalog; coupons already issued stay valid."""
    async with db.transaction() as conn:
        changed = await conn.execute_count(
            _DEACTIVATE, {"program_id": program_id, "reward_id": reward_id, "now": clock.now()}
        )
    if changed == 0:
        raise NotFoundError(f"No reward {reward_id} in this program.")


async def list_rewards(
    program_id: int, limit: int, cursor: str | None
) -> tuple[list[str], str | None]:
    before = decode_cursor(cursor) if cursor else 2**63 - 1
    async with db.read_only() as conn:
        rows = (
            await conn.execute(
                _LIST, {"program_id": program_id, "before": before, "limit": limit + 1}
            )
        ).all()
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1].id) if len(rows) > limit else None
    return [dumps(reward_wire(row)) for row in page], next_cursor


# --- A member's view --------------------------------------------------------------------

_MEMBER = text(
    """
SELECT m.id, a.available, a.tier_key
  FROM members AS m
  JOIN accounts AS a ON a.member_id = m.id AND a.program_id = m.program_id
 WHERE m.program_id = :program_id AND m.external_id = :member
"""
)
_MEMBER_CATALOG = text(
    f"""
SELECT {REWARD_COLUMNS},
       (SELECT count(*) FROM reward_redemptions AS d
         WHERE d.program_id = :program_id AND d.member_id = :member_id
           AND d.reward_id = r.id AND d.voided_at IS NULL)
           AS held_by_member
  FROM rewards AS r JOIN programs AS p ON p.id = r.program_id
 WHERE r.program_id = :program_id AND r.active AND r.id < :before
 ORDER BY r.id DESC
 LIMIT :limit
"""
)


async def member_catalog(
    program_id: int, member: str, limit: int, cursor: str | None
) -> tuple[list[str], str | None]:
    """The active catalog, each reward with ``eligible`` and ``reason`` for this member."""
    before = decode_cursor(cursor) if cursor else 2**63 - 1
    now = clock.now()
    async with db.read_only() as conn:
        found = (await conn.execute(_MEMBER, {"program_id": program_id, "member": member})).first()
        if found is None:
            raise NotFoundError(f"No member {member!r} in this program.")
        rows = (
            await conn.execute(
                _MEMBER_CATALOG,
                {
                    "program_id": program_id,
                    "member_id": found.id,
                    "before": before,
                    "limit": limit + 1,
                },
            )
        ).all()
    items = []
    for row in rows[:limit]:
        verdict = eligibility(
            row,
            tier_key=found.tier_key,
            available=found.available,
            held_by_member=row.held_by_member,
            now=now,
        )
        items.append(
            dumps({**reward_wire(row), "eligible": verdict.eligible, "reason": verdict.reason})
        )
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return items, next_cursor
