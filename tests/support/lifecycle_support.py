"""Shared helpers for the lifecycle tests (real child processes, real git, real sqlite)."""

from __future__ import annotations

import contextlib
import ctypes
import inspect
import json
import os
from collections.abc import Awaitable, Callable, Sequence
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


async def eventually(
    check: Callable[[], Any],
    *,
    coord: Coordinator | None = None,
    watch: Sequence[Path] = (),
    within: float = 10.0,
    what: str = "condition",
) -> Any:
    """Wait until `check()` is truthy and return its value, re-checking only when something happened.

    Event-driven, never a timer: `check` runs once at the start, then again after every event the
    hive announces (`coord.subscribe`, for state the coordinator changes) and every change inotify reports
    in the `watch` directories (for effects outside this process: a file a child wrote, a WAL another
    daemon committed). `within` bounds the whole wait in real seconds (children are real processes).
    """
    if coord is None and not watch:
        raise TypeError("eventually needs `coord` or `watch`: something whose events say when to re-check")
    poke_send, poke_recv = trio.open_memory_channel[None](1)

    def poke() -> None:
        with contextlib.suppress(trio.WouldBlock):
            poke_send.send_nowait(None)  # one pending poke is enough: `check` reads the current state

    async def follow_hub(*, task_status: trio.TaskStatus[None]) -> None:
        assert coord is not None
        with coord.subscribe() as events:
            task_status.started()
            async for _ in events:  # any event (or a resync) may have changed what `check` reads
                poke()

    async def follow_files(*, task_status: trio.TaskStatus[None]) -> None:
        with _Inotify() as inotify:
            inotify.arm(watch)
            task_status.started()
            while True:
                await inotify.wait()
                inotify.arm(watch)  # a watched directory may have just been created
                poke()

    async def attempt() -> Any:
        value = check()
        return await value if inspect.isawaitable(value) else value

    with trio.move_on_after(within):
        async with trio.open_nursery() as nursery:
            # Subscribed before the first check, so nothing that happens after it is missed.
            if coord is not None:
                await nursery.start(follow_hub)
            if watch:
                await nursery.start(follow_files)
            while not (value := await attempt()):
                await poke_recv.receive()
            nursery.cancel_scope.cancel()
            return value
    raise AssertionError(f"timed out after {within} s waiting for {what}")


class _Inotify:
    """Linux inotify through libc: wakes a trio task when a directory's entries are created or written."""

    EVENTS = 0x2 | 0x8 | 0x80 | 0x100  # IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._armed: set[Path] = set()
        self.fd = -1

    def __enter__(self) -> _Inotify:
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        return self

    def __exit__(self, *_: object) -> None:
        os.close(self.fd)

    def arm(self, directories: Sequence[Path]) -> None:
        """Watch each directory, or its nearest existing ancestor until it exists."""
        for directory in directories:
            target = directory
            while not target.exists():
                target = target.parent
            if target not in self._armed:
                if self._libc.inotify_add_watch(self.fd, os.fsencode(target), self.EVENTS) < 0:
                    raise OSError(ctypes.get_errno(), f"inotify_add_watch {target}")
                self._armed.add(target)

    async def wait(self) -> None:
        await trio.lowlevel.wait_readable(self.fd)
        with contextlib.suppress(BlockingIOError):
            while os.read(self.fd, 65536):
                pass


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
