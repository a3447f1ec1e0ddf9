"""Wire models for webhook endpoints and their delivery log."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, field_validator

from app.schemas.common import RequestModel, Timestamp
from app.schemas.events import EVENT_TYPES, EventType

ALL_EVENTS = "*"
Description = Annotated[str, StringConstraints(max_length=500, pattern=r"^[^\x00]*$")]


class WebhookEndpointCreate(RequestModel):
    url: Annotated[str, StringConstraints(min_length=1, max_length=2048)] = Field(
        description="An http or https URL. It must resolve to public addresses only, unless "
        "the program setting `webhooks_allow_private_hosts` is on."
    )
    events: list[EventType | Literal["*"]] = Field(
        min_length=1,
        max_length=len(EVENT_TYPES),
        description='The event types to deliver, or `["*"]` for all of them.',
    )
    description: Description | None = None

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "url": "https://shop.example/hooks/patron",
                    "events": ["points.earned", "points.redeemed"],
                    "description": "CRM sync",
                }
            ]
        }
    }

    @field_validator("events")
    @classmethod
    def _all_or_types(cls, value: list[str]) -> list[str]:
        if ALL_EVENTS in value and len(value) > 1:
            raise ValueError('"*" stands for every type; send it alone')
        # Keep the order the client chose, without repeats.
        return list(dict.fromkeys(value))


class WebhookEndpointOut(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str | None
    status: Literal["active", "paused"] = Field(
        description="`paused` after deliveries kept failing for the whole retry horizon; "
        "new events still queue up. POST .../resume to send them again."
    )
    paused_reason: str | None = Field(description="Why the endpoint was paused.")
    paused_at: Timestamp | None
    failing_since: Timestamp | None = Field(
        description="When the current run of failed attempts began (null after a success)."
    )
    consecutive_failures: int
    created_at: Timestamp


class WebhookEndpointWithSecret(WebhookEndpointOut):
    secret: str | None = Field(
        description="The signing secret. Shown when the endpoint is created and when the "
        "secret is rotated, nowhere else (null when an Idempotency-Key replays the response)."
    )


class WebhookDeliveryOut(BaseModel):
    id: int
    event_id: int
    event_type: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int = Field(description="Attempts made so far.")
    next_attempt_at: Timestamp | None = Field(description="When pending: the next attempt.")
    last_attempt_at: Timestamp | None
    last_status_code: int | None = Field(description="The receiver's HTTP status, if any.")
    last_error: str | None
    delivered_at: Timestamp | None
    created_at: Timestamp
