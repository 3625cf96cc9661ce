"""An MCP client bound to one agent socket: what example agents, tests and benchmarks drive.

A thin layer over the official SDK's `ClientSession`: connect the unix socket, run the handshake,
and decode our tools' JSON text results. It is how any agent would talk to the hive.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from os import PathLike
from typing import Any

import mcp_types as types
import trio
from mcp.client.session import ClientSession

from hive_trio.errors import sole_error
from hive_trio.sockets.mcp.transport import open_mcp_streams

DEFAULT_MAX_FRAME = 1024 * 1024


class ToolError(Exception):
    """The tool ran and refused: an MCP result with `is_error`, its text a reason for a person."""


def tool_result_json(result: types.CallToolResult) -> Any:
    text = "".join(c.text for c in result.content if isinstance(c, types.TextContent))
    if result.is_error:
        raise ToolError(text)
    return json.loads(text) if text else None


class AgentClient:
    """A connected, initialised session with `call(tool, **args)` returning decoded JSON."""

    def __init__(self, session: ClientSession) -> None:
        self.session = session

    async def call(self, tool: str, /, **arguments: Any) -> Any:
        return tool_result_json(await self.session.call_tool(tool, arguments))

    async def list_tools(self) -> list[str]:
        listing = await self.session.list_tools()
        return [t.name for t in listing.tools]


@asynccontextmanager
async def open_agent_client(
    socket_path: str | PathLike[str],
    *,
    max_frame: int = DEFAULT_MAX_FRAME,
    client_name: str = "hive-trio-client",
) -> AsyncIterator[AgentClient]:
    """Connect, handshake, and yield a client; an error raised in the block comes out as itself.

    The transport and the SDK session each run tasks in a nursery, which would wrap an exception from
    the block in an `ExceptionGroup`; like trio-websocket, once they have closed we re-raise it plain.
    """
    stream = await trio.open_unix_socket(str(socket_path))
    try:
        async with stream, open_mcp_streams(stream, role="client", max_frame=max_frame) as (read, write):
            info = types.Implementation(name=client_name, version="1")
            async with ClientSession(read, write, client_info=info) as session:
                await session.initialize()
                yield AgentClient(session)
    except BaseExceptionGroup as group:
        only = sole_error(group, ignoring=(trio.Cancelled,))
        if not isinstance(only, Exception):
            raise
        raise only from None
