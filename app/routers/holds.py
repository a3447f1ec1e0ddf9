"""Holds: reserve points at checkout, then capture or release them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from app.auth import Principal, require_scope
from app.hot_paths import HotRoute
from app.routers.deps import (
    IdempotencyKeyHeader,
    MemberPath,
    idempotency_request,
    problems,
    stored_json,
)
from app.schemas.common import ExternalId
from app.schemas.holds import HoldCapture, HoldCreate, HoldOut
from app.services.checkout import holds
from app.services.idempotency import IdempotencyRequest, StoredResponse

router = APIRouter(tags=["Holds"])

PointsReader = Annotated[Principal, Depends(require_scope("points:read"))]
PointsWriter = Annotated[Principal, Depends(require_scope("points:write"))]
_HOLD: dict[int | str, dict[str, Any]] = {200: {"model": HoldOut}}


async def _create(
    principal: Principal, member: str, body: HoldCreate, request: IdempotencyRequest | None
) -> StoredResponse:
    return await holds.create_hold(
        principal.program_id, member, body.points, body.order_id, body.ttl_seconds, request
    )


async def _capture(
    principal: Principal, hold_id: str, body: HoldCapture, request: IdempotencyRequest | None
) -> StoredResponse:
    return await holds.capture_hold(
        principal.program_id, hold_id, body.points, principal.actor, request
    )


async def _release(
    principal: Principal, hold_id: str, request: IdempotencyRequest | None
) -> StoredResponse:
    return await holds.release_hold(principal.program_id, hold_id, principal.actor, request)


@router.post(
    "/v1/members/{member}/holds",
    status_code=201,
    responses={
        201: {"model": HoldOut, "description": "The active hold."},
        **problems((404, "not_found"), (409, "insufficient_points")),
    },
    operation_id="createHold",
)
async def create_hold(
    member: MemberPath,
    body: HoldCreate,
    request: Request,
    principal: PointsWriter,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Reserve points: they leave `available` and count in `held` until the hold is captured,
    released, or expires (`ttl_seconds`, default the program's `hold_ttl_seconds`)."""
    return stored_json(
        await _create(principal, member, body, idempotency_request(request, idempotency_key, body))
    )


@router.post(
    "/v1/holds/{hold_id}/capture",
    responses={**_HOLD, **problems((404, "not_found"), (409, "hold_not_active"))},
    operation_id="captureHold",
)
async def capture_hold(
    hold_id: str,
    request: Request,
    principal: PointsWriter,
    body: HoldCapture | None = None,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Redeem the held points (a `redeem` entry); with `points`, redeem that many and give the
    rest back. A hold past its `expires_at` is never capturable."""
    capture = body or HoldCapture()
    idempotency = idempotency_request(request, idempotency_key, capture)
    return stored_json(await _capture(principal, hold_id, capture, idempotency))


@router.post(
    "/v1/holds/{hold_id}/release",
    responses={**_HOLD, **problems((404, "not_found"), (409, "hold_not_active"))},
    operation_id="releaseHold",
)
async def release_hold(
    hold_id: str,
    request: Request,
    principal: PointsWriter,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Give the held points back to `available`."""
    return stored_json(
        await _release(principal, hold_id, idempotency_request(request, idempotency_key, None))
    )


@router.get(
    "/v1/holds/{hold_id}",
    responses={**_HOLD, **problems((404, "not_found"))},
    operation_id="getHold",
)
async def get_hold(hold_id: str, principal: PointsReader) -> Response:
    """The hold; one past its `expires_at` shows as `expired` even before the job runs."""
    return Response(
        await holds.get_hold(principal.program_id, hold_id), media_type="application/json"
    )


HOT_ROUTES = [
    HotRoute(
        "POST",
        "/v1/members/{member}/holds",
        "points:write",
        lambda call: _create(
            call.principal, call.path_params["member"], call.body, call.idempotency
        ),
        body=HoldCreate,
        path_types={"member": ExternalId},
    ),
    HotRoute(
        "POST",
        "/v1/holds/{hold_id}/capture",
        "points:write",
        lambda call: _capture(
            call.principal, call.path_params["hold_id"], call.body, call.idempotency
        ),
        body=HoldCapture,
        body_required=False,
    ),
    HotRoute(
        "POST",
        "/v1/holds/{hold_id}/release",
        "points:write",
        lambda call: _release(call.principal, call.path_params["hold_id"], call.idempotency),
    ),
]
