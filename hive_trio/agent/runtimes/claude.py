"""The Claude Code runtime: one warm `ClaudeSDKClient` session per agent, resumed across restarts.

hyperhive spawns `claude --print --continue` for every turn and pays a CLI start-up each time. Here the
CLI stays up between turns (claude-agent-sdk keeps it in streaming mode) and a turn is one `query`; the
session id is kept in the agent's state dir, so a restarted harness resumes the same conversation.

- The CLI reaches the hive through its MCP config: `python -m hive_trio mcp-bridge $HIVE_SOCKET`. The hive
  tools are pre-approved (`mcp__hive`); `ack_turn` and `requeue_inflight` are withheld from the model,
  because the harness owns the lease.
- `ENABLE_TOOL_SEARCH=false` unless the environment sets it: the hive tools are the agent's whole
  interface, so they stay loaded instead of deferred behind `ToolSearch` (docs/AGENTS.md).
- Any other tool use that needs permission goes to the operator through the channel (`can_use_tool`).
- A 401 (`authentication_failed`) ends the turn as `auth_failed` after `AUTH_RETRIES` of the CLI's own
  retries, rather than after all ten.

claude-agent-sdk is anyio-based; it runs here under `trio.run` directly, no asyncio bridge. This module
never touches the hive socket itself.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import trio

from hive_trio.agent.channel import HARNESS_FD_ENV, HarnessChannel, Usage
from hive_trio.agent.prompt import HARNESS_TOOLS
from hive_trio.agent.runtimes import Turn, TurnReporter, TurnResult

if TYPE_CHECKING:
    from claude_agent_sdk import ClaudeAgentOptions, ClaudeSDKClient
    from claude_agent_sdk.types import PermissionResult, ToolPermissionContext

log = logging.getLogger(__name__)

SESSION_FILE: Final = ".hive-harness/claude-session.json"
AUTH_RETRIES: Final = 2
DISCONNECT_TIMEOUT: Final = 10.0
EVENT_TEXT_MAX: Final = 4000
MCP_SERVER: Final = "hive"
MCP_CONNECT_TIMEOUT: Final = 15.0
MCP_POLL: Final = 0.05


class ClaudeUnavailable(ImportError):
    """claude-agent-sdk is not installed (`pip install 'hive-trio[claude]'`)."""


def bridge_command(socket: str | os.PathLike[str]) -> list[str]:
    """argv of the stdio bridge to the agent's socket; `sys.executable -m` so no PATH is needed."""
    return [sys.executable, "-m", "hive_trio", "mcp-bridge", str(socket)]


def cli_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """What the harness adds to the CLI's environment (the SDK merges it over the harness's own).

    ANTHROPIC_*, CLAUDE_CONFIG_DIR (set per agent by the daemon) and the rest pass through untouched.
    """
    env = {HARNESS_FD_ENV: ""}  # the channel fd is not inheritable; its number is no business of the CLI
    if "ENABLE_TOOL_SEARCH" not in environ:
        env["ENABLE_TOOL_SEARCH"] = "false"
    return env


def system_note(agent: str, state_dir: Path) -> str:
    return (
        f"You are `{agent}`, one agent of a hive of coding agents. The hive tools (mcp__hive__*) are how you "
        f"talk to the other agents, the manager and the operator (the human). Keep your notes in {state_dir}: "
        "it survives restarts. Your conversation is resumed across restarts, so prior context stays with you."
    )


def usage_of(result_usage: Mapping[str, Any] | None, *, model: str | None, cost: float | None) -> Usage:
    u = result_usage or {}

    def count(key: str) -> int:
        value = u.get(key)
        return value if isinstance(value, int) else 0

    return Usage(
        model=model,
        input_tokens=count("input_tokens"),
        output_tokens=count("output_tokens"),
        cache_read_tokens=count("cache_read_input_tokens"),
        cache_write_tokens=count("cache_creation_input_tokens"),
        cost_usd=cost,
    )


def _clip(text: str) -> str:
    return text if len(text) <= EVENT_TEXT_MAX else text[:EVENT_TEXT_MAX] + "…"


def _result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(c.get("text", "")) if isinstance(c, Mapping) else str(c) for c in content)
    return "" if content is None else json.dumps(content, default=str)


class SessionStore:
    """The session id in `$HIVE_STATE_DIR/.hive-harness/claude-session.json`, written atomically."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / SESSION_FILE

    def load(self) -> str | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        session = data.get("session_id") if isinstance(data, dict) else None
        return session if isinstance(session, str) and session else None

    def save(self, session_id: str | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"session_id": session_id}), encoding="utf-8")
        os.replace(tmp, self.path)


class ClaudeRuntime:
    name = "claude"

    def __init__(
        self,
        *,
        agent: str,
        socket: Path,
        state_dir: Path,
        channel: HarnessChannel,
        environ: Mapping[str, str],
        model: str | None = None,
        permission_ttl: float | None = None,
        cli_path: str | None = None,
    ) -> None:
        self.agent = agent
        self.socket = socket
        self.state_dir = state_dir
        self.channel = channel
        self.environ = dict(environ)
        self.model = model
        self.permission_ttl = permission_ttl
        self.cli_path = cli_path
        self.sessions = SessionStore(state_dir)
        self.session_id: str | None = None
        self._client: ClaudeSDKClient | None = None
        self._last_total_cost: float | None = None
        self._in_turn = False

    # ------------------------------------------------------------------ session
    def options(self, resume: str | None) -> ClaudeAgentOptions:
        from claude_agent_sdk import ClaudeAgentOptions

        return ClaudeAgentOptions(
            mcp_servers={
                MCP_SERVER: {"type": "stdio", "command": sys.executable, "args": bridge_command(self.socket)[1:]}
            },
            allowed_tools=[f"mcp__{MCP_SERVER}"],
            disallowed_tools=[f"mcp__{MCP_SERVER}__{tool}" for tool in HARNESS_TOOLS],
            can_use_tool=self._can_use_tool,
            permission_mode="default",
            system_prompt={
                "type": "preset",
                "preset": "claude_code",
                "append": system_note(self.agent, self.state_dir),
            },
            cwd=str(self.state_dir),
            env=cli_environment(self.environ),
            model=self.model,
            resume=resume,
            cli_path=self.cli_path,
            stderr=self._stderr,
        )

    def _stderr(self, line: str) -> None:
        log.debug("claude: %s", line.rstrip())

    async def connect(self) -> ClaudeSDKClient:
        """The warm session, started (and resumed from the stored id) if there is none."""
        if self._client is not None:
            return self._client
        from claude_agent_sdk import ClaudeSDKClient

        stored = await trio.to_thread.run_sync(self.sessions.load)
        client = ClaudeSDKClient(self.options(stored))
        try:
            await client.connect()
        except Exception:
            if stored is None:
                raise
            # The stored session cannot be resumed (its transcript is gone): start a fresh one.
            log.warning("%s: could not resume Claude session %s; starting a new one", self.agent, stored)
            await self._disconnect(client)
            await trio.to_thread.run_sync(self.sessions.save, None)
            client = ClaudeSDKClient(self.options(None))
            await client.connect()
        self.session_id = stored
        self._client = client
        await self._await_hive_tools(client)
        return client

    async def _await_hive_tools(self, client: ClaudeSDKClient) -> None:
        """Let the CLI finish connecting its hive MCP server before the first prompt, so the first turn
        has its hive tools; a server that failed is logged with the CLI's reason. The SDK has no event
        for it, so the status is read again every `MCP_POLL` s, for at most `MCP_CONNECT_TIMEOUT`."""
        with trio.move_on_after(MCP_CONNECT_TIMEOUT):
            while True:
                try:
                    status = await client.get_mcp_status()
                except Exception as exc:
                    log.debug("%s: MCP status unavailable: %s", self.agent, exc)
                    return
                servers = [s for s in status.get("mcpServers", []) if s.get("name") == MCP_SERVER]
                state = servers[0].get("status") if servers else None
                if state == "connected":
                    return
                if state not in (None, "pending"):
                    log.warning("%s: the hive MCP server is %s: %s", self.agent, state, servers[0].get("error"))
                    return
                await trio.sleep(MCP_POLL)
        log.warning("%s: the hive MCP server did not connect within %s s", self.agent, MCP_CONNECT_TIMEOUT)

    async def _remember_session(self, session_id: object) -> None:
        if isinstance(session_id, str) and session_id and session_id != self.session_id:
            self.session_id = session_id
            await trio.to_thread.run_sync(self.sessions.save, session_id)

    async def _disconnect(self, client: ClaudeSDKClient) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(DISCONNECT_TIMEOUT):
            try:
                await client.disconnect()
            except Exception as exc:
                log.debug("%s: disconnect: %s", self.agent, exc)

    async def reset(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await self._disconnect(client)

    async def aclose(self) -> None:
        await self.reset()

    # ------------------------------------------------------------------ permissions
    async def _can_use_tool(
        self, tool: str, tool_input: dict[str, Any], context: ToolPermissionContext
    ) -> PermissionResult:
        from claude_agent_sdk import PermissionResultAllow, PermissionResultDeny

        try:
            decision = await self.channel.request_permission(tool, tool_input, ttl_seconds=self.permission_ttl)
        except Exception as exc:  # no answer is a deny, never an allow
            log.warning("%s: permission request for %s failed: %s", self.agent, tool, exc)
            return PermissionResultDeny(message=f"permission request failed: {exc}")
        if decision.allowed:
            return PermissionResultAllow()
        return PermissionResultDeny(message=decision.reason or "denied by the operator")

    # ------------------------------------------------------------------ turns
    async def interrupt(self) -> None:
        if self._client is not None and self._in_turn:
            try:
                await self._client.interrupt()
            except Exception as exc:
                log.warning("%s: interrupt failed: %s", self.agent, exc)

    async def run_turn(self, turn: Turn, reporter: TurnReporter) -> TurnResult:
        from claude_agent_sdk import ClaudeSDKError

        try:
            client = await self.connect()
        except ClaudeSDKError as exc:
            return TurnResult("failed", error=f"Claude Code did not start: {exc}")
        self._in_turn = True
        try:
            return await self._stream(client, turn, reporter)
        except ClaudeSDKError as exc:
            # The CLI died or spoke garbage: this session is gone; the next turn starts (resumes) another.
            await self.reset()
            await reporter.event("error", text=_clip(str(exc)), is_error=True)
            return TurnResult("failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            self._in_turn = False

    async def _stream(self, client: ClaudeSDKClient, turn: Turn, reporter: TurnReporter) -> TurnResult:
        from claude_agent_sdk import (
            AssistantMessage,
            ResultMessage,
            SystemMessage,
            TextBlock,
            ThinkingBlock,
            ToolResultBlock,
            ToolUseBlock,
            UserMessage,
        )

        auth_failures = 0
        auth_failed = False
        await client.query(turn.prompt)
        async for message in client.receive_response():
            if isinstance(message, SystemMessage):
                data = message.data
                if message.subtype == "init":
                    await self._remember_session(data.get("session_id"))
                    await reporter.model(data.get("model") if isinstance(data.get("model"), str) else None)
                elif message.subtype == "api_retry" and data.get("error") == "authentication_failed":
                    auth_failures += 1
                    if auth_failures >= AUTH_RETRIES and not auth_failed:
                        auth_failed = True
                        await reporter.event("error", text="authentication failed (401)", is_error=True)
                        await client.interrupt()
            elif isinstance(message, AssistantMessage):
                await reporter.model(message.model)
                if message.error == "authentication_failed":
                    auth_failed = True
                for block in message.content:
                    if isinstance(block, TextBlock):
                        await reporter.event("text", text=_clip(block.text))
                    elif isinstance(block, ThinkingBlock):
                        await reporter.event("thinking", text=_clip(block.thinking))
                    elif isinstance(block, ToolUseBlock):
                        await reporter.event("tool_use", tool=block.name, input=block.input)
            elif isinstance(message, UserMessage) and isinstance(message.content, list):
                for block in message.content:
                    if isinstance(block, ToolResultBlock):
                        await reporter.event(
                            "tool_result", text=_clip(_result_text(block.content)), is_error=bool(block.is_error)
                        )
            elif isinstance(message, ResultMessage):
                await self._remember_session(message.session_id)
                usage = usage_of(message.usage, model=reporter.active_model, cost=self._turn_cost(message))
                if auth_failed or message.api_error_status == 401:
                    return TurnResult("auth_failed", error="the model API refused the credentials (401)", usage=usage)
                if message.is_error:
                    detail = "; ".join(message.errors or []) or message.result or message.subtype
                    return TurnResult("failed", error=_clip(f"Claude Code: {detail}"), usage=usage)
                return TurnResult("ok", usage=usage)
        return TurnResult("failed", error="Claude Code ended the turn without a result")

    def _turn_cost(self, message: Any) -> float | None:
        """The CLI reports the session's running total; a turn costs the difference."""
        total = message.total_cost_usd
        if not isinstance(total, int | float):
            return None
        previous, self._last_total_cost = self._last_total_cost, float(total)
        if previous is None or total < previous:
            return float(total)
        return float(total) - previous


@asynccontextmanager
async def open_claude_runtime(
    *,
    agent: str,
    socket: Path,
    state_dir: Path,
    channel: HarnessChannel,
    environ: Mapping[str, str],
    model: str | None = None,
    permission_ttl: float | None = None,
    warm: bool = True,
) -> AsyncIterator[ClaudeRuntime]:
    """A Claude runtime for the block; `warm` starts the CLI now, so the first turn pays no start-up."""
    try:
        import claude_agent_sdk  # noqa: F401
    except ImportError as exc:
        raise ClaudeUnavailable("the claude runtime needs claude-agent-sdk: pip install 'hive-trio[claude]'") from exc
    runtime = ClaudeRuntime(
        agent=agent,
        socket=socket,
        state_dir=state_dir,
        channel=channel,
        environ=environ,
        model=model,
        permission_ttl=permission_ttl,
    )
    try:
        if warm:
            try:
                await runtime.connect()
            except Exception as exc:  # the first turn tries again, and reports it
                log.warning("%s: Claude Code did not start yet: %s", agent, exc)
        yield runtime
    finally:
        await runtime.aclose()
