"""Holds: reserve points at checkout, then capture or release them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from app.auth import Principal, require_scope
from app.routers.deps import (
    IdempotencyKeyHeader,
    MemberPath,
    idempotency_request,
    json_body_doc,
    problems,
    read_json_body,
    reply_json,
)
from app.schemas.holds import HoldCapture, HoldCreate, HoldOut
from app.services.checkout import holds

router = APIRouter(tags=["Holds"])

PointsReader = Annotated[Principal, Depends(require_scope("points:read"))]
PointsWriter = Annotated[Principal, Depends(require_scope("points:write"))]
_HOLD: dict[int | str, dict[str, Any]] = {200: {"model": HoldOut}}


@router.post(
    "/v1/members/{member}/holds",
    status_code=201,
    responses={
        201: {"model": HoldOut, "description": "The active hold."},
        **problems((404, "not_found"), (409, "insufficient_points")),
    },
    openapi_extra=json_body_doc(HoldCreate),
)
async def create_hold(
    member: MemberPath,
    request: Request,
    principal: PointsWriter,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Reserve points: they leave `available` and count in `held` until the hold is captured,
    released, or expires (`ttl_seconds`, default the program's `hold_ttl_seconds`)."""
    body = await read_json_body(request, HoldCreate)
    reply = await holds.create_hold(
        principal.program_id,
        member,
        body.points,
        body.order_id,
        body.ttl_seconds,
        idempotency_request(request, idempotency_key, body),
    )
    return reply_json(reply)


@router.post(
    "/v1/holds/{hold_id}/capture",
    responses={**_HOLD, **problems((404, "not_found"), (409, "hold_not_active"))},
    openapi_extra=json_body_doc(HoldCapture, required=False),
)
async def capture_hold(
    hold_id: str,
    request: Request,
    principal: PointsWriter,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Redeem the held points (a `redeem` entry); with `points`, redeem that many and give the
    rest back. A hold past its `expires_at` is never capturable."""
    body = await read_json_body(request, HoldCapture, required=False)
    reply = await holds.capture_hold(
        principal.program_id,
        hold_id,
        body.points,
        principal.actor,
        idempotency_request(request, idempotency_key, body),
    )
    return reply_json(reply)


@router.post(
    "/v1/holds/{hold_id}/release",
    responses={**_HOLD, **problems((404, "not_found"), (409, "hold_not_active"))},
)
async def release_hold(
    hold_id: str,
    request: Request,
    principal: PointsWriter,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Give the held points back to `available`."""
    reply = await holds.release_hold(
        principal.program_id,
        hold_id,
        principal.actor,
        idempotency_request(request, idempotency_key, None),
    )
    return reply_json(reply)


@router.get("/v1/holds/{hold_id}", responses={**_HOLD, **problems((404, "not_found"))})
async def get_hold(hold_id: str, principal: PointsReader) -> Response:
    """The hold; one past its `expires_at` shows as `expired` even before the job runs."""
    return Response(
        await holds.get_hold(principal.program_id, hold_id), media_type="application/json"
    )
