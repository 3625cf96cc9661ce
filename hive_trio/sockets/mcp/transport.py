"""MCP's stdio framing (one JSON-RPC message per line) over any trio byte stream, for the official SDK.

Two shapes. A server connection hands the SDK's dispatcher `LineReader`/`LineWriter` directly
(`open_server_lines`): the dispatcher's read loop reads and decodes the socket itself and each reply is
written by the task that produced it, with no pump task and no channel between. The client side
(`ClientSession`) talks through a pair of memory streams, which `open_mcp_streams` pumps to and from
the trio stream. Differences from the SDK's own stdio
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
import os
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


def _error(request_id: Any, code: int, message: str) -> Undecodable:
    return Undecodable(
        types.JSONRPCError(jsonrpc="2.0", id=request_id, error=types.ErrorData(code=code, message=message))
    )


def _is_valid_id(value: object) -> bool:
    # JSON-RPC 2.0 allows a string or a number without a fraction; MCP excludes null. `true` is no number.
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def decode_line(line: bytes) -> SessionMessage:
    """Decode one line; a bad line becomes the JSON-RPC error to answer it with (see `is_reply_error`).

    The SDK's models decide what a message is. Two things are checked around them: an `id` that is not a
    string or an integer (`1.5`, `true`, `null`, `[]`) would pass as a *notification* and get no reply at
    all, so it gets -32600; and a lone surrogate escape (`"\\ud800"`), which JSON allows but pydantic's
    parser refuses, is decoded by the stdlib instead, so the tool's own checks refuse it by field name.
    """
    message = decode_message(line)
    return message if isinstance(message, Undecodable) else SessionMessage(message)


def decode_message(line: bytes) -> types.JSONRPCMessage | Undecodable:
    """`decode_line` without the `SessionMessage` wrapper (a server reader wraps a request once, itself).

    A line that names an `id` is tried as a `JSONRPCRequest` first, the model the SDK's union puts first
    and would pick: a request validates that way in half the time of the four-way union. Anything it
    refuses (a response, a notification that mentions "id" in its params, a bad line) takes the full path.
    """
    if b'"id"' in line:
        try:
            return types.JSONRPCRequest.model_validate_json(line, by_name=False)
        except ValidationError:
            pass
    try:
        message: types.JSONRPCMessage | None = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    except ValidationError:
        message = None
    if message is not None and not (isinstance(message, types.JSONRPCNotification) and b'"id"' in line):
        return message
    try:
        data = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return _error(None, types.PARSE_ERROR, "parse error: the line is not valid UTF-8 JSON")
    except RecursionError:
        # `[[[[...` a million deep: the stdlib parser gives up; it is still just a bad line.
        return _error(None, types.PARSE_ERROR, "parse error: the JSON is nested too deeply")
    if isinstance(data, dict) and "id" in data and not _is_valid_id(data["id"]):
        return _error(None, types.INVALID_REQUEST, "invalid request: id must be a string or an integer")
    if message is not None:
        return message  # a notification that only mentions "id" inside its params
    if isinstance(data, dict):
        try:
            return types.jsonrpc_message_adapter.validate_python(data, by_name=False)
        except ValidationError:
            pass
    request_id = data.get("id") if isinstance(data, dict) else None
    if not _is_valid_id(request_id):
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


class LineWriter:
    """The SDK's `WriteStream` for a server connection: encodes and writes each message in the sender's task.

    No pump task and no channel (the study measured those at ~60 µs per request): the replying task
    encodes its own message and hands it to the kernel. On a socket the first attempt is a plain
    non-blocking `send`; only when the kernel buffer is full does the sender wait for it to drain, holding
    the FIFO lock so that lines never interleave. A client that stops reading therefore parks only the
    replies of its own connection (and, through the request window, its own reader). After the peer is
    gone, writes are dropped but still settle the window, so nothing on the SDK side waits on a dead peer.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        window: RequestWindow,
        on_written: Callable[[types.JSONRPCMessage], None] | None = None,
    ) -> None:
        self._stream = stream
        self._window = window
        self._on_written = on_written
        self._lock = trio.StrictFIFOLock()
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else -1
        self.peer_gone = False
        self._closed = False

    async def send(self, item: SessionMessage, /) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        message = item.message
        try:
            if not self.peer_gone and await self._write(encode(message)) and self._on_written is not None:
                self._on_written(message)
        finally:
            self._window.settle_reply(message)

    async def _write(self, line: bytes) -> bool:
        try:
            if self._fd < 0:
                async with self._lock:
                    await self._stream.send_all(line)
                return True
            view = memoryview(line)
            if not self._lock.locked():
                # The common case: one syscall, no pass through the scheduler.
                try:
                    sent = os.write(self._fd, view)
                except BlockingIOError:
                    sent = 0
                if sent == len(view):
                    return True
                view = view[sent:]
            async with self._lock:
                while view:
                    await trio.lowlevel.wait_writable(self._fd)
                    try:
                        view = view[os.write(self._fd, view) :]
                    except BlockingIOError:
                        continue
            return True
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            self.peer_gone = True
            return False

    async def aclose(self) -> None:
        self._closed = True

    async def __aenter__(self) -> LineWriter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class LineReader:
    """The SDK's `ReadStream` for a server connection: reads, frames and decodes on the dispatcher's own loop.

    The dispatcher's read loop calls `receive`, which reads the socket itself (no pump task, no channel).
    A line that does not decode is answered here through the writer and skipped; an over-long line is
    answered and ends the input; a full request window stops the reading (back-pressure). `peek_request`
    reads ahead to the first request and keeps what it read for `receive`, so the caller can choose the
    protocol era before the SDK starts.
    """

    def __init__(self, stream: trio.abc.Stream, writer: LineWriter, *, window: RequestWindow, max_frame: int) -> None:
        self._stream = stream
        self._writer = writer
        self._window = window
        self._framer = LineFramer(max_frame=max_frame)
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else -1
        self._full_read = False
        self._lines: deque[bytes] = deque()
        self._ahead: deque[SessionMessage] = deque()
        self._eof = False
        self.nursery: trio.Nursery | None = None  # where a deferred bad-line answer waits (see `_answer`)
        self._deferred: trio.MemorySendChannel[tuple[int, SessionMessage]] | None = None

    async def _answer(self, message: SessionMessage) -> None:
        """Answer a bad line, after the replies to every request read before it (a pipeline keeps its order).

        The common case, nothing of this connection in flight, is answered at once. Otherwise the answer
        waits in a task of `nursery` (started on the first such line), so the read loop keeps reading:
        a `notifications/cancelled` behind the bad line must still reach a parked call.
        """
        if self._deferred is None and not len(self._window):
            await self._writer.send(message)
            return
        if self._deferred is None:
            if self.nursery is None:
                await self._window.wait_settled_through(self._window.last_admitted)
                await self._writer.send(message)
                return
            self._deferred, receive = trio.open_memory_channel[tuple[int, SessionMessage]](CHANNEL_BUFFER)
            self.nursery.start_soon(self._answer_deferred, receive)
        await self._deferred.send((self._window.last_admitted, message))

    async def _answer_deferred(self, receive: trio.MemoryReceiveChannel[tuple[int, SessionMessage]]) -> None:
        async with receive:
            async for after, message in receive:
                await self._window.wait_settled_through(after)
                try:
                    await self._writer.send(message)
                except anyio.ClosedResourceError:
                    return

    async def peek_request(self, *, limit: int = 8) -> types.JSONRPCRequest | None:
        """Read until the first request (at most `limit` messages) and keep everything for `receive`."""
        while len(self._ahead) < limit:
            message = await self._next()
            if message is None:
                return None
            self._ahead.append(message)
            if isinstance(message.message, types.JSONRPCRequest):
                return message.message
        return None

    async def receive(self) -> SessionMessage:
        if self._ahead:
            return self._ahead.popleft()
        message = await self._next()
        if message is None:
            raise anyio.EndOfStream
        return message

    async def _next(self) -> SessionMessage | None:
        while True:
            while not self._lines:
                if self._eof:
                    return None
                data = await self._receive()
                if not data:
                    self._eof = True
                    return None
                try:
                    self._lines.extend(self._framer.feed(data))
                except FrameTooLarge as exc:
                    log.warning("%s", exc)
                    self._eof = True
                    await self._answer(_error(None, types.INVALID_REQUEST, str(exc)))
                    return None
            line = self._lines.popleft()
            if not line.strip():
                continue
            message = decode_message(line)
            if isinstance(message, Undecodable):
                await self._answer(message)
                continue
            if isinstance(message, types.JSONRPCRequest):
                await self._window.admit(message.id)
                return self._window.tracked(message)
            return SessionMessage(message)

    async def _receive(self) -> bytes | bytearray:
        """The next bytes from the peer, b"" at its end. Every call passes through the scheduler once.

        On a socket this waits for readability *before* reading: after a request has been dispatched the
        socket is nearly always empty (a hive client makes one call at a time), so trying first, as trio's
        `receive_some` does, costs a failed `recv(2)` and its exception on every request. Only after a read
        that filled the whole chunk (more is probably waiting) is the read tried first, behind a
        checkpoint so that a client that never stops sending still yields the loop to the others.
        """
        if self._fd < 0:
            try:
                return await self._stream.receive_some(RECEIVE_CHUNK)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return b""
        try:
            if self._full_read:
                await trio.lowlevel.checkpoint()
                try:
                    data = os.read(self._fd, RECEIVE_CHUNK)
                except BlockingIOError:
                    data = None
            else:
                data = None
            while data is None:
                await trio.lowlevel.wait_readable(self._fd)
                try:
                    data = os.read(self._fd, RECEIVE_CHUNK)
                except BlockingIOError:
                    continue
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            return b""  # reset by the peer, or closed under us: the end of this connection's input
        self._full_read = len(data) == RECEIVE_CHUNK
        return data

    async def aclose(self) -> None:
        self._eof = True
        self._lines.clear()
        self._ahead.clear()

    def __aiter__(self) -> LineReader:
        return self

    async def __anext__(self) -> SessionMessage:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> LineReader:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def open_server_lines(
    stream: trio.abc.Stream,
    *,
    max_frame: int,
    on_written: Callable[[types.JSONRPCMessage], None] | None = None,
    max_in_flight: int = MAX_IN_FLIGHT,
) -> tuple[LineReader, LineWriter]:
    """The (read, write) objects a server connection hands the SDK's dispatcher directly (no tasks)."""
    window = RequestWindow(max_in_flight)
    writer = LineWriter(stream, window=window, on_written=on_written)
    return LineReader(stream, writer, window=window, max_frame=max_frame), writer
