"""Imports (admin): upload a JSON Lines file, then follow its report."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from app.auth import Principal, require_scope
from app.config import get_settings
from app.routers.deps import IdempotencyKeyHeader, problems
from app.schemas.imports import ImportOut, ImportQueued, ImportType
from app.services.imports import runner, staging

router = APIRouter(tags=["Imports and exports"])

Admin = Annotated[Principal, Depends(require_scope("admin"))]


@router.post(
    "/v1/imports",
    status_code=202,
    operation_id="createImport",
    responses={
        202: {"model": ImportQueued, "description": "Staged and queued for the worker."},
        **problems((413, "payload_too_large"), (422, "idempotency_key_reused")),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
        }
    },
)
async def create_import(
    request: Request,
    principal: Admin,
    type: Annotated[ImportType, Query(description="What each line is.")],
    dry_run: Annotated[
        bool, Query(description="Report what would happen and write nothing.")
    ] = False,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Upload a JSON Lines file (one object per line, at most 512 MiB): members, opening
    balances or historical orders. Each line is validated as it streams in; the worker
    applies the file in the background. Follow it with `GET /v1/imports/{id}`.
    docs/imports.md has the line formats and rejection codes."""
    reply = await staging.receive_import(
        principal.program_id,
        type,
        dry_run,
        principal.actor,
        request.stream(),
        idempotency_key,
        get_settings().max_import_bytes,
    )
    # Accepted, not created: the import runs later. A replay answers the same 202.
    headers = {"Idempotency-Replayed": "true"} if reply.replayed else None
    return Response(reply.body, status_code=202, media_type="application/json", headers=headers)


@router.get(
    "/v1/imports/{import_id}",
    operation_id="getImport",
    response_model=ImportOut,
    responses=problems((404, "not_found")),
)
async def get_import(import_id: str, principal: Admin) -> ImportOut:
    """The import's progress, counts and the first 100 rejected lines."""
    return ImportOut.model_validate(await runner.get_import(principal.program_id, import_id))
