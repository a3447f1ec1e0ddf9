"""Small helpers every router shares: the Idempotency-Key header, raw JSON responses,
list-query parameters and the documented error responses."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Header, Path, Query, Request, Response
from pydantic import BaseModel

from app.schemas.common import EXTERNAL_ID_PATTERN
from app.services.idempotency import IdempotencyRequest, StoredResponse, fingerprint

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[^\x00]+$",
        description="Makes the POST safe to retry: a repeat with the same key and body "
        "returns the first response with `Idempotency-Replayed: true`.",
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


def stored_json(stored: StoredResponse) -> Response:
    headers = {"Idempotency-Replayed": "true"} if stored.replayed else None
    return Response(
        content=stored.body,
        status_code=stored.status_code,
        media_type="application/json",
        headers=headers,
    )


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
