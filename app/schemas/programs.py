"""Wire models for program settings and API keys."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, StringConstraints, field_validator
from pydantic.json_schema import SkipJsonSchema

from app.schemas.common import RequestModel, Timestamp

Scope = Literal[
    "members:read",
    "members:write",
    "points:read",
    "points:write",
    "referrals:read",
    "referrals:write",
    "admin",
]
SCOPES: tuple[str, ...] = Scope.__args__  # type: ignore[attr-defined]

# PostgreSQL cannot store U+0000 in text or jsonb, so no string may carry it.
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]

EarnRate = Annotated[
    Decimal,
    Field(ge=0, le=1_000_000, max_digits=18, decimal_places=6, description="Decimal string."),
]

PointValue = Annotated[
    Decimal,
    Field(ge=0, le=1_000_000, max_digits=18, decimal_places=6, description="Decimal string."),
]


class ReferralSettings(BaseModel):
    referrer_points: int = Field(default=0, ge=0, le=1_000_000_000, strict=True)
    referee_points: int = Field(default=0, ge=0, le=1_000_000_000, strict=True)
    min_order_amount: int = Field(default=0, ge=0, le=10**12, strict=True)
    max_rewards_per_referrer_30d: int | None = Field(default=None, ge=0, le=1_000_000, strict=True)
    link_template: str | None = Field(
        default=None,
        max_length=500,
        pattern=r"^https?://[^\s\x00]*\{code\}[^\s\x00]*$",
        description="A URL with {code} in it, e.g. https://shop.example/invite/{code}.",
    )


class ReferralSettingsPatch(ReferralSettings):
    model_config = {"extra": "forbid"}


class ProgramOut(BaseModel):
    id: int
    name: str
    currency: str
    earn_rate: str = Field(description="Points per one major currency unit, a decimal string.")
    pending_days: int
    points_expiry_days: int | None
    hold_ttl_seconds: int
    timezone: str
    birthday_bonus_points: int
    webhooks_allow_private_hosts: bool
    referral: ReferralSettings
    created_at: Timestamp
    updated_at: Timestamp
    # Insights (docs/insights.md).
    lifecycle_mature_days: int = Field(
        default=365, description="A repeat customer is mature once their first order is this old."
    )
    lifecycle_churn_days: int = Field(
        default=180, description="Churned after this many days without an order..."
    )
    lifecycle_churn_interval_multiple: int = Field(
        default=3, description="...or this multiple of their average order interval, if longer."
    )
    point_value_minor: str = Field(
        default="1", description="What one point is worth in minor units, a decimal string."
    )
    # Reminder events (docs/campaigns.md).
    expiry_reminder_days: int | None = Field(
        default=14, description="`points.expiring` this many days before lots expire; null: off."
    )
    birthday_reminder_days: int | None = Field(
        default=7, description="`member.birthday_upcoming` this many days before; null: off."
    )


# A setting left out of a PATCH is kept; only points_expiry_days may be sent as null (never
# expire). ``Unset`` documents the others as not nullable, and ``_not_null`` refuses an
# explicit null for them with a 422 instead of letting it reach a NOT NULL column.
Unset = SkipJsonSchema[None]


class ProgramPatch(RequestModel):
    name: Name | Unset = None
    earn_rate: EarnRate | Unset = None
    pending_days: Annotated[int, Field(ge=0, le=365, strict=True)] | Unset = None
    points_expiry_days: int | None = Field(default=None, ge=1, le=3650, strict=True)
    hold_ttl_seconds: Annotated[int, Field(ge=1, le=86400, strict=True)] | Unset = None
    timezone: Annotated[str, Field(max_length=64)] | Unset = None
    birthday_bonus_points: Annotated[int, Field(ge=0, le=1_000_000_000, strict=True)] | Unset = None
    webhooks_allow_private_hosts: bool | Unset = None
    referral: ReferralSettingsPatch | Unset = None
    # Insights (docs/insights.md).
    lifecycle_mature_days: Annotated[int, Field(ge=1, le=3650, strict=True)] | Unset = None
    lifecycle_churn_days: Annotated[int, Field(ge=1, le=3650, strict=True)] | Unset = None
    lifecycle_churn_interval_multiple: Annotated[int, Field(ge=1, le=100, strict=True)] | Unset = (
        None
    )
    point_value_minor: PointValue | Unset = None
    # Reminder events (docs/campaigns.md); null turns a reminder off.
    expiry_reminder_days: int | None = Field(default=None, ge=1, le=365, strict=True)
    birthday_reminder_days: int | None = Field(default=None, ge=0, le=60, strict=True)

    model_config = {
        "json_schema_extra": {
            "examples": [
                {"earn_rate": "1.5", "points_expiry_days": 365, "timezone": "Asia/Shanghai"}
            ]
        }
    }

    @field_validator(
        "name",
        "earn_rate",
        "pending_days",
        "hold_ttl_seconds",
        "timezone",
        "birthday_bonus_points",
        "webhooks_allow_private_hosts",
        "referral",
        mode="before",
    )
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may be left out, but not null")
        return value

    @field_validator(
        "lifecycle_mature_days",
        "lifecycle_churn_days",
        "lifecycle_churn_interval_multiple",
        "point_value_minor",
        mode="before",
    )
    @classmethod
    def _insights_not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may be left out, but not null")
        if isinstance(value, float):
            raise ValueError('must be an integer or a decimal string such as "0.5"')
        return value

    @field_validator("earn_rate", mode="before")
    @classmethod
    def _earn_rate_is_a_string(cls, value: object) -> object:
        # Floats lose digits; a rate travels as a decimal string (or an integer).
        if isinstance(value, float):
            raise ValueError('earn_rate must be a decimal string such as "1.5"')
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("unknown IANA time zone") from exc
        return value


class ApiKeyCreate(RequestModel):
    name: Name
    scopes: list[Scope] = Field(min_length=1, max_length=len(SCOPES))

    model_config = {
        "json_schema_extra": {
            "examples": [{"name": "Checkout", "scopes": ["points:read", "points:write"]}]
        }
    }


class ApiKeyOut(BaseModel):
    id: str
    name: str
    scopes: list[str]
    prefix: str
    created_at: Timestamp
    revoked_at: Timestamp | None = None


class ApiKeyCreated(ApiKeyOut):
    key: str | None = Field(
        description="The secret key. Shown in this response only; never stored in clear."
    )
