"""The ASGI application: routers, middleware, problem+json error handlers and lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from app import db
from app.config import get_settings
from app.errors import PatronError, PayloadTooLargeError, RateLimitedError
from app.routers import earn_rules, health, holds, members, points, programs, quotes

log = logging.getLogger("patron")

PROBLEM_MEDIA_TYPE = "application/problem+json"
_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    429: "rate_limited",
}


def problem(status: int, code: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {
        "type": f"/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    headers = None
    if "retry_after" in extra:
        headers = {"Retry-After": str(extra.pop("retry_after"))}
        body.pop("retry_after", None)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


async def _patron_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PatronError)
    extra = dict(exc.extra)
    if isinstance(exc, RateLimitedError):
        extra["retry_after"] = exc.retry_after
    return problem(exc.status, exc.code, exc.title, exc.detail, **extra)


def _clean_error(error: dict[str, Any]) -> dict[str, Any]:
    # Pydantic's raw errors can carry the input and exception objects; send only what helps.
    return {
        "loc": list(error.get("loc", ())),
        "msg": error.get("msg", ""),
        "type": error.get("type", ""),
    }


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [_clean_error(e) for e in exc.errors()]
    detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5])
    return problem(
        422, "validation_error", "Invalid request", detail or "Invalid request", errors=errors
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODES.get(exc.status_code, "error")
    title = str(exc.detail) if exc.detail else code.replace("_", " ").capitalize()
    response = problem(exc.status_code, code, title, title)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(
        500,
        "internal_error",
        "Internal error",
        "Something went wrong on our side; the request had no effect unless a "
        "retry with the same Idempotency-Key says otherwise.",
    )


class BodySizeLimit:
    """Refuse bodies over the configured size before reading them (413)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"content-length":
                    if not value.isdigit() or int(value) > self.max_bytes:
                        error = PayloadTooLargeError(
                            f"Bodies are limited to {self.max_bytes} bytes."
                        )
                        response = problem(error.status, error.code, error.title, error.detail)
                        await response(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    owns_engine = False
    try:
        db.get_engine()
    except RuntimeError:
        db.configure(db.make_engine(db.resolve_database_url()))
        owns_engine = True
    try:
        yield
    finally:
        if owns_engine:
            await db.dispose()


def create_app() -> FastAPI:
    settings = get_settings()
    app = FastAPI(
        title="Patron",
        version="1.0.0",
        summary="Loyalty points, VIP tiers and referrals for shops.",
        lifespan=lifespan,
        # "JSON in and out": a body is read as JSON even when a client forgets the header.
        strict_content_type=False,
    )
    app.add_exception_handler(PatronError, _patron_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    for module in (health, programs, members, points, holds, earn_rules, quotes):
        app.include_router(module.router)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app
