"""MCP's stdio framing (one JSON-RPC message per line) over any trio byte stream, for the official SDK.

The SDK's `Server.run` and `ClientSession` talk through a pair of memory streams; this module pumps
lines between those and a trio stream (a unix socket here). Differences from the SDK's own stdio
transport, on purpose: a line that is not JSON gets a JSON-RPC parse error back (the SDK drops it
silently), valid JSON that is not JSON-RPC gets "invalid request", and an over-long line closes
only this connection. It knows nothing of agents or tools.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
import mcp_types as types
import trio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from hive_trio.line_framing import FrameTooLarge, LineFramer

log = logging.getLogger(__name__)

Role = Literal["server", "client"]
ReadStream = MemoryObjectReceiveStream[SessionMessage | Exception]
WriteStream = MemoryObjectSendStream[SessionMessage]
# How many decoded messages may wait for the SDK before we stop reading the socket (back-pressure).
CHANNEL_BUFFER = 16
RECEIVE_CHUNK = 65536


def encode(message: types.JSONRPCMessage) -> bytes:
    return message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"


class Undecodable(SessionMessage):
    """The JSON-RPC error that answers a line we could not decode (not an error the peer sent us)."""


def _error(request_id: Any, code: int, message: str) -> SessionMessage:
    return Undecodable(
        types.JSONRPCError(jsonrpc="2.0", id=request_id, error=types.ErrorData(code=code, message=message))
    )


def decode_line(line: bytes) -> SessionMessage:
    """Decode one line; a bad line becomes the JSON-RPC error to answer it with (see `is_reply_error`)."""
    try:
        return SessionMessage(types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValidationError:
        pass
    try:
        data = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return _error(None, types.PARSE_ERROR, "parse error: the line is not valid UTF-8 JSON")
    except RecursionError:
        # `[[[[...` a million deep: the stdlib parser gives up; it is still just a bad line.
        return _error(None, types.PARSE_ERROR, "parse error: the JSON is nested too deeply")
    request_id = data.get("id") if isinstance(data, dict) else None
    if isinstance(request_id, bool) or not isinstance(request_id, str | int):
        request_id = None
    return _error(request_id, types.INVALID_REQUEST, "invalid request: not a JSON-RPC 2.0 message")


def is_reply_error(message: SessionMessage) -> bool:
    """True if `decode_line` could not decode the line; a well-formed error *response* is a message."""
    return isinstance(message, Undecodable)


@asynccontextmanager
async def open_mcp_streams(
    stream: trio.abc.Stream,
    *,
    role: Role,
    max_frame: int,
    on_written: Callable[[types.JSONRPCMessage], None] | None = None,
) -> AsyncIterator[tuple[ReadStream, WriteStream]]:
    """Yield the (read, write) pair the SDK expects, pumped to and from `stream` by two tasks.

    `on_written` is called after each outgoing message has been handed to the kernel in full; the
    agent socket uses it to know a reply carrying messages really left.
    """
    to_sdk_send, to_sdk_receive = anyio.create_memory_object_stream[SessionMessage | Exception](CHANNEL_BUFFER)
    from_sdk_send, from_sdk_receive = anyio.create_memory_object_stream[SessionMessage](CHANNEL_BUFFER)
    # The reader answers bad lines itself, through the same writer, so replies never interleave.
    error_send = from_sdk_send.clone()

    async def pump_in() -> None:
        framer = LineFramer(max_frame=max_frame)
        async with to_sdk_send, error_send:
            try:
                while True:
                    data = await stream.receive_some(RECEIVE_CHUNK)
                    if not data:
                        return
                    for line in framer.feed(data):
                        if not line.strip():
                            continue
                        message = decode_line(line)
                        if not is_reply_error(message):
                            await to_sdk_send.send(message)
                        elif role == "server":
                            await error_send.send(message)
                        else:
                            await to_sdk_send.send(ValueError(f"undecodable line from server: {line[:200]!r}"))
            except FrameTooLarge as exc:
                log.warning("%s", exc)
                if role == "server":
                    await error_send.send(_error(None, types.INVALID_REQUEST, str(exc)))
            except (trio.BrokenResourceError, trio.ClosedResourceError, anyio.BrokenResourceError):
                return

    async def pump_out() -> None:
        async with from_sdk_receive:
            try:
                async for item in from_sdk_receive:
                    await stream.send_all(encode(item.message))
                    if on_written is not None:
                        on_written(item.message)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                # The peer is gone; drain so the SDK side never blocks on a dead writer.
                async for _ in from_sdk_receive:
                    pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump_in)
        nursery.start_soon(pump_out)
        try:
            yield to_sdk_receive, from_sdk_send
        finally:
            nursery.cancel_scope.cancel()
