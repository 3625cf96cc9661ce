"""Agents with a roster row and a socket but nothing supervised: the hive without a lifecycle backend.

host.sock's `spawn`/`destroy` fall back to these while `coordinator.lifecycle` is None, and
`hive_trio.testing` uses them so a test's own MCP client *is* the agent. Each runs under the agent's
transient, like the real operations, so a second action on the same agent is refused, not queued.
It never starts a process; that is `hive_trio.lifecycle.supervisor`'s job.
"""

from __future__ import annotations

from hive_trio.core.coordinator import Coordinator
from hive_trio.errors import InvalidRequest
from hive_trio.records import AgentRecord, TransientKind
from hive_trio.rules.names import validate_agent_name

DESTROYED_NOTE = "agent destroyed"


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


__all__ = ["add_bare_agent", "remove_bare_agent"]
