"""Holds: reserve points at checkout, then capture or release them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

from app.auth import Principal, require_scope
from app.routers.deps import IdPath, problems, reply_json
from app.routers.lean import HOLD_ID, MEMBER, LeanCall, lean_route
from app.schemas.holds import HoldCapture, HoldCreate, HoldOut
from app.services.checkout import holds

router = APIRouter(tags=["Holds"])

PointsReader = Annotated[Principal, Depends(require_scope("points:read"))]
_HOLD: dict[int | str, dict[str, Any]] = {200: {"model": HoldOut}}


@lean_route(
    router,
    "POST",
    "/v1/members/{member}/holds",
    scope="points:write",
    params={"member": MEMBER},
    body=HoldCreate,
    status_code=201,
    responses={
        201: {"model": HoldOut, "description": "The active hold."},
        **problems((404, "not_found"), (409, "insufficient_points")),
    },
    operation_id="createHold",
)
async def create_hold(call: LeanCall) -> Response:
    """Reserve points: they leave `available` and count in `held` until the hold is captured,
    released, or expires (`ttl_seconds`, default the program's `hold_ttl_seconds`)."""
    body: HoldCreate = call.body
    reply = await holds.create_hold(
        call.principal.program_id,
        call.path["member"],
        body.points,
        body.order_id,
        body.ttl_seconds,
        call.idempotency,
    )
    return reply_json(reply)


@lean_route(
    router,
    "POST",
    "/v1/holds/{hold_id}/capture",
    scope="points:write",
    params={"hold_id": HOLD_ID},
    body=HoldCapture,
    body_required=False,
    responses={**_HOLD, **problems((404, "not_found"), (409, "hold_not_active"))},
    operation_id="captureHold",
)
async def capture_hold(call: LeanCall) -> Response:
    """Redeem the held points (a `redeem` entry); with `points`, redeem that many and give the
    rest back. A hold past its `expires_at` is never capturable."""
    body: HoldCapture = call.body
    reply = await holds.capture_hold(
        call.principal.program_id,
        call.path["hold_id"],
        body.points,
        call.principal.actor,
        call.idempotency,
    )
    return reply_json(reply)


@lean_route(
    router,
    "POST",
    "/v1/holds/{hold_id}/release",
    scope="points:write",
    params={"hold_id": HOLD_ID},
    responses={**_HOLD, **problems((404, "not_found"), (409, "hold_not_active"))},
    operation_id="releaseHold",
)
async def release_hold(call: LeanCall) -> Response:
    """Give the held points back to `available`."""
    reply = await holds.release_hold(
        call.principal.program_id, call.path["hold_id"], call.principal.actor, call.idempotency
    )
    return reply_json(reply)


@router.get(
    "/v1/holds/{hold_id}",
    responses={**_HOLD, **problems((404, "not_found"))},
    operation_id="getHold",
)
async def get_hold(hold_id: IdPath, principal: PointsReader) -> Response:
    """The hold; one past its `expires_at` shows as `expired` even before the job runs."""
    return Response(
        await holds.get_hold(principal.program_id, hold_id), media_type="application/json"
    )
