"""The transport behind app.http_protocol: one write per event-loop turn."""

from __future__ import annotations

import asyncio
from typing import Any

from app.http_protocol import _CoalescingTransport


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000)}.get(name, default)


def _proxy() -> tuple[_CoalescingTransport, RecordingTransport]:
    inner = RecordingTransport()
    return _CoalescingTransport(inner, asyncio.get_running_loop()), inner  # type: ignore[arg-type]


class TestCoalescingTransport:
    async def test_head_and_body_of_one_turn_leave_in_one_write(self) -> None:
        proxy, inner = _proxy()
        proxy.write(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n")
        proxy.write(b"{}")
        assert inner.writes == []
        await asyncio.sleep(0)
        assert inner.writes == [b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}"]

    async def test_each_turn_is_written_at_its_end(self) -> None:
        proxy, inner = _proxy()
        proxy.write(b"a")
        await asyncio.sleep(0)
        proxy.writelines([b"b", bytearray(b"c")])
        await asyncio.sleep(0)
        assert inner.writes == [b"a", b"bc"]

    async def test_close_sends_what_is_held_first(self) -> None:
        proxy, inner = _proxy()
        proxy.write(b"last words")
        proxy.close()
        assert inner.writes == [b"last words"]
        assert inner.closed
        await asyncio.sleep(0)  # the scheduled flush finds nothing more to send
        assert inner.writes == [b"last words"]

    async def test_nothing_is_written_to_a_closing_transport(self) -> None:
        proxy, inner = _proxy()
        proxy.write(b"too late")
        inner.closed = True
        await asyncio.sleep(0)
        assert inner.writes == []

    async def test_other_calls_reach_the_transport(self) -> None:
        proxy, _ = _proxy()
        assert proxy.get_extra_info("peername") == ("127.0.0.1", 50000)
