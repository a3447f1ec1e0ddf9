"""The ASGI application: routers, middleware, problem+json error handlers and lifespan."""

from __future__ import annotations

import gc
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import api_docs, db, metrics
from app.config import get_settings
from app.errors import PatronError, PayloadTooLargeError
from app.logs import configure_logging, request_id
from app.observability import RequestObservability
from app.problems import domain_problem, problem, validation_problem
from app.routers import (
    campaigns,
    dashboard,
    earn_rules,
    events,
    exports,
    health,
    holds,
    imports,
    insights,
    me,
    members,
    monitoring,
    orders,
    points,
    programs,
    quotes,
    referrals,
    rewards,
    tiers,
    webhooks,
)

log = logging.getLogger("patron")

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    429: "rate_limited",
}


async def _patron_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PatronError)
    return domain_problem(exc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return validation_problem(exc.errors())


# FastAPI answers 400 when a body cannot be read as JSON at all (not UTF-8, nested past
# Python's recursion limit); for the contract that is invalid input like any other.
_UNREADABLE_BODY = {
    "loc": ["body"],
    "msg": "The body is not JSON: not UTF-8, malformed, or nested too deeply.",
    "type": "json_invalid",
}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        return validation_problem([_UNREADABLE_BODY])
    code = _STATUS_CODES.get(exc.status_code, "error")
    title = str(exc.detail) if exc.detail else code.replace("_", " ").capitalize()
    response = problem(exc.status_code, code, title, title)
    if exc.headers:
        response.headers.update(exc.headers)
    if exc.status_code == 405:
        documented = _allowed_methods(request)
        if documented:
            response.headers["Allow"] = ", ".join(documented)
    return response


def _allowed_methods(request: Request) -> list[str]:
    """The methods the API documents for this path (the most specific template that matches
    it: ``/v1/tiers/preview`` before ``/v1/tiers/{key}``). Starlette would name only those of
    the first route that matched, and each method is a route of its own here."""
    for pattern, methods in _documented_paths(request.app):
        if pattern.fullmatch(request.url.path):
            return methods
    return []


def _documented_paths(app: FastAPI) -> list[tuple[re.Pattern[str], list[str]]]:
    found: list[tuple[re.Pattern[str], list[str]]] | None = getattr(
        app.state, "documented_paths", None
    )
    if found is None:
        paths = app.openapi()["paths"]
        # Fewer parameters first: a literal segment wins over a parameter.
        templates = sorted(paths, key=lambda template: template.count("{"))
        found = []
        for template in templates:
            methods = {method.upper() for method in paths[template]}
            if "GET" in methods:
                methods.add("HEAD")
            pattern = re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template))
            found.append((re.compile(pattern), sorted(methods)))
        app.state.documented_paths = found
    return found


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # The route template, not the path: paths carry member ids.
    route = getattr(request.scope.get("route"), "path", "unmatched")
    log.exception("unhandled error on %s %s", request.method, route)
    response = problem(
        500,
        "internal_error",
        "Internal error",
        "Something went wrong on our side; the request had no effect unless a "
        "retry with the same Idempotency-Key says otherwise.",
    )
    # This handler runs outside the middleware that adds the header to other responses.
    current = request_id.get()
    if current is not None:
        response.headers["X-Request-ID"] = current
    return response


class BodySizeLimit:
    """Refuse bodies over the configured size with 413: at once when Content-Length says so,
    and for a chunked body as soon as what arrived passes the limit (the body is buffered,
    at most the limit, before the endpoint sees it)."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, streamed: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Paths whose endpoint reads the body as a stream and enforces its own, larger
        # limit (an import upload): passed through unbuffered, refused early by length.
        self.streamed = streamed or {}

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = PayloadTooLargeError(f"Bodies are limited to {self.max_bytes} bytes.")
        response = problem(error.status, error.code, error.title, error.detail)
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        streamed_limit = self.streamed.get(scope.get("path", ""))
        if streamed_limit is not None and scope.get("method") == "POST":
            if length is not None and (not length.isdigit() or int(length) > streamed_limit):
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if length is not None:
            if not length.isdigit() or int(length) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if scope.get("method") in ("GET", "HEAD", "DELETE", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    owns_engine = False
    try:
        db.get_engine()
    except RuntimeError:
        db.configure(db.make_engine(db.resolve_database_url()))
        owns_engine = True
    if getattr(app.state, "tune_gc_at_startup", False):
        tune_garbage_collector()
    try:
        yield
    finally:
        if owns_engine:
            await db.dispose()


# Collections of the youngest generation start after this many more allocations than
# deallocations of tracked objects (Python's default: 700).
YOUNG_GENERATION_THRESHOLD = 7000


def tune_garbage_collector() -> None:
    """Freeze what the process built to start (modules, the app, its routes and models: some
    157,000 objects) out of every later collection, and let the youngest generation grow
    ten times larger before it is collected. Under checkout load a worker ran a full
    collection every few seconds, each over all of those objects: up to 680 ms with the
    worker stopped on our shared machine, 79 ms once they were frozen. A request's objects
    mostly die before 7,000 allocations pile up, so with the larger threshold a worker ran 3
    collections in a run instead of 4,000-4,800 (docs/performance.md, "Coupons at
    checkout"). Garbage at startup is collected first, so none is kept."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, oldest)


def create_served_app() -> FastAPI:
    """The application as ``patron serve`` runs it, once in each worker process: with the
    garbage collector tuned for serving (``tune_garbage_collector``). Tests build many
    applications in one process and use ``create_app``."""
    app = create_app()
    app.state.tune_gc_at_startup = True
    return app


def create_app() -> FastAPI:
    """The application: every route is a FastAPI route (one front door)."""
    settings = get_settings()
    configure_logging(settings.log_level)
    metrics.set_pool_limit(settings.pool_size + settings.pool_max_overflow)
    app = FastAPI(
        title="Patron",
        version="1.0.0",
        summary="Loyalty points, VIP tiers and referrals for shops.",
        lifespan=lifespan,
        # "JSON in and out": a body is read as JSON even when a client forgets the header.
        strict_content_type=False,
        # Served from the package by app.api_docs instead (they must work offline).
        docs_url=None,
        redoc_url=None,
        # app.metrics and app.observability measure requests; FastAPI's own OpenTelemetry
        # hooks would look up providers on every request for nothing.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    api_docs.install(app)
    app.add_exception_handler(PatronError, _patron_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    # Starlette tries routes in order: the checkout's hot routes come first, so a request
    # for them is matched against a handful of patterns rather than every route.
    for module in (
        points,
        holds,
        orders,
        health,
        programs,
        members,
        me,
        earn_rules,
        quotes,
        events,
        webhooks,
        monitoring,
        tiers,
        insights,
        dashboard,
        referrals,
        rewards,
        campaigns,
        imports,
        exports,
    ):
        app.include_router(module.router)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        streamed={"/v1/imports": settings.max_import_bytes},
    )
    # Outermost, so that every answer (413s included) has a request id and is counted.
    app.add_middleware(RequestObservability)
    return app
