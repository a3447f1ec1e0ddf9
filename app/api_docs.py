"""The API documentation admins work in: Swagger UI at /docs and ReDoc at /redoc, served from
the package (no CDN, so they work offline), and an OpenAPI schema with a bearer scheme so
"Authorize" in Swagger UI sends the API key with every "Try it out"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from app.problems import PROBLEM_MEDIA_TYPE
from app.routers.deps import BODY_MODELS
from app.schemas.common import Problem

REDOC_FOLDER = Path(__file__).resolve().parent / "static" / "vendor" / "redoc"
PUBLIC_PATHS = {"/healthz", "/readyz", "/metrics"}

TAGS: list[dict[str, str]] = [
    {"name": "Program", "description": "Settings of your program (one shop or brand)."},
    {"name": "API keys", "description": "Keys for your checkout, apps and staff, with scopes."},
    {"name": "Members", "description": "Your customers, addressed by your own ids."},
    {"name": "Points", "description": "Balances and the ledger: earn, redeem, adjust."},
    {"name": "Orders", "description": "Checkout: quotes, orders and refunds."},
    {"name": "Holds", "description": "Reserve points at checkout, then capture or release."},
    {"name": "Earn rules", "description": "Campaigns: extra points for orders that qualify."},
    {
        "name": "VIP tiers",
        "description": "Tiers, their thresholds and multipliers, the tier policy, and previews "
        "of a change before you save it.",
    },
    {
        "name": "Referrals",
        "description": "Share links, code lookups for sign-up pages, attribution, the funnel.",
    },
    {
        "name": "Member app",
        "description": "Member tokens, and the /v1/me routes a mobile app calls with one.",
    },
    {
        "name": "Events and webhooks",
        "description": "The feed of every change, and signed webhooks.",
    },
    {
        "name": "Insights",
        "description": "Segments, lifecycle, NPS and the returning-customer figures.",
    },
    {"name": "Operations", "description": "Health, readiness and metrics."},
]


def _add_lean_bodies(schemas: dict[str, Any]) -> None:
    """The request models of lean routes (app.routers.deps.json_body_doc), which FastAPI does
    not see as parameters, with the models they refer to."""
    for name, model in BODY_MODELS.items():
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for nested, nested_schema in body.pop("$defs", {}).items():
            schemas.setdefault(nested, nested_schema)
        schemas[name] = body


def custom_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=(
            "Press **Authorize** and paste an API key (`ptr_...`). Every POST accepts an "
            "`Idempotency-Key`; errors are RFC 9457 problem documents with a `code`."
        ),
        routes=app.routes,
        tags=TAGS,
    )
    components = schema.setdefault("components", {})
    _add_lean_bodies(components.setdefault("schemas", {}))
    components["securitySchemes"] = {
        "apiKey": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (`ptr_...`), or a member token on `/v1/me` routes.",
        }
    }
    components["schemas"]["Problem"] = Problem.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            if path not in PUBLIC_PATHS:
                operation["security"] = [{"apiKey": []}]
                _declare_common_errors(operation)
                _errors_are_problems(operation)
    app.openapi_schema = schema
    return schema


# Answers any operation can give besides its own (api.md Conventions).
_COMMON_ERRORS = {
    "503": "service_unavailable: the database is unreachable or out of connections; "
    "retry after Retry-After seconds",
}
_BODY_ERRORS = {"413": "payload_too_large"}


def _declare_common_errors(operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    common = dict(_COMMON_ERRORS)
    if "requestBody" in operation:
        common.update(_BODY_ERRORS)
    for status, description in common.items():
        responses.setdefault(status, {"description": description})


def _errors_are_problems(operation: dict[str, Any]) -> None:
    """Every error response is an RFC 9457 document: declared as ``application/problem+json``
    with the ``Problem`` schema, the media type the service sends, so that generated clients
    parse it (FastAPI would declare ``application/json``)."""
    for status, response in operation.get("responses", {}).items():
        if str(status)[0] in "45":
            response["content"] = {
                PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}
            }


def install(app: FastAPI) -> None:
    """Mount the documentation assets and pages on ``app``."""
    app.mount("/static/swagger", StaticFiles(directory=swagger_ui_path), name="swagger")
    app.mount("/static/redoc", StaticFiles(directory=REDOC_FOLDER), name="redoc")
    app.openapi = lambda: custom_openapi(app)  # type: ignore[method-assign]

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} API",
            swagger_js_url="/static/swagger/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger/swagger-ui.css",
            swagger_favicon_url="/static/swagger/favicon-32x32.png",
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_ui_parameters={"persistAuthorization": True, "displayRequestDuration": True},
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{app.title} API",
            redoc_js_url="/static/redoc/redoc.standalone.js",
            redoc_favicon_url="/static/swagger/favicon-32x32.png",
            with_google_fonts=False,
        )
