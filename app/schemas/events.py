"""Wire models for the events feed."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from app.schemas.common import Timestamp

# Every event type of api.md. A webhook endpoint may subscribe to any of them, or to "*".
EventType = Literal[
    "member.created",
    "member.erased",
    "points.earned",
    "points.redeemed",
    "points.adjusted",
    "points.released",
    "points.expired",
    "order.created",
    "order.refunded",
    "hold.created",
    "hold.captured",
    "hold.released",
    "hold.expired",
    "tier.changed",
    "referral.created",
    "referral.rewarded",
    "referral.rejected",
    "reward.redeemed",
    "coupon.issued",
    "coupon.used",
    "coupon.voided",
    "coupon.expired",
    "coupon.reactivated",
    "campaign.targeted",
    "points.expiring",
    "tier.downgrade_scheduled",
    "member.birthday_upcoming",
    "member.segment_changed",
    "member.lifecycle_changed",
    "import.finished",
]
EVENT_TYPES: tuple[str, ...] = EventType.__args__  # type: ignore[attr-defined]


class EventOut(BaseModel):
    """One change, as the feed lists it and as a webhook delivers it (the same bytes)."""

    id: int = Field(description="Unique; receivers dedupe on it. Pass as ?after= to resume.")
    type: EventType
    created_at: Timestamp
    member_id: str | None = Field(description="The member's external_id, when member-scoped.")
    data: dict[str, Any] = Field(
        description="Type-specific. Member-scoped events carry `member_id` and `sequence`, "
        "which increases by one or more with each change to that member: order a member's "
        "events by it."
    )
