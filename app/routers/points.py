"""Balances and the ledger: GET points, transactions, earn, redeem, adjust."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response

from app import metrics
from app.auth import Principal, require_scope
from app.routers.deps import (
    Cursor,
    IdempotencyKeyHeader,
    Limit,
    MemberPath,
    idempotency_request,
    json_page,
    problems,
    stored_json,
)
from app.schemas.common import Page
from app.schemas.points import (
    AdjustRequest,
    EarnRequest,
    PointEntryOut,
    PointsOut,
    RedeemRequest,
)
from app.services import ledger
from app.services.idempotency import StoredResponse

router = APIRouter(prefix="/v1/members/{member}/points", tags=["Points"])

PointsReader = Annotated[Principal, Depends(require_scope("points:read"))]
PointsWriter = Annotated[Principal, Depends(require_scope("points:write"))]
Admin = Annotated[Principal, Depends(require_scope("admin"))]
_ENTRY_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: {"model": PointEntryOut, "description": "The new ledger entry."}
}


def _entry_written(stored: StoredResponse, kind: str) -> Response:
    """The response, counting the entry unless this replays an earlier one."""
    if not stored.replayed:
        metrics.entry_written(kind)
    return stored_json(stored)


@router.get("", response_model=PointsOut, responses=problems((404, "not_found")))
async def get_points(member: MemberPath, principal: PointsReader) -> Response:
    """The member's balances and the soonest-expiring point buckets."""
    row = await ledger.get_points(principal.program_id, member)
    if isinstance(row["expiring"], str | bytes):
        row["expiring"] = orjson.loads(row["expiring"])
    return Response(orjson.dumps(row), media_type="application/json")


@router.get(
    "/transactions",
    response_model=Page[PointEntryOut],
    responses=problems((404, "not_found")),
)
async def list_transactions(
    member: MemberPath, principal: PointsReader, limit: Limit = 20, cursor: Cursor = None
) -> Response:
    """The member's ledger entries, newest first."""
    items, next_cursor = await ledger.list_transactions(principal.program_id, member, limit, cursor)
    return json_page(items, next_cursor)


@router.post(
    "/earn",
    status_code=201,
    responses={**_ENTRY_RESPONSES, **problems((404, "not_found"))},
)
async def earn(
    member: MemberPath,
    body: EarnRequest,
    request: Request,
    principal: PointsWriter,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Credit points that are spendable at once (an `earn` entry)."""
    posting = ledger.Posting(
        program_id=principal.program_id,
        member=member,
        points=body.points,
        kind="earn",
        event_type="points.earned",
        actor=principal.actor,
        reason=body.reason,
    )
    stored = await ledger.credit(posting, idempotency_request(request, idempotency_key, body))
    return _entry_written(stored, "earn")


@router.post(
    "/redeem",
    status_code=201,
    responses={
        **_ENTRY_RESPONSES,
        **problems((404, "not_found"), (409, "insufficient_points")),
    },
)
async def redeem(
    member: MemberPath,
    body: RedeemRequest,
    request: Request,
    principal: PointsWriter,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Spend available points (a `redeem` entry), soonest-expiring first."""
    posting = ledger.Posting(
        program_id=principal.program_id,
        member=member,
        points=body.points,
        kind="redeem",
        event_type="points.redeemed",
        actor=principal.actor,
        reason=body.reason,
        order_id=body.order_id,
    )
    stored = await ledger.debit(posting, idempotency_request(request, idempotency_key, body))
    return _entry_written(stored, "redeem")


@router.post(
    "/adjust",
    status_code=201,
    responses={
        **_ENTRY_RESPONSES,
        **problems((404, "not_found"), (409, "insufficient_points")),
    },
)
async def adjust(
    member: MemberPath,
    body: AdjustRequest,
    request: Request,
    principal: Admin,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """An admin correction (an `adjust` entry): positive credits, negative debits. A debit
    larger than the available balance is refused rather than creating a debt."""
    posting = ledger.Posting(
        program_id=principal.program_id,
        member=member,
        points=abs(body.points),
        kind="adjust",
        event_type="points.adjusted",
        actor=principal.actor,
        reason=body.reason,
    )
    idem = idempotency_request(request, idempotency_key, body)
    stored = await (
        ledger.credit(posting, idem) if body.points > 0 else ledger.debit(posting, idem)
    )
    return _entry_written(stored, "adjust")
