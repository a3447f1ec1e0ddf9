"""Members, addressed by the shop's own id."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from app.auth import Principal, require_scope
from app.routers.deps import Cursor, Limit, MemberPath, problems
from app.schemas.common import NO_NUL, Page
from app.schemas.insights import Lifecycle, Segment
from app.schemas.members import MemberOut, MemberUpsert
from app.services.members import members

router = APIRouter(prefix="/v1/members", tags=["Members"])

MembersReader = Annotated[Principal, Depends(require_scope("members:read"))]
MembersWriter = Annotated[Principal, Depends(require_scope("members:write"))]
Admin = Annotated[Principal, Depends(require_scope("admin"))]


@router.put(
    "/{member}",
    response_model=MemberOut,
    responses={
        201: {"model": MemberOut, "description": "Created."},
        **problems((404, "referral_code_invalid")),
    },
    operation_id="upsertMember",
)
async def upsert_member(
    member: MemberPath, body: MemberUpsert, principal: MembersWriter, response: Response
) -> MemberOut:
    """Create the member (201) or update the fields sent (200). Fields left out are kept;
    a field sent as null is cleared. PUT is idempotent by nature."""
    result, created = await members.upsert_member(
        principal.program_id, member, body.model_dump(exclude_unset=True)
    )
    response.status_code = 201 if created else 200
    return result


@router.get(
    "/{member}",
    response_model=MemberOut,
    responses=problems((404, "not_found")),
    operation_id="getMember",
)
async def get_member(member: MemberPath, principal: MembersReader) -> MemberOut:
    return await members.get_member(principal.program_id, member)


@router.get("", response_model=Page[MemberOut], responses=problems(), operation_id="listMembers")
async def list_members(
    principal: MembersReader,
    limit: Limit = 20,
    cursor: Cursor = None,
    tier: Annotated[
        str | None,
        Query(max_length=32, pattern=NO_NUL, description="Only members holding this tier (key)."),
    ] = None,
    segment: Annotated[Segment | None, Query(description="RFM segment (insights).")] = None,
    lifecycle: Annotated[Lifecycle | None, Query(description="Lifecycle stage.")] = None,
) -> Page[MemberOut]:
    """Members, newest first."""
    data, next_cursor = await members.list_members(
        principal.program_id,
        limit,
        cursor,
        {"tier": tier, "segment": segment, "lifecycle": lifecycle},
    )
    return Page[MemberOut](data=data, next_cursor=next_cursor)


@router.delete(
    "/{member}", status_code=204, responses=problems((404, "not_found")), operation_id="eraseMember"
)
async def erase_member(member: MemberPath, principal: Admin) -> Response:
    """Erase the member's personal data (name, email, phone, birthday, metadata). The ledger
    is kept, so balances, orders and audits stay correct."""
    await members.erase_member(principal.program_id, member)
    return Response(status_code=204)
