"""Serves one agent's (or the manager's) `mcp.sock`: the official MCP SDK's low-level server per connection.

This is the `ServeSocket` the coordinator runs inside each agent's child nursery. The socket is the
identity: every tool call is made as the agent the socket belongs to. A connection's failure is logged
and closes that connection only; the socket keeps serving.

Lease-style delivery across the wire (hive-c0re's broker semantics, made exact here): messages `recv`
hands out are held against the JSON-RPC request id that carried them until the transport reports that
reply fully written. Whatever is still held when the call is cancelled or the connection ends goes
straight back to the inbox. It never touches the database or builds a path itself.
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

import attrs
import mcp_types as types
import trio
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError

from hive_trio.core.coordinator import Coordinator
from hive_trio.errors import HiveError
from hive_trio.records import Message, dumps
from hive_trio.rules.paths import SOCKET_MODE
from hive_trio.sockets.mcp.tools import Toolbox, UnknownTool
from hive_trio.sockets.mcp.transport import open_mcp_streams
from hive_trio.sockets.unix_listener import bind_unix_listener, serve_bound_listener

log = logging.getLogger(__name__)

SERVER_NAME = "hive-trio"
RequestId = str | int


class LeaseBook:
    """Messages handed out by `recv`, by the JSON-RPC request id whose reply carries them.

    A reply confirmed written releases its hold; whatever is left when the call or the connection
    ends was never seen by the agent. Ids are queued per id because a client may (wrongly) reuse one.
    """

    def __init__(self) -> None:
        self._held: dict[RequestId, deque[list[Message]]] = {}

    def hold(self, request_id: RequestId | None, messages: Sequence[Message]) -> None:
        if messages and request_id is not None:
            self._held.setdefault(request_id, deque()).append(list(messages))

    def confirm(self, message: types.JSONRPCMessage) -> None:
        """The transport's `on_written`: a success response left in full, so its messages arrived."""
        if not isinstance(message, types.JSONRPCResponse):
            return  # an error reply carries no messages; anything held for its id must go back
        queue = self._held.get(message.id)
        if queue:
            queue.popleft()
            if not queue:
                del self._held[message.id]

    def take(self, request_id: RequestId | None) -> list[Message]:
        """Everything held for `request_id` (its call failed or was cancelled before replying)."""
        queue = self._held.pop(request_id, None) if request_id is not None else None
        return [m for batch in queue or () for m in batch]

    def drain(self) -> list[Message]:
        held = [m for queue in self._held.values() for batch in queue for m in batch]
        self._held.clear()
        return held

    def __len__(self) -> int:
        return sum(len(batch) for queue in self._held.values() for batch in queue)


def _text_result(
    text: str, *, is_error: bool = False, structured: dict[str, Any] | None = None
) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)], structured_content=structured, is_error=is_error
    )


@attrs.frozen
class ToolOutcome:
    """One `tools/call`'s result: its JSON text, and the same data as `structuredContent` on success."""

    text: str
    is_error: bool = False
    data: dict[str, Any] | None = None


async def run_tool(
    toolbox: Toolbox, lease: LeaseBook, request_id: RequestId | None, name: str, arguments: Mapping[str, Any] | None
) -> ToolOutcome:
    """Run one `tools/call`. `UnknownTool` for a name not here.

    Messages `recv` hands out are held against `request_id` until the reply is known to be written; on
    any failure here they go straight back.
    """

    async def release() -> None:
        messages = lease.take(request_id)
        if messages:
            with trio.CancelScope(shield=True):
                await toolbox.coordinator.release(messages)

    try:
        data = await toolbox.call(name, arguments, on_delivered=partial(lease.hold, request_id))
        # A `notifications/cancelled` that landed during recv's shielded deliver: no reply will carry
        # the messages, so they must go back now. Held until the connection ends, an `ack_turn` on the
        # same connection would ack them unseen.
        await trio.lowlevel.checkpoint_if_cancelled()
        return ToolOutcome(dumps(data), data=data if isinstance(data, dict) else None)
    except UnknownTool:
        raise
    except HiveError as exc:
        await release()
        return ToolOutcome(str(exc), is_error=True)
    except trio.Cancelled:
        # The connection is closing or the client cancelled this call: no reply will carry them.
        await release()
        raise
    except Exception:
        log.exception("tool %r on %s's socket failed", name, toolbox.name)
        await release()
        return ToolOutcome(f"internal error in the hive daemon while running {name!r}", is_error=True)


def build_server(toolbox: Toolbox, lease: LeaseBook) -> Server[Any]:
    """The SDK server for one connection: `tools/list` and `tools/call` over `toolbox`."""

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=toolbox.mcp_tools())

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        try:
            outcome = await run_tool(toolbox, lease, ctx.request_id, params.name, params.arguments)
        except UnknownTool as exc:
            raise MCPError(code=types.INVALID_PARAMS, message=str(exc)) from None
        return _text_result(outcome.text, is_error=outcome.is_error, structured=outcome.data)

    server: Server[Any] = Server(
        SERVER_NAME,
        version=_version(),
        instructions=(
            f"hive-trio socket of {toolbox.role} {toolbox.name!r}. Every call is made as {toolbox.name!r}. "
            "Messages from 'system' carry JSON events tagged 'event'."
        ),
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )
    # The SDK wraps every request in an OpenTelemetry span (a no-op without an exporter, but not free:
    # about a tenth of a call's cost here). Agents' calls are not traced; opt back in by adding it.
    server.middleware = [InitializeFirst(server)]
    return server


class InitializeFirst:
    """Say plainly that the session is not initialized, where the SDK answers "Invalid request parameters".

    The SDK's own gate refuses served methods before `initialize` with -32602 and an empty reason; the
    code stays (clients may key off it), the message says what to do. It runs before the SDK's gate, and
    only for methods this server serves, so an unknown method is still "Method not found".
    """

    def __init__(self, server: Server[Any]) -> None:
        self.server = server
        self.initialized = False

    async def __call__(self, ctx: ServerRequestContext[Any], call_next: Any) -> Any:
        method = ctx.method
        if method == "initialize" or method == "notifications/initialized":
            result = await call_next(ctx)
            self.initialized = True
            return result
        if (
            not self.initialized
            and not _modern_envelope(ctx.params)
            and ctx.request_id is not None
            and method not in NOT_GATED
            and self.server.get_request_handler(method) is not None
        ):
            raise MCPError(
                code=types.INVALID_PARAMS,
                message=f"not initialized: send 'initialize' (then 'notifications/initialized') before {method!r}",
            )
        return await call_next(ctx)


NOT_GATED = frozenset({"ping"})
MODERN_VERSION_KEY = "io.modelcontextprotocol/protocolVersion"


def _modern_envelope(params: Any) -> bool:
    """A 2026-07-28 request (its own `_meta` envelope): that era has no handshake, so nothing to gate.

    Claude Code 2.1.3xx opens with `server/discover` in that era; the SDK then serves the connection in it
    and refuses a later `initialize`, so gating the probe left Claude Code with no hive tools at all."""
    meta = params.get("_meta") if isinstance(params, dict) else None
    return isinstance(meta, dict) and MODERN_VERSION_KEY in meta


@functools.cache
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hive-trio")
    except PackageNotFoundError:
        return "0"


async def serve_mcp_connection(toolbox: Toolbox, stream: trio.abc.Stream, *, max_frame: int) -> None:
    """Serve one MCP client until it leaves; then put back every message it was never sent."""
    lease = LeaseBook()
    server = build_server(toolbox, lease)
    try:
        async with open_mcp_streams(stream, role="server", max_frame=max_frame, on_written=lease.confirm) as (
            read,
            write,
        ):
            await server.run(read, write, server.create_initialization_options())
    finally:
        unsent = lease.drain()
        if unsent:
            with trio.CancelScope(shield=True):
                await toolbox.coordinator.release(unsent)


async def serve_agent_socket(
    coordinator: Coordinator, name: str, path: Path, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> NoReturn:
    """Bind `path` (mode 0660) and serve `name`'s tools on it until cancelled; then remove the file if ours."""
    toolbox = Toolbox(coordinator, name)
    max_frame = coordinator.config.max_frame_bytes
    bound = await bind_unix_listener(path, mode=SOCKET_MODE)

    async def handle(stream: trio.SocketStream) -> None:
        await serve_mcp_connection(toolbox, stream, max_frame=max_frame)

    await serve_bound_listener(bound, handle, what=f"{name}'s socket", task_status=task_status)


__all__ = ["LeaseBook", "build_server", "run_tool", "serve_agent_socket", "serve_mcp_connection"]
