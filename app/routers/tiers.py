"""VIP tiers, the tier policy, previews, and a member's tier progress."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response

from app.auth import Principal, require_scope
from app.routers.deps import (
    IdempotencyKeyHeader,
    MemberPath,
    idempotency_request,
    problems,
    reply_json,
)
from app.schemas.common import Page
from app.schemas.tiers import (
    MemberTierOut,
    TierCreate,
    TierDeleted,
    TierOut,
    TierPatch,
    TierPolicy,
    TierPolicyOut,
    TierPolicySaved,
    TierPreviewOut,
    TierPreviewRequest,
    TierSaved,
)
from app.services.tiers import tiers

router = APIRouter(tags=["VIP tiers"])

MembersReader = Annotated[Principal, Depends(require_scope("members:read"))]
Admin = Annotated[Principal, Depends(require_scope("admin"))]
TierKeyPath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", examples=["gold"])]
_SAVED = "Saved; `reevaluation` says what it did to members (or will do, when scheduled)."


@router.get(
    "/v1/tiers", response_model=Page[TierOut], responses=problems(), operation_id="listTiers"
)
async def list_tiers(principal: MembersReader) -> Page[TierOut]:
    """All tiers, lowest threshold first, with how many members hold each."""
    return Page[TierOut](data=await tiers.list_tiers(principal.program_id), next_cursor=None)


@router.post(
    "/v1/tiers",
    status_code=201,
    responses={
        201: {"model": TierSaved, "description": _SAVED},
        **problems((409, "tier_key_taken, tier_threshold_taken")),
    },
    operation_id="createTier",
)
async def create_tier(
    body: TierCreate,
    request: Request,
    principal: Admin,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Add a tier. Members are re-evaluated with the usual rules: upgrades at once,
    downgrades only after the policy's `grace_days`. Try `POST /v1/tiers/preview` first."""
    reply = await tiers.create_tier(
        principal.program_id, body, idempotency_request(request, idempotency_key, body)
    )
    return reply_json(reply)


@router.post(
    "/v1/tiers/preview",
    responses={200: {"model": TierPreviewOut}, **problems()},
    operation_id="previewTiers",
)
async def preview_tiers(
    body: TierPreviewRequest,
    request: Request,
    principal: Admin,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """What a proposed set of thresholds would do (members per tier, upgrades, downgrades),
    computed exactly as saving would, without saving anything."""
    reply = await tiers.preview_once(
        principal.program_id, body, idempotency_request(request, idempotency_key, body)
    )
    return reply_json(reply)


@router.get(
    "/v1/tiers/{key}",
    response_model=TierOut,
    responses=problems((404, "not_found")),
    operation_id="getTier",
)
async def get_tier(key: TierKeyPath, principal: MembersReader) -> TierOut:
    return await tiers.get_tier(principal.program_id, key)


@router.patch(
    "/v1/tiers/{key}",
    responses={
        200: {"model": TierSaved, "description": _SAVED},
        **problems((404, "not_found"), (409, "tier_threshold_taken")),
    },
    operation_id="updateTier",
)
async def update_tier(key: TierKeyPath, body: TierPatch, principal: Admin) -> Response:
    """Change a tier's name, threshold, multiplier or benefits. A threshold change
    re-evaluates members with the same upgrade and grace rules."""
    reply = await tiers.update_tier(principal.program_id, key, body.model_dump(exclude_unset=True))
    return reply_json(reply)


@router.delete(
    "/v1/tiers/{key}",
    responses={200: {"model": TierDeleted, "description": _SAVED}, **problems((404, "not_found"))},
    operation_id="deleteTier",
)
async def delete_tier(key: TierKeyPath, principal: Admin) -> Response:
    """Delete a tier; its members move at once to the highest remaining tier they qualify
    for."""
    return reply_json(await tiers.delete_tier(principal.program_id, key))


@router.get(
    "/v1/tier-policy",
    response_model=TierPolicyOut,
    responses=problems(),
    operation_id="getTierPolicy",
)
async def get_tier_policy(principal: Admin) -> TierPolicyOut:
    return await tiers.get_policy(principal.program_id)


@router.put(
    "/v1/tier-policy",
    responses={200: {"model": TierPolicySaved, "description": _SAVED}, **problems()},
    operation_id="updateTierPolicy",
)
async def put_tier_policy(body: TierPolicy, principal: Admin) -> Response:
    """What qualifies for tiers (`points` or `spend`), over which window (`window_days`, null
    for lifetime), and how long a member keeps a tier after falling below it
    (`grace_days`). Saving re-evaluates members."""
    return reply_json(await tiers.put_policy(principal.program_id, body))


@router.get(
    "/v1/members/{member}/tier",
    response_model=MemberTierOut,
    responses=problems((404, "not_found")),
    operation_id="getMemberTier",
)
async def member_tier(member: MemberPath, principal: MembersReader) -> MemberTierOut:
    """The member's tier, qualifying value, the next tier and how far away it is, and until
    when a tier is kept while below its threshold."""
    return await tiers.member_tier(principal.program_id, member)
