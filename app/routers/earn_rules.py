"""Earn rules (campaigns), admin only. Their points appear as breakdown lines `rule:<id>`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response

from app.auth import Principal, require_scope
from app.routers.deps import (
    Cursor,
    IdempotencyKeyHeader,
    Limit,
    idempotency_request,
    problems,
    reply_json,
)
from app.schemas.common import Page
from app.schemas.earn_rules import EarnRuleCreate, EarnRuleOut, EarnRulePatch
from app.services.checkout import earn_rules

router = APIRouter(prefix="/v1/earn-rules", tags=["Earn rules"])

Admin = Annotated[Principal, Depends(require_scope("admin"))]
RuleId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The rule's id.", examples=[3])]


@router.get(
    "", response_model=Page[EarnRuleOut], responses=problems(), operation_id="listEarnRules"
)
async def list_earn_rules(
    principal: Admin, limit: Limit = 20, cursor: Cursor = None
) -> Page[EarnRuleOut]:
    """The program's earn rules, newest first."""
    data, next_cursor = await earn_rules.list_earn_rules(principal.program_id, limit, cursor)
    return Page[EarnRuleOut](data=data, next_cursor=next_cursor)


@router.post(
    "",
    status_code=201,
    responses={201: {"model": EarnRuleOut, "description": "The new rule."}, **problems()},
    operation_id="createEarnRule",
)
async def create_earn_rule(
    body: EarnRuleCreate,
    request: Request,
    principal: Admin,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Create a rule. Every active rule whose dates and conditions an order meets adds a
    breakdown line; rules stack. At most 100 rules of a program may be active at once."""
    reply = await earn_rules.create_earn_rule(
        principal.program_id, body, idempotency_request(request, idempotency_key, body)
    )
    return reply_json(reply)


@router.get(
    "/{rule_id}",
    response_model=EarnRuleOut,
    responses=problems((404, "not_found")),
    operation_id="getEarnRule",
)
async def get_earn_rule(rule_id: RuleId, principal: Admin) -> EarnRuleOut:
    return await earn_rules.get_earn_rule(principal.program_id, rule_id)


@router.patch(
    "/{rule_id}",
    response_model=EarnRuleOut,
    responses=problems((404, "not_found")),
    operation_id="updateEarnRule",
)
async def update_earn_rule(rule_id: RuleId, body: EarnRulePatch, principal: Admin) -> EarnRuleOut:
    """Change the fields sent. `conditions` merges condition by condition (null removes
    one); `effect` is replaced whole. Orders already placed keep what they earned."""
    return await earn_rules.update_earn_rule(principal.program_id, rule_id, body)


@router.delete(
    "/{rule_id}",
    status_code=204,
    responses=problems((404, "not_found")),
    operation_id="deleteEarnRule",
)
async def delete_earn_rule(rule_id: RuleId, principal: Admin) -> Response:
    """Delete a rule. Orders already placed keep their `rule:<id>` lines."""
    await earn_rules.delete_earn_rule(principal.program_id, rule_id)
    return Response(status_code=204)
