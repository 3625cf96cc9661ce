"""A bare newline-delimited JSON-RPC client for an agent socket: for what the SDK client would never send."""

from __future__ import annotations

import json
from typing import Any, Final

import trio

HELLO: Final = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}


class RawLines:
    """One JSON object per line each way; `read_timeout` bounds each read (None: the test's own bound)."""

    def __init__(self, stream: trio.SocketStream, *, read_timeout: float | None = None) -> None:
        self.stream = stream
        self.buffer = b""
        self.read_timeout = read_timeout

    async def send(self, payload: dict[str, Any] | bytes) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode() + b"\n"
        await self.stream.send_all(data)

    async def read(self) -> dict[str, Any]:
        with trio.fail_after(self.read_timeout) if self.read_timeout is not None else trio.CancelScope():
            while b"\n" not in self.buffer:
                data = await self.stream.receive_some()
                if not data:
                    raise EOFError("socket closed")
                self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        result: dict[str, Any] = json.loads(line)
        return result

    async def handshake(self) -> None:
        await self.send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": HELLO})
        reply = await self.read()
        assert reply["id"] == 0 and "result" in reply, reply
        await self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
