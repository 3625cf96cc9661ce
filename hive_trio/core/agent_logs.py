"""Reading an agent's (or the manager's) output log for the operator: host.sock `log_tail`, the dashboard.

One place turns an agent name into its log path and reads a piece of it in a worker thread, so the
adapters never build a path. It only reads; the process backend's `AgentLog` writes.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Final

import trio

from hive_trio.lifecycle.backends.agent_log import LogChunk, read_log_chunk
from hive_trio.records import MANAGER_AGENT

if TYPE_CHECKING:
    from hive_trio.core.coordinator import Coordinator

# The most of a log one read carries; a follower asks again from the offset it got.
MAX_LOG_CHUNK: Final = 256 * 1024


async def read_agent_log(coord: Coordinator, name: str, *, offset: int | None, max_bytes: int) -> LogChunk:
    if name == MANAGER_AGENT:
        path = coord.paths.manager_log
    else:
        await coord.require_agent(name)
        path = coord.paths.agent_log(name)
    limit = max(1, min(max_bytes, MAX_LOG_CHUNK))
    return await trio.to_thread.run_sync(partial(read_log_chunk, path, offset=offset, max_bytes=limit))


__all__ = ["MAX_LOG_CHUNK", "read_agent_log"]
