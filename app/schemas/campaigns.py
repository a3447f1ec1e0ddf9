"""Wire models for campaigns: who they aim at, what they do, and what they changed."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    field_validator,
    model_validator,
)

from app.schemas.common import Points, RequestModel, Timestamp
from app.schemas.insights import Lifecycle, Segment
from app.schemas.programs import Name, Unset

MAX_LIST_VALUES = 50
MAX_METADATA_KEYS = 20
MAX_DAYS = 36_500

NpsClass = Literal["promoter", "passive", "detractor"]
TierKey = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[^\x00]+$")]
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00]+$")]
MetadataText = Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\x00]*$")]
MetadataScalar = StrictBool | StrictInt | MetadataText
MetadataCondition = Annotated[
    MetadataScalar | list[MetadataScalar],
    Field(description="A value, or a list of values of which the member's must be one."),
]
Days = Annotated[int, Field(strict=True, ge=0, le=MAX_DAYS)]
Message = Annotated[str, StringConstraints(min_length=1, max_length=1000, pattern=r"^[^\x00]+$")]
HoldoutPercent = Annotated[
    int, Field(strict=True, ge=0, le=50, description="Share held out at random, 0-50.")
]
CooldownDays = Annotated[
    int,
    Field(
        strict=True,
        ge=0,
        le=3650,
        description="A member is not targeted by this campaign again within this many days.",
    ),
]
CampaignTime = Annotated[AwareDatetime, Field(description="RFC 3339 with an offset.")]


def _no_duplicates(values: list[Any] | None) -> list[Any] | None:
    if values is not None and len(set(values)) != len(values):
        raise ValueError("values must not repeat")
    return values


def _rfc3339_text(value: object) -> object:
    # Pydantic would read a bare number as Unix seconds; the contract says RFC 3339 strings.
    if value is not None and not isinstance(value, str | datetime):
        raise ValueError("must be an RFC 3339 date-time string with an offset")
    return value


class Audience(RequestModel):
    """Who a campaign aims at. Conditions combine with AND, the values of a list with OR; an
    empty audience matches every member (erased members never match)."""

    segments: list[Segment] | None = Field(
        default=None, min_length=1, max_length=MAX_LIST_VALUES, description="RFM segments."
    )
    lifecycles: list[Lifecycle] | None = Field(
        default=None, min_length=1, max_length=MAX_LIST_VALUES
    )
    tiers: list[TierKey] | None = Field(
        default=None, min_length=1, max_length=MAX_LIST_VALUES, description="Tier keys."
    )
    min_days_since_last_order: Days | None = Field(
        default=None,
        description="Whole days (program time zone) since the member's last counted order, "
        "at least this. Members who never ordered do not match.",
    )
    max_days_since_last_order: Days | None = Field(default=None, description="...and at most this.")
    nps_classes: list[NpsClass] | None = Field(
        default=None,
        min_length=1,
        max_length=3,
        description="From the member's latest feedback score: promoter 9-10, passive 7-8, "
        "detractor 0-6. Members without feedback do not match.",
    )
    birthday_within_days: Annotated[int, Field(strict=True, ge=0, le=366)] | None = Field(
        default=None,
        description="The member's next birthday (program time zone; today is 0) is at most "
        "this many days away.",
    )
    metadata: dict[MetadataKey, MetadataCondition] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_METADATA_KEYS,
        description="Each key's value in the member's metadata equals the value given (or "
        "one of the values of a list).",
    )

    _unique = field_validator("segments", "lifecycles", "tiers", "nps_classes")(_no_duplicates)

    @field_validator("metadata")
    @classmethod
    def _lists_are_bounded(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        for condition in (value or {}).values():
            if isinstance(condition, list) and not 1 <= len(condition) <= MAX_LIST_VALUES:
                raise ValueError(f"a list of values holds 1 to {MAX_LIST_VALUES} values")
        return value

    @model_validator(mode="after")
    def _days_in_order(self) -> Audience:
        low, high = self.min_days_since_last_order, self.max_days_since_last_order
        if low is not None and high is not None and low > high:
            raise ValueError("min_days_since_last_order must not exceed max_days_since_last_order")
        return self


class CampaignAction(RequestModel):
    """Exactly one of ``bonus_points``, ``reward_id`` and ``notify_only``."""

    bonus_points: Points | None = Field(
        default=None, description="A `bonus` entry of this many points for each treated member."
    )
    reward_id: Annotated[int, Field(strict=True, ge=1, le=2**63 - 1)] | None = Field(
        default=None, description="A coupon of this reward, at no points cost."
    )
    notify_only: Literal[True] | None = Field(
        default=None, description="Only the `campaign.targeted` event (the shop's own message)."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> CampaignAction:
        given = [v for v in (self.bonus_points, self.reward_id, self.notify_only) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of bonus_points, reward_id and notify_only")
        return self


class CampaignCreate(RequestModel):
    name: Name
    audience: Audience
    action: CampaignAction
    message: Message | None = Field(
        default=None, description="Passed on in each `campaign.targeted` event."
    )
    holdout_percent: HoldoutPercent = 10
    cooldown_days: CooldownDays = 30
    active: StrictBool = True
    starts_at: CampaignTime | None = Field(default=None, description="Runs from this time on.")
    ends_at: CampaignTime | None = Field(default=None, description="Runs before this time.")

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "name": "Thank-you bonus for promoters",
                    "audience": {"nps_classes": ["promoter"]},
                    "action": {"bonus_points": 200},
                    "message": "Thank you for recommending us: 200 points are yours.",
                    "holdout_percent": 10,
                }
            ]
        }
    }

    _times_are_text = field_validator("starts_at", "ends_at", mode="before")(_rfc3339_text)

    @model_validator(mode="after")
    def _ends_after_start(self) -> CampaignCreate:
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be later than starts_at")
        return self


class CampaignPatch(RequestModel):
    """Only the fields sent change; ``audience`` and ``action`` are replaced whole;
    ``message``, ``starts_at`` and ``ends_at`` may be sent as null to remove them."""

    name: Name | Unset = None
    audience: Audience | Unset = None
    action: CampaignAction | Unset = None
    message: Message | None = None
    holdout_percent: HoldoutPercent | Unset = None
    cooldown_days: CooldownDays | Unset = None
    active: StrictBool | Unset = None
    starts_at: CampaignTime | None = None
    ends_at: CampaignTime | None = None

    model_config = {"json_schema_extra": {"examples": [{"active": False}]}}

    _times_are_text = field_validator("starts_at", "ends_at", mode="before")(_rfc3339_text)

    @field_validator(
        "name", "audience", "action", "holdout_percent", "cooldown_days", "active", mode="before"
    )
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may be left out, but not null")
        return value


class CampaignPreviewRequest(RequestModel):
    audience: Audience
    holdout_percent: HoldoutPercent = 10

    model_config = {
        "json_schema_extra": {
            "examples": [{"audience": {"segments": ["at_risk"]}, "holdout_percent": 10}]
        }
    }


class CampaignPreviewOut(BaseModel):
    members: int = Field(description="Members the audience matches now.")
    treated: int = Field(description="Expected treated: members - holdout.")
    holdout: int = Field(description="Expected held out: members x holdout_percent / 100, rounded.")


class CampaignActionOut(BaseModel):
    bonus_points: int | None = None
    reward_id: int | None = None
    notify_only: bool | None = None


class CampaignOut(BaseModel):
    id: int
    name: str
    audience: dict[str, Any]
    action: CampaignActionOut
    message: str | None
    holdout_percent: int
    cooldown_days: int
    active: bool
    starts_at: Timestamp | None
    ends_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp
    last_run_at: Timestamp | None = Field(description="When the latest run started.")


class CampaignRunOut(BaseModel):
    targeted: int = Field(description="Members this call targeted (treated + holdout).")
    treated: int
    holdout: int


Rate = Annotated[str, Field(description="A decimal string, 4 decimal places.")]
Money = Annotated[str, Field(description="Minor units, a decimal string with 2 decimal places.")]


class GroupResult(BaseModel):
    members: int
    returned: int = Field(description="Members with an order within the window after targeting.")
    return_rate: Rate | None = Field(description="returned / members; null with no members.")
    revenue: int = Field(description="Net amount of those orders, minor units.")
    revenue_per_member: Money | None


class Lift(BaseModel):
    return_rate: Rate | None = Field(description="Treated minus holdout return rate.")
    return_rate_ci95: list[Rate] | None = Field(
        description="[low, high]: 95% interval for the difference of two proportions."
    )
    revenue_per_member: Money | None


class CampaignCost(BaseModel):
    points_granted: int
    coupons_issued: int
    coupons_used: int
    discount_amount: int = Field(description="Minor units.")


class CampaignResultsOut(BaseModel):
    window_days: int
    treated: GroupResult
    holdout: GroupResult
    lift: Lift
    verdict: Literal["positive", "negative", "too_early_to_tell"] = Field(
        description="positive or negative when the interval lies wholly above or below 0."
    )
    cost: CampaignCost
