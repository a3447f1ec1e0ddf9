"""Rewards and coupons: the catalog (admin), a member's view of it, redeeming a reward, and
the coupons a checkout looks up, validates and voids."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import TypeAdapter

from app.auth import Principal, require_scope
from app.routers.deps import (
    Cursor,
    IdempotencyKeyHeader,
    Limit,
    MemberPath,
    idempotency_request,
    json_page,
    problems,
    reply_json,
)
from app.routers.lean import LeanCall, PathParam, lean_route
from app.schemas.common import Page
from app.schemas.orders import CouponCode
from app.schemas.rewards import (
    CouponOut,
    CouponStatus,
    CouponValidateRequest,
    CouponValidation,
    MemberRewardOut,
    RedemptionOut,
    RewardCreate,
    RewardOut,
    RewardPatch,
)
from app.services.rewards import catalog, coupons, redemptions

router = APIRouter(tags=["Rewards and coupons"])

PointsReader = Annotated[Principal, Depends(require_scope("points:read"))]
PointsWriter = Annotated[Principal, Depends(require_scope("points:write"))]
Admin = Annotated[Principal, Depends(require_scope("admin"))]
RewardId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The reward's id.", examples=[3])]
CodePath = Annotated[CouponCode, Path(description="The coupon code; case-insensitive.")]
COUPON_CODE = PathParam(TypeAdapter(CouponCode), "The coupon code; case-insensitive.")
_REWARD: dict[int | str, dict[str, Any]] = {200: {"model": RewardOut}}
_COUPON: dict[int | str, dict[str, Any]] = {200: {"model": CouponOut}}
_REDEEM_REFUSALS = (
    (404, "not_found"),
    (
        409,
        "insufficient_points, out_of_stock, reward_limit_reached, reward_not_eligible, "
        "reward_inactive",
    ),
)


def json_text(body: str, status_code: int = 200) -> Response:
    return Response(content=body, status_code=status_code, media_type="application/json")


# --- Catalog ----------------------------------------------------------------------------


@router.get(
    "/v1/rewards", response_model=Page[RewardOut], responses=problems(), operation_id="listRewards"
)
async def list_rewards(
    principal: PointsReader, limit: Limit = 20, cursor: Cursor = None
) -> Response:
    """The whole catalog, active or not, newest first."""
    items, next_cursor = await catalog.list_rewards(principal.program_id, limit, cursor)
    return json_page(items, next_cursor)


@router.post(
    "/v1/rewards",
    status_code=201,
    responses={
        201: {"model": RewardOut, "description": "The new reward."},
        **problems((422, "currency_mismatch")),
    },
    operation_id="createReward",
)
async def create_reward(
    body: RewardCreate,
    request: Request,
    principal: Admin,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Add a reward. `value` must fit `kind` (fixed_discount: minor units; percent_discount:
    1-100; other kinds: null); `tiers` must name tiers of the program."""
    stored = await catalog.create_reward(
        principal.program_id, body, idempotency_request(request, idempotency_key, body)
    )
    return reply_json(stored)


@router.get(
    "/v1/rewards/{reward_id}",
    responses={**_REWARD, **problems((404, "not_found"))},
    operation_id="getReward",
)
async def get_reward(reward_id: RewardId, principal: Admin) -> Response:
    return json_text(await catalog.get_reward(principal.program_id, reward_id))


@router.patch(
    "/v1/rewards/{reward_id}",
    responses={**_REWARD, **problems((404, "not_found"), (422, "currency_mismatch"))},
    operation_id="updateReward",
)
async def update_reward(reward_id: RewardId, body: RewardPatch, principal: Admin) -> Response:
    """Change a reward. Coupons already issued keep the terms they were issued with; `stock`
    cannot drop below `redeemed_count`."""
    return json_text(await catalog.update_reward(principal.program_id, reward_id, body))


@router.delete(
    "/v1/rewards/{reward_id}",
    status_code=204,
    responses=problems((404, "not_found")),
    operation_id="deleteReward",
)
async def delete_reward(reward_id: RewardId, principal: Admin) -> Response:
    """Deactivate the reward: it leaves the catalog; coupons already issued stay valid."""
    await catalog.deactivate_reward(principal.program_id, reward_id)
    return Response(status_code=204)


# --- A member's catalog and redemptions -------------------------------------------------


@router.get(
    "/v1/members/{member}/rewards",
    response_model=Page[MemberRewardOut],
    responses=problems((404, "not_found")),
    operation_id="listMemberRewards",
)
async def member_rewards(
    member: MemberPath, principal: PointsReader, limit: Limit = 20, cursor: Cursor = None
) -> Response:
    """The active catalog as this member sees it: each reward with `eligible`, and `reason`
    when not (`reward_not_eligible`, `reward_limit_reached`, `out_of_stock`,
    `insufficient_points`, checked in that order)."""
    items, next_cursor = await catalog.member_catalog(principal.program_id, member, limit, cursor)
    return json_page(items, next_cursor)


@router.post(
    "/v1/members/{member}/rewards/{reward_id}/redeem",
    status_code=201,
    responses={
        201: {"model": RedemptionOut, "description": "The redemption and its coupon."},
        **problems(*_REDEEM_REFUSALS),
    },
    operation_id="redeemReward",
)
async def redeem_reward(
    member: MemberPath,
    reward_id: RewardId,
    request: Request,
    principal: PointsWriter,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Spend the reward's `points_cost` (a `redeem` entry carrying `redemption_id`), take one
    unit of stock and issue a coupon, in one transaction."""
    stored = await redemptions.redeem_reward(
        principal.program_id,
        member,
        reward_id,
        principal.actor,
        idempotency_request(request, idempotency_key, None),
    )
    return reply_json(stored)


@router.get(
    "/v1/members/{member}/coupons",
    response_model=Page[CouponOut],
    responses=problems((404, "not_found")),
    operation_id="listMemberCoupons",
)
async def member_coupons(
    member: MemberPath,
    principal: PointsReader,
    status: Annotated[CouponStatus | None, Query()] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> Response:
    """The member's coupons, newest first; `?status=` filters (an active coupon past its
    `expires_at` counts as `expired`)."""
    items, next_cursor = await coupons.list_member_coupons(
        principal.program_id, member, status, limit, cursor
    )
    return json_page(items, next_cursor)


# --- Coupons ----------------------------------------------------------------------------


@router.get(
    "/v1/coupons/{coupon_code}",
    responses={**_COUPON, **problems((404, "coupon_invalid"))},
    operation_id="getCoupon",
)
async def get_coupon(coupon_code: CodePath, principal: PointsReader) -> Response:
    return json_text(await coupons.get_coupon(principal.program_id, coupon_code))


# The checkout calls it on every basket with a coupon: a lean route (app/routers/lean.py).
@lean_route(
    router,
    "POST",
    "/v1/coupons/{coupon_code}/validate",
    scope="points:read",
    params={"coupon_code": COUPON_CODE},
    body=CouponValidateRequest,
    responses={
        200: {"model": CouponValidation},
        **problems((404, "not_found"), (422, "currency_mismatch")),
    },
    operation_id="validateCoupon",
)
async def validate_coupon(call: LeanCall) -> Response:
    """Would the coupon be usable on this order now, and what would it take off? Writes
    nothing; an unknown code is `valid: false` with reason `unknown`."""
    body: CouponValidateRequest = call.body
    reply = await coupons.validate_once(
        call.principal.program_id,
        call.path["coupon_code"],
        body.member_id,
        body.amount,
        body.currency,
        call.idempotency,
    )
    return reply_json(reply)


@router.post(
    "/v1/coupons/{coupon_code}/void",
    responses={**_COUPON, **problems((404, "coupon_invalid"), (409, "coupon_not_usable"))},
    operation_id="voidCoupon",
)
async def void_coupon(
    coupon_code: CodePath,
    request: Request,
    principal: PointsWriter,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Void an active coupon. One bought with points gives them back (a `restore` entry) and
    its unit of stock."""
    stored = await coupons.void_coupon(
        principal.program_id,
        coupon_code,
        principal.actor,
        idempotency_request(request, idempotency_key, None),
    )
    return reply_json(stored)
