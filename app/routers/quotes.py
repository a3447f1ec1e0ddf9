"""Quotes: what an order would earn, before the checkout places it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from app.auth import Principal, require_scope
from app.routers.deps import IdempotencyKeyHeader, idempotency_request, problems, reply_json
from app.schemas.orders import QuoteOut, QuoteRequest
from app.services.checkout import earning

router = APIRouter(prefix="/v1/orders", tags=["Orders"])

PointsReader = Annotated[Principal, Depends(require_scope("points:read"))]


@router.post(
    "/quote",
    responses={
        200: {"model": QuoteOut},
        **problems((404, "not_found"), (422, "currency_mismatch"), (422, "points_limit_exceeded")),
    },
    operation_id="quoteOrder",
)
async def quote_order(
    body: QuoteRequest,
    request: Request,
    principal: PointsReader,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """The points an order would earn now, line by line, and how many points the member
    could redeem on it. Changes nothing in the ledger; with an Idempotency-Key the first
    answer is kept and replayed, as for every POST."""
    reply = await earning.quote_once(
        principal.program_id, body, idempotency_request(request, idempotency_key, body)
    )
    return reply_json(reply)
