"""A harness channel for in-process tests: a real socketpair, served by the coordinator as a run's would be."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from hive_trio.clients.harness import HarnessChannel, open_harness_stream
from hive_trio.core.coordinator import Coordinator
from hive_trio.records import SYSTEM_SENDER


@asynccontextmanager
async def open_test_channel(coord: Coordinator, name: str) -> AsyncIterator[HarnessChannel]:
    """What the process backend and the lifecycle do for one launch, without the process: the daemon serves
    one end of a socketpair as `name`'s harness session; the test holds the other."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    run_ended = trio.CancelScope()  # what the lifecycle cancels when the run exits
    async with trio.open_nursery() as nursery:
        nursery.start_soon(coord.reports.serve_run_channel, name, ours, run_ended)
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(theirs))
        async with open_harness_stream(stream) as channel:
            yield channel
        run_ended.cancel()


async def system_events(coord: Coordinator, name: str) -> list[dict[str, Any]]:
    """The HelperEvents (JSON bodies from `system`) in `name`'s inbox, oldest first."""
    return [
        json.loads(m.body)
        for m in await coord.recent_messages(name, limit=500)
        if m.sender == SYSTEM_SENDER and m.body.startswith("{")
    ]


__all__ = ["open_test_channel", "system_events"]
