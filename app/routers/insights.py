"""Insights (admin): overview, RFM segments, on-demand refresh, the dashboard's chart data,
and member feedback (members:write)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from app.auth import Principal, require_scope
from app.routers.deps import (
    IdempotencyKeyHeader,
    MemberPath,
    idempotency_request,
    problems,
    reply_json,
)
from app.schemas.common import RequestTime
from app.schemas.insights import (
    ChartData,
    ExpiryMonth,
    FeedbackCreate,
    FeedbackOut,
    FunnelStage,
    LiabilityOut,
    OverviewOut,
    RefreshOut,
    RewardsInsight,
    SegmentOut,
    TierCount,
)
from app.services.insights import insights, liability, rewards

router = APIRouter(tags=["Insights"])

Admin = Annotated[Principal, Depends(require_scope("admin"))]
MembersWriter = Annotated[Principal, Depends(require_scope("members:write"))]
PeriodStart = Annotated[
    RequestTime | None,
    Query(alias="from", description="Start of the period, inclusive (default: `to` - 30 days)."),
]
PeriodEnd = Annotated[
    RequestTime | None,
    Query(alias="to", description="End of the period, exclusive (default: now)."),
]


@router.get(
    "/v1/insights/overview",
    response_model=OverviewOut,
    response_model_by_alias=True,
    responses=problems(),
    operation_id="getOverview",
)
async def get_overview(
    principal: Admin, start: PeriodStart = None, end: PeriodEnd = None
) -> OverviewOut:
    """The returning-customer figures for the period `[from, to)`. Period figures: new and
    active members, repeat purchase rate, churn rate, average order value, NPS. Point-in-time
    figures (now): points outstanding and their value, points expiring in 30 days, redemption
    rate; customer lifetime value as of the last insights refresh. docs/insights.md defines
    each."""
    period_start, period_end = insights.resolve_period(start, end)
    return await insights.overview(principal.program_id, period_start, period_end)


@router.get(
    "/v1/insights/liability",
    operation_id="getPointsLiability",
    response_model=LiabilityOut,
    responses=problems(),
)
async def get_liability(
    principal: Admin,
    start: PeriodStart = None,
    end: PeriodEnd = None,
    interval: Annotated[
        Literal["month", "week"], Query(description="Period length (program time zone).")
    ] = "month",
) -> LiabilityOut:
    """The points liability rolled forward period by period: opening, earned, redeemed,
    expired, adjusted, closing and its money value, with points still pending apart, and
    the expected breakage from the program's own history. docs/insights.md says what an
    accountant books from it. Default period: the last 12 months (12 weeks by week)."""
    return await liability.liability(principal.program_id, interval, start, end)


@router.get(
    "/v1/insights/segments",
    response_model=list[SegmentOut],
    responses=problems(),
    operation_id="getSegments",
)
async def get_segments(principal: Admin) -> list[SegmentOut]:
    """Members and net revenue per RFM segment, as of the last refresh."""
    return await insights.segments(principal.program_id)


@router.post(
    "/v1/insights/refresh",
    responses={200: {"model": RefreshOut}, **problems()},
    operation_id="refreshInsights",
)
async def refresh(
    request: Request, principal: Admin, idempotency_key: IdempotencyKeyHeader = None
) -> Response:
    """Recompute segments and lifecycle stages now (the worker also does it every hour).
    Safe to repeat: a refresh computes the same result from the same orders."""

    reply = await insights.refresh_program_on_request(
        principal.program_id, idempotency_request(request, idempotency_key, None)
    )
    return reply_json(reply)


@router.get(
    "/v1/insights/points-expiry",
    response_model=ChartData[ExpiryMonth],
    responses=problems(),
    operation_id="getPointsExpiry",
)
async def get_points_expiry(principal: Admin) -> ChartData[ExpiryMonth]:
    """Points outstanding by the month they expire in (program time zone), then "never"."""
    return await insights.points_by_expiry_month(principal.program_id)


@router.get(
    "/v1/insights/tiers",
    response_model=ChartData[TierCount],
    responses=problems(),
    operation_id="getTierInsights",
)
async def get_tiers(principal: Admin) -> ChartData[TierCount]:
    """Members per VIP tier (empty until tiers exist)."""
    return await insights.members_per_tier(principal.program_id)


@router.get(
    "/v1/insights/referral-funnel",
    response_model=ChartData[FunnelStage],
    responses=problems(),
    operation_id="getReferralFunnel",
)
async def get_referral_funnel(
    principal: Admin, start: PeriodStart = None, end: PeriodEnd = None
) -> ChartData[FunnelStage]:
    """Referrals created in the period by stage (empty until referrals exist)."""
    period_start, period_end = insights.resolve_period(start, end)
    return await insights.referral_funnel(principal.program_id, period_start, period_end)


@router.get(
    "/v1/insights/rewards",
    response_model=RewardsInsight,
    responses=problems(),
    operation_id="getRewardsInsight",
)
async def get_rewards(principal: Admin) -> RewardsInsight:
    """The top rewards by points spent (net of voided coupons), and coupons by status with
    the use rate (used out of issued and not voided)."""
    return await rewards.rewards_insight(principal.program_id)


@router.post(
    "/v1/members/{member}/feedback",
    status_code=201,
    responses={201: {"model": FeedbackOut}, **problems((404, "not_found"))},
    operation_id="giveFeedback",
)
async def give_feedback(
    member: MemberPath,
    body: FeedbackCreate,
    request: Request,
    principal: MembersWriter,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Record a satisfaction score (0-10, "how likely are you to recommend us?"). NPS counts
    each member's latest score in a period; the member shows their latest one."""
    reply = await insights.record_feedback(
        principal.program_id, member, body, idempotency_request(request, idempotency_key, body)
    )
    return reply_json(reply)
