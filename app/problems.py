"""RFC 9457 problem documents: how every error leaves the service, whichever layer answers
(the FastAPI exception handlers in app.main)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi.responses import JSONResponse

from app.errors import PatronError, RateLimitedError, ServiceUnavailableError

PROBLEM_MEDIA_TYPE = "application/problem+json"


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


def domain_problem(exc: PatronError) -> JSONResponse:
    """A domain error, with the status and code its class carries."""
    extra = dict(exc.extra)
    if isinstance(exc, RateLimitedError | ServiceUnavailableError):
        extra["retry_after"] = exc.retry_after
    return problem(exc.status, exc.code, exc.title, exc.detail, **extra)


def _clean_error(error: dict[str, Any]) -> dict[str, Any]:
    # Pydantic's raw errors can carry the input and exception objects; send only what helps.
    return {
        "loc": list(error.get("loc", ())),
        "msg": error.get("msg", ""),
        "type": error.get("type", ""),
    }


def validation_problem(raw_errors: Sequence[dict[str, Any]]) -> JSONResponse:
    """422 ``validation_error`` listing what was wrong, field by field."""
    errors = [_clean_error(e) for e in raw_errors]
    detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5])
    return problem(
        422, "validation_error", "Invalid request", detail or "Invalid request", errors=errors
    )
