"""Webhook endpoints: register, list, delete, rotate the secret, resume, and the delivery log.

Sending is in ``app.services.events.webhook_delivery``; which URLs are allowed, in
``app.services.events.webhook_urls``.

Secrets are stored as they are, not hashed: the service must recompute the HMAC for every
delivery, which a one-way hash cannot do. They are returned only when created or rotated, are
never logged, and a rotation keeps the previous one signing for 24 hours so receivers can
switch over without dropping a delivery.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import text

from app import db
from app.clock import clock
from app.db import Connection
from app.errors import NotFoundError, ValidationError
from app.schemas.webhooks import WebhookDeliveryOut, WebhookEndpointOut, WebhookEndpointWithSecret
from app.services import idempotency
from app.services.events import positions
from app.services.events.webhook_urls import UnsafeDestinationError, target_for
from app.services.idempotency import IdempotencyRequest, Reply, run_once
from app.services.pagination import decode_cursor, encode_cursor

SECRET_PREFIX = "whsec_"
ROTATION_OVERLAP = timedelta(hours=24)
# A delivery is retried for at least this long (api.md: at least 24 h), then marked failed.
RETRY_HORIZON = timedelta(hours=24)
# Each event is fanned out to every matching endpoint of its program; this bounds that work.
MAX_ENDPOINTS_PER_PROGRAM = 50

_COLUMNS = (
    "id, url, events, description, status, paused_reason, paused_at, failing_since, "
    "consecutive_failures, created_at"
)


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def endpoint_out(row: Any) -> WebhookEndpointOut:
    return WebhookEndpointOut(
        id=str(row.id),
        url=row.url,
        events=list(row.events),
        description=row.description,
        status=row.status,
        paused_reason=row.paused_reason,
        paused_at=row.paused_at,
        failing_since=row.failing_since,
        consecutive_failures=row.consecutive_failures,
        created_at=row.created_at,
    )


def _parse_id(endpoint_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(endpoint_id)
    except ValueError as exc:
        raise NotFoundError("No such webhook endpoint.") from exc


async def check_url(program_id: int, url: str) -> None:
    """422 unless ``url`` may receive this program's webhooks (resolves the host)."""
    async with db.read_only() as conn:
        allow_private = (
            await conn.execute(
                text("SELECT webhooks_allow_private_hosts FROM programs WHERE id = :id"),
                {"id": program_id},
            )
        ).scalar_one()
    try:
        await target_for(url, allow_private)
    except UnsafeDestinationError as exc:
        raise ValidationError(str(exc), loc=["body", "url"]) from exc


async def create_endpoint(
    program_id: int,
    url: str,
    events: list[str],
    description: str | None,
    request: IdempotencyRequest | None,
) -> tuple[Reply, WebhookEndpointWithSecret | None]:
    """Register an endpoint. Returns the stored response and, unless it is a replay, the
    endpoint with its secret (a replay shows ``secret: null``, like API keys)."""
    try:
        # Resolving the host can take seconds: done before the transaction opens.
        await check_url(program_id, url)
    except ValidationError:
        # A retry of a registration that succeeded is answered with it, whatever DNS says now.
        stored = await idempotency.stored_reply(program_id, request)
        if stored is None:
            raise
        return stored, None
    created: list[WebhookEndpointWithSecret] = []

    async def work(conn: Connection) -> Reply:
        now = clock.now()
        # The program's stream lock serialises its registrations, so the cap below holds.
        # The fan-out holds it from handing out positions until its deliveries are written,
        # so it either finished before this point, or runs after this commits and sees the
        # endpoint. Events positioned later than now are delivered here.
        await positions.lock_stream(conn, program_id)
        count = (
            await conn.execute(
                text("SELECT count(*) FROM webhook_endpoints WHERE program_id = :id"),
                {"id": program_id},
            )
        ).scalar_one()
        if count >= MAX_ENDPOINTS_PER_PROGRAM:
            raise ValidationError(
                f"A program may have at most {MAX_ENDPOINTS_PER_PROGRAM} webhook endpoints.",
                loc=["body"],
            )
        starts_after_position = await positions.last_position(conn, program_id)
        secret = new_secret()
        row = (
            await conn.execute(
                text(
                    "INSERT INTO webhook_endpoints (id, program_id, url, events, description, "
                    "secret, starts_after_position, created_at, updated_at) "
                    "VALUES (:id, :program_id, :url, :events, :description, :secret, "
                    f":starts_after_position, :now, :now) RETURNING {_COLUMNS}"
                ),
                {
                    "id": uuid.uuid4(),
                    "program_id": program_id,
                    "url": url,
                    "events": events,
                    "description": description,
                    "secret": secret,
                    "starts_after_position": starts_after_position,
                    "now": now,
                },
            )
        ).one()
        endpoint = WebhookEndpointWithSecret(**endpoint_out(row).model_dump(), secret=secret)
        created.append(endpoint)
        return Reply(endpoint.model_copy(update={"secret": None}).model_dump_json())

    stored = await run_once(program_id, request, work)
    return stored, (created[0] if created and not stored.replayed else None)


async def list_endpoints(program_id: int) -> list[WebhookEndpointOut]:
    async with db.read_only() as conn:
        rows = (
            await conn.execute(
                text(
                    f"SELECT {_COLUMNS} FROM webhook_endpoints WHERE program_id = :program_id "
                    "ORDER BY created_at DESC, id"
                ),
                {"program_id": program_id},
            )
        ).all()
    return [endpoint_out(row) for row in rows]


async def get_endpoint(program_id: int, endpoint_id: str) -> WebhookEndpointOut:
    async with db.read_only() as conn:
        row = (
            await conn.execute(
                text(
                    f"SELECT {_COLUMNS} FROM webhook_endpoints "
                    "WHERE id = :id AND program_id = :program_id"
                ),
                {"id": _parse_id(endpoint_id), "program_id": program_id},
            )
        ).first()
    if row is None:
        raise NotFoundError("No such webhook endpoint.")
    return endpoint_out(row)


async def delete_endpoint(program_id: int, endpoint_id: str) -> None:
    """Delete the endpoint, its queue and its log. Deliveries go first: the delivery job
    locks a delivery, then its endpoint, and this keeps the same order."""
    parsed = _parse_id(endpoint_id)
    async with db.transaction() as conn:
        await conn.execute(
            text(
                "DELETE FROM webhook_deliveries "
                "WHERE endpoint_id = :id AND program_id = :program_id"
            ),
            {"id": parsed, "program_id": program_id},
        )
        deleted = (
            await conn.execute(
                text(
                    "DELETE FROM webhook_endpoints WHERE id = :id AND program_id = :program_id "
                    "RETURNING id"
                ),
                {"id": parsed, "program_id": program_id},
            )
        ).first()
        if deleted is None:
            raise NotFoundError("No such webhook endpoint.")


async def rotate_secret(
    program_id: int, endpoint_id: str, request: IdempotencyRequest | None
) -> tuple[Reply, WebhookEndpointWithSecret | None]:
    """A new secret signs from now on; the current one keeps signing as a second ``v1``
    value for 24 hours. Rotating again within them drops the oldest at once."""
    parsed = _parse_id(endpoint_id)
    rotated: list[WebhookEndpointWithSecret] = []

    async def work(conn: Connection) -> Reply:
        now = clock.now()
        secret = new_secret()
        row = (
            await conn.execute(
                text(
                    "UPDATE webhook_endpoints SET previous_secret = secret, "
                    "previous_secret_expires_at = :overlap_until, secret = :secret, "
                    "updated_at = :now WHERE id = :id AND program_id = :program_id "
                    f"RETURNING {_COLUMNS}"
                ),
                {
                    "id": parsed,
                    "program_id": program_id,
                    "secret": secret,
                    "overlap_until": now + ROTATION_OVERLAP,
                    "now": now,
                },
            )
        ).first()
        if row is None:
            raise NotFoundError("No such webhook endpoint.")
        endpoint = WebhookEndpointWithSecret(**endpoint_out(row).model_dump(), secret=secret)
        rotated.append(endpoint)
        return Reply(endpoint.model_copy(update={"secret": None}).model_dump_json(), created=False)

    stored = await run_once(program_id, request, work)
    return stored, (rotated[0] if rotated and not stored.replayed else None)


async def resume_endpoint(
    program_id: int, endpoint_id: str, request: IdempotencyRequest | None
) -> Reply:
    """Un-pause: the waiting deliveries are due at once and get a fresh retry horizon.
    Deliveries that already failed stay failed; the events feed has them."""
    parsed = _parse_id(endpoint_id)

    async def work(conn: Connection) -> Reply:
        now = clock.now()
        # Deliveries before the endpoint: the lock order of the delivery job.
        await conn.execute(
            text(
                "UPDATE webhook_deliveries SET next_attempt_at = :now, "
                "retry_until = greatest(retry_until, :retry_until) "
                "WHERE endpoint_id = :id AND program_id = :program_id AND status = 'pending'"
            ),
            {
                "id": parsed,
                "program_id": program_id,
                "now": now,
                "retry_until": now + RETRY_HORIZON,
            },
        )
        row = (
            await conn.execute(
                text(
                    "UPDATE webhook_endpoints SET status = 'active', paused_reason = NULL, "
                    "paused_at = NULL, failing_since = NULL, consecutive_failures = 0, "
                    "updated_at = :now WHERE id = :id AND program_id = :program_id "
                    f"RETURNING {_COLUMNS}"
                ),
                {"id": parsed, "program_id": program_id, "now": now},
            )
        ).first()
        if row is None:
            raise NotFoundError("No such webhook endpoint.")
        return Reply(endpoint_out(row).model_dump_json(), created=False)

    return await run_once(program_id, request, work)


_DELIVERIES = """
SELECT d.id, d.event_id, e.type AS event_type, d.status, d.attempts,
       CASE WHEN d.status = 'pending' THEN d.next_attempt_at END AS next_attempt_at,
       d.last_attempt_at, d.last_status_code, d.last_error, d.delivered_at, d.created_at
  FROM webhook_deliveries AS d
  JOIN events AS e ON e.program_id = d.program_id AND e.id = d.event_id
 WHERE d.program_id = :program_id AND d.endpoint_id = :endpoint_id AND d.id < :before
       {status_filter}
 ORDER BY d.id DESC
 LIMIT :limit
"""
_DELIVERY_QUERIES = {
    filtered: text(_DELIVERIES.format(status_filter="AND d.status = :status" if filtered else ""))
    for filtered in (False, True)
}


async def list_deliveries(
    program_id: int, endpoint_id: str, status: str | None, limit: int, cursor: str | None
) -> tuple[list[WebhookDeliveryOut], str | None]:
    """The endpoint's delivery log, newest first."""
    parsed = _parse_id(endpoint_id)
    before = decode_cursor(cursor) if cursor else 2**63 - 1
    params: dict[str, Any] = {
        "program_id": program_id,
        "endpoint_id": parsed,
        "before": before,
        "limit": limit + 1,
    }
    if status is not None:
        params["status"] = status
    async with db.read_only() as conn:
        exists = (
            await conn.execute(
                text("SELECT 1 FROM webhook_endpoints WHERE id = :id AND program_id = :program_id"),
                {"id": parsed, "program_id": program_id},
            )
        ).first()
        if exists is None:
            raise NotFoundError("No such webhook endpoint.")
        rows = (await conn.execute(_DELIVERY_QUERIES[status is not None], params)).all()
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1].id) if len(rows) > limit else None
    return [WebhookDeliveryOut.model_validate(row, from_attributes=True) for row in page], (
        next_cursor
    )
