"""The lifecycle of a hive without a backend: agents with a roster row and a socket, nothing supervised.

`BareLifecycle` is a real `LifecycleOps`, given to the coordinator at assembly like `Lifecycle` is, so
host.sock, the dashboard and the MCP tools behave the same in a bare hive: `spawn` adds a roster row and
serves its socket, `destroy` removes both (the state dir stays as a tombstone), and every verb that
needs a backend (start, stop, approve, ...) is refused with one reason. `hive_trio.testing` uses bare
agents so a test's own MCP client *is* the agent. Each runs under the agent's transient, like the real
operations, so a second action on the same agent is refused, not queued.
It never starts a process; that is `hive_trio.lifecycle.supervisor`'s job.
"""

from __future__ import annotations

from typing import Final

import trio

from hive_trio.core.coordinator import Coordinator
from hive_trio.errors import HiveError, InvalidRequest
from hive_trio.records import AgentRecord, Approval, TransientKind
from hive_trio.rules.names import validate_agent_name

DESTROYED_NOTE: Final = "agent destroyed"
NO_BACKEND: Final = "this hive runs without a lifecycle backend"


async def add_bare_agent(coordinator: Coordinator, name: str, *, parent: str | None = None) -> AgentRecord:
    """Record `name` in the roster and serve its socket. `Conflict` if it already exists."""
    validate_agent_name(name)
    with coordinator.transient(name, TransientKind.SPAWNING):
        record = await coordinator.record_spawn(name, parent=parent)
        await coordinator.register_agent(name)
    await coordinator.publish_status(name)
    return record


async def remove_bare_agent(coordinator: Coordinator, name: str, *, purge: bool = False) -> None:
    """Unregister `name`'s socket and drop its roster row; its state dir stays as a tombstone."""
    if purge:
        raise InvalidRequest("purging state needs the lifecycle backend; destroy without purge keeps a tombstone")
    await coordinator.require_agent(name)
    with coordinator.transient(name, TransientKind.DESTROYING):
        coordinator.unregister_agent(name)
        coordinator.set_running(name, False)
        await coordinator.forget_agent(name, note=DESTROYED_NOTE)
    await coordinator.publish_status(name)


class BareLifecycle:
    """`LifecycleOps` with nothing to run: spawn and destroy are bare, the rest is refused."""

    def __init__(self, coord: Coordinator) -> None:
        self.coord = coord

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The bare reconcile: every agent in the roster gets its socket back, so its harness can reconnect."""
        for name in await self.coord.agent_names():
            await self.coord.register_agent(name)
        task_status.started()
        await trio.sleep_forever()

    async def shutdown(self) -> None:
        """Nothing runs, so nothing stops."""

    async def spawn(self, name: str, *, parent: str | None = None) -> AgentRecord:
        return await add_bare_agent(self.coord, name, parent=parent)

    async def destroy(self, name: str, *, purge: bool = False) -> None:
        await remove_bare_agent(self.coord, name, purge=purge)

    async def start(self, name: str) -> None:
        raise HiveError(NO_BACKEND)

    async def stop(self, name: str, *, graceful: bool = True) -> None:
        raise HiveError(NO_BACKEND)

    async def restart(self, name: str) -> None:
        raise HiveError(NO_BACKEND)

    async def rebuild(self, name: str) -> None:
        raise HiveError(NO_BACKEND)

    async def purge_tombstone(self, name: str) -> None:
        raise HiveError(NO_BACKEND)

    async def request_spawn(self, name: str, description: str | None, *, requested_by: str) -> Approval:
        raise HiveError(NO_BACKEND)

    async def request_apply_commit(
        self, agent: str, commit_ref: str, description: str | None, *, requested_by: str
    ) -> Approval:
        raise HiveError(NO_BACKEND)

    async def approve(self, approval_id: int, *, note: str | None = None) -> Approval:
        raise HiveError(NO_BACKEND)

    async def deny(self, approval_id: int, *, note: str | None = None) -> Approval:
        raise HiveError(NO_BACKEND)


__all__ = ["NO_BACKEND", "BareLifecycle", "add_bare_agent", "remove_bare_agent"]
