"""The harness's client of its report channel: `open_harness_channel(fd)` -> `HarnessChannel`.

The process backend hands every launch one end of a socketpair, its number in `HIVE_HARNESS_FD`; the
daemon serves the other end as an MCP session of the `harness` role bound to that run's agent
(docs/AGENTS.md, "The daemon side"). This module speaks that session with the official SDK's
`ClientSession` over the inherited socket: one async method per harness tool, named as the tool is.
It owns the fd once handed it (and closes it on exit), and never passes it on: it is made
non-inheritable first, so a CLI the harness starts cannot hold the channel.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, Literal

import attrs
import mcp_types as types
import trio
from mcp.client.session import ClientSession

from hive_trio.clients.mcp import DEFAULT_MAX_FRAME, ToolError, tool_result_json
from hive_trio.sockets.mcp.transport import open_mcp_streams

HARNESS_FD_ENV: Final = "HIVE_HARNESS_FD"


@attrs.frozen
class Usage:
    """What one turn cost, as far as the runtime says (the usage fields of `turn_finished`)."""

    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None


@attrs.frozen
class PermissionDecision:
    """The operator's decision on one `request_permission` (or the deadline's: deny)."""

    id: int | None
    decision: Literal["allow", "deny"]
    reason: str | None = None

    @property
    def allowed(self) -> bool:
        return self.decision == "allow"


@attrs.frozen
class Control:
    """What `wait_control` reports: an operator interrupt (consumed once returned), pause, budget."""

    interrupt: bool = False
    paused: bool = False
    budget_exceeded: bool = False


class HarnessChannel:
    """A connected, initialised harness session; every report is about the agent of this run only."""

    def __init__(self, session: ClientSession) -> None:
        self.session = session

    async def _call(self, tool: str, arguments: dict[str, Any]) -> Any:
        return tool_result_json(await self.session.call_tool(tool, arguments))

    async def turn_started(self, turn_id: str, message_ids: list[int]) -> None:
        await self._call("turn_started", {"turn_id": turn_id, "message_ids": list(message_ids)})

    async def turn_event(
        self,
        turn_id: str,
        kind: str,
        *,
        text: str | None = None,
        tool: str | None = None,
        input: Mapping[str, Any] | None = None,
        is_error: bool = False,
    ) -> None:
        arguments: dict[str, Any] = {"turn_id": turn_id, "kind": kind, "text": text, "tool": tool}
        arguments.update(is_error=is_error, input=None if input is None else dict(input))
        await self._call("turn_event", arguments)

    async def turn_finished(self, turn_id: str, outcome: str, *, error: str | None = None, usage: Any = None) -> bool:
        """Returns whether the agent's daily budget is now used up. `usage` has the fields of the
        `turn_finished` tool (model, input_tokens, output_tokens, cache_*_tokens, cost_usd), any missing."""
        arguments: dict[str, Any] = {"turn_id": turn_id, "outcome": outcome, "error": error}
        if usage is not None:
            for key in (
                "model",
                "input_tokens",
                "output_tokens",
                "cache_read_tokens",
                "cache_write_tokens",
                "cost_usd",
            ):
                value = getattr(usage, key, None)
                if value is not None:
                    arguments[key] = value
        result = await self._call("turn_finished", arguments)
        return bool(result.get("budget_exceeded", False))

    async def report_state(self, *, active_model: str | None = None, status_text: str | None = None) -> None:
        await self._call("report_state", {"active_model": active_model, "status_text": status_text})

    async def request_permission(
        self, tool: str, input: Mapping[str, Any], *, ttl_seconds: float | None = None
    ) -> PermissionDecision:
        """Blocks until the operator decides or the deadline passes (deny)."""
        result = await self._call(
            "request_permission", {"tool": tool, "input": dict(input), "ttl_seconds": ttl_seconds}
        )
        decision: Literal["allow", "deny"] = "allow" if result.get("decision") == "allow" else "deny"
        return PermissionDecision(id=result.get("id"), decision=decision, reason=result.get("reason"))

    async def wait_control(self, wait_seconds: float) -> Control:
        result = await self._call("wait_control", {"wait_seconds": wait_seconds})
        return Control(
            interrupt=bool(result.get("interrupt")),
            paused=bool(result.get("paused")),
            budget_exceeded=bool(result.get("budget_exceeded")),
        )


@asynccontextmanager
async def open_harness_stream(
    stream: trio.SocketStream, *, max_frame: int = DEFAULT_MAX_FRAME
) -> AsyncIterator[HarnessChannel]:
    """Handshake on an already connected stream and yield the channel (tests use a socketpair directly)."""
    raised: Exception | None = None
    async with stream, open_mcp_streams(stream, role="client", max_frame=max_frame) as (read, write):
        info = types.Implementation(name="hive-trio-harness", version="1")
        async with ClientSession(read, write, client_info=info) as session:
            await session.initialize()
            try:
                yield HarnessChannel(session)
            except Exception as exc:
                raised = exc
    if raised is not None:
        raise raised


@asynccontextmanager
async def open_harness_channel(fd: int, *, max_frame: int = DEFAULT_MAX_FRAME) -> AsyncIterator[HarnessChannel]:
    """The channel on inherited socket `fd` (from `HIVE_HARNESS_FD`); the fd is closed on exit."""
    os.set_inheritable(fd, False)
    sock = socket.socket(fileno=fd)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise ValueError(f"fd {fd} is not the harness channel (not a unix stream socket)")
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
    async with open_harness_stream(stream, max_frame=max_frame) as channel:
        yield channel


__all__ = [
    "HARNESS_FD_ENV",
    "Control",
    "HarnessChannel",
    "PermissionDecision",
    "ToolError",
    "Usage",
    "open_harness_channel",
    "open_harness_stream",
]
