"""Orders (checkout) and refunds."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response

from app.auth import Principal, require_scope
from app.routers.deps import IdempotencyKeyHeader, idempotency_request, problems, reply_json
from app.routers.lean import LeanCall, lean_route
from app.schemas.common import NO_NUL
from app.schemas.orders import OrderCreate, OrderOut, RefundCreate, RefundOut
from app.services.checkout import orders

router = APIRouter(prefix="/v1/orders", tags=["Orders"])

PointsReader = Annotated[Principal, Depends(require_scope("points:read"))]
PointsWriter = Annotated[Principal, Depends(require_scope("points:write"))]
OrderIdPath = Annotated[
    str, Path(min_length=1, max_length=128, pattern=NO_NUL, examples=["A-1001"])
]


@lean_route(
    router,
    "POST",
    "",
    scope="points:write",
    body=OrderCreate,
    status_code=201,
    responses={
        201: {"model": OrderOut, "description": "The order was recorded."},
        200: {
            "model": OrderOut,
            "description": "This order_id was recorded before with the "
            "same body: the order as it is now.",
        },
        **problems(
            (404, "not_found"),
            (409, "order_conflict, hold_not_active, coupon_not_usable (with reason)"),
            (422, "currency_mismatch, points_limit_exceeded"),
        ),
    },
    operation_id="createOrder",
)
async def create_order(call: LeanCall) -> Response:
    """Record an order and credit what it earns (see the breakdown rules). With
    `pending_days` > 0 the points are pending until `occurred_at + pending_days`.
    `redeem_hold_id` captures that hold as part of the order, atomically; `coupon_codes` uses
    those coupons in the same transaction (the order earns on `amount` minus their
    discounts). `order_id` is the natural idempotency key: sending the same order again is
    always safe."""
    reply = await orders.create_order(
        call.principal.program_id, call.principal.actor, call.body, call.idempotency
    )
    return reply_json(reply)


@router.get(
    "/{order_id}",
    responses={200: {"model": OrderOut}, **problems((404, "not_found"))},
    operation_id="getOrder",
)
async def get_order(order_id: OrderIdPath, principal: PointsReader) -> Response:
    """The order with its refunds."""
    return Response(
        await orders.get_order(principal.program_id, order_id), media_type="application/json"
    )


@router.post(
    "/{order_id}/refunds",
    status_code=201,
    responses={
        201: {"model": RefundOut, "description": "The refund was recorded."},
        200: {"model": RefundOut, "description": "This refund_id was recorded before."},
        **problems(
            (404, "not_found"),
            (409, "refund_conflict"),
            (422, "refund_exceeds_order"),
        ),
    },
    operation_id="createRefund",
)
async def create_refund(
    order_id: OrderIdPath,
    body: RefundCreate,
    request: Request,
    principal: PointsWriter,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Refund part or all of an order. Points are reversed (pending first) and restored in
    proportion to the cumulative refunded amount, so a full refund reverses exactly what the
    order earned and restores exactly what it redeemed. A reversal may take the balance below
    zero (a debt that later earnings repay) but never fails. `refund_id` is the natural key."""
    reply = await orders.create_refund(
        principal.program_id,
        order_id,
        body.refund_id,
        body.amount,
        principal.actor,
        idempotency_request(request, idempotency_key, body),
    )
    return reply_json(reply)
