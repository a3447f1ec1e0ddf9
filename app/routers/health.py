"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.services import health

router = APIRouter(tags=["Operations"])


@router.get("/healthz", operation_id="checkHealth")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", operation_id="checkReadiness")
async def readyz() -> JSONResponse:
    """The database answers and its schema is at the migrations' head."""
    ready, detail = await health.readiness()
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "detail": detail},
        status_code=200 if ready else 503,
    )
