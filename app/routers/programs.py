"""Program settings and API keys (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from app.auth import Principal, require_scope
from app.routers.deps import (
    IdempotencyKeyHeader,
    IdPath,
    idempotency_request,
    problems,
    reply_with_secret,
)
from app.schemas.programs import ApiKeyCreate, ApiKeyCreated, ApiKeyOut, ProgramOut, ProgramPatch
from app.services.programs import programs

# One tag per operation, so that /docs lists each once: "Program" or "API keys".
router = APIRouter()
Admin = Annotated[Principal, Depends(require_scope("admin"))]


@router.get(
    "/v1/program",
    response_model=ProgramOut,
    tags=["Program"],
    responses=problems(),
    operation_id="getProgram",
)
async def get_program(principal: Admin) -> ProgramOut:
    return await programs.get_program(principal.program_id)


@router.patch(
    "/v1/program",
    response_model=ProgramOut,
    tags=["Program"],
    responses=problems(),
    operation_id="updateProgram",
)
async def update_program(body: ProgramPatch, principal: Admin) -> ProgramOut:
    """Change settings. Only the fields sent change; `referral` merges field by field.
    New settings apply to points earned from now on (existing lots keep their expiry)."""
    changes = body.model_dump(exclude_unset=True)
    if "referral" in changes and body.referral is not None:
        changes["referral"] = body.referral.model_dump(exclude_unset=True)
    return await programs.update_program(principal.program_id, changes)


@router.post(
    "/v1/api-keys",
    status_code=201,
    tags=["API keys"],
    responses={201: {"model": ApiKeyCreated}, **problems()},
    operation_id="createApiKey",
)
async def create_api_key(
    body: ApiKeyCreate,
    request: Request,
    principal: Admin,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Create a key. `key` is shown in this response only. A replay (same Idempotency-Key)
    returns the same metadata with `key: null`, since the secret is never stored."""
    reply, created = await programs.create_api_key(
        principal.program_id,
        body.name,
        list(body.scopes),
        idempotency_request(request, idempotency_key, body),
    )
    return reply_with_secret(reply, created)


@router.get(
    "/v1/api-keys",
    response_model=list[ApiKeyOut],
    tags=["API keys"],
    responses=problems(),
    operation_id="listApiKeys",
)
async def list_api_keys(principal: Admin) -> list[ApiKeyOut]:
    return await programs.list_api_keys(principal.program_id)


@router.delete(
    "/v1/api-keys/{key_id}",
    status_code=204,
    tags=["API keys"],
    responses=problems((404, "not_found")),
    operation_id="revokeApiKey",
)
async def revoke_api_key(key_id: IdPath, principal: Admin) -> Response:
    """Revoke a key: it stops working at once."""
    await programs.revoke_api_key(principal.program_id, key_id)
    return Response(status_code=204)
