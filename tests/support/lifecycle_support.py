"""Shared helpers for the lifecycle tests (real child processes, real git, real sqlite)."""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from hive_trio.core.coordinator import Coordinator
from hive_trio.lifecycle.config_repos import rev_parse, run_git
from hive_trio.records import SYSTEM_SENDER
from hive_trio.rules.config import Config

# Writes its environment where the test can read it, then idles until signalled.
ENV_AGENT = "env > env.txt; exec sleep 3600"


def lifecycle_config(root: Path, **overrides: Any) -> Config:
    settings: dict[str, Any] = {
        "state_dir": root / "state",
        "runtime_dir": root / "run",
        "dashboard_enabled": False,
        "admin_group": None,
        "agent_command": ENV_AGENT,
        "stop_grace": 5.0,
        "shutdown_grace": 5.0,
        "restart_intensity": 3,
        "restart_period": 60.0,
    }
    settings.update(overrides)
    return Config(**settings)


async def eventually(check: Callable[[], Any], *, within: float = 10.0, what: str = "condition") -> Any:
    """Wait for an effect outside this process (a child exiting, a file appearing), bounded by `within` seconds."""
    with trio.move_on_after(within):
        while True:
            value = check()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            await trio.sleep(0.02)
    raise AssertionError(f"timed out after {within} s waiting for {what}")


def read_env(path: Path) -> dict[str, str] | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    if not text.endswith("\n"):
        return None
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


async def helper_events(coord: Coordinator, name: str) -> list[dict[str, Any]]:
    """The HelperEvents (system messages with a JSON body) in `name`'s inbox, oldest first."""
    out = []
    for m in await coord.recent_messages(name, limit=500):
        if m.sender == SYSTEM_SENDER and m.body.startswith("{"):
            out.append(json.loads(m.body))
    return out


async def kicks(coord: Coordinator, name: str) -> list[str]:
    return [
        m.body
        for m in await coord.recent_messages(name, limit=500)
        if m.sender == SYSTEM_SENDER and not m.body.startswith("{")
    ]


async def commit_file(repo: Path, rel: str, text: str, message: str) -> str:
    (repo / rel).write_text(text)
    await run_git(repo, ["add", "--all"], what="add")
    await run_git(repo, ["commit", "--quiet", "-m", message], what="commit")
    return await rev_parse(repo, "HEAD")


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


AwaitableCheck = Callable[[], Awaitable[bool]]


def drain(subscription: Any) -> list[Any]:
    """Everything a hub subscription holds right now, without waiting."""
    out = []
    while True:
        try:
            out.append(subscription.receive.receive_nowait())
        except trio.WouldBlock:
            return out
