"""Test agents and harnesses against a real hive: in-process, in a temporary directory, real sockets (SPEC §9).

With pytest-trio (``trio_mode = true``, or ``@pytest.mark.trio`` on each test), the fixtures below are
available as soon as hive-trio is installed; this module is registered as a pytest plugin::

    async def test_alice_hears_bob(hive):
        await hive.add_agent("alice")
        await hive.add_agent("bob")
        async with hive.open_agent("alice") as alice, hive.open_agent("bob") as bob:
            await bob.call("send", to="alice", body="hi")
            assert (await alice.call("recv", wait_seconds=5))["messages"][0]["body"] == "hi"

Override the ``hive_agents`` fixture to start every test with some agents, and ``hive_settings`` to change
any `Config` setting. For virtual time, request ``hive_autojump_clock`` (not pytest-trio's
``autojump_clock``, which can jump while a sqlite commit is still in its worker thread).

Outside pytest, ``async with open_test_hive(agents=["alice"]) as hive:`` does the same.

To run real Claude Code agents offline, the ``scripted_model`` fixture (or ``open_scripted_model``) serves
the Messages API from a script of replies (``scripted_model.text``, ``tool_use``, ``error``,
``auth_failure``, ``hang``) and records every request; point ``ANTHROPIC_BASE_URL`` at its ``url``.
``open_daemon_process`` runs the daemon as a separate process instead, for end-to-end tests.

Agents added here are *bare*: a roster row and a live MCP socket, with nothing supervised behind it, so
your test's MCP client is the agent. Importing this module is cheap and has no side effects: the hive's
own modules are imported on first use.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

if TYPE_CHECKING:
    from hive_trio.agent.scripted_model import ScriptedModel
    from hive_trio.clients.host import HostClient
    from hive_trio.clients.mcp import AgentClient
    from hive_trio.core.coordinator import Coordinator, LifecycleFactory, WallClock
    from hive_trio.daemon import Hive
    from hive_trio.records import AgentRecord
    from hive_trio.rules.config import Config

# Unix socket paths must stay under 108 bytes; `/tmp/hive-xxxxxxxx/run/agents/<31>/mcp.sock` does.
SHORT_TEMP_ROOT = "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()
READY_MARK = "hive-trio is ready"  # the daemon command prints it on stdout once serving
DAEMON_START_TIMEOUT = 30.0
DAEMON_STOP_TIMEOUT = 15.0
# Real idleness an autojump clock waits before it jumps (see `hive_autojump_clock`).
AUTOJUMP_THRESHOLD = 0.05


@contextmanager
def short_temp_dir(prefix: str = "hive-") -> Iterator[Path]:
    """A private temporary directory with a short path, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=SHORT_TEMP_ROOT))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class TrioWallClock:
    """Wall-clock seconds that advance with trio's clock, so deadlines run under `autojump_clock`.

    Outside a mock clock it is simply the time of day (trio's clock follows real time).
    """

    def __init__(self, start: float | None = None) -> None:
        self.start = time.time() if start is None else start
        self.origin = trio.current_time()

    def __call__(self) -> float:
        return self.start + (trio.current_time() - self.origin)


class InProcessHive:
    """A running hive and handy ways to reach it. Made by `open_test_hive` (or the `hive` fixture)."""

    def __init__(self, hive: Hive, directory: Path) -> None:
        self.hive = hive
        self.directory = directory

    @property
    def coordinator(self) -> Coordinator:
        return self.hive.coordinator

    @property
    def config(self) -> Config:
        return self.hive.config

    @property
    def host_socket(self) -> Path:
        return self.coordinator.paths.host_socket

    def socket_path(self, name: str) -> Path:
        """The MCP socket of agent `name`, or of the manager for ``"manager"``."""
        from hive_trio.records import MANAGER_AGENT

        if name == MANAGER_AGENT:
            return self.coordinator.paths.manager_socket
        return self.coordinator.paths.agent_socket(name)

    async def add_agent(self, name: str, *, running: bool = True) -> AgentRecord:
        """Add a bare agent: a roster row and a live socket. `running` sets its status flag."""
        from hive_trio.lifecycle.bare import add_bare_agent

        record = await add_bare_agent(self.coordinator, name)
        self.coordinator.set_running(name, running)
        return record

    async def remove_agent(self, name: str) -> None:
        from hive_trio.lifecycle.bare import remove_bare_agent

        await remove_bare_agent(self.coordinator, name)

    @asynccontextmanager
    async def open_agent(self, name: str, *, client_name: str = "hive-trio-test") -> AsyncIterator[AgentClient]:
        """An initialised MCP client (the official SDK's) on `name`'s socket."""
        from hive_trio.clients.mcp import open_agent_client

        async with open_agent_client(self.socket_path(name), client_name=client_name) as client:
            yield client

    def open_manager(self) -> Any:
        from hive_trio.records import MANAGER_AGENT

        return self.open_agent(MANAGER_AGENT)

    @asynccontextmanager
    async def open_host(self) -> AsyncIterator[HostClient]:
        """A connection to host.sock."""
        from hive_trio.clients.host import open_host_client

        async with open_host_client(self.host_socket) as client:
            yield client

    async def host(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """One host.sock request on a fresh connection; `HostRefused` if the daemon says no."""
        from hive_trio.clients.host import host_request

        return await host_request(self.host_socket, cmd, **fields)


@asynccontextmanager
async def open_test_hive(
    *,
    agents: Sequence[str] = (),
    directory: Path | None = None,
    clock: WallClock | None = None,
    lifecycle: bool | LifecycleFactory = False,
    **settings: Any,
) -> AsyncIterator[InProcessHive]:
    """Run a whole hive (`hive_trio.daemon.open_hive`) in this trio run, in `directory` or a temp dir.

    `settings` override `Config` fields (the dashboard is off unless you turn it on). Every socket is
    bound when this yields, and `agents` are added, bare. The clock follows trio's, so `autojump_clock`
    drives question deadlines too. With `lifecycle=True` the hive also runs its lifecycle backend, so
    `spawn` and friends start real agent processes (`agent_command`), as the daemon does; a factory
    (`Coordinator -> LifecycleOps`) puts a double of your own in its place.
    """
    from hive_trio.daemon import open_hive
    from hive_trio.rules.config import Config

    with _directory(directory) as root:
        base: dict[str, Any] = {"dashboard_enabled": False, "admin_group": None}
        config = Config(state_dir=root / "state", runtime_dir=root / "run", **{**base, **settings})
        async with open_hive(config, clock=clock or TrioWallClock(), lifecycle=lifecycle) as hive:
            handle = InProcessHive(hive, root)
            for name in agents:
                await handle.add_agent(name)
            yield handle


@contextmanager
def _directory(directory: Path | None) -> Iterator[Path]:
    if directory is not None:
        yield directory
        return
    with short_temp_dir() as path:
        yield path


def open_scripted_model(*args: Any, **kwargs: Any) -> Any:
    """`hive_trio.agent.scripted_model.open_scripted_model`, imported on first use."""
    from hive_trio.agent import scripted_model

    return scripted_model.open_scripted_model(*args, **kwargs)


# ------------------------------------------------------------------------------ the daemon as a process


class DaemonProcess:
    """A `hive-trio daemon` child process; `stderr_lines` holds what it logged."""

    def __init__(self, process: trio.Process, state_dir: Path, runtime_dir: Path) -> None:
        self.process = process
        self.state_dir = state_dir
        self.runtime_dir = runtime_dir
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self.ready = False

    @property
    def host_socket(self) -> Path:
        from hive_trio.rules.paths import HivePaths

        return HivePaths(self.state_dir, self.runtime_dir).host_socket

    def cli_command(self, *args: str) -> list[str]:
        """argv for a `hive-trio` operator command against this daemon."""
        return [sys.executable, "-m", "hive_trio", *args, "--runtime-dir", str(self.runtime_dir)]

    async def run_cli(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[bytes]:
        return await trio.run_process(self.cli_command(*args), capture_stdout=True, capture_stderr=True, check=check)


@asynccontextmanager
async def open_daemon_process(
    directory: Path, *args: str, env: Mapping[str, str] | None = None
) -> AsyncIterator[DaemonProcess]:
    """Start ``python -m hive_trio daemon`` on `directory`, yield once it serves, SIGTERM it on exit."""
    state_dir, runtime_dir = directory / "state", directory / "run"
    argv = [
        sys.executable,
        "-m",
        "hive_trio",
        "daemon",
        "--state-dir",
        str(state_dir),
        "--runtime-dir",
        str(runtime_dir),
        *args,
    ]
    child_env = {**os.environ, "HIVE_TRIO_DASHBOARD_ENABLED": "false", "HIVE_TRIO_ADMIN_GROUP": "", **(env or {})}
    async with trio.open_nursery() as nursery:
        process = await trio.lowlevel.open_process(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env)
        daemon = DaemonProcess(process, state_dir, runtime_dir)
        settled = trio.Event()
        assert process.stdout is not None and process.stderr is not None
        nursery.start_soon(_drain, process.stdout, daemon.stdout_lines, daemon, settled)
        nursery.start_soon(_drain, process.stderr, daemon.stderr_lines, None, None)
        try:
            with trio.move_on_after(DAEMON_START_TIMEOUT):
                await settled.wait()
            if not daemon.ready:
                raise RuntimeError(f"the daemon did not come up: {' | '.join(daemon.stderr_lines[-20:])}")
            yield daemon
        finally:
            with trio.CancelScope(shield=True):
                await _stop(process)
            nursery.cancel_scope.cancel()


async def _drain(
    stream: trio.abc.ReceiveStream, lines: list[str], daemon: DaemonProcess | None, settled: trio.Event | None
) -> None:
    """Keep a pipe flowing (a full one would stall the daemon); note the line saying it is ready."""
    from hive_trio.rules.framing import LineFramer

    framer = LineFramer(max_frame=1024 * 1024)
    try:
        async with stream:
            while data := await stream.receive_some(65536):
                for line in framer.feed(data):
                    text = line.decode(errors="replace")
                    lines.append(text)
                    if daemon is not None and text.startswith(READY_MARK):
                        daemon.ready = True
                        if settled is not None:
                            settled.set()
    finally:
        if settled is not None:
            settled.set()


async def _stop(process: trio.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    with trio.move_on_after(DAEMON_STOP_TIMEOUT):
        await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()


# ------------------------------------------------------------------------------------- pytest fixtures


@pytest.fixture
async def scripted_model() -> AsyncIterator[ScriptedModel]:
    """A scripted Messages API server on loopback (`hive_trio.agent.scripted_model`); `push` replies to it,
    or set its `default`, and read its `requests`."""
    from hive_trio.agent.scripted_model import open_scripted_model

    async with open_scripted_model() as model:
        yield model


@pytest.fixture
def hive_agents() -> Sequence[str]:
    """Names of the bare agents every `hive` starts with. Override it in your conftest or module."""
    return ()


@pytest.fixture
def hive_settings() -> Mapping[str, Any]:
    """`Config` overrides for the `hive` fixture (e.g. ``{"max_body_bytes": 1024}``)."""
    return {}


@pytest.fixture
def hive_autojump_clock() -> trio.testing.MockClock:
    """Use this rather than pytest-trio's `autojump_clock` with a hive.

    Every sqlite call runs in a worker thread, and trio counts a task waiting on a thread as blocked, so
    an autojump clock with no threshold can leap past a deadline while a commit is still in flight. This
    one waits for 50 ms of real idleness before it jumps; timing stays fully virtual.
    """
    return trio.testing.MockClock(autojump_threshold=AUTOJUMP_THRESHOLD)


@pytest.fixture
def hive_dir() -> Iterator[Path]:
    """A short private temp dir for a hive's state and runtime dirs, removed afterwards."""
    with short_temp_dir() as path:
        yield path


@pytest.fixture
async def hive(
    hive_dir: Path, hive_agents: Sequence[str], hive_settings: Mapping[str, Any]
) -> AsyncIterator[InProcessHive]:
    """A running in-process hive with real sockets, torn down after the test."""
    async with open_test_hive(agents=hive_agents, directory=hive_dir, **hive_settings) as handle:
        yield handle


__all__ = [
    "DaemonProcess",
    "InProcessHive",
    "TrioWallClock",
    "hive",
    "hive_agents",
    "hive_autojump_clock",
    "hive_dir",
    "hive_settings",
    "open_daemon_process",
    "open_scripted_model",
    "open_test_hive",
    "scripted_model",
    "short_temp_dir",
]
