"""Wire models for VIP tiers, the tier policy and previews."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, field_validator

from app.schemas.common import RequestModel, Timestamp

TierKey = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$"),
    Field(description="Lower-case letters, digits, '-' and '_', up to 32.", examples=["gold"]),
]
Threshold = Annotated[int, Field(strict=True, ge=0, le=10**15)]
Multiplier = Annotated[
    Decimal,
    Field(ge=1, le=10, max_digits=6, decimal_places=3, description="Decimal string, 1 to 10."),
]
Benefit = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]*$")]
TierName = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00]*$")]


def _no_float(value: object) -> object:
    if isinstance(value, float):
        raise ValueError('send the multiplier as a decimal string such as "1.5"')
    return value


class TierCreate(RequestModel):
    key: TierKey
    name: TierName
    threshold: Threshold
    earn_multiplier: Multiplier = Decimal(1)
    benefits: list[Benefit] = Field(default_factory=list, max_length=20)

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "key": "gold",
                    "name": "Gold",
                    "threshold": 5000,
                    "earn_multiplier": "1.5",
                    "benefits": ["Free shipping", "Birthday gift"],
                }
            ]
        }
    }

    _multiplier_is_text = field_validator("earn_multiplier", mode="before")(_no_float)


class TierPatch(RequestModel):
    name: TierName | None = None
    threshold: Threshold | None = None
    earn_multiplier: Multiplier | None = None
    benefits: list[Benefit] | None = Field(default=None, max_length=20)

    model_config = {"json_schema_extra": {"examples": [{"threshold": 6000}]}}

    _multiplier_is_text = field_validator("earn_multiplier", mode="before")(_no_float)

    @field_validator("name", "threshold", "earn_multiplier", "benefits")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may be left out, but not null")
        return value


class Reevaluation(BaseModel):
    """What saving the change did to members (or will do, when scheduled)."""

    status: Literal["done", "scheduled"]
    members: int = Field(description="Members of the program.")
    upgraded: int
    downgraded: int
    grace_started: int = Field(
        description="Members now below their tier, keeping it for "
        "grace_days unless they qualify again."
    )


class TierOut(BaseModel):
    key: str
    name: str
    threshold: int
    earn_multiplier: str
    benefits: list[str]
    members: int
    created_at: Timestamp
    updated_at: Timestamp


class TierSaved(TierOut):
    reevaluation: Reevaluation


class TierDeleted(BaseModel):
    reevaluation: Reevaluation


class TierPolicy(RequestModel):
    metric: Literal["points", "spend"] = Field(
        description="points: points earned (order, earn, bonus less reversals); "
        "spend: order amounts less refunds, in minor units."
    )
    window_days: int | None = Field(
        strict=True, ge=1, le=3650, description="Rolling window; null for lifetime."
    )
    grace_days: int = Field(strict=True, ge=0, le=3650)

    model_config = {
        "json_schema_extra": {
            "examples": [{"metric": "points", "window_days": 365, "grace_days": 30}]
        }
    }


class TierPolicyOut(BaseModel):
    metric: Literal["points", "spend"]
    window_days: int | None
    grace_days: int


class TierPolicySaved(TierPolicyOut):
    reevaluation: Reevaluation


class ProposedTier(RequestModel):
    key: TierKey
    threshold: Threshold


class TierPreviewRequest(RequestModel):
    tiers: list[ProposedTier] = Field(max_length=50)

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "tiers": [
                        {"key": "silver", "threshold": 1000},
                        {"key": "gold", "threshold": 4000},
                    ]
                }
            ]
        }
    }


class TierPreviewOut(BaseModel):
    current: dict[str, int] = Field(description="Members per tier now.")
    proposed: dict[str, int] = Field(
        description="Members per tier under the proposal, once any grace period has ended."
    )
    upgrades: int
    downgrades: int
    untiered: dict[str, int] = Field(description="Members with no tier: current and proposed.")


class TierRef(BaseModel):
    key: str
    name: str


class NextTier(TierRef):
    threshold: int


class MemberTierOut(BaseModel):
    tier: TierRef | None
    qualifying_value: int
    next_tier: NextTier | None
    to_next_tier: int | None = Field(description="How much more qualifies for next_tier.")
    retained_until: Timestamp | None = Field(
        description="Below the tier's threshold: the tier is kept until then (grace)."
    )
