"""One dashboard TCP connection as a trio stream: bounded writes, a cut that frees everything, a replay.

`ConnectionStream` wraps the accepted socket for both phases of a connection. Every write must make
progress within `stall_timeout` (a peer that reads nothing is cut, with a reset, and only its own task
ever waited for it; `serve_stall_watch` keeps the bound for all of them); a write cut short poisons the
stream, since the peer would otherwise see half a frame followed by the next; and the bytes h11 already
read can be replayed, so trio-websocket's wsproto reads the handshake itself. This module also reads
request heads and writes replies with h11.

hypercorn wrote every frame in a shielded `send_all`, which needed TCP_USER_TIMEOUT and a search of
/proc/self/fd to cut a stalled peer; here a write is an ordinary cancellable trio call.
This module must never know about routes, tokens, the hub or the coordinator.
"""

from __future__ import annotations

import math
import os
import socket
import struct
from collections.abc import Callable, Collection
from contextlib import suppress
from typing import Final, NoReturn

import h11
import trio

from hive_trio.dashboard.routes import Reply

# Writes are bounded chunk by chunk: a peer that is slow but reading (a big snapshot over a thin
# link) keeps its connection; one that accepts nothing for `stall_timeout` is cut.
SEND_CHUNK: Final = 64 * 1024
RECEIVE_BYTES: Final = 16 * 1024
# A request head (request line and headers) past this many bytes gets 431, from the first byte over.
MAX_REQUEST_HEAD: Final = 16 * 1024
# SO_LINGER with a zero timeout: close() resets the connection and frees its buffers at once, instead
# of the kernel retrying unsent bytes to a peer that stopped reading.
_RESET_ON_CLOSE: Final = struct.pack("ii", 1, 0)


class StalledPeer(trio.BrokenResourceError):
    """The peer accepted no bytes for `stall_timeout` seconds; the connection was cut."""


class ConnectionStream(trio.abc.Stream):
    """A `trio.SocketStream` with stall-bounded writes, an abortive close, and replayable read-ahead.

    The bound is kept by `check_stall`, which a watchdog calls for every live connection: a write
    stamps when it started (per chunk, so a slow reader that makes progress is never cut) and the
    watchdog resets a connection whose write is older than `stall_timeout`, which wakes the writer.
    A cancel scope per write does the same at ~12 µs a frame, a fifth of a 1,000-subscriber fan-out
    (docs/PERFORMANCE.md); a timestamp costs well under one.
    """

    def __init__(self, stream: trio.SocketStream, *, stall_timeout: float) -> None:
        self._stream = stream
        self.stall_timeout = stall_timeout
        self.stalled = False
        self._sending_since = math.inf
        self._replay = b""
        self._broken = False
        self._closed = False
        self._on_close: list[Callable[[], object]] = []
        # Writers take turns (trio-websocket's own, ours, `send_nowait`'s leftover), so frames never
        # interleave; `_pending` is the tail of a frame `send_nowait` began, written before anything else.
        self._lock = trio.StrictFIFOLock()
        self._pending: memoryview | None = None

    @property
    def broken(self) -> bool:
        return self._broken

    def replay(self, data: bytes) -> None:
        """Hand `data` out from `receive_some` before anything more is read from the socket."""
        self._replay = data + self._replay

    def on_close(self, callback: Callable[[], object]) -> None:
        """Call `callback` once when this stream is closed or cut (at once if it already is)."""
        if self._closed:
            callback()
        else:
            self._on_close.append(callback)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._replay:
            await trio.lowlevel.checkpoint()
            size = len(self._replay) if max_bytes is None else max_bytes
            data, self._replay = self._replay[:size], self._replay[size:]
            return data
        return await self._stream.receive_some(max_bytes)

    @property
    def pending(self) -> bool:
        """A frame begun by `send_nowait` is not finished: `flush` (or any `send_all`) must finish it."""
        return self._pending is not None

    def send_nowait(self, frame: bytes) -> bool:
        """Hand `frame` to the kernel now, without a task switch; False if it must wait its turn.

        It waits (False) while another write holds the stream or a frame's tail is pending, and when
        the stream is cut. A kernel buffer that takes only part of it keeps the rest as `pending`, so
        the frame is still whole on the wire once someone flushes; that is the caller's to arrange.
        This is the dashboard fan-out's path: one framed event written to every subscriber's socket
        from one task (docs/PERFORMANCE.md).
        """
        if self._broken or self._closed or self._pending is not None or self._lock.locked():
            return False
        fd = self._stream.socket.fileno()
        if fd == -1:
            return False
        try:
            sent = os.write(fd, frame)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.abort()  # reset or gone: whoever writes next finds it cut
            return False
        if sent < len(frame):
            self._pending = memoryview(frame)[sent:]
        return True

    async def flush(self) -> None:
        """Finish a frame `send_nowait` began (stall-bounded like any write)."""
        await self.send_all(b"")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._broken:
            raise trio.BrokenResourceError("the dashboard connection was cut")
        async with self._lock:
            if self._pending is not None:
                pending, self._pending = self._pending, None
                await self._send_bounded(pending)
            if data:
                await self._send_bounded(data)

    async def _send_bounded(self, data: bytes | bytearray | memoryview) -> None:
        if self._broken:
            raise trio.BrokenResourceError("the dashboard connection was cut")
        try:
            if len(data) <= SEND_CHUNK:
                self._sending_since = trio.current_time()
                await self._stream.send_all(data)
            else:
                with memoryview(data) as view:
                    for start in range(0, len(view), SEND_CHUNK):
                        self._sending_since = trio.current_time()
                        await self._stream.send_all(view[start : start + SEND_CHUNK])
        except BaseException as exc:
            # Cut short (stalled, cancelled, reset): the peer may hold half a frame, so nothing else
            # may follow it on this byte stream.
            self.abort()
            if self.stalled and isinstance(exc, trio.ClosedResourceError):
                raise StalledPeer(f"the peer read nothing for {self.stall_timeout:g} s") from None
            raise
        finally:
            self._sending_since = math.inf

    def check_stall(self, now: float) -> bool:
        """Cut this connection if its write in progress has made no progress for `stall_timeout`."""
        if now - self._sending_since < self.stall_timeout:
            return False
        self.stalled = True
        self.abort()
        return True

    async def linger(self, *, limit: int = 256 * 1024) -> None:
        """Half-close, then read and drop what the peer still sends (up to `limit`; the caller bounds the time).

        Closing a socket with unread input resets the connection, and a reset can destroy the reply
        the peer has not read yet (RFC 9112 §9.6): the 400 or 431 that says why would be lost.
        """
        if self._broken:
            return
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._stream.send_eof()
            drained = 0
            while drained < limit and (chunk := await self.receive_some(RECEIVE_BYTES)):
                drained += len(chunk)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    def abort(self) -> None:
        """Reset the connection now; a task blocked on it wakes with `ClosedResourceError`."""
        self._broken = True
        sock = self._stream.socket
        if sock.fileno() != -1:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
            except OSError:
                pass  # already dead; close() below is all that is left
            sock.close()
        self._notify_closed()

    async def aclose(self) -> None:
        self._notify_closed()
        await self._stream.aclose()

    def _notify_closed(self) -> None:
        if self._closed:
            return
        self._closed = True
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            callback()


async def serve_stall_watch(streams: Collection[ConnectionStream], *, interval: float) -> NoReturn:
    """Every `interval`, cut each stream whose current write is older than its stall timeout."""
    while True:
        await trio.sleep(interval)
        now = trio.current_time()
        for stream in list(streams):
            stream.check_stall(now)


# ------------------------------------------------------------------------------------------ h11


async def receive_request(
    conn: h11.Connection, stream: ConnectionStream, head: bytearray, *, max_head: int = MAX_REQUEST_HEAD
) -> h11.Request | None:
    """The next request head (None: the peer closed first), keeping every byte fed to h11 in `head`.

    A body already in the buffer is read past; a body still to come is left unread, and `send_reply`
    then closes the connection after its reply rather than read it. Raises `h11.RemoteProtocolError`
    for a malformed or oversized head (its `error_status_hint` is the status to answer with). The
    caller bounds the wait.
    """
    limit = max_head
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            # h11 checks its limit only between reads, so 16 KiB reads let a head reach ~40 KB before
            # the 431. Reading no further than one byte past the limit makes it exact.
            if len(head) > limit:
                raise h11.RemoteProtocolError("request head too large", error_status_hint=431)
            data = await stream.receive_some(min(RECEIVE_BYTES, limit + 1 - len(head)))
            head += data
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            # Completed by the byte that took it past the limit: still too large.
            if len(head) - len(conn.trailing_data[0]) > limit:
                raise h11.RemoteProtocolError("request head too large", error_status_hint=431)
            _read_buffered_body(conn)
            return event
        # ConnectionClosed, or PAUSED on bytes after a cycle that is not continued.
        return None


def _read_buffered_body(conn: h11.Connection) -> None:
    try:
        while isinstance(conn.next_event(), h11.Data):
            pass
    except h11.RemoteProtocolError:
        pass  # a broken body: the reply still goes out, then the connection closes


async def send_reply(conn: h11.Connection, stream: ConnectionStream, reply: Reply, *, head_only: bool) -> None:
    """Write `reply` in one `send_all`. A HEAD gets the same headers and no body.

    Says `Connection: close` when the connection cannot go on: no request was read (an error reply),
    or its body was not.
    """
    keep_alive = conn.their_state not in (h11.IDLE, h11.SEND_BODY, h11.ERROR)
    out = conn.send(
        h11.Response(status_code=reply.status, headers=reply.header_list(keep_alive=keep_alive), reason=reply.reason)
    )
    assert out is not None
    if reply.body and not head_only:
        body = conn.send(h11.Data(data=reply.body))
        assert body is not None
        out += body
    end = conn.send(h11.EndOfMessage())
    assert end is not None
    await stream.send_all(out + end)


__all__ = [
    "RECEIVE_BYTES",
    "SEND_CHUNK",
    "ConnectionStream",
    "StalledPeer",
    "receive_request",
    "send_reply",
    "serve_stall_watch",
]
