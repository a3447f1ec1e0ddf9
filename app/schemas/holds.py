"""Wire models for holds (reserve at checkout, then capture or release)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from app.schemas.common import Points, RequestModel, Timestamp
from app.schemas.orders import OrderId


class HoldCreate(RequestModel):
    points: Points
    order_id: OrderId | None = None
    ttl_seconds: int | None = Field(
        default=None, strict=True, ge=1, le=86400, description="Default: the program's."
    )

    model_config = {"json_schema_extra": {"examples": [{"points": 500, "order_id": "A-1001"}]}}


class HoldCapture(RequestModel):
    points: Points | None = Field(
        default=None, description="At most the held points; default all. The rest is released."
    )


class HoldOut(BaseModel):
    hold_id: str
    member_id: str
    points: int
    status: Literal["active", "captured", "released", "expired"]
    order_id: str | None
    expires_at: Timestamp
    points_captured: int | None = None
    created_at: Timestamp
