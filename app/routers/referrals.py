"""Referral codes and links, attribution, and the referral lists."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

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
from app.schemas.common import EXTERNAL_ID_PATTERN, NO_NUL, Page
from app.schemas.referrals import (
    MemberReferralsOut,
    ReferralCodeOut,
    ReferralCreate,
    ReferralLinkOut,
    ReferralOut,
    ReferralStatus,
)
from app.services.referrals import referrals

router = APIRouter(tags=["Referrals"])

ReferralsReader = Annotated[Principal, Depends(require_scope("referrals:read"))]
ReferralsWriter = Annotated[Principal, Depends(require_scope("referrals:write"))]


@router.post(
    "/v1/members/{member}/referral-link",
    responses={200: {"model": ReferralLinkOut}, **problems((404, "not_found"))},
    operation_id="createReferralLink",
)
async def referral_link(
    member: MemberPath,
    request: Request,
    principal: ReferralsWriter,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """The member's referral code and share link: made on the first call, the same on every
    call after it (so retrying is always safe)."""
    reply = await referrals.referral_link(
        principal.program_id, member, idempotency_request(request, idempotency_key, None)
    )
    return reply_json(reply)


@router.get(
    "/v1/referral-codes/{code}",
    response_model=ReferralCodeOut,
    responses=problems((404, "referral_code_invalid"), (429, "rate_limited")),
    operation_id="lookupReferralCode",
)
async def lookup_code(
    code: Annotated[str, Path(max_length=32, pattern=NO_NUL, examples=["7K3QX9MD"])],
    principal: ReferralsReader,
) -> ReferralCodeOut:
    """For a sign-up page: is this code valid, and what does a new member get? Codes are
    case-insensitive. Limited per API key (default 60 a minute, across all workers)."""
    return await referrals.lookup_code(principal, code)


@router.post(
    "/v1/referrals",
    status_code=201,
    responses={
        201: {"model": ReferralOut},
        **problems(
            (404, "referral_code_invalid, not_found"),
            (409, "already_referred, not_new_customer"),
            (422, "self_referral"),
        ),
    },
    operation_id="createReferral",
)
async def create_referral(
    body: ReferralCreate,
    request: Request,
    principal: ReferralsWriter,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Attribute an existing member (with no orders yet) to the owner of `code`."""
    reply = await referrals.create_referral(
        principal.program_id,
        body.code,
        body.referee_id,
        idempotency_request(request, idempotency_key, body),
    )
    return reply_json(reply)


@router.get(
    "/v1/referrals",
    response_model=Page[ReferralOut],
    responses=problems(),
    operation_id="listReferrals",
)
async def list_referrals(
    principal: ReferralsReader,
    referrer_id: Annotated[str | None, Query(pattern=EXTERNAL_ID_PATTERN)] = None,
    status: Annotated[ReferralStatus | None, Query()] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> Response:
    """Referrals, newest first, optionally of one referrer or in one status."""
    items, next_cursor = await referrals.list_referrals(
        principal.program_id, referrer_id, status, limit, cursor
    )
    return json_page(items, next_cursor)


@router.get(
    "/v1/members/{member}/referrals",
    response_model=MemberReferralsOut,
    responses=problems((404, "not_found")),
    operation_id="getMemberReferrals",
)
async def member_referrals(member: MemberPath, principal: ReferralsReader) -> MemberReferralsOut:
    """The member's referral funnel: invited, qualified, rewarded, and points earned."""
    return await referrals.member_referrals(principal.program_id, member)
