"""Lean routes: the checkout's hot routes (earn, redeem, GET points, holds, capture, release,
orders), declared once as FastAPI routes but with the request read by the route itself.

Why: FastAPI resolves a route's declared parameters (path, header, dependencies, body) through
its generic machinery on every request, and decodes a JSON body with the standard library
before validating the resulting dict: on a request that costs the database a fraction of a
millisecond, that machinery was the largest part of the service's CPU (docs/performance.md).
A lean route's endpoint takes only the ``Request``; ``lean_route`` authenticates, validates
the path parameters, the ``Idempotency-Key`` header and the body (``model_validate_json``:
one pass over the bytes) and hands the handler a ``LeanCall``.

What stays the same as any other route: it is a FastAPI route in the one router; it appears in
the OpenAPI document with its parameters, header and body (declared here, from the same
types); errors are the same problem documents (401/403 first, then one 422 listing every
invalid path parameter, header and body field).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, StringConstraints, TypeAdapter, ValidationError

from app.auth import Principal, authenticate
from app.routers.deps import BODY_MODELS, IDEMPOTENCY_KEY_DESCRIPTION
from app.schemas.common import NO_NUL, ExternalId
from app.services.idempotency import IdempotencyRequest, fingerprint

_IDEMPOTENCY_HEADER = "Idempotency-Key"
_KEY_LENGTH = (1, 255)


@dataclass(frozen=True, slots=True)
class PathParam:
    """A path parameter of a lean route: how it is validated and documented."""

    adapter: TypeAdapter[Any]
    description: str


MEMBER = PathParam(TypeAdapter(ExternalId), "The shop's own member id (external_id).")
HOLD_ID = PathParam(
    TypeAdapter(Annotated[str, StringConstraints(pattern=NO_NUL)]), "The hold's id."
)


@dataclass(frozen=True, slots=True)
class LeanCall:
    """A lean route's request, authenticated and validated."""

    principal: Principal
    path: dict[str, Any]
    body: Any
    idempotency: IdempotencyRequest | None


Handler = Callable[[LeanCall], Awaitable[Response]]


def lean_route(
    router: APIRouter,
    method: str,
    path: str,
    *,
    scope: str,
    params: Mapping[str, PathParam] | None = None,
    body: type[BaseModel] | None = None,
    body_required: bool = True,
    **route_options: Any,
) -> Callable[[Handler], Handler]:
    """Declare ``handler`` as the FastAPI route ``method path`` of ``router`` (``path``
    relative to the router's prefix, ``route_options`` as for ``router.add_api_route``:
    status code, documented responses...)."""
    path_params = dict(params or {})

    def decorate(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            principal = await authenticate(request.headers.get("authorization"), scope)
            errors: list[dict[str, Any]] = []
            values = _path_values(request, path_params, errors)
            key = _idempotency_key(request, method, errors)
            parsed = await _body(request, body, body_required, errors)
            if errors:
                raise RequestValidationError(errors)
            idempotency = None
            if key is not None:
                payload = parsed.model_dump(mode="json") if parsed is not None else None
                digest = fingerprint(method, request.url.path, payload)
                idempotency = IdempotencyRequest(key, digest)
            return await handler(LeanCall(principal, values, parsed, idempotency))

        endpoint.__doc__ = handler.__doc__
        router.add_api_route(
            path,
            endpoint,
            methods=[method],
            name=handler.__name__,
            openapi_extra=_openapi(method, path_params, body, body_required),
            **route_options,
        )
        return handler

    return decorate


def _path_values(
    request: Request, params: Mapping[str, PathParam], errors: list[dict[str, Any]]
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, raw in request.path_params.items():
        param = params.get(name)
        if param is None:
            values[name] = raw
            continue
        try:
            values[name] = param.adapter.validate_python(raw)
        except ValidationError as exc:
            errors.extend(_located(exc, ("path", name)))
    return values


def _idempotency_key(request: Request, method: str, errors: list[dict[str, Any]]) -> str | None:
    """Every POST takes an Idempotency-Key (api.md); other methods ignore the header."""
    if method != "POST":
        return None
    key = request.headers.get(_IDEMPOTENCY_HEADER)
    if key is None:
        return None
    low, high = _KEY_LENGTH
    if "\x00" in key:
        errors.append(
            {
                "type": "string_pattern_mismatch",
                "loc": ("header", _IDEMPOTENCY_HEADER),
                "msg": "The key may not contain the NUL character.",
                "input": "",
            }
        )
        return None
    if not low <= len(key) <= high:
        errors.append(
            {
                "type": "string_too_short" if len(key) < low else "string_too_long",
                "loc": ("header", _IDEMPOTENCY_HEADER),
                "msg": f"The key must be {low} to {high} characters long.",
                "input": key[:high],
            }
        )
        return None
    return key


async def _body(
    request: Request,
    model: type[BaseModel] | None,
    required: bool,
    errors: list[dict[str, Any]],
) -> Any:
    if model is None:
        return None
    raw = await request.body()
    if not raw or (not required and raw.strip() == b"null"):
        if required:
            errors.append({"type": "missing", "loc": ("body",), "msg": "Field required"})
            return None
        return model()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors.extend(_located(exc, ("body",)))
        return None


def _located(exc: ValidationError, prefix: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{**error, "loc": prefix + tuple(error["loc"])} for error in exc.errors()]


def _openapi(
    method: str,
    params: Mapping[str, PathParam],
    body: type[BaseModel] | None,
    body_required: bool,
) -> dict[str, Any]:
    """The operation's parameters, header and body for the OpenAPI document."""
    parameters: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": param.description,
            "schema": param.adapter.json_schema(),
        }
        for name, param in params.items()
    ]
    if method == "POST":
        low, high = _KEY_LENGTH
        parameters.append(
            {
                "name": _IDEMPOTENCY_HEADER,
                "in": "header",
                "required": False,
                "description": IDEMPOTENCY_KEY_DESCRIPTION,
                "schema": {"type": "string", "minLength": low, "maxLength": high},
            }
        )
    extra: dict[str, Any] = {"parameters": parameters}
    if body is not None:
        BODY_MODELS[body.__name__] = body
        schema = {"$ref": f"#/components/schemas/{body.__name__}"}
        extra["requestBody"] = {
            "required": body_required,
            "content": {"application/json": {"schema": schema}},
        }
    return extra
