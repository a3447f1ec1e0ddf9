"""Wire models for insights: the overview, segments, feedback and the dashboard's charts."""

from __future__ import annotations

from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, Field, StringConstraints

from app.schemas.common import RequestModel, Timestamp

Segment = Literal[
    "champions",
    "loyal",
    "potential_loyalists",
    "new",
    "promising",
    "need_attention",
    "at_risk",
    "cant_lose",
    "hibernating",
    "lost",
    "prospects",
]
Lifecycle = Literal["prospect", "new", "growing", "mature", "churned"]

Rate = Annotated[str, Field(description="A decimal string in [0, 1], 4 decimal places.")]
Comment = Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=r"^[^\x00]+$")]
Channel = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:\-]{1,32}$")]


class FeedbackCreate(RequestModel):
    score: int = Field(strict=True, ge=0, le=10, description="0-10: how likely to recommend us.")
    comment: Comment | None = None
    channel: Channel | None = Field(default=None, description='Where it was given, e.g. "app".')

    model_config = {
        "json_schema_extra": {
            "examples": [{"score": 9, "comment": "Fast delivery", "channel": "app"}]
        }
    }


class FeedbackOut(BaseModel):
    id: int
    member_id: str
    score: int
    comment: str | None
    channel: str | None
    created_at: Timestamp


class OverviewOut(BaseModel):
    """Every figure is defined in docs/insights.md."""

    from_: Timestamp = Field(alias="from", description="Start of the period (inclusive).")
    to: Timestamp = Field(description="End of the period (exclusive).")
    currency: str
    members: int = Field(description="Members created before `to`.")
    new_members: int = Field(description="Members created in the period.")
    active_members: int = Field(description="Members with a counted order in the period.")
    repeat_purchase_rate: Rate
    churn_rate: Rate
    average_order_value: int = Field(description="Net of refunds, minor units.")
    customer_lifetime_value: int = Field(description="Minor units, as of the last refresh.")
    points_outstanding: int
    points_outstanding_value: int = Field(description="Minor units.")
    points_expiring_30d: int
    redemption_rate: Rate
    referral_conversion_rate: Rate
    nps: str = Field(description="A decimal string in [-100, 100], 1 decimal place.")
    nps_responses: int = Field(description="Members whose latest score in the period counted.")
    insights_refreshed_at: Timestamp | None = Field(
        description="When segments, lifecycle and lifetime value were last computed."
    )

    model_config = {"populate_by_name": True}


class SegmentOut(BaseModel):
    segment: Segment
    members: int
    share_of_members: Rate
    share_of_revenue: Rate
    revenue: int = Field(description="Net spend of the segment's members, minor units.")


class RefreshOut(BaseModel):
    members: int = Field(description="Members of the program whose insights were computed.")
    refreshed_at: Timestamp
    duration_ms: int


class TierCount(BaseModel):
    key: str
    name: str
    members: int


class FunnelStage(BaseModel):
    stage: str
    count: int


class ExpiryMonth(BaseModel):
    month: str = Field(description='"YYYY-MM" in the program time zone, or "never".')
    points: int


T = TypeVar("T")


class ChartData(BaseModel, Generic[T]):
    data: list[T]
    note: str | None = Field(default=None, description="Why the list is empty, when it is.")


class RewardSpend(BaseModel):
    reward_id: int
    name: str
    redemptions: int = Field(description="Redemptions that stand (voided ones gave back).")
    points_spent: int


class CouponUse(BaseModel):
    issued: int
    active: int
    used: int
    void: int
    expired: int
    use_rate: str = Field(description="used / (issued - void), a decimal string in [0, 1].")


class RewardsInsight(ChartData[RewardSpend]):
    """The top rewards by points spent, and coupons by status."""

    coupons: CouponUse


class LiabilityRow(BaseModel):
    """One period of the points liability roll-forward (docs/insights.md):
    ``closing = opening + earned - redeemed - expired + adjusted``, and ``opening`` is the
    previous row's ``closing``."""

    period_start: Timestamp
    opening: int
    earned: int
    redeemed: int
    expired: int
    adjusted: int
    closing: int
    closing_value: int = Field(description="`closing` in minor units of the program currency.")
    pending: int = Field(description="Points earned but still pending at the period's end.")


class BreakageBasis(BaseModel):
    expired_points: int
    redeemed_points: int
    months: int = Field(description="Whole months from the program's first entry to `to`.")
    description: str


class LiabilityOut(BaseModel):
    currency: str
    interval: Literal["month", "week"]
    rows: list[LiabilityRow]
    breakage_rate: Rate = Field(
        description="Share of issued points expected never to be redeemed: expired / "
        "(expired + redeemed) over the program's history up to `to`."
    )
    breakage_basis: BreakageBasis
