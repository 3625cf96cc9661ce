"""`hive-trio mcp-bridge SOCKET`: a bridge between stdio and an agent's MCP socket that outlives a restart.

The socket already speaks MCP's stdio framing, so the bridge copies lines: stdin to the socket and the
socket to stdout (what `socat STDIO UNIX-CONNECT:SOCKET` does), which lets any stdio MCP client (Claude
Code's config, the SDK's `stdio_client`) reach an agent. hyperhive needed a translator here (`hive-ag3nt
mcp`); hive_trio does not. Two things it does beyond socat, both so a running Claude Code keeps its hive
tools:
- the daemon going away (a restart) is not the end: the bridge reconnects with backoff, replays the
  client's `initialize` and `notifications/initialized`, and swallows the duplicate `initialize` reply;
  requests that were in flight get a JSON-RPC error (`-32000`, retry) instead of silence (a client of
  the 2026-07-28 era, as Claude Code is, has no handshake: each request carries its own, so nothing is
  replayed);
- stdin ending half-closes the socket (shutdown SHUT_WR) once every request has its reply (the daemon's
  session would drop the rest), and the bridge exits when the daemon closes.
`BridgeState` (sans-IO) reads just enough of each line for that; the bridge never changes a line it passes.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from os import PathLike
from typing import Any, Final

import trio

from hive_trio.clients.host import DaemonNotRunning, connect_host
from hive_trio.rules.framing import LineFramer

CHUNK = 65536

Receive = Callable[[], Awaitable[bytes]]
Send = Callable[[bytes], Awaitable[None]]


class BridgeClosed(Exception):
    """The daemon ended the connection while the client was still talking."""


def _is_regular_file(fd: int) -> bool:
    return stat.S_ISREG(os.fstat(fd).st_mode)


def _stdio_reader(fd: int) -> tuple[Receive, Callable[[], Awaitable[None]]]:
    """A reader for `fd`: a non-blocking trio stream for pipes, sockets and ttys; a worker thread for
    a regular file, which epoll cannot wait on."""
    if _is_regular_file(fd):

        async def read_file() -> bytes:
            return await trio.to_thread.run_sync(os.read, fd, CHUNK)

        async def nothing() -> None:
            return None

        return read_file, nothing
    stream = trio.lowlevel.FdStream(os.dup(fd))

    async def read_stream() -> bytes:
        return bytes(await stream.receive_some(CHUNK))

    return read_stream, stream.aclose


def _stdio_writer(fd: int) -> tuple[Send, Callable[[], Awaitable[None]]]:
    if _is_regular_file(fd):

        async def write_file(data: bytes) -> None:
            view = memoryview(data)
            while view:
                written = await trio.to_thread.run_sync(os.write, fd, view)
                view = view[written:]

        async def nothing() -> None:
            return None

        return write_file, nothing
    stream = trio.lowlevel.FdStream(os.dup(fd))
    return stream.send_all, stream.aclose


RECONNECT_FIRST: Final = 0.1
RECONNECT_MAX: Final = 2.0
RECONNECT_GIVE_UP: Final = 120.0  # seconds without a daemon before the bridge gives up
MAX_LINE: Final = 64 * 1024 * 1024
RESTART_ERROR: Final = -32000


def _decode(line: bytes) -> Mapping[str, Any] | None:
    try:
        data = json.loads(line)
    except ValueError:
        return None
    return data if isinstance(data, Mapping) else None


class BridgeState:
    """What the bridge must remember to survive a reconnect: the handshake and the requests in flight."""

    def __init__(self) -> None:
        self.initialize: bytes | None = None
        self.initialized: bytes | None = None
        self._init_id: Any = None
        self._swallow_init_reply = False
        self.pending: dict[str, Any] = {}  # json-encoded id -> id, for requests the client awaits

    def from_client(self, line: bytes) -> None:
        message = _decode(line)
        if message is None:
            return
        method = message.get("method")
        if method == "initialize":
            self.initialize, self._init_id = line, message.get("id")
        elif method == "notifications/initialized":
            self.initialized = line
        if isinstance(method, str) and "id" in message:
            self.pending[json.dumps(message["id"])] = message["id"]

    def from_daemon(self, line: bytes) -> bool:
        """Whether to pass `line` to the client (False for the replayed `initialize`'s reply)."""
        message = _decode(line)
        if message is None or "method" in message or "id" not in message:
            return True
        self.pending.pop(json.dumps(message["id"]), None)
        if self._swallow_init_reply and message["id"] == self._init_id:
            self._swallow_init_reply = False
            return False
        return True

    def reconnected(self) -> tuple[list[bytes], list[bytes]]:
        """(lines to replay to the new daemon connection, error replies owed to the client)."""
        owed = [
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": request_id,
                    "error": {"code": RESTART_ERROR, "message": "the hive daemon restarted; retry the request"},
                }
            ).encode()
            for key, request_id in self.pending.items()
            if self.initialize is None or key != json.dumps(self._init_id)
        ]
        self.pending.clear()
        replay = [line for line in (self.initialize, self.initialized) if line is not None]
        self._swallow_init_reply = self.initialize is not None
        if self.initialize is not None:
            self.pending[json.dumps(self._init_id)] = self._init_id
        return replay, owed


async def run_mcp_bridge(
    socket_path: str | PathLike[str],
    *,
    stdin_fd: int = 0,
    stdout_fd: int = 1,
    give_up_after: float = RECONNECT_GIVE_UP,
) -> None:
    """Copy stdin to the socket and the socket to stdout until the conversation ends.

    When stdin ends, the socket's write side is shut (the daemon sees end-of-input, answers what it was
    asked, and closes); the bridge exits then. If the daemon closes while stdin is still open, the bridge
    reconnects (for up to `give_up_after` seconds, then `BridgeClosed`).
    """
    bridge = _Bridge(socket_path, give_up_after=give_up_after)
    bridge.sock = await connect_host(socket_path)
    receive_stdin, close_stdin = _stdio_reader(stdin_fd)
    send_stdout, close_stdout = _stdio_writer(stdout_fd)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(bridge.upstream, receive_stdin)
            nursery.start_soon(bridge.downstream, send_stdout, nursery.cancel_scope)
    finally:
        with trio.CancelScope(shield=True):
            await bridge.sock.aclose()
            await close_stdin()
            await close_stdout()
    if bridge.gave_up:
        raise BridgeClosed(f"the daemon closed {socket_path} and did not come back")


class _Bridge:
    def __init__(self, socket_path: str | PathLike[str], *, give_up_after: float) -> None:
        self.socket_path = socket_path
        self.give_up_after = give_up_after
        self.state = BridgeState()
        self.sock: trio.SocketStream
        self.connected = trio.Event()
        self.connected.set()
        self._next_connection = trio.Event()
        self._reply_seen = trio.Event()
        self.stdin_done = False
        self.gave_up = False

    async def _send(self, line: bytes) -> None:
        """Write to the daemon; a write into a dead connection waits for the next one and is sent again.

        A request is counted as in flight once it goes to a live connection (not while the bridge waits
        for one), so only what the old daemon really had is answered with the restart error."""
        while not self.gave_up:
            await self.connected.wait()
            next_connection = self._next_connection
            self.state.from_client(line)
            try:
                await self.sock.send_all(line + b"\n")
                return
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                await next_connection.wait()  # downstream sees the same break and reconnects

    def _connection_settled(self) -> None:
        self._next_connection.set()
        self._next_connection = trio.Event()

    async def upstream(self, receive_stdin: Receive) -> None:
        framer = LineFramer(max_frame=MAX_LINE)
        while data := await receive_stdin():
            for line in framer.feed(data):
                await self._send(line)
        self.stdin_done = True
        # The daemon's MCP session ends at end-of-input and drops what it has not answered yet (the SDK
        # replies `-32000 Connection closed`), so the half-close waits for every reply owed.
        while self.state.pending and not self.gave_up:
            await self._reply_seen.wait()
        await self.connected.wait()
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await self.sock.send_eof()

    async def downstream(self, send_stdout: Send, scope: trio.CancelScope) -> None:
        framer = LineFramer(max_frame=MAX_LINE)
        while True:
            try:
                data = await self.sock.receive_some(CHUNK)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""  # reset by the daemon: the same as it closing
            if not data:
                if self.stdin_done or not await self._reconnect(send_stdout):
                    break
                framer = LineFramer(max_frame=MAX_LINE)
                continue
            out = [line + b"\n" for line in framer.feed(data) if self.state.from_daemon(line)]
            self._reply_seen.set()
            self._reply_seen = trio.Event()
            try:
                if out:
                    await send_stdout(b"".join(out))
            except (trio.BrokenResourceError, BrokenPipeError):
                break  # the client stopped reading; nothing more to say to it
        scope.cancel()

    async def _reconnect(self, send_stdout: Send) -> bool:
        self.connected = trio.Event()
        with suppress(Exception):
            await self.sock.aclose()
        delay = RECONNECT_FIRST
        with trio.move_on_after(self.give_up_after):
            while True:
                await trio.sleep(delay)
                try:
                    sock = await connect_host(self.socket_path)
                except (DaemonNotRunning, OSError):
                    delay = min(delay * 2, RECONNECT_MAX)
                    continue
                replay, owed = self.state.reconnected()
                try:
                    for line in replay:
                        await sock.send_all(line + b"\n")
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    await sock.aclose()
                    continue
                self.sock = sock
                self.connected.set()
                self._connection_settled()
                if owed:
                    with suppress(trio.BrokenResourceError, BrokenPipeError):
                        await send_stdout(b"".join(line + b"\n" for line in owed))
                return True
        self.gave_up = True
        self.connected.set()
        self._connection_settled()
        self._reply_seen.set()
        return False


__all__ = ["BridgeClosed", "BridgeState", "run_mcp_bridge"]
