"""Wire models for earn rules (campaigns): extra points on orders that meet conditions."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
    model_validator,
)

from app.schemas.common import MAX_AMOUNT, Points, RequestModel, RequestTime, Timestamp
from app.schemas.programs import Name, Unset

MAX_CONDITION_VALUES = 50

# The same bounds as an order item's category, so any category an order can carry can match.
Category = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00]+$")]
TierKey = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[^\x00]+$")]
IsoWeekday = Annotated[int, Field(strict=True, ge=1, le=7)]
Multiplier = Annotated[
    Decimal,
    Field(
        gt=1,
        le=10,
        max_digits=8,
        decimal_places=6,
        description='A decimal string greater than 1 and at most 10, e.g. "2" or "1.5".',
    ),
]
RuleTime = RequestTime


def _no_duplicates(values: list[Any] | None) -> list[Any] | None:
    if values is not None and len(set(values)) != len(values):
        raise ValueError("values must not repeat")
    return values


class EarnRuleConditions(RequestModel):
    """Every condition given must hold for the rule to match; none given matches every order."""

    categories: list[Category] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_CONDITION_VALUES,
        description="Only items in these categories count, and at least one must be present.",
    )
    min_amount: int | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=MAX_AMOUNT,
        description="The order amount (minor units) must be at least this.",
    )
    tiers: list[TierKey] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_CONDITION_VALUES,
        description="The member's tier key must be one of these.",
    )
    weekdays: list[IsoWeekday] | None = Field(
        default=None,
        min_length=1,
        max_length=7,
        description="ISO weekdays, 1 (Monday) to 7 (Sunday), in the program's time zone.",
    )
    birthday_month: StrictBool | None = Field(
        default=None,
        description="When true, the order must fall in the member's birthday month "
        "(in the program's time zone).",
    )

    _unique = field_validator("categories", "tiers", "weekdays")(_no_duplicates)


class EarnRuleEffect(RequestModel):
    """Exactly one of ``multiplier`` and ``bonus_points``."""

    multiplier: Multiplier | None = Field(
        default=None,
        description="Adds floor(base * (multiplier - 1)) points; base is the base line, or "
        "the base of the matching items for a rule with categories.",
    )
    bonus_points: Points | None = Field(default=None, description="A fixed number of points.")

    @field_validator("multiplier", mode="before")
    @classmethod
    def _multiplier_is_not_a_float(cls, value: object) -> object:
        # Floats lose digits; a multiplier travels as a decimal string (or an integer).
        if isinstance(value, float):
            raise ValueError('multiplier must be a decimal string such as "1.5"')
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> EarnRuleEffect:
        if (self.multiplier is None) == (self.bonus_points is None):
            raise ValueError("give exactly one of multiplier and bonus_points")
        return self


class EarnRuleCreate(RequestModel):
    name: Name
    active: StrictBool
    starts_at: RuleTime | None = Field(default=None, description="Applies from this time on.")
    ends_at: RuleTime | None = Field(
        default=None, description="Applies before this time (exclusive)."
    )
    conditions: EarnRuleConditions
    effect: EarnRuleEffect

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "name": "Double points on tea at weekends",
                    "active": True,
                    "starts_at": "2026-12-01T00:00:00+08:00",
                    "ends_at": "2027-01-01T00:00:00+08:00",
                    "conditions": {"categories": ["tea"], "weekdays": [6, 7]},
                    "effect": {"multiplier": "2"},
                }
            ]
        }
    }

    @model_validator(mode="after")
    def _ends_after_start(self) -> EarnRuleCreate:
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be later than starts_at")
        return self


class EarnRulePatch(RequestModel):
    """Only the fields sent change. ``conditions`` merges condition by condition (send a
    condition as null to remove it); ``effect`` is replaced whole; ``starts_at`` and
    ``ends_at`` may be sent as null to remove the bound."""

    name: Name | Unset = None
    active: StrictBool | Unset = None
    starts_at: RuleTime | None = None
    ends_at: RuleTime | None = None
    conditions: EarnRuleConditions | Unset = None
    effect: EarnRuleEffect | Unset = None

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "active": False,
                    "conditions": {"min_amount": 10000, "weekdays": None},
                    "effect": {"bonus_points": 200},
                }
            ]
        }
    }

    @field_validator("name", "active", "conditions", "effect", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may be left out, but not null")
        return value

    @model_validator(mode="after")
    def _ends_after_start(self) -> EarnRulePatch:
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be later than starts_at")
        return self


class EarnRuleConditionsOut(BaseModel):
    categories: list[str] | None = None
    min_amount: int | None = None
    tiers: list[str] | None = None
    weekdays: list[int] | None = None
    birthday_month: bool | None = None


class EarnRuleEffectOut(BaseModel):
    multiplier: str | None = Field(default=None, description="A decimal string.")
    bonus_points: int | None = None


class EarnRuleOut(BaseModel):
    id: int
    name: str
    active: bool
    starts_at: Timestamp | None
    ends_at: Timestamp | None
    conditions: EarnRuleConditionsOut
    effect: EarnRuleEffectOut
    created_at: Timestamp
    updated_at: Timestamp
