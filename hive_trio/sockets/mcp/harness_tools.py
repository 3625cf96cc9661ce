"""The `harness` role: the tools a run's harness reports with, on the channel only that run holds.

The process backend gives each launch one end of a fresh socketpair (`HIVE_HARNESS_FD`); the daemon
serves the other end here as an MCP session whose identity is the agent of that run, with the same SDK
server and line framing as `mcp.sock` (docs/DECISIONS.md, "The harness channel"). No argument can name
another agent, and none of these tools is offered on `mcp.sock`, where the model is. Results are JSON;
the contract is docs/AGENTS.md's table. This module knows nothing of the database; the coordinator's
`reports` section does the work.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import mcp_types
import trio

from hive_trio.errors import InvalidRequest
from hive_trio.records.harness import (
    ReportStateArgs,
    RequestPermissionArgs,
    TurnEventArgs,
    TurnFinishedArgs,
    TurnStartedArgs,
    WaitControlArgs,
)
from hive_trio.sockets.mcp.server import serve_mcp_connection
from hive_trio.sockets.mcp.tools import HARNESS_TOOL_NAMES, OnDelivered, ToolSpec, UnknownTool, parse_arguments

if TYPE_CHECKING:
    from hive_trio.core.coordinator import Coordinator

HARNESS_ROLE: Final = "harness"

HARNESS_TOOLS: Final = (
    ToolSpec("turn_started", "A turn begins, handling these messages.", TurnStartedArgs),
    ToolSpec(
        "turn_event", "One event of the running turn's stream (text, a tool use or result, an error).", TurnEventArgs
    ),
    ToolSpec(
        "turn_finished",
        "The turn ended: its outcome, model and usage. Returns whether the budget is used up.",
        TurnFinishedArgs,
    ),
    ToolSpec("report_state", "The model in use and the live status line.", ReportStateArgs),
    ToolSpec(
        "request_permission",
        "Ask the operator whether the model may use a tool; blocks until decided or the deadline (deny).",
        RequestPermissionArgs,
    ),
    ToolSpec(
        "wait_control",
        "Wait up to wait_seconds for an interrupt, a pause or a budget change; returns the current state.",
        WaitControlArgs,
    ),
)
assert {s.name for s in HARNESS_TOOLS} == HARNESS_TOOL_NAMES


@functools.cache
def _catalogue() -> tuple[dict[str, ToolSpec], tuple[mcp_types.Tool, ...]]:
    return {s.name: s for s in HARNESS_TOOLS}, tuple(s.as_mcp() for s in HARNESS_TOOLS)


class HarnessToolbox:
    """The harness tools of one run, every call made about `name`, the agent that run belongs to."""

    def __init__(self, coordinator: Coordinator, name: str) -> None:
        self.coordinator = coordinator
        self.name = name
        self.specs, self._mcp_tools = _catalogue()

    @property
    def role(self) -> str:
        return HARNESS_ROLE

    def mcp_tools(self) -> list[mcp_types.Tool]:
        return list(self._mcp_tools)

    async def call(self, tool: str, arguments: Mapping[str, Any] | None, *, on_delivered: OnDelivered) -> Any:
        spec = self.specs.get(tool)
        if spec is None:
            # The harness has its agent's mcp.sock for send/recv; this channel only takes reports.
            raise UnknownTool(f"unknown tool {tool!r}; the harness channel offers: {', '.join(self.specs)}")
        args = parse_arguments(spec, arguments)
        reports = self.coordinator.reports
        match args:
            case TurnStartedArgs():
                entry = await reports.turn_started(self.name, args)
                return {"entry_id": entry.id}
            case TurnEventArgs():
                entry = await reports.turn_event(self.name, args)
                return {"entry_id": entry.id}
            case TurnFinishedArgs():
                return {"budget_exceeded": await reports.turn_finished(self.name, args)}
            case ReportStateArgs(active_model=model, status_text=text):
                await reports.report_state(self.name, active_model=model, status_text=text)
                return {}
            case RequestPermissionArgs(tool=wanted, input=tool_input, ttl_seconds=ttl):
                decided = await reports.request_permission(
                    self.name, tool=wanted, tool_input=tool_input, ttl_seconds=ttl
                )
                assert decided.decision is not None
                return {"id": decided.id, "decision": decided.decision.value, "reason": decided.reason}
            case WaitControlArgs(wait_seconds=wait):
                return await reports.wait_control(self.name, wait)
        raise InvalidRequest(f"{tool}: not served")  # unreachable: every spec is matched above


async def serve_harness_channel(coordinator: Coordinator, name: str, stream: trio.SocketStream) -> None:
    """Serve one run's harness channel until the harness closes it (or the run ends and cancels this)."""
    await serve_mcp_connection(HarnessToolbox(coordinator, name), stream, max_frame=coordinator.config.max_frame_bytes)


__all__ = ["HARNESS_ROLE", "HARNESS_TOOLS", "HarnessToolbox", "serve_harness_channel"]
