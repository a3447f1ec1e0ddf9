"""The admin dashboard: one static page and its script and style, served from the package so
that it works with no internet access. The page asks for an admin key and reads the JSON API
with it; the page itself holds no data, so serving it needs no key."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter, HTTPException, Response

router = APIRouter(include_in_schema=False)

_FOLDER = Path(__file__).resolve().parent.parent / "static" / "dashboard"

_ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
# Everything comes from this origin; no inline script, no third party.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def _read(name: str) -> bytes:
    return (_FOLDER / name).read_bytes()


@router.get("/dashboard")
async def dashboard() -> Response:
    return Response(_read("index.html"), media_type="text/html; charset=utf-8", headers=_HEADERS)


@router.get("/dashboard/{asset}")
async def dashboard_asset(asset: str) -> Response:
    media_type = _ASSETS.get(asset)
    if media_type is None:
        raise HTTPException(status_code=404)
    return Response(_read(asset), media_type=media_type, headers=_HEADERS)
