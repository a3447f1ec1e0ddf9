"""Small helpers every router shares: the Idempotency-Key header, replies as raw JSON
responses, list-query parameters, the documented error responses, and the lean body of the
hot routes.

Lean body: the checkout's hot routes (earn, redeem, holds, orders) take the ``Request`` and
validate their body in one pass with ``Model.model_validate_json`` instead of declaring it
as a parameter (FastAPI would decode the JSON with the standard library and then validate the
resulting dict: two passes over every body). Such a route is still one FastAPI route, declared
once: ``json_body_doc`` puts its body into the OpenAPI document and ``read_json_body`` answers
a bad body with the same 422 as any other route."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import orjson
from fastapi import Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from app.schemas.common import EXTERNAL_ID_PATTERN, Problem
from app.services.idempotency import IdempotencyRequest, Reply, fingerprint

M = TypeVar("M", bound=BaseModel)

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
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


# Request models documented by json_body_doc; app.api_docs adds their schemas.
BODY_MODELS: dict[str, type[BaseModel]] = {}


def json_body_doc(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` of a lean route: its JSON body is ``model``."""
    BODY_MODELS[model.__name__] = model
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {
        "requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}
    }


async def read_json_body(request: Request, model: type[M], *, required: bool = True) -> M:
    """The body of a lean route, validated in one pass; an empty optional body reads as the
    model's defaults. Invalid input raises the 422 every route gives."""
    raw = await request.body()
    if not raw or (not required and raw.strip() == b"null"):
        if required:
            missing = {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}
            raise RequestValidationError([missing])
        return model()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from None


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
    """OpenAPI documentation of the error responses an endpoint can give."""
    documented: dict[int | str, dict[str, Any]] = {}
    for status, description in (
        (401, "unauthorized"),
        (403, "forbidden"),
        (422, "validation_error"),
        *codes,
    ):
        entry = documented.setdefault(
            status,
            {
                "model": Problem,
                "description": "",
                "content": {"application/problem+json": {}},
            },
        )
        entry["description"] = ", ".join(filter(None, [entry["description"], description]))
    return documented
