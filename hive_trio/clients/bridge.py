"""`hive-trio mcp-bridge SOCKET`: a byte bridge between stdio and an agent's MCP socket.

The socket already speaks MCP's stdio framing, so the bridge only copies bytes: stdin to the socket and
the socket to stdout (what `socat STDIO UNIX-CONNECT:SOCKET` does). That lets any stdio MCP client
(Claude Code's config, the SDK's `stdio_client`) reach an agent. hyperhive needed a translator here
(`hive-ag3nt mcp`); hive_trio does not. It never parses or changes what passes through.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Awaitable, Callable
from os import PathLike

import trio

from hive_trio.clients.host import connect_host

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


async def run_mcp_bridge(socket_path: str | PathLike[str], *, stdin_fd: int = 0, stdout_fd: int = 1) -> None:
    """Copy stdin to the socket and the socket to stdout until the conversation ends.

    When stdin ends, the socket's write side is shut (the daemon sees end-of-input and finishes); the
    bridge then exits once the daemon closes. `BridgeClosed` if the daemon hung up first.
    """
    sock = await connect_host(socket_path)
    receive_stdin, close_stdin = _stdio_reader(stdin_fd)
    send_stdout, close_stdout = _stdio_writer(stdout_fd)
    stdin_done = client_gone = False
    try:
        async with sock, trio.open_nursery() as nursery:

            async def upstream() -> None:
                nonlocal stdin_done
                try:
                    while data := await receive_stdin():
                        await sock.send_all(data)
                    stdin_done = True
                    await sock.send_eof()
                except trio.BrokenResourceError:
                    return  # the daemon went away; downstream sees it and ends the bridge

            async def downstream() -> None:
                nonlocal client_gone
                while True:
                    try:
                        data = await sock.receive_some(CHUNK)
                    except trio.BrokenResourceError:
                        data = b""  # reset by the daemon: the same as it closing
                    if not data:
                        break
                    try:
                        await send_stdout(data)
                    except (trio.BrokenResourceError, BrokenPipeError):
                        client_gone = True  # the client stopped reading; nothing more to say to it
                        break
                nursery.cancel_scope.cancel()

            nursery.start_soon(upstream)
            nursery.start_soon(downstream)
    finally:
        with trio.CancelScope(shield=True):
            await close_stdin()
            await close_stdout()
    if not (stdin_done or client_gone):
        raise BridgeClosed(f"the daemon closed {socket_path}")


__all__ = ["BridgeClosed", "run_mcp_bridge"]
