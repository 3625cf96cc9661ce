"""Assembles a running hive: the coordinator plus every service that hangs off its root nursery.

This is the only module that knows all the parts. `open_hive` is what the `daemon` command, `up`, the
pytest plugin in `hive_trio.testing` and the benchmarks run, so each of them runs the same hive.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from hive_trio.agent_socket import serve_agent_socket
from hive_trio.config import Config
from hive_trio.coordinator import Coordinator, WallClock, open_coordinator
from hive_trio.dashboard.server import serve_dashboard
from hive_trio.host_socket import serve_host_socket

log = logging.getLogger(__name__)


@attrs.frozen
class Hive:
    coordinator: Coordinator
    config: Config

    @property
    def dashboard_url(self) -> str | None:
        return self.coordinator.dashboard_url


@asynccontextmanager
async def open_hive(config: Config, *, clock: WallClock = time.time) -> AsyncIterator[Hive]:
    """Run a whole hive for as long as the block lives; every socket is bound when it yields."""
    async with open_coordinator(config, clock=clock, serve_socket=serve_agent_socket) as coord:
        nursery = coord.root_nursery
        # Resolves deadlines that passed while the daemon was down before anything else can ask.
        await nursery.start(coord.serve_question_watchdog)
        nursery.start_soon(coord.serve_vacuum)
        await coord.register_manager()
        # --- sockets' minimal stand-in for reconcile (the lifecycle layer owns reconcile proper):
        # every agent in the roster gets its socket back, so its harness can reconnect after a restart.
        for record in await coord.roster.all():
            await coord.register_agent(record.name)
        # --- end of the stand-in.
        if config.dashboard_enabled:
            # Bound before open_hive yields, so `hive.dashboard_url` is always usable (port 0 included).
            await nursery.start(serve_dashboard, coord)
        # host.sock last: once an operator can connect, every agent socket is already bound.
        await nursery.start(serve_host_socket, coord)
        yield Hive(coordinator=coord, config=config)


async def serve_daemon(config: Config, *, ready: trio.Event | None = None) -> None:
    """Run the daemon in the foreground until SIGINT or SIGTERM, then shut down gracefully."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_hive(config) as hive:
            log.info("hive-trio is up: state %s, runtime %s", config.state_dir, config.runtime_dir)
            if hive.dashboard_url:
                log.info("dashboard: %s", hive.dashboard_url)
            if ready is not None:
                ready.set()
            async for signum in signals:
                log.info("received %s, shutting down", signal.Signals(signum).name)
                break
