"""The operator's (and the manager's) verbs on one agent: spawn, start, stop, restart, rebuild, destroy, purge.

hive-c0re's `actions`. Each runs under the agent's transient (so a second one is refused, and the operator
can cancel it), records intent through the coordinator first, then asks the backend; every start goes
through `Supervisor._bring_up`. Kept from hyperhive: a HelperEvent to the manager for every change, and
`kick_agent` after each start, restart and rebuild. It never parses a wire or serves a socket.
"""

from __future__ import annotations

import shutil

import trio

from hive_trio.errors import Conflict, NotFound
from hive_trio.lifecycle import config_repos
from hive_trio.lifecycle.backends.agent_log import rotated_path
from hive_trio.lifecycle.bare import DESTROYED_NOTE
from hive_trio.lifecycle.config_repos import MAIN
from hive_trio.lifecycle.supervisor import RUNNING, STOPPED, Supervisor
from hive_trio.records import (
    MANAGER_AGENT,
    AgentRecord,
    HelperDestroyed,
    HelperKilled,
    HelperRebuilt,
    HelperSpawned,
    TransientKind,
)
from hive_trio.rules.names import validate_agent_name


class LifecycleActions(Supervisor):
    """The supervisor plus the verbs the adapters call through `coord.ops`."""

    async def spawn(self, name: str, *, parent: str | None = None) -> AgentRecord:
        validate_agent_name(name)
        self.backend.check_name(name)
        if parent is not None and parent != MANAGER_AGENT:
            validate_agent_name(parent)
        if await self.coord.find_agent(name) is not None:
            raise Conflict(f"agent {name!r} already exists")
        with self._action(name, TransientKind.SPAWNING):
            await self.coord.record_spawn(name, parent=parent)
            async with self._failure_recorded(name, "spawn failed", interrupted="spawn was interrupted"):
                sha = await self._prepare_repos(name)
                await self.coord.set_desired(name, RUNNING, deployed_sha=sha)
                await self.coord.register_agent(name)
                await self.backend.build(self.unit(name), rev=sha)
                await self._bring_up(name, kick=f"You were spawned as {name}.")
        await self.coord.notify_manager(HelperSpawned(agent=name))
        return await self.coord.require_agent(name)

    async def start(self, name: str) -> None:
        await self.coord.require_agent(name)
        with self._action(name, TransientKind.STARTING):
            await self.coord.set_desired(name, RUNNING)
            if self.run_of(name) is not None:
                self._policy(name).reset()
                await self.coord.publish_status(name)
                return  # already running: starting is idempotent, as `systemctl start` is
            async with self._failure_recorded(name, "start failed"):
                await self._bring_up(name, kick="You were started by the operator.")

    async def stop(self, name: str, *, graceful: bool = True) -> None:
        await self.coord.require_agent(name)
        with self._action(name, TransientKind.STOPPING):
            # Recorded first: an operator stop is never undone by a crash restart or a daemon restart. Shielded
            # (one short write), so a stop cancelled on its way has `stopped` recorded for certain; `_halt` then
            # runs even in the cancelled scope, where the wait for exit ends at once and the stop is forced.
            # Before, a stop cancelled ahead of its SIGTERM left the process alive with desired = stopped.
            with trio.CancelScope(shield=True):
                await self.coord.set_desired(name, STOPPED)
            await self._halt(name, grace=self.config.stop_grace if graceful else 0.0)
        await self.coord.notify_manager(HelperKilled(agent=name))

    async def restart(self, name: str) -> None:
        await self.coord.require_agent(name)
        with self._action(name, TransientKind.RESTARTING):
            await self.coord.set_desired(name, RUNNING)
            await self._halt(name, grace=self.config.stop_grace)
            async with self._failure_recorded(name, "restart failed"):
                await self._bring_up(name, kick="You were restarted by the operator.")

    async def rebuild(self, name: str) -> None:
        """Rebuild from the applied repo's `main`; a running agent picks the result up (restarted if needed)."""
        await self.coord.require_agent(name)
        with self._action(name, TransientKind.REBUILDING):
            sha = await config_repos.rev_parse(self.paths.agent_applied(name), MAIN)
            await self.backend.build(self.unit(name), rev=sha)
            await self.coord.record_deployed(name, sha)
            await self._refresh(name, kick="You were rebuilt from your applied config.")
        await self._announce_rebuilt(HelperRebuilt(agent=name, sha=sha, tag=None))

    async def _announce_rebuilt(self, event: HelperRebuilt) -> None:
        """The manager hears of every rebuild; the agent too, since its own config changed."""
        await self.coord.notify_manager(event)
        await self.coord.notify_agent(event.agent, event)

    async def _refresh(self, name: str, *, kick: str) -> None:
        """After a successful build: a running agent is restarted onto it (or reloaded in place)."""
        if self.run_of(name) is None:
            return
        if self.backend.applies_live:
            await self.coord.kick_agent(name, kick)
            return
        await self._halt(name, grace=self.config.stop_grace)
        async with self._failure_recorded(name, "could not start after the rebuild"):
            await self._launch(name, kick=kick)

    async def destroy(self, name: str, *, purge: bool = False) -> None:
        await self.coord.require_agent(name)
        with self._action(name, TransientKind.DESTROYING):
            await self._halt(name, grace=self.config.stop_grace)
            await self.backend.remove(self.unit(name))
            self.coord.unregister_agent(name)
            await self.coord.forget_agent(name, note=DESTROYED_NOTE)
            self._policies.pop(name, None)
            if purge:
                await self._purge_dirs(name)
        await self.coord.publish_status(name)  # the row is gone: `container_removed`
        await self.coord.notify_manager(HelperDestroyed(agent=name))

    async def purge_tombstone(self, name: str) -> None:
        validate_agent_name(name)
        if await self.coord.find_agent(name) is not None:
            raise Conflict(f"{name!r} is a live agent; destroy it first")
        if name not in self.coord.kept_state_names():
            raise NotFound(f"there is no tombstone named {name!r}")
        with self._action(name, TransientKind.DESTROYING):
            await self._purge_dirs(name)

    async def _purge_dirs(self, name: str) -> None:
        dirs = [self.paths.agent_state_root(name), self.paths.agent_applied(name), self.paths.agent_runtime(name)]
        logs = [self.paths.agent_log(name), rotated_path(self.paths.agent_log(name))]

        def purge() -> None:
            for d in dirs:
                shutil.rmtree(d, ignore_errors=True)
            for f in logs:
                f.unlink(missing_ok=True)

        await trio.to_thread.run_sync(purge)


__all__ = ["LifecycleActions"]
