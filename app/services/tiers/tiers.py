"""VIP tiers: CRUD, the tier policy, previews, and a member's progress.

Saving tiers or the policy marks the program for re-evaluation in the same transaction and
answers with what that re-evaluation does (computed by the same dry run a preview uses).
Small programs are then re-evaluated before the response returns; large ones by the worker,
in batches, resumable.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import text

from app import db
from app.clock import clock
from app.db import Connection, IntegrityError
from app.errors import DuplicateError, NotFoundError, ValidationError
from app.schemas.tiers import (
    MemberTierOut,
    NextTier,
    Reevaluation,
    TierCreate,
    TierOut,
    TierPolicy,
    TierPolicyOut,
    TierPreviewOut,
    TierPreviewRequest,
    TierRef,
)
from app.services.checkout.money import decimal_text
from app.services.idempotency import (
    IdempotencyRequest,
    Reply,
    constraint_name,
    run_once,
    run_recomputation,
)
from app.services.ledger import accounts
from app.services.tiers import tier_evaluation
from app.services.tiers.tier_rules import QUALIFYING_CTES, dry_run_sql

# Programs up to this size are re-evaluated before the response; larger ones in the worker.
INLINE_REEVALUATION_LIMIT = 20_000


class DuplicateTierKeyError(DuplicateError):
    code = "tier_key_taken"
    title = "A tier with this key already exists"


class DuplicateThresholdError(DuplicateError):
    code = "tier_threshold_taken"
    title = "Another tier has this threshold"


_TIERS = text(
    """
SELECT t.key, t.name, t.threshold, t.earn_multiplier, t.benefits, t.created_at, t.updated_at,
       (SELECT count(*) FROM accounts AS a
         WHERE a.program_id = :program_id AND a.tier_key = t.key) AS members
  FROM tiers AS t
 WHERE t.program_id = :program_id AND (CAST(:key AS text) IS NULL OR t.key = :key)
 ORDER BY t.threshold
"""
)


def _tier_out(row: Any) -> TierOut:
    return TierOut(
        key=row.key,
        name=row.name,
        threshold=row.threshold,
        earn_multiplier=decimal_text(row.earn_multiplier),
        benefits=list(row.benefits),
        members=row.members,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def list_tiers(program_id: int) -> list[TierOut]:
    async with db.read_only() as conn:
        rows = (await conn.execute(_TIERS, {"program_id": program_id, "key": None})).all()
    return [_tier_out(row) for row in rows]


async def _read_tier(conn: Connection, program_id: int, key: str) -> TierOut:
    row = (await conn.execute(_TIERS, {"program_id": program_id, "key": key})).first()
    if row is None:
        raise NotFoundError(f"No tier {key!r} in this program.")
    return _tier_out(row)


async def get_tier(program_id: int, key: str) -> TierOut:
    async with db.read_only() as conn:
        return await _read_tier(conn, program_id, key)


# --- Re-evaluation bookkeeping -------------------------------------------------------------


async def _mark_dirty_and_count(
    conn: Connection, program_id: int
) -> tuple[Reevaluation, dict[str, int]]:
    """In the saving transaction: flag the program for re-evaluation and count what it does
    (and how many members each tier will have once it is done)."""
    now = clock.now()
    await conn.execute(
        text(
            # Tiers change what an order earns (their multipliers): config_version too.
            "UPDATE programs SET tiers_dirty_since = :now, tiers_reevaluated_through = 0, "
            "config_version = config_version + 1 WHERE id = :program_id"
        ),
        {"now": now, "program_id": program_id},
    )
    rows = (
        await conn.execute(
            text(dry_run_sql(proposal=False)), {"program_id": program_id, "now": now}
        )
    ).all()
    members = sum(row.members for row in rows)
    moved = [row for row in rows if row.new_key != row.current_key]
    holders: dict[str, int] = {}
    for row in rows:
        if row.new_key is not None:
            holders[row.new_key] = holders.get(row.new_key, 0) + row.members
    plan = Reevaluation(
        status="done" if members <= INLINE_REEVALUATION_LIMIT else "scheduled",
        members=members,
        upgraded=sum(row.members for row in moved if row.movement == "up"),
        downgraded=sum(row.members for row in moved if row.movement == "down"),
        grace_started=sum(
            row.members
            for row in rows
            if row.movement == "down" and not row.grace_over and row.grace_not_started
        ),
    )
    return plan, holders


async def _finish_reevaluation(program_id: int, plan: Reevaluation) -> None:
    """Small programs: run the flagged re-evaluation now, so the answer is already true."""
    tier_evaluation.forget_program(program_id)
    if plan.status != "done":
        return
    while await tier_evaluation.continue_program_reevaluation(program_id, clock.now()):
        pass


def _raise_duplicate(exc: IntegrityError) -> None:
    name = constraint_name(exc)
    if name == "uq_tiers_program_id_key":
        raise DuplicateTierKeyError("A tier with this key already exists.") from exc
    if name == "uq_tiers_program_id_threshold":
        raise DuplicateThresholdError("Another tier has this threshold.") from exc
    raise exc


async def _saved(
    program_id: int, request: IdempotencyRequest | None, change: Any, *, created: bool
) -> Reply:
    plan_holder: list[Reevaluation] = []

    async def work(conn: Connection) -> Reply:
        body = await change(conn)
        plan, holders = await _mark_dirty_and_count(conn, program_id)
        plan_holder.append(plan)
        if "key" in body:
            body["members"] = holders.get(body["key"], 0)
        body["reevaluation"] = plan.model_dump(mode="json")
        return Reply(orjson.dumps(body).decode(), created=created)

    try:
        stored = await run_once(program_id, request, work)
    except IntegrityError as exc:
        _raise_duplicate(exc)
        raise
    if plan_holder and not stored.replayed:
        await _finish_reevaluation(program_id, plan_holder[0])
    return stored


async def create_tier(
    program_id: int, body: TierCreate, request: IdempotencyRequest | None
) -> Reply:
    async def change(conn: Connection) -> dict[str, Any]:
        now = clock.now()
        await conn.execute(
            text(
                "INSERT INTO tiers (program_id, key, name, threshold, earn_multiplier, benefits, "
                "created_at, updated_at) VALUES (:program_id, :key, :name, :threshold, "
                ":multiplier, :benefits, :now, :now)"
            ),
            {
                "program_id": program_id,
                "key": body.key,
                "name": body.name,
                "threshold": body.threshold,
                "multiplier": body.earn_multiplier,
                "benefits": body.benefits,
                "now": now,
            },
        )
        return (await _read_tier(conn, program_id, body.key)).model_dump(mode="json")

    return await _saved(program_id, request, change, created=True)


async def update_tier(program_id: int, key: str, changes: dict[str, Any]) -> Reply:
    async def change(conn: Connection) -> dict[str, Any]:
        columns = {"earn_multiplier": "earn_multiplier"}
        assignments = ", ".join(f"{columns.get(c, c)} = :{c}" for c in changes)
        updated = (
            await conn.execute(
                text(
                    f"UPDATE tiers SET {assignments + ', ' if assignments else ''}"
                    "updated_at = :now WHERE program_id = :program_id AND key = :key RETURNING id"
                ),
                {**changes, "now": clock.now(), "program_id": program_id, "key": key},
            )
        ).first()
        if updated is None:
            raise NotFoundError(f"No tier {key!r} in this program.")
        return (await _read_tier(conn, program_id, key)).model_dump(mode="json")

    return await _saved(program_id, None, change, created=False)


async def delete_tier(program_id: int, key: str) -> Reply:
    """Delete a tier. Its members are re-evaluated at once against the tiers that remain
    (no grace: the tier they held no longer exists)."""

    async def change(conn: Connection) -> dict[str, Any]:
        found = (
            await conn.execute(
                text(
                    "SELECT 1 FROM tiers WHERE program_id = :program_id AND key = :key FOR UPDATE"
                ),
                {"program_id": program_id, "key": key},
            )
        ).first()
        if found is None:
            raise NotFoundError(f"No tier {key!r} in this program.")
        await accounts.detach_tier(conn, program_id, key)
        await conn.execute(
            text("DELETE FROM tiers WHERE program_id = :program_id AND key = :key"),
            {"program_id": program_id, "key": key},
        )
        return {}

    return await _saved(program_id, None, change, created=False)


# --- Policy ----------------------------------------------------------------------------------

_POLICY = text(
    "SELECT tier_metric, tier_window_days, tier_grace_days FROM programs WHERE id = :program_id"
)


async def get_policy(program_id: int) -> TierPolicyOut:
    async with db.read_only() as conn:
        row = (await conn.execute(_POLICY, {"program_id": program_id})).one()
    return TierPolicyOut(
        metric=row.tier_metric, window_days=row.tier_window_days, grace_days=row.tier_grace_days
    )


async def put_policy(
    program_id: int, policy: TierPolicy, request: IdempotencyRequest | None = None
) -> Reply:
    async def change(conn: Connection) -> dict[str, Any]:
        await conn.execute(
            text(
                "UPDATE programs SET tier_metric = :metric, tier_window_days = :window, "
                "tier_grace_days = :grace, updated_at = :now WHERE id = :program_id"
            ),
            {
                "metric": policy.metric,
                "window": policy.window_days,
                "grace": policy.grace_days,
                "now": clock.now(),
                "program_id": program_id,
            },
        )
        return TierPolicyOut(**policy.model_dump()).model_dump(mode="json")

    return await _saved(program_id, request, change, created=False)


# --- Preview ---------------------------------------------------------------------------------


async def preview_once(
    program_id: int, body: TierPreviewRequest, request: IdempotencyRequest | None
) -> Reply:
    """The preview, honouring Idempotency-Key like every POST (it changes nothing)."""

    async def compute() -> Reply:
        return Reply((await preview(program_id, body)).model_dump_json(), created=False)

    return await run_recomputation(program_id, request, compute)


async def preview(program_id: int, body: TierPreviewRequest) -> TierPreviewOut:
    keys = [tier.key for tier in body.tiers]
    thresholds = [tier.threshold for tier in body.tiers]
    if len(set(keys)) != len(keys) or len(set(thresholds)) != len(thresholds):
        raise ValidationError(
            "Proposed tiers need distinct keys and thresholds.", loc=["body", "tiers"]
        )
    proposal = orjson.dumps([tier.model_dump() for tier in body.tiers]).decode()
    async with db.read_only() as conn:
        rows = (
            await conn.execute(
                text(dry_run_sql(proposal=True)),
                {"program_id": program_id, "now": clock.now(), "proposal": proposal},
            )
        ).all()
    current: dict[str, int] = {}
    proposed: dict[str, int] = {tier.key: 0 for tier in body.tiers}
    untiered = {"current": 0, "proposed": 0}
    upgrades = downgrades = 0
    for row in rows:
        if row.current_key is None:
            untiered["current"] += row.members
        else:
            current[row.current_key] = current.get(row.current_key, 0) + row.members
        if row.target_key is None:
            untiered["proposed"] += row.members
        else:
            proposed[row.target_key] += row.members
        if row.target_key != row.current_key:
            if row.movement == "up":
                upgrades += row.members
            else:
                downgrades += row.members
    return TierPreviewOut(
        current=current,
        proposed=proposed,
        upgrades=upgrades,
        downgrades=downgrades,
        untiered=untiered,
    )


# --- A member's progress -----------------------------------------------------------------------

_MEMBER_TIER = text(
    f"""
WITH scope AS (
    SELECT a.member_id, a.program_id
      FROM accounts AS a JOIN members AS m ON m.program_id = a.program_id AND m.id = a.member_id
     WHERE a.program_id = :program_id AND m.program_id = :program_id
       AND m.external_id = :member
), {QUALIFYING_CTES}
SELECT q.value, a.tier_key, a.tier_below_since, p.tier_grace_days,
       cur.name AS tier_name, cur.threshold AS tier_threshold,
       nxt.key AS next_key, nxt.name AS next_name, nxt.threshold AS next_threshold
  FROM qualifying AS q
  JOIN accounts AS a ON a.program_id = :program_id AND a.member_id = q.member_id
  JOIN programs AS p ON p.id = :program_id
  LEFT JOIN tiers AS cur ON cur.program_id = :program_id AND cur.key = a.tier_key
  LEFT JOIN LATERAL (
      SELECT t.key, t.name, t.threshold FROM tiers AS t
       WHERE t.program_id = :program_id AND t.threshold > COALESCE(cur.threshold, -1)
       ORDER BY t.threshold LIMIT 1
  ) AS nxt ON true
"""
)


async def member_tier(program_id: int, member: str) -> MemberTierOut:
    async with db.read_only() as conn:
        row = (
            await conn.execute(
                _MEMBER_TIER, {"program_id": program_id, "member": member, "now": clock.now()}
            )
        ).first()
    if row is None:
        raise NotFoundError(f"No member {member!r} in this program.")
    retained_until = (
        row.tier_below_since + timedelta(days=row.tier_grace_days)
        if row.tier_below_since is not None
        else None
    )
    return MemberTierOut(
        tier=TierRef(key=row.tier_key, name=row.tier_name) if row.tier_key else None,
        qualifying_value=row.value,
        next_tier=(
            NextTier(key=row.next_key, name=row.next_name, threshold=row.next_threshold)
            if row.next_key
            else None
        ),
        to_next_tier=max(row.next_threshold - row.value, 0) if row.next_key else None,
        retained_until=retained_until,
    )
