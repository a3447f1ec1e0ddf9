"""Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app import metrics
from app.clock import clock

router = APIRouter(tags=["Operations"])


@router.get("/metrics", response_class=Response, operation_id="getMetrics")
async def get_metrics() -> Response:
    """Prometheus text: requests by route and status, ledger entries by kind, webhook
    deliveries by outcome and their queue, database pool use. Unauthenticated like the
    probes: expose it to your monitoring network only."""
    return Response(await metrics.render(clock.now()), media_type=metrics.CONTENT_TYPE)
