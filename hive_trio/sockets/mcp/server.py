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
import json
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

import attrs
import mcp_types as types
import trio
from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.runner import serve_connection, serve_dual_era_loop
from mcp.shared.exceptions import MCPError
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp.shared.transport_context import TransportContext

from hive_trio.core.coordinator import Coordinator
from hive_trio.errors import HiveError
from hive_trio.records import Message, dumps
from hive_trio.rules.paths import SOCKET_MODE
from hive_trio.sockets.mcp.tools import Toolbox, ToolSurface, UnknownTool
from hive_trio.sockets.mcp.transport import open_server_lines
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
    toolbox: ToolSurface, lease: LeaseBook, request_id: RequestId | None, name: str, arguments: Mapping[str, Any] | None
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


def build_server(toolbox: ToolSurface, lease: LeaseBook) -> Server[Any]:
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


def _has_modern_envelope(params: Mapping[str, Any] | None) -> bool:
    """A 2026-07-28-era request: its `_meta` carries the reserved protocol-version key (the SDK's own test)."""
    meta = params.get("_meta") if isinstance(params, Mapping) else None
    return isinstance(meta, Mapping) and types.PROTOCOL_VERSION_META_KEY in meta


class ToolCallLane:
    """A `ServerMiddleware` that answers `tools/call` with the toolbox and a plain wire dict.

    The SDK documents this hook ("runs ... before any validation") and trusts a middleware's result
    without re-shaping it. Answering here skips, for this one method, the SDK's surface validation, its
    params model, the `CallToolResult` models and their re-validation: about 50 µs of the event loop per
    call. Everything else goes to `call_next` and stays the SDK's: `initialize`, the init gate, `ping`,
    `tools/list`, unknown methods, malformed `tools/call` params (the SDK's own INVALID_PARAMS), errors
    and cancellation (the dispatcher's scope still wraps this call). On a connection served in the
    handshake era, a request in the 2026 envelope is refused as the SDK's legacy loop refuses it.
    """

    def __init__(self, toolbox: ToolSurface, lease: LeaseBook, connection: Connection) -> None:
        self._toolbox = toolbox
        self._lease = lease
        self._connection = connection

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.request_id is None:
            return await call_next(ctx)
        params = ctx.params
        if ctx.method != "initialize" and _has_modern_envelope(params):
            raise MCPError(
                code=types.INVALID_REQUEST,
                message="this connection serves the handshake protocol era; "
                "requests carrying the 2026-07-28 envelope are not accepted on it",
            )
        if ctx.method != "tools/call" or not self._connection.initialize_accepted or params is None:
            return await call_next(ctx)
        name = params.get("name")
        arguments = params.get("arguments")
        if not isinstance(name, str) or not (arguments is None or isinstance(arguments, dict)):
            return await call_next(ctx)  # the SDK's validation names what is wrong
        try:
            outcome = await run_tool(self._toolbox, self._lease, ctx.request_id, name, arguments)
        except UnknownTool as exc:
            raise MCPError(code=types.INVALID_PARAMS, message=str(exc)) from None
        # What `CallToolResult(...).model_dump(by_alias=True, exclude_none=True)` gives, built directly.
        result: dict[str, Any] = {"content": [{"type": "text", "text": outcome.text}]}
        if outcome.data is not None:
            result["structuredContent"] = outcome.data
        result["isError"] = outcome.is_error
        return result


async def serve_mcp_connection(toolbox: ToolSurface, stream: trio.abc.Stream, *, max_frame: int) -> None:
    """Serve one MCP client until it leaves; then put back every message it was never sent.

    The SDK's dispatcher and `ServerRunner` drive the session (`serve_connection`), fed by our own
    read/write objects instead of `Server.run`'s memory streams and pump tasks. The first request decides
    the era, as in the SDK's dual-era loop: a handshake client (every hive client) is served by the lean
    loop; a client opening in the 2026-07-28 envelope is handed to the SDK's `serve_dual_era_loop` whole.
    """
    lease = LeaseBook()
    server = build_server(toolbox, lease)
    reader, writer = open_server_lines(stream, max_frame=max_frame, on_written=lease.confirm)
    init_options = server.create_initialization_options()
    try:
        async with server.lifespan(server) as lifespan_state, trio.open_nursery() as nursery:
            reader.nursery = nursery  # for a bad line's answer that must wait for earlier replies
            opening = await reader.peek_request()
            if opening is not None and opening.method != "initialize" and _has_modern_envelope(opening.params):
                await serve_dual_era_loop(
                    server, reader, writer, lifespan_state=lifespan_state, init_options=init_options
                )
                nursery.cancel_scope.cancel()
                return
            # `initialize` inline, as the SDK's own loops do: a client that pipelines it with its next
            # request sees the initialized state.
            dispatcher: JSONRPCDispatcher[TransportContext] = JSONRPCDispatcher(
                reader, writer, inline_methods=frozenset({"initialize"})
            )
            connection = Connection.for_loop(dispatcher)
            server.middleware = [*server.middleware, ToolCallLane(toolbox, lease, connection)]
            await serve_connection(
                server, dispatcher, connection=connection, lifespan_state=lifespan_state, init_options=init_options
            )
            nursery.cancel_scope.cancel()
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

    # No idle timeout here: an agent parked in `recv(wait_seconds=180)` sends nothing, and is not idle.
    cap = coordinator.config.max_connections_per_socket
    refusal = connection_cap_error(cap)
    await serve_bound_listener(
        bound, handle, what=f"{name}'s socket", max_connections=cap, refusal=refusal, task_status=task_status
    )


def connection_cap_error(cap: int) -> bytes:
    """The JSON-RPC error a connection past the cap reads before it is closed (id null: it asked nothing)."""
    message = {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32000, "message": f"this socket is at its cap of {cap} connections; close one and retry"},
    }
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


__all__ = ["LeaseBook", "ToolCallLane", "build_server", "run_tool", "serve_agent_socket", "serve_mcp_connection"]
