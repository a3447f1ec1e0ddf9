"""Webhook test support: a real HTTP receiver on 127.0.0.1 that records every request and
answers as told (a status, a hang, or a dropped connection), and helpers around the jobs."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text

from app import db
from app.clock import clock
from app.services.events.webhook_delivery import fan_out_events
from app.services.programs.due_programs import looking_across_programs
from tests.conftest import Program


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """``behaviour``: an HTTP status to answer with, ``"hang"`` (read the request, never
    answer), ``"kill"`` (read the request, close the connection), or a function of the
    request that returns one of those."""

    behaviour: int | str | Callable[[Received], int | str] = 200
    delay: float = 0.0
    requests: list[Received] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hooks/patron"

    async def start(self) -> Receiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._handlers):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)

    def event_ids(self) -> list[str]:
        return [r.headers["patron-event-id"] for r in self.requests]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                received = await self._read(reader)
                if received is None:
                    return
                self.requests.append(received)
                if self.delay:
                    await asyncio.sleep(self.delay)
                behaviour = self.behaviour(received) if callable(self.behaviour) else self.behaviour
                if behaviour == "hang":
                    await asyncio.sleep(3600)
                if behaviour == "kill":
                    return
                status = int(behaviour)
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\n"
                    "Content-Type: text/plain\r\n\r\nok".encode()
                )
                await writer.drain()
        except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._handlers.discard(task)
            writer.close()

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> Received | None:
        head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
        if not head:
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return Received(method, path, headers, body)


async def register(
    program: Program, url: str, events: list[str] | None = None, allow_private: bool = True
) -> dict[str, Any]:
    """Register an endpoint (allowing private hosts first, since receivers are on loopback)."""
    if allow_private:
        response = await program.patch("/v1/program", json={"webhooks_allow_private_hosts": True})
        assert response.status_code == 200, response.text
    response = await program.post(
        "/v1/webhook-endpoints", json={"url": url, "events": events or ["*"]}
    )
    assert response.status_code == 201, response.text
    endpoint: dict[str, Any] = response.json()
    return endpoint


async def deliveries(endpoint_id: str) -> list[Any]:
    # By endpoint id alone, whatever the program: on Citus, a look at every shard.
    async with looking_across_programs() as conn:
        return list(
            (
                await conn.execute(
                    text(
                        "SELECT d.*, e.type FROM webhook_deliveries AS d "
                        "JOIN events AS e ON e.id = d.event_id AND e.program_id = d.program_id "
                        "WHERE endpoint_id = :id ORDER BY event_id"
                    ),
                    {"id": uuid.UUID(endpoint_id)},
                )
            ).all()
        )


async def fan_out_until(endpoint_id: str, count: int) -> list[Any]:
    """Run the fan-out job until the endpoint has ``count`` deliveries. Events become visible
    to the job once every older transaction on the server has ended, which another session
    may delay for a moment."""
    async with asyncio.timeout(10):
        while True:
            await fan_out_events(clock.now())
            rows = await deliveries(endpoint_id)
            if len(rows) >= count:
                assert len(rows) == count, rows
                return rows
            await asyncio.sleep(0.05)


async def remove_endpoints(program_id: int) -> None:
    """Tests leave no endpoint behind for later tests' delivery runs to call."""
    async with db.transaction() as conn:
        await conn.execute(
            text("DELETE FROM webhook_deliveries WHERE program_id = :p"), {"p": program_id}
        )
        await conn.execute(
            text("DELETE FROM webhook_endpoints WHERE program_id = :p"), {"p": program_id}
        )
