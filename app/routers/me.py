"""Member tokens: issuing them (an API key's call), and the /v1/me endpoints a member's own
mobile app calls with one. Each /v1/me endpoint answers exactly what its admin twin answers
for the token's member, through the same service function."""

from __future__ import annotations

import hashlib
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response

from app.auth import Principal, require_member_token, require_scope
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
from app.routers.rewards import RewardId
from app.schemas.common import Page
from app.schemas.me import MemberTokenCreate, MemberTokenOut
from app.schemas.members import MemberOut
from app.schemas.points import PointEntryOut, PointsOut
from app.schemas.referrals import MemberReferralsOut, ReferralLinkOut
from app.schemas.rewards import CouponOut, CouponStatus, MemberRewardOut, RedemptionOut
from app.schemas.tiers import MemberTierOut
from app.services import ledger
from app.services.idempotency import IdempotencyRequest, fingerprint
from app.services.members import members
from app.services.members.member_tokens import MemberPrincipal, issue_member_token
from app.services.referrals import referrals
from app.services.rewards import catalog, coupons, redemptions
from app.services.tiers import tiers

router = APIRouter(tags=["Member app"])

MembersWriter = Annotated[Principal, Depends(require_scope("members:write"))]
Me = Annotated[MemberPrincipal, Depends(require_member_token)]


@router.post(
    "/v1/members/{member}/tokens",
    status_code=201,
    responses={
        201: {"model": MemberTokenOut, "description": "The token, shown once."},
        **problems((404, "not_found")),
    },
    operation_id="createMemberToken",
)
async def create_member_token(
    member: MemberPath,
    request: Request,
    principal: MembersWriter,
    body: MemberTokenCreate | None = None,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """A short-lived token for the member's own app (default 1 hour, at most 24 hours). It
    reaches only the `/v1/me` endpoints, for this member only; it stops working when it
    expires, when the member is erased, or when its signing key is retired."""
    create = body or MemberTokenCreate()
    reply = await issue_member_token(
        principal.program_id,
        member,
        create.ttl_seconds,
        idempotency_request(request, idempotency_key, create),
    )
    return reply_json(reply)


@router.get("/v1/me", response_model=MemberOut, responses=problems(), operation_id="getMe")
async def get_me(me: Me) -> MemberOut:
    """The member, as `GET /v1/members/{member}` shows them."""
    return await members.get_member(me.program_id, me.member)


@router.get(
    "/v1/me/points", response_model=PointsOut, responses=problems(), operation_id="getMyPoints"
)
async def get_my_points(me: Me) -> Response:
    """The member's balances, as `GET /v1/members/{member}/points` shows them."""
    row = await ledger.get_points(me.program_id, me.member)
    if isinstance(row["expiring"], str | bytes):
        row["expiring"] = orjson.loads(row["expiring"])
    return Response(orjson.dumps(row), media_type="application/json")


@router.get(
    "/v1/me/points/transactions",
    response_model=Page[PointEntryOut],
    responses=problems(),
    operation_id="listMyTransactions",
)
async def list_my_transactions(me: Me, limit: Limit = 20, cursor: Cursor = None) -> Response:
    """The member's ledger entries, newest first."""
    items, next_cursor = await ledger.list_transactions(me.program_id, me.member, limit, cursor)
    return json_page(items, next_cursor)


@router.get(
    "/v1/me/tier", response_model=MemberTierOut, responses=problems(), operation_id="getMyTier"
)
async def get_my_tier(me: Me) -> MemberTierOut:
    """The member's tier and progress, as `GET /v1/members/{member}/tier` shows them."""
    return await tiers.member_tier(me.program_id, me.member)


@router.get(
    "/v1/me/referrals",
    response_model=MemberReferralsOut,
    responses=problems(),
    operation_id="getMyReferrals",
)
async def get_my_referrals(me: Me) -> MemberReferralsOut:
    """The member's referral funnel: their code and link, invited, qualified, rewarded."""
    return await referrals.member_referrals(me.program_id, me.member)


@router.post(
    "/v1/me/referral-link",
    responses={200: {"model": ReferralLinkOut}, **problems()},
    operation_id="createMyReferralLink",
)
async def create_my_referral_link(
    me: Me, request: Request, idempotency_key: IdempotencyKeyHeader = None
) -> Response:
    """The member's referral code and link to share (made on the first call, the same on
    every call after it)."""
    reply = await referrals.referral_link(
        me.program_id, me.member, member_idempotency(request, me, idempotency_key)
    )
    return reply_json(reply)


@router.get(
    "/v1/me/rewards",
    response_model=Page[MemberRewardOut],
    responses=problems(),
    operation_id="listMyRewards",
)
async def list_my_rewards(me: Me, limit: Limit = 20, cursor: Cursor = None) -> Response:
    """The active catalog with `eligible` and `reason`, as
    `GET /v1/members/{member}/rewards` shows it."""
    items, next_cursor = await catalog.member_catalog(me.program_id, me.member, limit, cursor)
    return json_page(items, next_cursor)


@router.post(
    "/v1/me/rewards/{reward_id}/redeem",
    status_code=201,
    responses={
        201: {"model": RedemptionOut, "description": "The redemption and its coupon."},
        **problems(
            (404, "not_found"),
            (
                409,
                "insufficient_points, out_of_stock, reward_limit_reached, "
                "reward_not_eligible, reward_inactive",
            ),
        ),
    },
    operation_id="redeemMyReward",
)
async def redeem_my_reward(
    reward_id: RewardId, me: Me, request: Request, idempotency_key: IdempotencyKeyHeader = None
) -> Response:
    """Spend points on a reward, as `POST /v1/members/{member}/rewards/{id}/redeem` does."""
    stored = await redemptions.redeem_reward(
        me.program_id,
        me.member,
        reward_id,
        me.actor,
        member_idempotency(request, me, idempotency_key),
    )
    return reply_json(stored)


@router.get(
    "/v1/me/coupons",
    response_model=Page[CouponOut],
    responses=problems(),
    operation_id="listMyCoupons",
)
async def list_my_coupons(
    me: Me,
    status: Annotated[CouponStatus | None, Query()] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> Response:
    """The member's coupons, newest first, as `GET /v1/members/{member}/coupons` shows them."""
    items, next_cursor = await coupons.list_member_coupons(
        me.program_id, me.member, status, limit, cursor
    )
    return json_page(items, next_cursor)


def member_idempotency(
    request: Request, me: MemberPrincipal, key: str | None
) -> IdempotencyRequest | None:
    """Idempotency keys are unique per program, and the /v1/me paths name no member: each
    member's keys get a space of their own, so one app's key can never replay another
    member's response."""
    if key is None:
        return None
    scoped = "me:" + hashlib.sha256(f"{me.member_id}:{key}".encode()).hexdigest()
    return IdempotencyRequest(
        scoped, fingerprint(request.method, request.url.path, {"member_id": me.member_id})
    )
