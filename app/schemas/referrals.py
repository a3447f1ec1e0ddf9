"""Wire models for referral codes, links, attributions and a member's referral funnel."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from app.schemas.common import ExternalId, RequestModel, Timestamp

ReferralStatus = Literal["pending", "qualified", "rewarded", "rejected", "capped"]
Code = Annotated[
    str,
    StringConstraints(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9-]+$"),
    Field(description="8 characters, Crockford base32, case-insensitive.", examples=["7K3QX9MD"]),
]


class ReferralLinkOut(BaseModel):
    code: str
    url: str | None = Field(description="From the program's referral link_template.")


class ReferralCodeOut(BaseModel):
    code: str
    valid: bool
    referee_points: int = Field(description="What a new member gets for joining with it.")


class ReferralCreate(RequestModel):
    code: Code
    referee_id: ExternalId

    model_config = {
        "json_schema_extra": {"examples": [{"code": "7K3QX9MD", "referee_id": "cust-2002"}]}
    }


class ReferralOut(BaseModel):
    id: int
    code: str
    referrer_id: str
    referee_id: str
    status: ReferralStatus
    order_id: str | None = Field(default=None, description="The referee's qualifying order.")
    created_at: Timestamp


class MemberReferralsOut(BaseModel):
    code: str | None
    url: str | None
    invited: int = Field(description="Members who joined with this member's code.")
    qualified: int = Field(description="Of those, who placed a qualifying order.")
    rewarded: int = Field(description="Referrals that paid out (including capped ones).")
    points_earned: int = Field(description="Referral points this member earned as referrer.")
