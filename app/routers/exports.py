"""Exports (admin): members, the ledger and orders, streamed as CSV or JSON Lines."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from app.auth import Principal, require_scope
from app.errors import ValidationError
from app.routers.deps import problems
from app.schemas.common import RequestTime
from app.schemas.imports import ExportFormat
from app.services.exports.exports import stream_export

router = APIRouter(prefix="/v1/exports", tags=["Imports and exports"])

Admin = Annotated[Principal, Depends(require_scope("admin"))]
Format = Annotated[
    ExportFormat, Query(description="`csv` (header row, spreadsheet-safe) or `jsonl`.")
]
From = Annotated[RequestTime | None, Query(alias="from", description="Inclusive (RFC 3339).")]
To = Annotated[RequestTime | None, Query(alias="to", description="Exclusive (RFC 3339).")]

_MEDIA = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
_DOCUMENTED = {
    200: {
        "description": "The rows, streamed.",
        "content": {"text/csv": {}, "application/x-ndjson": {}},
    },
    **problems(),
}


def _stream(
    name: str, principal: Principal, start: datetime | None, end: datetime | None, fmt: str
) -> StreamingResponse:
    if start is not None and end is not None and start >= end:
        raise ValidationError("`from` must be before `to`.")
    if any(t is not None and t.tzinfo is None for t in (start, end)):
        raise ValidationError("`from` and `to` need a UTC offset.")
    return StreamingResponse(
        stream_export(name, principal.program_id, start, end, fmt),
        media_type=_MEDIA[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'},
    )


@router.get("/members", operation_id="exportMembers", responses=_DOCUMENTED)
async def export_members(principal: Admin, format: Format = "csv") -> StreamingResponse:
    """Every member, oldest first; each JSON line is a valid members import line."""
    return _stream("members", principal, None, None, format)


@router.get("/ledger", operation_id="exportLedger", responses=_DOCUMENTED)
async def export_ledger(
    principal: Admin, start: From = None, end: To = None, format: Format = "csv"
) -> StreamingResponse:
    """Ledger entries created in `[from, to)`, in the order they were written."""
    return _stream("ledger", principal, start, end, format)


@router.get("/orders", operation_id="exportOrders", responses=_DOCUMENTED)
async def export_orders(
    principal: Admin, start: From = None, end: To = None, format: Format = "csv"
) -> StreamingResponse:
    """Orders that occurred in `[from, to)`."""
    return _stream("orders", principal, start, end, format)
