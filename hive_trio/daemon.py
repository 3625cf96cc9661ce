"""Assembles a running hive: the coordinator plus every service that hangs off its root nursery.

This is the only module that knows all the parts. `open_hive` is what the `daemon` command, `up`, the
pytest plugin in `hive_trio.testing` and the benchmarks run, so each of them runs the same hive.
"""

from __future__ import annotations

import gc
import logging
import resource
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import NoReturn

import attrs
import trio

from hive_trio.core.coordinator import Coordinator, LifecycleFactory, WallClock, open_coordinator
from hive_trio.dashboard.server import serve_dashboard
from hive_trio.lifecycle.approvals import Lifecycle
from hive_trio.lifecycle.backends import Backend
from hive_trio.lifecycle.backends.nixos_container import NixosContainerBackend
from hive_trio.lifecycle.backends.process import ProcessBackend
from hive_trio.lifecycle.bare import BareLifecycle
from hive_trio.rules.config import Config
from hive_trio.rules.paths import HivePaths
from hive_trio.service.notify import READY, STOPPING, open_notifier, serve_watchdog, watchdog_interval
from hive_trio.sockets.host.server import serve_host_socket
from hive_trio.sockets.mcp.harness_tools import serve_harness_channel
from hive_trio.sockets.mcp.server import serve_agent_socket

log = logging.getLogger(__name__)


@attrs.frozen
class Hive:
    coordinator: Coordinator
    config: Config

    @property
    def dashboard_url(self) -> str | None:
        return self.coordinator.dashboard_url


# Young collections every 50,000 allocations instead of CPython's 700 (see `tune_garbage_collection`).
GC_YOUNG_THRESHOLD = 50_000


def tune_garbage_collection() -> None:
    """Fewer, cheaper garbage collections for a long-running daemon with many live connections.

    With CPython's default first threshold (700 allocations), one dashboard fan-out to a thousand
    websockets runs dozens of young collections; whatever is in flight at each (a frame and its task
    state for every socket) is promoted, and full collections over every live connection followed
    every ~2 s, 70-240 ms each, right in the fan-out (docs/PERFORMANCE.md). At 50,000, in-flight
    objects die young. `gc.freeze()` moves what startup built (modules, the MCP SDK's models) out of
    every later collection. Call it once the daemon is up.
    """
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)


def raise_open_file_limit() -> int:
    """Lift the soft RLIMIT_NOFILE to the hard limit; return the new soft limit.

    Each process agent holds about three descriptors in the daemon (its output pipe, its pidfd, its
    log file) besides its socket, so the common soft limit of 1,024 would stop a hive at a few
    hundred agents with EMFILE.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            log.warning("could not raise the open-file limit from %d", soft)
    return soft


def make_backend(config: Config) -> Backend:
    """The lifecycle backend `config.backend` names."""
    if config.backend == "nixos-container":
        return NixosContainerBackend(
            hyperhive_flake=config.hyperhive_flake,
            dashboard_port=config.dashboard_port,
            operator_pronouns=config.operator_pronouns,
        )
    return ProcessBackend(
        agent_command=config.agent_command,
        manager_command=config.manager_command,
        log_max_bytes=config.agent_log_max_bytes,
        log_total_bytes=config.agent_logs_max_total_bytes,
        operator_pronouns=config.operator_pronouns,
        pids_root=HivePaths(config.state_dir, config.runtime_dir).pids_root,
    )


def manages_manager(config: Config) -> bool:
    """Process backend: the manager runs only if `manager_command` is set. Containers: `hm1nd` always."""
    return config.backend == "nixos-container" or config.manager_command is not None


@asynccontextmanager
async def open_hive(
    config: Config, *, clock: WallClock = time.time, lifecycle: bool | LifecycleFactory = True
) -> AsyncIterator[Hive]:
    """Run a whole hive for as long as the block lives; every socket is bound when it yields.

    Agents recorded as running are running again (reconcile) when it yields; on exit they are stopped
    gracefully, within `config.shutdown_grace`, while their sockets still answer.

    `lifecycle=False` runs the hive without a backend (`BareLifecycle`): agents are bare (a roster row
    and a socket, nothing supervised), as `hive_trio.testing` uses by default; lifecycle operations
    that need a backend are refused. A factory builds whatever `LifecycleOps` it returns (a test double).
    """
    async with open_coordinator(
        config, lifecycle=lifecycle_factory(config, lifecycle), clock=clock, serve_socket=serve_agent_socket
    ) as coord:
        nursery = coord.root_nursery
        # Resolves deadlines that passed while the daemon was down before anything else can ask.
        await nursery.start(coord.serve_question_watchdog)
        # Issue 10: permission deadlines and due reminders, including those that passed while down.
        coord.reports.serve_channel = serve_harness_channel
        await nursery.start(coord.reports.serve_permission_watchdog)
        await nursery.start(coord.reports.serve_reminder_watchdog)
        await nursery.start(coord.serve_vacuum)
        # The WAL checkpointed on time as well as size, and cut to 0 bytes when idle (docs/RELIABILITY.md).
        await nursery.start(coord.serve_checkpoints)
        await coord.register_manager()
        # Reconcile: every agent in the roster gets its socket back (so its harness can reconnect),
        # and what should run is started again.
        await nursery.start(coord.ops.serve)
        if config.federation.enabled:
            # Imported here: nats-py is an optional extra (`hive-trio[federation]`).
            from hive_trio.federation.service import serve_federation

            await nursery.start(serve_federation, coord)
        if config.dashboard_enabled:
            # Bound before open_hive yields, so `hive.dashboard_url` is always usable (port 0 included).
            coord.set_dashboard_url(await nursery.start(serve_dashboard, coord))
        # host.sock last: once an operator can connect, every agent socket is already bound.
        await nursery.start(serve_host_socket, coord)
        try:
            yield Hive(coordinator=coord, config=config)
        finally:
            # First, so sockets still answer while agents stop (`serve`'s own shutdown then finds none).
            with trio.CancelScope(shield=True) as cleanup:
                cleanup.deadline = trio.current_time() + config.shutdown_grace
                await coord.ops.shutdown()
            coord.set_dashboard_url(None)  # rows published while the hive closes link nowhere


def lifecycle_factory(config: Config, lifecycle: bool | LifecycleFactory) -> LifecycleFactory:
    """What builds the hive's `LifecycleOps`: the real one on `config.backend`, the bare one, or the caller's."""
    if lifecycle is True:
        return partial(Lifecycle, backend=make_backend(config), manage_manager=manages_manager(config))
    if lifecycle is False:
        return BareLifecycle
    return lifecycle


async def serve_daemon(config: Config, *, task_status: trio.TaskStatus[Path] = trio.TASK_STATUS_IGNORED) -> NoReturn:
    """Run the daemon until cancelled; `task_status.started(host_socket)` once every socket is bound.

    Cancellation is the stop request (the CLI cancels on SIGINT or SIGTERM). The hive runs in a
    shielded scope that only this function's own `stop` ends, so a cancelled daemon still shuts down
    gracefully: agents are stopped while their sockets answer, as `serve_dashboard` closes its streams.
    """
    raise_open_file_limit()
    stop = trio.Event()
    # Under systemd (`Type=notify`): READY=1 once every socket is bound, WATCHDOG=1 from this event
    # loop, STOPPING=1 on the way down. Without $NOTIFY_SOCKET these are no-ops (docs/OPERATIONS.md).
    notifier = open_notifier()

    async def run(*, task_status: trio.TaskStatus[Path]) -> None:
        with trio.CancelScope(shield=True):
            async with open_hive(config) as hive, trio.open_nursery() as heartbeat:
                tune_garbage_collection()
                log.info("hive-trio is up: state %s, runtime %s", config.state_dir, config.runtime_dir)
                if hive.dashboard_url:
                    log.info("dashboard: %s", hive.dashboard_url)
                host_socket = hive.coordinator.paths.host_socket
                # open_hive yields only once host.sock, every agent socket and the dashboard are bound.
                await notifier.send(READY, f"STATUS=serving on {host_socket}")
                interval = watchdog_interval()
                if interval is not None and notifier.enabled:
                    heartbeat.start_soon(serve_watchdog, notifier, interval)
                task_status.started(host_socket)
                await stop.wait()
                await notifier.send(STOPPING, "STATUS=stopping agents")
                heartbeat.cancel_scope.cancel()

    try:
        async with trio.open_nursery() as nursery:
            try:
                task_status.started(await nursery.start(run))
                await trio.sleep_forever()
            finally:
                stop.set()
    finally:
        notifier.close()
    raise AssertionError("serve_daemon only ends by cancellation")
