"""Wire models for balances and ledger entries."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from app.schemas.common import NO_NUL, Points, Reason, RequestModel, SignedPoints, Timestamp

EntryKind = Literal[
    "earn", "order", "redeem", "refund", "restore", "adjust", "expire", "referral", "bonus"
]


class EarnRequest(RequestModel):
    points: Points
    reason: Reason

    model_config = {"json_schema_extra": {"examples": [{"points": 120, "reason": "Review"}]}}


class RedeemRequest(RequestModel):
    points: Points
    reason: Reason | None = None
    order_id: str | None = Field(default=None, min_length=1, max_length=128, pattern=NO_NUL)

    model_config = {"json_schema_extra": {"examples": [{"points": 50, "order_id": "A-1001"}]}}


class AdjustRequest(RequestModel):
    points: SignedPoints = Field(description="Signed, never 0: + credits, - debits.")
    reason: Reason

    model_config = {
        "json_schema_extra": {"examples": [{"points": -30, "reason": "Goodwill reversal"}]}
    }

    @field_validator("points")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("points must not be 0")
        return value


class PointEntryOut(BaseModel):
    id: int
    kind: EntryKind
    points: int = Field(description="Signed: positive adds points, negative removes them.")
    status: Literal["available", "pending"]
    order_id: str | None
    hold_id: str | None
    redemption_id: int | None = Field(
        default=None, description="The reward redemption of a `redeem` (or its `restore`)."
    )
    reason: str | None
    created_at: Timestamp
    available_at: Timestamp | None
    expires_at: Timestamp | None
    campaign_id: int | None = Field(
        default=None, description="In the transactions list: the campaign of a bonus entry."
    )


class ExpiringBucket(BaseModel):
    points: int
    expires_at: Timestamp


class BalanceOut(BaseModel):
    available: int
    pending: int
    held: int
    lifetime_earned: int
    lifetime_redeemed: int


class PointsOut(BalanceOut):
    expiring: list[ExpiringBucket] = Field(description="Soonest first, at most 5 buckets.")
