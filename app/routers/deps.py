"""Small helpers every router shares: the Idempotency-Key header, replies as raw JSON
responses, list-query parameters and the documented error responses."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Header, Path, Query, Request, Response
from pydantic import BaseModel

from app.schemas.common import EXTERNAL_ID_PATTERN, NO_NUL
from app.services.idempotency import IdempotencyRequest, Reply, fingerprint

IDEMPOTENCY_KEY_DESCRIPTION = (
    "Makes the POST safe to retry: a repeat with the same key and body returns the first "
    "response with `Idempotency-Replayed: true`."
)
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[^\x00]+$",
        description=IDEMPOTENCY_KEY_DESCRIPTION,
    ),
]
MemberPath = Annotated[
    str,
    Path(
        pattern=EXTERNAL_ID_PATTERN,
        description="The shop's own member id (external_id).",
        examples=["cust-1001"],
    ),
]
# A path segment that names an object by its id: any text but NUL (which PostgreSQL text
# cannot hold), so that such a path is a 422 rather than a database error.
IdPath = Annotated[str, Path(pattern=NO_NUL)]
Limit = Annotated[int, Query(ge=1, le=100, description="Page size, 1-100.")]
Cursor = Annotated[
    str | None, Query(max_length=200, description="next_cursor of the previous page.")
]


def idempotency_request(
    request: Request, key: str | None, body: BaseModel | None
) -> IdempotencyRequest | None:
    if key is None:
        return None
    payload = body.model_dump(mode="json") if body is not None else None
    return IdempotencyRequest(key, fingerprint(request.method, request.url.path, payload))


def reply_json(reply: Reply) -> Response:
    """A write's reply: 201 when it created something, else 200; a replay says so."""
    headers = {"Idempotency-Replayed": "true"} if reply.replayed else None
    return Response(
        content=reply.body,
        status_code=201 if reply.created else 200,
        media_type="application/json",
        headers=headers,
    )


def reply_with_secret(reply: Reply, shown_once: BaseModel | None) -> Response:
    """A reply whose first answer carries a secret that is never stored (an API key, a
    webhook secret): the first answer shows it; a replay is the stored reply without it."""
    if shown_once is not None and not reply.replayed:
        return reply_json(Reply(shown_once.model_dump_json(), created=reply.created))
    return reply_json(reply)


# Request models of lean routes (app/routers/lean.py); app.api_docs adds their schemas.
BODY_MODELS: dict[str, type[BaseModel]] = {}


def json_page(items_json: list[str], next_cursor: str | None) -> Response:
    """A list response from items that are already JSON texts."""
    body = (
        '{"data":['
        + ",".join(items_json)
        + '],"next_cursor":'
        + orjson.dumps(next_cursor).decode()
        + "}"
    )
    return Response(content=body, media_type="application/json")


def problems(*codes: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI documentation of the error responses an endpoint can give (their content, an
    ``application/problem+json`` ``Problem``, is filled in by ``app.api_docs``)."""
    documented: dict[int | str, dict[str, Any]] = {}
    for status, description in (
        (401, "unauthorized"),
        (403, "forbidden"),
        (422, "validation_error"),
        *codes,
    ):
        entry = documented.setdefault(status, {"description": ""})
        entry["description"] = ", ".join(filter(None, [entry["description"], description]))
    return documented
