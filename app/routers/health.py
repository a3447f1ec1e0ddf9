"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.services import health

router = APIRouter(tags=["Operations"])

_READINESS_SCHEMA = {
    "type": "object",
    "properties": {"status": {"type": "string"}, "detail": {"type": "string"}},
    "required": ["status", "detail"],
}


@router.get("/healthz", operation_id="checkHealth")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    operation_id="checkReadiness",
    responses={
        503: {
            "description": "Not ready: the database is unreachable, or slower than 2 s to "
            "answer, or its schema is behind the code (`detail` says which).",
            "content": {"application/json": {"schema": _READINESS_SCHEMA}},
        }
    },
)
async def readyz() -> JSONResponse:
    """The database answers and its schema is at the migrations' head."""
    ready, detail = await health.readiness()
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "detail": detail},
        status_code=200 if ready else 503,
    )
