"""Balances and the ledger: GET points, transactions, earn, redeem, adjust."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response

from app import metrics
from app.auth import Principal, require_scope
from app.hot_paths import HotRoute
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
from app.schemas.common import ExternalId, Page
from app.schemas.points import (
    AdjustRequest,
    EarnRequest,
    PointEntryOut,
    PointsOut,
    RedeemRequest,
)
from app.services import ledger
from app.services.idempotency import IdempotencyRequest, StoredResponse

router = APIRouter(prefix="/v1/members/{member}/points", tags=["Points"])

PointsReader = Annotated[Principal, Depends(require_scope("points:read"))]
PointsWriter = Annotated[Principal, Depends(require_scope("points:write"))]
Admin = Annotated[Principal, Depends(require_scope("admin"))]
_ENTRY_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: {"model": PointEntryOut, "description": "The new ledger entry."}
}


def _counted(stored: StoredResponse, kind: str) -> StoredResponse:
    """The response, counting the entry unless this replays an earlier one."""
    if not stored.replayed:
        metrics.entry_written(kind)
    return stored


async def _points(principal: Principal, member: str) -> StoredResponse:
    row = await ledger.get_points(principal.program_id, member)
    return StoredResponse(200, orjson.dumps(row).decode())


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


_EVENT_TYPES = {"earn": "points.earned", "redeem": "points.redeemed", "adjust": "points.adjusted"}


async def _earn(
    principal: Principal, member: str, body: EarnRequest, request: IdempotencyRequest | None
) -> StoredResponse:
    posting = _posting(principal, member, "earn", body.points, body.reason)
    return _counted(await ledger.credit(posting, request), "earn")


async def _redeem(
    principal: Principal, member: str, body: RedeemRequest, request: IdempotencyRequest | None
) -> StoredResponse:
    posting = _posting(principal, member, "redeem", body.points, body.reason, body.order_id)
    return _counted(await ledger.debit(posting, request), "redeem")


@router.get(
    "", response_model=PointsOut, responses=problems((404, "not_found")), operation_id="getPoints"
)
async def get_points(member: MemberPath, principal: PointsReader) -> Response:
    """The member's balances and the soonest-expiring point buckets."""
    return stored_json(await _points(principal, member))


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


@router.post(
    "/earn",
    status_code=201,
    responses={**_ENTRY_RESPONSES, **problems((404, "not_found"))},
    operation_id="earnPoints",
)
async def earn(
    member: MemberPath,
    body: EarnRequest,
    request: Request,
    principal: PointsWriter,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Credit points that are spendable at once (an `earn` entry)."""
    return stored_json(
        await _earn(principal, member, body, idempotency_request(request, idempotency_key, body))
    )


@router.post(
    "/redeem",
    status_code=201,
    responses={
        **_ENTRY_RESPONSES,
        **problems((404, "not_found"), (409, "insufficient_points")),
    },
    operation_id="redeemPoints",
)
async def redeem(
    member: MemberPath,
    body: RedeemRequest,
    request: Request,
    principal: PointsWriter,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Spend available points (a `redeem` entry), soonest-expiring first."""
    return stored_json(
        await _redeem(principal, member, body, idempotency_request(request, idempotency_key, body))
    )


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
    stored = await (
        ledger.credit(posting, idem) if body.points > 0 else ledger.debit(posting, idem)
    )
    return stored_json(_counted(stored, "adjust"))


_MEMBER = {"member": ExternalId}

HOT_ROUTES = [
    HotRoute(
        "GET",
        "/v1/members/{member}/points",
        "points:read",
        lambda call: _points(call.principal, call.path_params["member"]),
        path_types=_MEMBER,
    ),
    HotRoute(
        "POST",
        "/v1/members/{member}/points/earn",
        "points:write",
        lambda call: _earn(call.principal, call.path_params["member"], call.body, call.idempotency),
        body=EarnRequest,
        path_types=_MEMBER,
    ),
    HotRoute(
        "POST",
        "/v1/members/{member}/points/redeem",
        "points:write",
        lambda call: _redeem(
            call.principal, call.path_params["member"], call.body, call.idempotency
        ),
        body=RedeemRequest,
        path_types=_MEMBER,
    ),
]
