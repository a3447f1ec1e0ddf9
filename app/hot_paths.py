"""The hot paths (earn, redeem, points, holds, orders), answered without FastAPI's per-request
machinery.

FastAPI builds a Request, resolves dependencies and validates through its field wrappers on
every call; for a checkout request that was about a fifth of the service's CPU
(docs/performance.md). The hot routes are few and their parameters simple, so this ASGI layer
matches them before FastAPI's router and answers them with the pieces the FastAPI routes use:
the same authentication, the same pydantic models validated the same way, the same service
functions and the same problem documents. The FastAPI routes for these paths stay: they define
the OpenAPI schema, and with ``PATRON_HOT_PATHS=false`` they answer the requests themselves
(tests/test_hot_paths.py sends the same requests both ways and compares the answers).

What FastAPI does, and so this layer, in this order:
1. a body that is not valid JSON (when it is parsed as JSON) -> 422 ``json_invalid``;
2. authentication and scope -> 401 / 403;
3. path parameters, the ``Idempotency-Key`` header, then the body -> one 422 listing them all;
4. the handler; a domain error becomes its problem document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Optional

import orjson
from pydantic import BaseModel, StringConstraints, TypeAdapter, ValidationError
from starlette.datastructures import URL
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.auth import Principal, authenticate
from app.errors import PatronError
from app.problems import domain_problem, validation_problem
from app.routers.deps import stored_json
from app.services.idempotency import IdempotencyRequest, StoredResponse, fingerprint

IDEMPOTENCY_HEADER = "Idempotency-Key"
_IDEMPOTENCY_KEY = TypeAdapter(Annotated[str, StringConstraints(min_length=1, max_length=255)])
_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class HotCall:
    """A hot request, authenticated and validated."""

    principal: Principal
    path_params: dict[str, Any]
    body: Any
    idempotency: IdempotencyRequest | None


Handler = Callable[[HotCall], Awaitable[StoredResponse]]


@dataclass(eq=False)
class HotRoute:
    """A route served here. ``path`` is the template of the FastAPI route it mirrors (metrics
    and logs label requests with it); ``path_types`` are its parameters' annotated types and
    ``body`` the request model (``body_required=False``: an empty body, or ``null``, reads as
    the model's defaults)."""

    method: str
    path: str
    scope: str
    handler: Handler
    body: type[BaseModel] | None = None
    body_required: bool = True
    path_types: Mapping[str, Any] = field(default_factory=dict)
    pattern: re.Pattern[str] = field(init=False)
    _path_adapters: dict[str, TypeAdapter[Any]] = field(init=False)
    _body_adapter: TypeAdapter[Any] | None = field(init=False)

    def __post_init__(self) -> None:
        # Starlette's default convertor: a parameter is one non-empty path segment.
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path))
        self.pattern = re.compile(f"^{regex}$")
        self._path_adapters = {
            name: TypeAdapter(annotation) for name, annotation in self.path_types.items()
        }
        if self.body is None:
            self._body_adapter = None
        elif self.body_required:
            self._body_adapter = TypeAdapter(self.body)
        else:
            nullable: Any = Optional[self.body]  # noqa: UP045 - self.body is a variable
            self._body_adapter = TypeAdapter(nullable)

    def validate(
        self, scope: Scope, raw_params: dict[str, str], body: Any
    ) -> tuple[dict[str, Any], str | None, Any, list[dict[str, Any]]]:
        """Path parameters, the Idempotency-Key and the body, with every error found."""
        errors: list[dict[str, Any]] = []
        params: dict[str, Any] = {}
        for name, raw in raw_params.items():
            adapter = self._path_adapters.get(name)
            if adapter is None:
                params[name] = raw
                continue
            try:
                params[name] = adapter.validate_python(raw)
            except ValidationError as exc:
                errors.extend(_located(exc, ("path", name)))
        # Every POST takes an Idempotency-Key (api.md); other methods ignore the header.
        key = _header(scope, b"idempotency-key") if self.method == "POST" else None
        if key is not None:
            try:
                key = _IDEMPOTENCY_KEY.validate_python(key)
            except ValidationError as exc:
                errors.extend(_located(exc, ("header", IDEMPOTENCY_HEADER)))
        validated = None
        if self._body_adapter is not None:
            if body is _MISSING:
                if self.body_required:
                    errors.append(_missing_body())
            else:
                try:
                    validated = self._body_adapter.validate_python(body, from_attributes=True)
                except ValidationError as exc:
                    errors.extend(_located(exc, ("body",)))
        return params, key, validated, errors


def _located(exc: ValidationError, prefix: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{**error, "loc": prefix + tuple(error["loc"])} for error in exc.errors()]


def _json_invalid(exc: json.JSONDecodeError) -> dict[str, Any]:
    return {"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error"}


def _missing_body() -> dict[str, Any]:
    return {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _parses_as_json(scope: Scope) -> bool:
    """FastAPI parses a body as JSON when there is no Content-Type (this app is not strict
    about it) or when it is ``application/json`` or ``application/*+json``."""
    content_type = _header(scope, b"content-type")
    if not content_type:
        return True
    media_type = content_type.split(";", 1)[0].strip().lower()
    main, _, sub = media_type.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


def _decode_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        # What orjson refuses, the standard library (which FastAPI uses) may accept, and
        # when it refuses too, its error carries the position FastAPI reports.
        return json.loads(body)


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


class HotPaths:
    """ASGI middleware: serves the hot routes, passes everything else on."""

    def __init__(self, app: ASGIApp, routes: list[HotRoute]) -> None:
        self.app = app
        self.routes: dict[str, list[HotRoute]] = {}
        for route in routes:
            self.routes.setdefault(route.method, []).append(route)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for route in self.routes.get(scope["method"], ()):
                matched = route.pattern.match(scope["path"])
                if matched is not None:
                    scope["route"] = route
                    response = await self._answer(route, matched.groupdict(), scope, receive)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _answer(
        self, route: HotRoute, raw_params: dict[str, str], scope: Scope, receive: Receive
    ) -> Response:
        body: Any = _MISSING
        if route.body is not None:
            raw = await _read_body(receive)
            if raw:
                if _parses_as_json(scope):
                    try:
                        body = _decode_json(raw)
                    except json.JSONDecodeError as exc:
                        return validation_problem([_json_invalid(exc)])
                else:
                    body = raw
        try:
            principal = await authenticate(_header(scope, b"authorization"), route.scope)
            params, key, validated, errors = route.validate(scope, raw_params, body)
            if errors:
                return validation_problem(errors)
            if validated is None and route.body is not None:
                # An optional body left out reads as the model's defaults, as in the routes.
                validated = route.body()
            idempotency = None
            if key is not None:
                payload = validated.model_dump(mode="json") if validated is not None else None
                path = URL(scope=scope).path
                idempotency = IdempotencyRequest(key, fingerprint(scope["method"], path, payload))
            stored = await route.handler(HotCall(principal, params, validated, idempotency))
        except PatronError as exc:
            return domain_problem(exc)
        return stored_json(stored)
