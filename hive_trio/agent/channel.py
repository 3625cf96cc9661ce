"""The harness's report channel, as the harness sees it: a `Protocol`, a no-op stand-in, and how to open it.

The daemon side (`hive_trio.clients.harness.open_harness_channel`) serves a socket inherited as
`HIVE_HARNESS_FD`, that the model cannot reach (docs/AGENTS.md). The turn loop and the runtimes only ever
see `HarnessChannel`; when no channel was handed down they get `NullHarnessChannel`, which reports
nothing and denies every permission request. This module never decides what a report means.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, Literal, Protocol

import attrs

log = logging.getLogger(__name__)

HARNESS_FD_ENV: Final = "HIVE_HARNESS_FD"

EventKind = Literal["text", "tool_use", "tool_result", "error", "thinking"]
Outcome = Literal["ok", "failed", "interrupted", "timeout", "auth_failed"]


@attrs.frozen
class Usage:
    """What one turn cost, as far as the runtime says."""

    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None


@attrs.frozen
class PermissionDecision:
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


class ControlView(Protocol):
    """What the loop reads of a `wait_control` answer (`Control`, or the daemon client's own class)."""

    @property
    def interrupt(self) -> bool: ...
    @property
    def paused(self) -> bool: ...
    @property
    def budget_exceeded(self) -> bool: ...


class PermissionView(Protocol):
    @property
    def allowed(self) -> bool: ...
    @property
    def reason(self) -> str | None: ...


class HarnessChannel(Protocol):
    """The tools of the daemon's `harness` role (HARNESS-CHANNEL.md); each about this agent only."""

    async def turn_started(self, turn_id: str, message_ids: list[int]) -> None: ...

    async def turn_event(
        self,
        turn_id: str,
        kind: EventKind,
        *,
        text: str | None = None,
        tool: str | None = None,
        input: Mapping[str, Any] | None = None,
        is_error: bool = False,
    ) -> None: ...

    async def turn_finished(
        self, turn_id: str, outcome: Outcome, *, error: str | None = None, usage: Any = None
    ) -> bool:
        """Returns whether the agent's budget is now exceeded. `usage` is a `Usage`."""
        ...

    async def report_state(self, *, active_model: str | None = None, status_text: str | None = None) -> None: ...

    async def request_permission(
        self, tool: str, input: Mapping[str, Any], *, ttl_seconds: float | None = None
    ) -> PermissionView: ...

    async def wait_control(self, wait_seconds: float) -> ControlView: ...


class NullHarnessChannel:
    """No daemon to report to: reports are dropped, permissions denied, control never changes."""

    async def turn_started(self, turn_id: str, message_ids: list[int]) -> None:
        return None

    async def turn_event(
        self,
        turn_id: str,
        kind: EventKind,
        *,
        text: str | None = None,
        tool: str | None = None,
        input: Mapping[str, Any] | None = None,
        is_error: bool = False,
    ) -> None:
        return None

    async def turn_finished(
        self, turn_id: str, outcome: Outcome, *, error: str | None = None, usage: Any = None
    ) -> bool:
        return False

    async def report_state(self, *, active_model: str | None = None, status_text: str | None = None) -> None:
        return None

    async def request_permission(
        self, tool: str, input: Mapping[str, Any], *, ttl_seconds: float | None = None
    ) -> PermissionDecision:
        return PermissionDecision(None, "deny", "no harness channel: nobody can approve tool use")

    async def wait_control(self, wait_seconds: float) -> Control:
        import trio

        await trio.sleep(wait_seconds)
        return Control()


def harness_fd_from_env(environ: Mapping[str, str]) -> int | None:
    """The inherited channel's fd, or None; a value that is not a number is an error, not ignored."""
    raw = environ.get(HARNESS_FD_ENV)
    if raw is None or raw == "":
        return None
    try:
        fd = int(raw)
    except ValueError:
        raise ValueError(f"{HARNESS_FD_ENV}={raw!r} is not a file descriptor number") from None
    if fd < 0:
        raise ValueError(f"{HARNESS_FD_ENV}={raw!r} is not a file descriptor number")
    return fd


@asynccontextmanager
async def open_channel_from_env(environ: Mapping[str, str] | None = None) -> AsyncIterator[HarnessChannel]:
    """The daemon's channel when one was handed down, else `NullHarnessChannel` (with one warning).

    The fd is made non-inheritable first, so the agent CLI the harness starts never holds it.
    """
    env = os.environ if environ is None else environ
    fd = harness_fd_from_env(env)
    if fd is None:
        log.warning("%s is not set: running without a harness channel (no reports, permissions denied)", HARNESS_FD_ENV)
        yield NullHarnessChannel()
        return
    os.set_inheritable(fd, False)
    # Imported here: the channel client pulls in the MCP SDK's client session, which a harness
    # without a channel (a container agent) never needs.
    from hive_trio.clients.harness import open_harness_channel

    async with open_harness_channel(fd) as channel:
        checked: HarnessChannel = channel
        yield checked
