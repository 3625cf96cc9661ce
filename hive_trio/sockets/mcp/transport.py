"""MCP's stdio framing (one JSON-RPC message per line) over any trio byte stream, for the official SDK.

The SDK's `Server.run` and `ClientSession` talk through a pair of memory streams; this module pumps
lines between those and a trio stream (a unix socket here). Differences from the SDK's own stdio
transport, on purpose: a line that is not JSON gets a JSON-RPC parse error back (the SDK drops it
silently), valid JSON that is not JSON-RPC gets "invalid request", and an over-long line closes
only this connection, and a server stops reading a connection that has `max_in_flight` requests without a
written reply (a client that sends and never reads holds that many replies, not an unbounded heap).
Every request and reply goes through the SDK; this module only frames lines. It knows nothing of agents
or tools.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, Literal

import anyio
import mcp_types as types
import trio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import ServerMessageMetadata, SessionMessage
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from hive_trio.rules.framing import FrameTooLarge, LineFramer

log = logging.getLogger(__name__)

Role = Literal["server", "client"]
ReadStream = MemoryObjectReceiveStream[SessionMessage | Exception]
WriteStream = MemoryObjectSendStream[SessionMessage]
# How many decoded messages may wait for the SDK before we stop reading the socket (back-pressure).
CHANNEL_BUFFER = 16
RECEIVE_CHUNK = 65536
# Requests a server connection may have inside the SDK with no reply written yet. The SDK runs every
# request as its own task, unbounded; past this we stop reading the socket, and the kernel's buffers
# push back on the client.
MAX_IN_FLIGHT: Final = 32


def encode(message: types.JSONRPCMessage) -> bytes:
    try:
        return message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"
    except PydanticSerializationError:
        # A lone surrogate (from a peer's "\ud800" escape, say) has no UTF-8 form; JSON's own \u escape
        # carries it, so the reply is still written instead of the connection dying.
        data = message.model_dump(by_alias=True, exclude_unset=True, mode="python")
        return json.dumps(data, ensure_ascii=True, separators=(",", ":")).encode() + b"\n"


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


class RequestWindow:
    """The requests of one connection that are inside the SDK and have no reply written yet.

    `admit` waits while the window is full, which is how the reader stops reading. A request leaves when
    a reply with its id has been written (or dropped because the peer left), or when the SDK settles it
    unanswered (the client cancelled it). Ids are counted, since a client may (wrongly) reuse one.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._slots = trio.Semaphore(limit)
        # Each admitted request gets a sequence number, so "everything read before this line" is a number.
        self._seq = 0
        self._open: dict[types.RequestId, deque[int]] = {}
        self._open_seqs: set[int] = set()
        self._settled = trio.Event()

    @property
    def last_admitted(self) -> int:
        return self._seq

    async def admit(self, request_id: types.RequestId) -> None:
        try:
            self._slots.acquire_nowait()  # the common case, without a trip through the scheduler
        except trio.WouldBlock:
            await self._slots.acquire()
        self._seq += 1
        self._open.setdefault(request_id, deque()).append(self._seq)
        self._open_seqs.add(self._seq)

    def settle(self, request_id: types.RequestId | None) -> None:
        if request_id is None:
            return
        seqs = self._open.get(request_id)
        if not seqs:
            return  # not a request of ours (a parse error we answered ourselves, a notification)
        self._open_seqs.discard(seqs.popleft())
        if not seqs:
            del self._open[request_id]
        self._slots.release()
        self._settled.set()
        self._settled = trio.Event()

    async def wait_settled_through(self, seq: int) -> None:
        """Until every request admitted up to `seq` has been answered (or settled unanswered)."""
        while self._open_seqs and min(self._open_seqs) <= seq:
            await self._settled.wait()

    def settle_reply(self, message: types.JSONRPCMessage) -> None:
        if isinstance(message, types.JSONRPCResponse | types.JSONRPCError):
            self.settle(message.id)

    def tracked(self, request: types.JSONRPCRequest) -> SessionMessage:
        """`request` carrying the hook the SDK calls if it settles the request without a reply."""

        async def unanswered() -> None:
            self.settle(request.id)

        return SessionMessage(request, metadata=ServerMessageMetadata(on_request_unanswered=unanswered))

    def __len__(self) -> int:
        return len(self._open_seqs)


@asynccontextmanager
async def open_mcp_streams(
    stream: trio.abc.Stream,
    *,
    role: Role,
    max_frame: int,
    on_written: Callable[[types.JSONRPCMessage], None] | None = None,
    max_in_flight: int = MAX_IN_FLIGHT,
) -> AsyncIterator[tuple[ReadStream, WriteStream]]:
    """Yield the (read, write) pair the SDK expects, pumped to and from `stream` by two tasks.

    `on_written` is called after each outgoing SDK message has been handed to the kernel in full; the
    agent socket uses it to know a reply carrying messages really left. A server reads no further
    while `max_in_flight` requests wait for their replies.
    """
    window = RequestWindow(max_in_flight) if role == "server" else None
    peer_gone = False

    async def write(line: bytes) -> bool:
        # Only `pump_out` writes, so lines never interleave.
        nonlocal peer_gone
        if peer_gone:
            return False
        try:
            await stream.send_all(line)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            peer_gone = True
            return False
        return True

    to_sdk_send, to_sdk_receive = anyio.create_memory_object_stream[SessionMessage | Exception](CHANNEL_BUFFER)
    from_sdk_send, from_sdk_receive = anyio.create_memory_object_stream[SessionMessage](CHANNEL_BUFFER)
    # The reader answers bad lines itself, through the same writer, so replies never interleave.
    error_send = from_sdk_send.clone()
    # A bad line's error waits here until every request read before it has its reply, so a pipeline's
    # replies keep their order (the SDK would otherwise be overtaken by our instant parse error).
    deferred_send, deferred_receive = trio.open_memory_channel[tuple[int, SessionMessage]](CHANNEL_BUFFER)

    async def answer_bad_lines() -> None:
        async with error_send, deferred_receive:
            async for after, message in deferred_receive:
                if window is not None:
                    await window.wait_settled_through(after)
                try:
                    await error_send.send(message)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return

    async def answer_later(message: SessionMessage) -> None:
        await deferred_send.send((window.last_admitted if window is not None else 0, message))

    async def pump_in() -> None:
        framer = LineFramer(max_frame=max_frame)
        async with to_sdk_send, deferred_send:
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
                            if window is not None and isinstance(message.message, types.JSONRPCRequest):
                                await window.admit(message.message.id)
                                message = window.tracked(message.message)
                            await to_sdk_send.send(message)
                        elif role == "server":
                            await answer_later(message)
                        else:
                            await to_sdk_send.send(ValueError(f"undecodable line from server: {line[:200]!r}"))
            except FrameTooLarge as exc:
                log.warning("%s", exc)
                if role == "server":
                    await answer_later(_error(None, types.INVALID_REQUEST, str(exc)))
            except (trio.BrokenResourceError, trio.ClosedResourceError, anyio.BrokenResourceError):
                return

    async def pump_out() -> None:
        async with from_sdk_receive:
            async for item in from_sdk_receive:
                # After the peer is gone this keeps draining, so the SDK side never blocks on a dead writer.
                if await write(encode(item.message)):
                    if on_written is not None:
                        on_written(item.message)
                if window is not None:
                    window.settle_reply(item.message)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump_in)
        nursery.start_soon(answer_bad_lines)
        nursery.start_soon(pump_out)
        try:
            yield to_sdk_receive, from_sdk_send
        finally:
            nursery.cancel_scope.cancel()
