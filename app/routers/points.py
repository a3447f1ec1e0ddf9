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
    reply_json,
)
from app.routers.lean import MEMBER, LeanCall, lean_route
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


@lean_route(
    router,
    "GET",
    "",
    scope="points:read",
    params={"member": MEMBER},
    response_model=PointsOut,
    responses=problems((404, "not_found")),
    operation_id="getPoints",
)
async def get_points(call: LeanCall) -> Response:
    """The member's balances and the soonest-expiring point buckets."""
    points = await ledger.get_points(call.principal.program_id, call.path["member"])
    return Response(orjson.dumps(points), media_type="application/json")


@router.get(
    "/transactions",
    response_model=Page[PointEntryOut],
    responses=problems((404, "not_found")),
    operation_id="listTransactions",
)
async def list_transactions(
    member: MemberPath, principal: PointsReader, limit: Limit = 20, cursor: Cursor = None
) -> Response:
    """The member's ledger entries, newest first."""
    items, next_cursor = await ledger.list_transactions(principal.program_id, member, limit, cursor)
    return json_page(items, next_cursor)


@lean_route(
    router,
    "POST",
    "/earn",
    scope="points:write",
    params={"member": MEMBER},
    body=EarnRequest,
    status_code=201,
    responses={**_ENTRY_RESPONSES, **problems((404, "not_found"))},
    operation_id="earnPoints",
)
async def earn(call: LeanCall) -> Response:
    """Credit points that are spendable at once (an `earn` entry)."""
    body: EarnRequest = call.body
    posting = _posting(call.principal, call.path["member"], "earn", body.points, body.reason)
    return _counted(await ledger.credit(posting, call.idempotency), "earn")


@lean_route(
    router,
    "POST",
    "/redeem",
    scope="points:write",
    params={"member": MEMBER},
    body=RedeemRequest,
    status_code=201,
    responses={
        **_ENTRY_RESPONSES,
        **problems((404, "not_found"), (409, "insufficient_points")),
    },
    operation_id="redeemPoints",
)
async def redeem(call: LeanCall) -> Response:
    """Spend available points (a `redeem` entry), soonest-expiring first."""
    body: RedeemRequest = call.body
    posting = _posting(
        call.principal, call.path["member"], "redeem", body.points, body.reason, body.order_id
    )
    return _counted(await ledger.debit(posting, call.idempotency), "redeem")


@router.post(
    "/adjust",
    status_code=201,
    responses={
        **_ENTRY_RESPONSES,
        **problems((404, "not_found"), (409, "insufficient_points")),
    },
    operation_id="adjustPoints",
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
