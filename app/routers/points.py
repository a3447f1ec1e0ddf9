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
    json_body_doc,
    json_page,
    problems,
    read_json_body,
    reply_json,
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
from app.services.idempotency import Reply

router = APIRouter(prefix="/v1/members/{member}/points", tags=["Points"])

PointsReader = Annotated[Principal, Depends(require_scope("points:read"))]
PointsWriter = Annotated[Principal, Depends(require_scope("points:write"))]
Admin = Annotated[Principal, Depends(require_scope("admin"))]
_ENTRY_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: {"model": PointEntryOut, "description": "The new ledger entry."}
}
_EVENT_TYPES = {"earn": "points.earned", "redeem": "points.redeemed", "adjust": "points.adjusted"}


def _counted(reply: Reply, kind: str) -> Response:
    """The reply, counting the entry unless this replays an earlier one."""
    if not reply.replayed:
        metrics.entry_written(kind)
    return reply_json(reply)


def _posting(
    principal: Principal,
    member: str,
    kind: str,
    points: int,
    reason: str | None,
    order_id: str | None = None,
) -> ledger.Posting:
    return ledger.Posting(
        program_id=principal.program_id,
        member=member,
        points=points,
        kind=kind,
        event_type=_EVENT_TYPES[kind],
        actor=principal.actor,
        reason=reason,
        order_id=order_id,
    )


@router.get("", response_model=PointsOut, responses=problems((404, "not_found")))
async def get_points(member: MemberPath, principal: PointsReader) -> Response:
    """The member's balances and the soonest-expiring point buckets."""
    points = await ledger.get_points(principal.program_id, member)
    return Response(orjson.dumps(points), media_type="application/json")


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
    openapi_extra=json_body_doc(EarnRequest),
)
async def earn(
    member: MemberPath,
    request: Request,
    principal: PointsWriter,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Credit points that are spendable at once (an `earn` entry)."""
    body = await read_json_body(request, EarnRequest)
    posting = _posting(principal, member, "earn", body.points, body.reason)
    reply = await ledger.credit(posting, idempotency_request(request, idempotency_key, body))
    return _counted(reply, "earn")


@router.post(
    "/redeem",
    status_code=201,
    responses={
        **_ENTRY_RESPONSES,
        **problems((404, "not_found"), (409, "insufficient_points")),
    },
    openapi_extra=json_body_doc(RedeemRequest),
)
async def redeem(
    member: MemberPath,
    request: Request,
    principal: PointsWriter,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Spend available points (a `redeem` entry), soonest-expiring first."""
    body = await read_json_body(request, RedeemRequest)
    posting = _posting(principal, member, "redeem", body.points, body.reason, body.order_id)
    reply = await ledger.debit(posting, idempotency_request(request, idempotency_key, body))
    return _counted(reply, "redeem")


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
    posting = _posting(principal, member, "adjust", abs(body.points), body.reason)
    idem = idempotency_request(request, idempotency_key, body)
    reply = await (ledger.credit(posting, idem) if body.points > 0 else ledger.debit(posting, idem))
    return _counted(reply, "adjust")
