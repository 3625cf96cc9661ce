"""What a run costs the daemon: a silent harness channel is no session, and start/stop cycles leave nothing.

The lazy channel (docs/PERFORMANCE.md, "Memory"): until the harness sends its first byte, the daemon's end
of a run's socketpair is one parked `wait_readable`; the MCP session is built only then. A peer that
closes first, or a run that ends first, is cleaned up without one.
"""

from __future__ import annotations

import collections
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import trio
import trio.testing
from harness_support import open_test_channel
from lifecycle_support import lifecycle_config

from hive_trio.clients.harness import open_harness_stream
from hive_trio.core.coordinator import Coordinator
from hive_trio.daemon import open_hive
from hive_trio.testing import InProcessHive


def all_tasks() -> Iterator[trio.lowlevel.Task]:
    root = trio.lowlevel.current_root_task()
    assert root is not None
    stack = [root]
    while stack:
        task = stack.pop()
        yield task
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def count_sessions(coord: Coordinator) -> list[str]:
    """Wrap the coordinator's harness server so the test sees every session it builds."""
    built: list[str] = []
    serve = coord.reports.serve_channel
    assert serve is not None

    async def counting(c: Coordinator, name: str, stream: trio.SocketStream) -> None:
        built.append(name)
        await serve(c, name, stream)

    coord.reports.serve_channel = counting
    return built


async def test_a_harness_that_connects_late_is_served(
    hive: InProcessHive, hive_autojump_clock: trio.testing.MockClock
) -> None:
    await hive.add_agent("alpha")
    coord = hive.coordinator
    built = count_sessions(coord)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ended = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(coord.reports.serve_run_channel, "alpha", ours, ended)
        await trio.sleep(120)  # virtual: the harness is slow to boot, and says nothing meanwhile
        assert built == []  # no session for a channel that has not spoken
        assert coord.reports.harness_connected("alpha")  # the run holds its end: counted from the launch
        assert (await hive.host("interrupt", name="alpha"))["harness_connected"] is True
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(theirs))
        async with open_harness_stream(stream) as channel:
            await channel.turn_started("late", [])
            # The interrupt asked for before the harness spoke is stale once a turn starts (as ever).
            assert (await channel.wait_control(0)).interrupt is False
        assert built == ["alpha"]
        ended.cancel()
    entries = (await hive.host("transcript", name="alpha"))["entries"]
    assert [(e["kind"], e["turn_id"]) for e in entries] == [("turn_started", "late")]
    assert not coord.reports.harness_connected("alpha")


async def test_a_silent_channel_whose_peer_closes_costs_no_session(hive: InProcessHive) -> None:
    await hive.add_agent("alpha")
    coord = hive.coordinator
    built = count_sessions(coord)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(coord.reports.serve_run_channel, "alpha", ours, trio.CancelScope())
            await trio.testing.wait_all_tasks_blocked()
            assert coord.reports.harness_connected("alpha")
            theirs.close()  # the harness (or a plain command that never had one) goes away without a word
    assert built == []
    assert ours.fileno() == -1  # the daemon's end is closed
    assert not coord.reports.harness_connected("alpha")


async def test_a_run_that_ends_with_a_silent_channel_is_cleaned_up(short_tmp: Path) -> None:
    config = lifecycle_config(short_tmp, agent_command="exec sleep 3600")
    async with open_hive(config) as hive:
        coord = hive.coordinator
        built = count_sessions(coord)
        await coord.ops.spawn("alpha")
        await trio.testing.wait_all_tasks_blocked()
        assert coord.reports.harness_connected("alpha")
        # `sleep` holds its end of the channel and never writes: the run's end must close it.
        await coord.ops.stop("alpha")
        await trio.testing.wait_all_tasks_blocked()
        assert not coord.reports.harness_connected("alpha")
        assert built == []


RUN_TASKS = ("ProcessRun.supervise", "_pump", "HarnessReports.serve_run_channel")


def run_tasks() -> list[str]:
    """The tasks of a process run, by the name trio gives them (their function's)."""
    return sorted(n for t in all_tasks() for n in RUN_TASKS if t.name.endswith(n))


def lasting_tasks() -> collections.Counter[str]:
    """Every task by name, but the status publishes a start or stop leaves running for a moment."""
    return collections.Counter(t.name for t in all_tasks() if not t.name.endswith("publish_status"))


async def test_fifty_start_stop_cycles_leave_no_task_and_no_fd(short_tmp: Path) -> None:
    config = lifecycle_config(short_tmp, agent_command="exec sleep 3600")
    async with open_hive(config) as hive:
        coord = hive.coordinator
        await coord.ops.spawn("alpha")
        await coord.ops.stop("alpha")
        await coord.ops.start("alpha")  # one warm-up cycle: caches, the thread pool, the log file
        await coord.ops.stop("alpha")
        await trio.testing.wait_all_tasks_blocked()
        tasks = lasting_tasks()
        fds = open_fds()
        for _ in range(50):
            await coord.ops.start("alpha")
            # A running process agent costs three tasks: its watcher, its output pump, its silent channel.
            assert run_tasks() == sorted(RUN_TASKS)
            await coord.ops.stop("alpha")
            assert run_tasks() == []
        await trio.testing.wait_all_tasks_blocked()
        assert lasting_tasks() == tasks
        assert open_fds() == fds


async def test_fifty_channels_talking_or_silent_leave_no_task_and_no_fd(hive: InProcessHive) -> None:
    await hive.add_agent("alpha")
    coord = hive.coordinator
    async with open_test_channel(coord, "alpha") as channel:  # warm-up
        await channel.report_state(status_text="warm")
    await trio.testing.wait_all_tasks_blocked()
    tasks, fds = lasting_tasks(), open_fds()
    for i in range(50):
        if i % 2:
            async with open_test_channel(coord, "alpha") as channel:
                await channel.report_state(status_text=f"cycle {i}")
            continue
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ended = trio.CancelScope()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(coord.reports.serve_run_channel, "alpha", ours, ended)
            await trio.testing.wait_all_tasks_blocked()
            ended.cancel()  # the run ended before its harness said anything
        theirs.close()
        assert ours.fileno() == -1
    await trio.testing.wait_all_tasks_blocked()
    assert lasting_tasks() == tasks
    assert open_fds() == fds
    assert not coord.reports.harness_connected("alpha")
