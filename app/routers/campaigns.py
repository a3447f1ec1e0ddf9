"""Campaigns (admin): act on a class of members and measure what it changed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from app.auth import Principal, require_scope
from app.routers.deps import (
    Cursor,
    IdempotencyKeyHeader,
    Limit,
    idempotency_request,
    problems,
    reply_json,
)
from app.schemas.campaigns import (
    CampaignCreate,
    CampaignOut,
    CampaignPatch,
    CampaignPreviewOut,
    CampaignPreviewRequest,
    CampaignResultsOut,
    CampaignRunOut,
)
from app.schemas.common import Page
from app.services.campaigns import campaigns, results, running

router = APIRouter(prefix="/v1/campaigns", tags=["Campaigns"])

Admin = Annotated[Principal, Depends(require_scope("admin"))]
CampaignId = Annotated[
    int, Path(ge=1, le=2**63 - 1, description="The campaign's id.", examples=[7])
]
WindowDays = Annotated[
    int, Query(ge=1, le=365, description="Days after targeting in which an order counts.")
]


@router.get(
    "", response_model=Page[CampaignOut], responses=problems(), operation_id="listCampaigns"
)
async def list_campaigns(
    principal: Admin, limit: Limit = 20, cursor: Cursor = None
) -> Page[CampaignOut]:
    """The program's campaigns, newest first."""
    data, next_cursor = await campaigns.list_campaigns(principal.program_id, limit, cursor)
    return Page[CampaignOut](data=data, next_cursor=next_cursor)


@router.post(
    "",
    status_code=201,
    responses={201: {"model": CampaignOut, "description": "The new campaign."}, **problems()},
    operation_id="createCampaign",
)
async def create_campaign(
    body: CampaignCreate,
    request: Request,
    principal: Admin,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Create a campaign. An active campaign is run by the worker once a day (and on demand
    through `POST /v1/campaigns/{id}/run`)."""
    reply = await campaigns.create_campaign(
        principal.program_id, body, idempotency_request(request, idempotency_key, body)
    )
    return reply_json(reply)


@router.post(
    "/preview",
    responses={200: {"model": CampaignPreviewOut}, **problems()},
    operation_id="previewCampaign",
)
async def preview_campaign(
    body: CampaignPreviewRequest,
    request: Request,
    principal: Admin,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """How many members an audience matches now, and the expected split. Writes nothing."""
    reply = await campaigns.preview_once(
        principal.program_id, body, idempotency_request(request, idempotency_key, body)
    )
    return reply_json(reply)


@router.get(
    "/{campaign_id}",
    response_model=CampaignOut,
    responses=problems((404, "not_found")),
    operation_id="getCampaign",
)
async def get_campaign(campaign_id: CampaignId, principal: Admin) -> CampaignOut:
    return await campaigns.get_campaign(principal.program_id, campaign_id)


@router.patch(
    "/{campaign_id}",
    response_model=CampaignOut,
    responses=problems((404, "not_found")),
    operation_id="updateCampaign",
)
async def update_campaign(
    campaign_id: CampaignId, body: CampaignPatch, principal: Admin
) -> CampaignOut:
    """Change the fields sent. Members already targeted keep their group and what they got."""
    return await campaigns.update_campaign(principal.program_id, campaign_id, body)


@router.delete(
    "/{campaign_id}",
    status_code=204,
    responses=problems((404, "not_found")),
    operation_id="deleteCampaign",
)
async def delete_campaign(campaign_id: CampaignId, principal: Admin) -> Response:
    """Stop and hide a campaign. Its bonus entries and events stay."""
    await campaigns.delete_campaign(principal.program_id, campaign_id)
    return Response(status_code=204)


@router.post(
    "/{campaign_id}/run",
    response_model=CampaignRunOut,
    responses=problems((404, "not_found"), (409, "campaign_inactive")),
    operation_id="runCampaign",
)
async def run_campaign(
    campaign_id: CampaignId,
    request: Request,
    principal: Admin,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Run the campaign now: every member of the audience outside the cooldown is targeted
    once, treated or held out. Shares the work with a run already under way."""
    reply = await running.run_campaign(
        principal.program_id, campaign_id, idempotency_request(request, idempotency_key, None)
    )
    return reply_json(reply)


@router.get(
    "/{campaign_id}/results",
    response_model=CampaignResultsOut,
    responses=problems((404, "not_found")),
    operation_id="getCampaignResults",
)
async def campaign_results(
    campaign_id: CampaignId, principal: Admin, window_days: WindowDays = 30
) -> CampaignResultsOut:
    """Treated against held out: who came back within `window_days` of being targeted,
    what they spent, the lift with its 95% interval, and what the campaign cost."""
    return await results.campaign_results(principal.program_id, campaign_id, window_days)
