"""The request middleware: request id, metrics and the access log, in one pure ASGI layer.

Pure ASGI (not Starlette's BaseHTTPMiddleware, which runs the app in a separate task and
buffers through memory streams) so the per-request cost stays at a few microseconds: the
earn endpoint is benchmarked through it.
"""

from __future__ import annotations

import logging
import os
import re
from time import perf_counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import metrics
from app.logs import request_id

access_log = logging.getLogger("patron.access")

REQUEST_ID_HEADER = b"x-request-id"
# A client's own id is kept when it looks like one; anything else is replaced, so a log line
# can never be forged or bloated through this header.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+/=\-]{1,128}")
# Probes and scrapes are logged at debug level: they would drown the rest.
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            candidate = value.decode("latin-1")
            return candidate if _VALID_REQUEST_ID.fullmatch(candidate) else None
    return None


class RequestObservability:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        current = _incoming_request_id(scope) or os.urandom(16).hex()
        token = request_id.set(current)
        header = (b"x-request-id", current.encode())
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except BaseException:
            # The error handler outside this layer answers 500; the request id stays set
            # so that its log line carries it too.
            self._finish(scope, status or 500, started)
            raise
        self._finish(scope, status, started)
        request_id.reset(token)

    @staticmethod
    def _finish(scope: Scope, status: int, started: float) -> None:
        elapsed = perf_counter() - started
        route = getattr(scope.get("route"), "path", None)
        method = metrics.known_method(scope["method"])
        metrics.observe_request(method, route, status, elapsed)
        level = logging.DEBUG if route in _QUIET_ROUTES else logging.INFO
        if access_log.isEnabledFor(level):
            fields = {
                "method": method,
                "route": route or metrics.UNMATCHED_ROUTE,
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
            }
            # makeRecord + handle is what Logger.log does, minus looking up the caller's
            # file and line in the stack, which costs more than the rest of this layer.
            access_log.handle(
                access_log.makeRecord(
                    access_log.name, level, "", 0, "request", (), None, extra={"fields": fields}
                )
            )
