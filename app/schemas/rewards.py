"""Wire models for the reward catalog, redemptions and coupons."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StrictBool, StringConstraints, field_validator

from app.schemas.common import MAX_AMOUNT, NO_NUL, ExternalId, Points, RequestModel, Timestamp
from app.schemas.earn_rules import RuleTime
from app.schemas.orders import Amount, Currency
from app.schemas.tiers import TierKey

RewardKind = Literal["fixed_discount", "percent_discount", "free_shipping", "gift", "custom"]
CouponStatus = Literal["active", "used", "void", "expired"]
CouponSource = Literal["reward", "campaign"]
IneligibleReason = Literal[
    "insufficient_points", "out_of_stock", "reward_limit_reached", "reward_not_eligible"
]
UnusableReason = Literal[
    "expired", "used", "void", "wrong_member", "min_order_amount", "currency", "unknown"
]

RewardName = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)]
Description = Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=NO_NUL)]
# fixed_discount: minor units of the program currency; percent_discount: 1-100.
RewardValue = Annotated[int, Field(strict=True, ge=1, le=MAX_AMOUNT)]
MinOrderAmount = Annotated[int, Field(strict=True, ge=0, le=MAX_AMOUNT)]
Stock = Annotated[int, Field(strict=True, ge=0, le=10**9)]
PerMemberLimit = Annotated[int, Field(strict=True, ge=1, le=10**6)]
CouponTtlDays = Annotated[int, Field(strict=True, ge=1, le=3650)]


def _time_text(value: object) -> object:
    # Pydantic would read a bare number as Unix seconds; the contract says RFC 3339 strings.
    if value is not None and not isinstance(value, str | datetime):
        raise ValueError("must be an RFC 3339 date-time string with an offset")
    return value


def _unique(values: list[str] | None) -> list[str] | None:
    if values is not None and len(set(values)) != len(values):
        raise ValueError("values must not repeat")
    return values


class RewardFields(RequestModel):
    """What create and patch share; kind and value are checked together by the service, which
    also knows the program's currency and tiers."""

    description: Description | None = None
    value: RewardValue | None = Field(
        default=None,
        description="fixed_discount: minor units of the program currency; "
        "percent_discount: 1-100; other kinds: null.",
    )
    min_order_amount: MinOrderAmount | None = None
    stock: Stock | None = Field(default=None, description="Null: unlimited.")
    per_member_limit: PerMemberLimit | None = Field(
        default=None, description="Redemptions one member may hold (voided ones do not count)."
    )
    tiers: list[TierKey] | None = Field(
        default=None, min_length=1, max_length=50, description="Null: every member."
    )
    starts_at: RuleTime | None = None
    ends_at: RuleTime | None = None
    currency: Currency | None = Field(
        default=None, description="Optional; when given it must be the program's currency."
    )

    _tiers_unique = field_validator("tiers")(_unique)
    _times_are_text = field_validator("starts_at", "ends_at", mode="before")(_time_text)


class RewardCreate(RewardFields):
    name: RewardName
    kind: RewardKind
    points_cost: Points
    active: StrictBool = True
    coupon_ttl_days: CouponTtlDays = 90

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "name": "20 yuan off",
                    "kind": "fixed_discount",
                    "points_cost": 2000,
                    "value": 2000,
                    "min_order_amount": 10000,
                    "stock": 500,
                    "per_member_limit": 2,
                    "coupon_ttl_days": 30,
                }
            ]
        }
    }


class RewardPatch(RewardFields):
    name: RewardName | None = None
    kind: RewardKind | None = None
    points_cost: Points | None = None
    active: StrictBool | None = None
    coupon_ttl_days: CouponTtlDays | None = None

    model_config = {"json_schema_extra": {"examples": [{"stock": 800, "active": True}]}}

    @field_validator("name", "kind", "points_cost", "active", "coupon_ttl_days")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may be left out, but not null")
        return value


class RewardOut(BaseModel):
    id: int
    name: str
    description: str | None
    kind: RewardKind
    points_cost: int
    value: int | None
    currency: str
    min_order_amount: int | None
    stock: int | None
    per_member_limit: int | None
    tiers: list[str] | None
    active: bool
    starts_at: Timestamp | None
    ends_at: Timestamp | None
    coupon_ttl_days: int
    redeemed_count: int = Field(description="Redemptions that stand (voided ones give back).")
    stock_remaining: int | None
    created_at: Timestamp


class MemberRewardOut(RewardOut):
    eligible: bool
    reason: IneligibleReason | None


class IssuedCoupon(BaseModel):
    code: str
    kind: RewardKind
    value: int | None
    min_order_amount: int | None
    expires_at: Timestamp


class RedemptionOut(BaseModel):
    redemption_id: int
    reward_id: int
    member_id: str
    points_spent: int
    coupon: IssuedCoupon
    created_at: Timestamp


class CouponOut(BaseModel):
    code: str
    member_id: str | None
    kind: RewardKind
    value: int | None
    currency: str
    min_order_amount: int | None
    status: CouponStatus = Field(description="`expired` as soon as `expires_at` has passed.")
    source: CouponSource
    reward_id: int | None
    campaign_id: int | None
    order_id: str | None
    expires_at: Timestamp
    created_at: Timestamp


class CouponValidateRequest(RequestModel):
    member_id: ExternalId
    amount: Amount
    currency: Currency

    model_config = {
        "json_schema_extra": {
            "examples": [{"member_id": "cust-1001", "amount": 25900, "currency": "CNY"}]
        }
    }


class CouponValidation(BaseModel):
    valid: bool
    discount_amount: int = Field(description="Minor units; 0 when not valid.")
    reason: UnusableReason | None
