"""Wire models for members."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, Field, StringConstraints, field_validator

from app.schemas.common import RequestDate, RequestModel, Timestamp
from app.schemas.insights import Lifecycle, Segment
from app.schemas.points import BalanceOut
from app.schemas.referrals import Code

# PostgreSQL cannot store U+0000 in text or jsonb, so no string may carry it.
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]
Email = Annotated[
    str,
    StringConstraints(max_length=320, pattern=r"^[^@\s\x00]{1,64}@[^@\s\x00]+\.[^@\s\x00]+$"),
]
# At most 32 characters, the width of the phone column.
Phone = Annotated[str, StringConstraints(max_length=32, pattern=r"^\+?[0-9][0-9 ()\-]{2,31}$")]

MAX_METADATA_KEYS = 50
MAX_METADATA_BYTES = 16_384


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


class MemberUpsert(RequestModel):
    name: Name | None = None
    email: Email | None = None
    phone: Phone | None = None
    birthday: RequestDate | None = None
    metadata: dict[str, Any] | None = Field(
        default=None, description="Free-form, at most 50 keys and 16 KiB as JSON."
    )
    referral_code: Code | None = Field(
        default=None,
        description="A referrer's code; counts only when this call creates the member.",
    )

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "name": "Li Wei",
                    "email": "li.wei@example.com",
                    "phone": "+86 138 0013 8000",
                    "birthday": "1990-05-17",
                    "metadata": {"store": "Shanghai"},
                }
            ]
        }
    }

    @field_validator("metadata")
    @classmethod
    def _bounded_metadata(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        if len(value) > MAX_METADATA_KEYS:
            raise ValueError(f"at most {MAX_METADATA_KEYS} keys")
        if any(len(key) > 64 for key in value):
            raise ValueError("keys are at most 64 characters")
        try:
            encoded = orjson.dumps(value)
        except orjson.JSONEncodeError as exc:
            # Integers beyond 64 bits or nesting deeper than 254 levels.
            raise ValueError(f"not storable as JSON: {exc}") from exc
        if len(encoded) > MAX_METADATA_BYTES:
            raise ValueError(f"at most {MAX_METADATA_BYTES} bytes as JSON")
        if _has_nul(value):
            raise ValueError("strings may not contain the NUL character (U+0000)")
        return value

    @field_validator("birthday")
    @classmethod
    def _plausible_birthday(cls, value: date | None) -> date | None:
        if value is not None and not (date(1900, 1, 1) <= value <= date(2100, 1, 1)):
            raise ValueError("birthday out of range")
        return value


class TierRef(BaseModel):
    key: str
    name: str


class FeedbackRef(BaseModel):
    score: int
    created_at: Timestamp


class MemberOut(BaseModel):
    external_id: str
    name: str | None
    email: str | None
    phone: str | None
    birthday: date | None
    metadata: dict[str, Any] | None
    tier: TierRef | None
    points: BalanceOut
    referral_code: str | None
    referred_by: str | None
    created_at: Timestamp
    # Insights (docs/insights.md): as of the last refresh.
    segment: Segment
    lifecycle: Lifecycle
    latest_feedback: FeedbackRef | None
