"""Wire models for member tokens (the credential of the /v1/me endpoints)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.schemas.common import RequestModel, Timestamp

# Bounds of a member token's life (api.md "Member tokens").
DEFAULT_TTL_SECONDS = 3600
MAX_TTL_SECONDS = 86_400


class MemberTokenCreate(RequestModel):
    ttl_seconds: int = Field(
        default=DEFAULT_TTL_SECONDS,
        strict=True,
        ge=1,
        le=MAX_TTL_SECONDS,
        description="How long the token lives, in seconds (1-86400, default 3600).",
    )

    model_config = {"json_schema_extra": {"examples": [{"ttl_seconds": 3600}]}}


class MemberTokenOut(BaseModel):
    token: str = Field(
        description="Send as 'Authorization: Bearer <token>' to the /v1/me endpoints only.",
        examples=[
            "mt_eyJwaWQiOjEsIm1pZCI6NDIsImlhdCI6MTc2NDM4ODgwMCwiZXhwIjoxNzY0MzkyNDAwLCJraWQiOjF9.3q2-7w"
        ],
    )
    expires_at: Timestamp
