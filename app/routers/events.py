"""The events feed (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from app.auth import Principal, require_scope
from app.routers.deps import Limit, json_page, problems
from app.schemas.common import Page
from app.schemas.events import EventOut, EventType
from app.services.events import events

router = APIRouter(tags=["Events and webhooks"])
Admin = Annotated[Principal, Depends(require_scope("admin"))]


@router.get(
    "/v1/events", response_model=Page[EventOut], responses=problems(), operation_id="listEvents"
)
async def list_events(
    principal: Admin,
    after: Annotated[
        int | None,
        Query(ge=0, le=2**63 - 1, description="Return the events after the one with this id."),
    ] = None,
    type: Annotated[EventType | None, Query(description="Only events of this type.")] = None,
    limit: Limit = 20,
) -> Response:
    """Every change of the program, oldest first. To follow the feed, keep the id of the
    last event you processed and pass it as `after` (`next_cursor` is that id while more
    events are waiting, and null when you have caught up: poll again later). An event
    appears once its transaction, and every older one in Patron's database, has ended, so
    none is ever skipped.
    Ids are unique but, across members, not strictly increasing: always pass the last id
    received rather than the largest."""
    items, next_cursor = await events.list_events(principal.program_id, after, type, limit)
    return json_page(items, next_cursor)
