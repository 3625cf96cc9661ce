"""A client of `host.sock`: what the `hive-trio` command line, tests and scripts use to talk to a daemon.

Responses are decoded tolerantly, as hyperhive's clients do: unknown keys are kept and ignored, and only
`ok`/`error` are interpreted. Connection failures become one of two errors a person can act on: the
daemon is not running, or this user may not use its socket.
"""

from __future__ import annotations

import errno
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from os import PathLike
from typing import Any

import trio

from hive_trio.rules.framing import LineFramer
from hive_trio.sockets.host.protocol import encode_request

# Responses can be large (every approval with its diff); this bounds a confused daemon, not a normal one.
MAX_RESPONSE = 64 * 1024 * 1024
RECEIVE_CHUNK = 65536


class HostClientError(Exception):
    """Base: a one-line reason for a person."""


class DaemonNotRunning(HostClientError):
    pass


class HostPermissionDenied(HostClientError):
    pass


class HostRefused(HostClientError):
    """The daemon answered `ok: false`; the message is its `error`, `response` the whole line."""

    def __init__(self, message: str, response: dict[str, Any]) -> None:
        super().__init__(message)
        self.response = response


async def connect_host(path: str | PathLike[str]) -> trio.SocketStream:
    """Connect to a daemon's socket, turning OS errors into `DaemonNotRunning` / `HostPermissionDenied`."""
    try:
        return await trio.open_unix_socket(str(path))
    except FileNotFoundError:
        raise DaemonNotRunning(f"daemon is not running (no socket at {path})") from None
    except ConnectionRefusedError:
        raise DaemonNotRunning(f"daemon is not running (nothing listens on {path})") from None
    except PermissionError:
        raise HostPermissionDenied(
            f"permission denied on {path} (ask to join the hive's admin group, or run as its owner)"
        ) from None
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ENOENT):
            raise DaemonNotRunning(f"daemon is not running (no socket at {path})") from None
        raise HostClientError(f"cannot connect to {path}: {exc.strerror or exc}") from None


class HostClient:
    """One connection to host.sock; requests are answered in order, one line each."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._framer = LineFramer(max_frame=MAX_RESPONSE)
        self._lines: list[bytes] = []

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def read_response(self) -> dict[str, Any]:
        """The next response line, decoded; `DaemonNotRunning` if the daemon hung up."""
        while not self._lines:
            try:
                data = await self.stream.receive_some(RECEIVE_CHUNK)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                raise DaemonNotRunning("the daemon closed the connection")
            self._lines.extend(line for line in self._framer.feed(data) if line.strip())
        line = self._lines.pop(0)
        try:
            response = json.loads(line)
        except ValueError:
            raise HostClientError(f"the daemon sent a line that is not JSON: {line[:200]!r}") from None
        if not isinstance(response, dict):
            raise HostClientError("the daemon sent a response that is not an object")
        return response

    async def request_raw(self, line: bytes) -> dict[str, Any]:
        """Send bytes as they are (tests send malformed lines) and return the next response."""
        await self.send_raw(line)
        return await self.read_response()

    async def request(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """Send one request; return the response, or raise `HostRefused` with its `error`."""
        response = await self.request_raw(encode_request(cmd, **fields))
        if response.get("ok") is not True:
            raise HostRefused(str(response.get("error") or "the daemon refused without a reason"), response)
        return response

    async def responses(self) -> AsyncIterator[dict[str, Any]]:
        """Every further response, e.g. the rows after `subscribe_agent_status`."""
        while True:
            yield await self.read_response()

    async def aclose(self) -> None:
        await self.stream.aclose()


@asynccontextmanager
async def open_host_client(path: str | PathLike[str]) -> AsyncIterator[HostClient]:
    stream = await connect_host(path)
    async with stream:
        yield HostClient(stream)


async def host_request(path: str | PathLike[str], cmd: str, **fields: Any) -> dict[str, Any]:
    """One request on a fresh connection."""
    async with open_host_client(path) as client:
        return await client.request(cmd, **fields)


__all__ = [
    "DaemonNotRunning",
    "HostClient",
    "HostClientError",
    "HostPermissionDenied",
    "HostRefused",
    "connect_host",
    "host_request",
    "open_host_client",
]
