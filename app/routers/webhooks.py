"""Webhook endpoints (admin): register, list, delete, rotate the secret, resume, and the
delivery log."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from app.auth import Principal, require_scope
from app.routers.deps import (
    Cursor,
    IdempotencyKeyHeader,
    IdPath,
    Limit,
    idempotency_request,
    problems,
    reply_json,
    reply_with_secret,
)
from app.schemas.common import Page
from app.schemas.webhooks import (
    WebhookDeliveryOut,
    WebhookEndpointCreate,
    WebhookEndpointOut,
    WebhookEndpointWithSecret,
)
from app.services.events import webhooks

router = APIRouter(prefix="/v1/webhook-endpoints", tags=["Events and webhooks"])
Admin = Annotated[Principal, Depends(require_scope("admin"))]


@router.post(
    "",
    status_code=201,
    responses={201: {"model": WebhookEndpointWithSecret}, **problems()},
    operation_id="createWebhookEndpoint",
)
async def create_webhook_endpoint(
    body: WebhookEndpointCreate,
    request: Request,
    principal: Admin,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Register a URL to receive the listed event types (or `["*"]`) as signed POSTs.
    `secret` is shown in this response only: keep it to verify `Patron-Signature`. A URL
    that is not http(s), or whose host resolves to a loopback, private or link-local address
    (unless the program allows private hosts), is refused with 422 `validation_error`."""
    reply, endpoint = await webhooks.create_endpoint(
        principal.program_id,
        body.url,
        list(body.events),
        body.description,
        idempotency_request(request, idempotency_key, body),
    )
    return reply_with_secret(reply, endpoint)


@router.get(
    "",
    response_model=Page[WebhookEndpointOut],
    responses=problems(),
    operation_id="listWebhookEndpoints",
)
async def list_webhook_endpoints(principal: Admin) -> Page[WebhookEndpointOut]:
    """The program's endpoints, newest first (at most 50, so always one page)."""
    data = await webhooks.list_endpoints(principal.program_id)
    return Page[WebhookEndpointOut](data=data, next_cursor=None)


@router.get(
    "/{endpoint_id}",
    response_model=WebhookEndpointOut,
    responses=problems((404, "not_found")),
    operation_id="getWebhookEndpoint",
)
async def get_webhook_endpoint(endpoint_id: IdPath, principal: Admin) -> WebhookEndpointOut:
    """One endpoint, with whether it is paused and why."""
    return await webhooks.get_endpoint(principal.program_id, endpoint_id)


@router.delete(
    "/{endpoint_id}",
    status_code=204,
    responses=problems((404, "not_found")),
    operation_id="deleteWebhookEndpoint",
)
async def delete_webhook_endpoint(endpoint_id: IdPath, principal: Admin) -> Response:
    """Stop delivering to this endpoint; its queue and delivery log are deleted with it."""
    await webhooks.delete_endpoint(principal.program_id, endpoint_id)
    return Response(status_code=204)


@router.post(
    "/{endpoint_id}/rotate-secret",
    responses={200: {"model": WebhookEndpointWithSecret}, **problems((404, "not_found"))},
    operation_id="rotateWebhookSecret",
)
async def rotate_webhook_secret(
    endpoint_id: IdPath,
    request: Request,
    principal: Admin,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Replace the signing secret; the new one is in this response only. For 24 hours the
    old secret keeps signing too: `Patron-Signature` then carries two `v1=` values."""
    reply, endpoint = await webhooks.rotate_secret(
        principal.program_id, endpoint_id, idempotency_request(request, idempotency_key, None)
    )
    return reply_with_secret(reply, endpoint)


@router.post(
    "/{endpoint_id}/resume",
    responses={200: {"model": WebhookEndpointOut}, **problems((404, "not_found"))},
    operation_id="resumeWebhookEndpoint",
)
async def resume_webhook_endpoint(
    endpoint_id: IdPath,
    request: Request,
    principal: Admin,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Un-pause an endpoint: the deliveries that queued up while it was paused are sent at
    once, with a fresh 24-hour retry horizon. Deliveries already marked failed stay so (the
    events feed has their events). Resuming an active endpoint changes nothing."""
    reply = await webhooks.resume_endpoint(
        principal.program_id, endpoint_id, idempotency_request(request, idempotency_key, None)
    )
    return reply_json(reply)


@router.get(
    "/{endpoint_id}/deliveries",
    response_model=Page[WebhookDeliveryOut],
    responses=problems((404, "not_found")),
    operation_id="listWebhookDeliveries",
)
async def list_webhook_deliveries(
    endpoint_id: IdPath,
    principal: Admin,
    status: Annotated[
        Literal["pending", "delivered", "failed"] | None, Query(description="Only this status.")
    ] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> Page[WebhookDeliveryOut]:
    """The delivery log, newest first: each event sent (or to be sent) to this endpoint,
    its attempts and the last result."""
    data, next_cursor = await webhooks.list_deliveries(
        principal.program_id, endpoint_id, status, limit, cursor
    )
    return Page[WebhookDeliveryOut](data=data, next_cursor=next_cursor)
